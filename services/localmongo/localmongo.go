// Package localmongo runs an embedded MongoDB-wire server for local runs and
// tests: its own engine (engine.go) keeps the documents in memory, applies
// every write to a document atomically, and journals each operation to a file
// in Dir or to a table of a PostgreSQL database.
package localmongo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// Config configures a Server.
type Config struct {
	// Addr is the public listen address, e.g. "127.0.0.1:27017" or "127.0.0.1:0".
	Addr string
	// Dir is the data directory (the journal file), created if missing.
	// Ignored with PostgreSQLURL.
	Dir string
	// PostgreSQLURL, if set, keeps the journal in a table (localmongo_journal)
	// of this PostgreSQL database instead, e.g.
	// "postgres://root@127.0.0.1:5432/test". The database must exist.
	PostgreSQLURL string
	// Logger may be nil.
	Logger *zap.Logger
}

// Server is a running embedded MongoDB-wire server.
type Server struct {
	uri  string
	log  *zap.Logger
	wire *wireServer

	closeOnce sync.Once
}

// startTimeout bounds the readiness ping when ctx has no earlier deadline.
const startTimeout = 30 * time.Second

// Start loads the store from its journal, listens on cfg.Addr and returns
// once a ping succeeds. ctx bounds startup only; stop the server with Close.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Addr == "" {
		return nil, errors.New("localmongo: Addr is required")
	}
	return startEngine(ctx, cfg, log)
}

// URI returns the connection string for mongo-driver, e.g.
// "mongodb://127.0.0.1:27017/?directConnection=true".
func (s *Server) URI() string { return s.uri }

// Close stops serving and closes the journal. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.wire.close()
		err = s.wire.eng.close()
	})
	return err
}

// startEngine opens the engine and serves it on cfg.Addr.
func startEngine(ctx context.Context, cfg Config, log *zap.Logger) (*Server, error) {
	var eng *engine
	var err error
	switch {
	case cfg.PostgreSQLURL != "":
		if eng, err = openPGEngine(ctx, cfg.PostgreSQLURL); err != nil {
			return nil, fmt.Errorf("localmongo: open the PostgreSQL journal: %w", err)
		}
	case cfg.Dir == "":
		return nil, errors.New("localmongo: Dir is required")
	default:
		if eng, err = openEngine(cfg.Dir); err != nil {
			return nil, fmt.Errorf("localmongo: open %s: %w", cfg.Dir, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = eng.close()
		return nil, fmt.Errorf("localmongo: listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{log: log, wire: newWireServer(ln, eng, log), uri: uriFor(ln.Addr().(*net.TCPAddr))}
	s.wire.wg.Add(1)
	go s.wire.serve()
	if err := s.ping(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("localmongo: not ready: %w", err)
	}
	return s, nil
}

// ping checks the server with a real driver round trip.
func (s *Server) ping(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	c, err := mongo.Connect(options.Client().ApplyURI(s.uri))
	if err != nil {
		return err
	}
	defer func() { _ = c.Disconnect(context.WithoutCancel(ctx)) }()
	return c.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err()
}

// uriFor builds the client URI; a wildcard listen address is reached via loopback.
// directConnection=true: talk to this one standalone server, no topology discovery.
func uriFor(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP == nil || a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	u := url.URL{
		Scheme:   "mongodb",
		Host:     net.JoinHostPort(host, fmt.Sprint(a.Port)),
		Path:     "/",
		RawQuery: "directConnection=true",
	}
	return u.String()
}
