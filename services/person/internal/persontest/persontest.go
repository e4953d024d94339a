// Package persontest builds what person's tests share: a real store on a fresh
// embedded MongoDB (localmongo, FerretDB behind a write gate) reached through a
// TCP proxy the test can cut, and an outbox whose publisher records events.
package persontest

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/personscore/eventbus/eventbustest"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/eventbus/outbox/outboxtest"
	"github.com/personscore/localmongo/mongotest"
	"github.com/personscore/person/mongodb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Env is a person store on its own embedded MongoDB.
type Env struct {
	Proxy    *Proxy // between the store and MongoDB; Cut it to make MongoDB unreachable
	Client   *mongo.Client
	DB       *mongo.Database
	Recorder *outboxtest.Recorder
	Outbox   *outbox.Outbox
	Store    *mongodb.Store
}

// Options tune New; zero values take the defaults.
type Options struct {
	// SweepInterval of the outbox (default one minute, so that only the relay
	// and the flush at shutdown publish unless a test wants the sweep).
	SweepInterval time.Duration
}

// New starts an embedded MongoDB and returns a store on it; everything stops
// when the test ends. It fails the test (never skips) if anything is missing.
func New(tb testing.TB, opts ...Options) *Env {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Minute
	}
	srv := mongotest.Start(tb)
	target, err := hostOf(srv.URI())
	if err != nil {
		tb.Fatal(err)
	}
	px := StartMongoProxy(tb, target)
	// Short selection and connect timeouts make the MongoDB-down tests quick
	// (connection checkouts share the selection timeout, so let the pool open
	// connections in parallel); the long operation timeout copes with a
	// loaded machine.
	client, err := mongo.Connect(options.Client().ApplyURI(ProxiedURI(px)).
		SetServerSelectionTimeout(2 * time.Second).SetConnectTimeout(2 * time.Second).SetMaxConnecting(8).
		SetTimeout(30 * time.Second))
	if err != nil {
		tb.Fatalf("persontest: connect: %v", err)
	}
	tb.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	db := client.Database(eventbustest.Unique("person"))
	rec := &outboxtest.Recorder{}
	ob := outbox.New(outbox.Config{Collection: mongodb.PersonsCollection(db), Publisher: rec, SweepInterval: o.SweepInterval})
	return &Env{Proxy: px, Client: client, DB: db, Recorder: rec, Outbox: ob, Store: mongodb.New(db, ob)}
}

// RunOutbox starts the outbox relay and sweep; the returned func stops it,
// flushing what is pending, and returns the flush's result.
func (e *Env) RunOutbox(tb testing.TB) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Outbox.Run(ctx, 10*time.Second) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	tb.Cleanup(func() { _ = stop() })
	return stop
}

func hostOf(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}

// ProxiedURI is a mongo-driver URI that reaches MongoDB through px.
func ProxiedURI(px *Proxy) string { return "mongodb://" + px.Addr() + "/?directConnection=true" }

// Proxy forwards TCP connections to a target until it is cut: then it closes
// every open connection and refuses new ones, as a crashed or unreachable
// server would look to a client, until Restore. A proxy to MongoDB
// (StartMongoProxy) can also break the connection of one write command.
type Proxy struct {
	ln     net.Listener
	target string
	mongo  bool // forward MongoDB wire messages one by one (FailNextWrite)

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	cut   bool
	fault *writeFault
	hold  *hold // hold.go
	wg    sync.WaitGroup
}

// StartProxy listens on a loopback port and forwards bytes to target
// (host:port).
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	return startProxy(tb, target, false)
}

// StartMongoProxy is StartProxy for a MongoDB target: it forwards whole wire
// messages, so that FailNextWrite can pick out a write command.
func StartMongoProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	return startProxy(tb, target, true)
}

func startProxy(tb testing.TB, target string, mongo bool) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("persontest: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, mongo: mongo, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			_ = in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			_ = in.Close()
			_ = out.Close()
			continue
		}
		p.wg.Add(2)
		if !p.mongo {
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				_, _ = io.Copy(dst, src)
				p.untrack(in, out)
			}
			go pipe(out, in)
			go pipe(in, out)
			continue
		}
		l := &mongoLink{p: p, client: in, server: out}
		go l.requests()
		go l.replies()
	}
}
