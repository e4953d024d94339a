// Package localmongo runs an embedded MongoDB-wire server for local runs and
// tests. By default it is its own engine: documents in memory, a journal file
// in Dir, every write to a document atomic (engine.go). With a PostgreSQL URL
// it is FerretDB v1 on PostgreSQL behind a small gate that serializes write
// commands, so that single-document updates are atomic as on a real MongoDB.
package localmongo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// Config configures a Server.
type Config struct {
	// Addr is the public listen address, e.g. "127.0.0.1:27017" or "127.0.0.1:0".
	Addr string
	// Dir is the data directory (the engine's journal), created if missing.
	// Ignored with PostgreSQLURL.
	Dir string
	// PostgreSQLURL, if set, selects FerretDB on PostgreSQL instead of the engine,
	// e.g. "postgres://root@127.0.0.1:5432/test". The database must exist;
	// each MongoDB database becomes a schema in it.
	PostgreSQLURL string
	// Logger may be nil. FerretDB's own logs go to it at warn level and above,
	// or at all levels if the logger has debug enabled.
	Logger *zap.Logger
}

// Server is a running embedded MongoDB-wire server.
type Server struct {
	uri  string
	log  *zap.Logger
	gate *gate
	wire *wireServer // the engine's server (no PostgreSQLURL)

	stopFerret context.CancelFunc
	ferretDone chan struct{}

	closeOnce sync.Once
}

// startTimeout bounds the readiness ping when ctx has no earlier deadline.
const startTimeout = 30 * time.Second

// Start starts FerretDB on a loopback port and the write gate on cfg.Addr and
// returns once a ping through the gate succeeds. ctx bounds startup only;
// stop the server with Close.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Addr == "" {
		return nil, errors.New("localmongo: Addr is required")
	}
	if cfg.PostgreSQLURL == "" {
		return startEngine(ctx, cfg, log)
	}

	fcfg := &ferretdb.Config{
		// Only a TCP listener on loopback: no Unix socket, no TLS. The embedded
		// package starts no telemetry reporter, debug or metrics HTTP listener.
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:   newSlogLogger(log),
	}
	pgURL, err := withCustomPlans(cfg.PostgreSQLURL)
	if err != nil {
		return nil, fmt.Errorf("localmongo: PostgreSQL URL: %w", err)
	}
	fcfg.Handler = "postgresql"
	fcfg.PostgreSQLURL = pgURL

	f, err := ferretdb.New(fcfg)
	if err != nil {
		return nil, fmt.Errorf("localmongo: start FerretDB: %w", err)
	}
	upstream, err := hostPort(f.MongoDBURI()) // listener is bound by New
	if err != nil {
		return nil, fmt.Errorf("localmongo: FerretDB address: %w", err)
	}

	// FerretDB outlives ctx: it runs until Close.
	fctx, stopFerret := context.WithCancel(context.Background())
	s := &Server{log: log, stopFerret: stopFerret, ferretDone: make(chan struct{})}
	go func() {
		defer close(s.ferretDone)
		_ = f.Run(fctx) // always nil; closes the backend when fctx ends
	}()
	// Ends with FerretDB (fctx); Close waits only for FerretDB.
	go maintainTables(fctx, fcfg.PostgreSQLURL, log)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		s.stopFerretAndWait()
		return nil, fmt.Errorf("localmongo: listen on %s: %w", cfg.Addr, err)
	}
	s.gate = newGate(ln, upstream, log)
	s.gate.wg.Add(1)
	go s.gate.serve()
	s.uri = uriFor(ln.Addr().(*net.TCPAddr))

	if err := s.ping(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("localmongo: not ready: %w", err)
	}
	return s, nil
}

// URI returns the connection string for mongo-driver, e.g.
// "mongodb://127.0.0.1:27017/?directConnection=true".
func (s *Server) URI() string { return s.uri }

// Close stops the gate and FerretDB and closes the backend. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.wire != nil {
			s.wire.close()
			err = s.wire.eng.close()
			return
		}
		if s.gate != nil {
			s.gate.close()
		}
		s.stopFerretAndWait()
	})
	return err
}

func (s *Server) stopFerretAndWait() {
	s.stopFerret()
	<-s.ferretDone
}

// startEngine starts the engine's wire server on cfg.Addr with its journal in cfg.Dir.
func startEngine(ctx context.Context, cfg Config, log *zap.Logger) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("localmongo: Dir is required")
	}
	eng, err := openEngine(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("localmongo: open %s: %w", cfg.Dir, err)
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

// ping checks the whole path (gate and FerretDB) with a real driver round trip.
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

func hostPort(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}
