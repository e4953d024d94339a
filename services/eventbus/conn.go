package eventbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// ErrNotConnected is returned at once by operations that need the broker while
// the connection is down; callers fail fast instead of queueing in memory.
var ErrNotConnected = errors.New("eventbus: not connected to the broker")

// ErrBlocked is returned at once by a publish while the broker has blocked the
// connection (a memory or disk alarm); it wraps ErrNotConnected.
var ErrBlocked = fmt.Errorf("%w: broker blocked the connection (resource alarm)", ErrNotConnected)

// ConnConfig says where the broker is and how to reach it.
type ConnConfig struct {
	// URLs are the nodes of one broker cluster (amqp:// or amqps://); on failure
	// the connection moves on to the next one.
	URLs []string
	// TLS is used for amqps:// URLs; nil means the system roots.
	TLS *tls.Config
	// Name is shown in the broker's connection list.
	Name string
	// MaxBackoff caps the delay between reconnect attempts (default 5s).
	MaxBackoff time.Duration
	Logger     *zap.Logger
}

// SplitURLs parses a comma-separated list of broker URLs, as in AMQP_URL.
func SplitURLs(list string) []string {
	var urls []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// Conn is a self-healing connection to a broker cluster. Publishers and
// consumers open their own channels on it and reopen them after a reconnect.
type Conn struct {
	cfg    ConnConfig
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	current *amqp.Connection
	ready   chan struct{}          // closed while current is usable
	blocked atomic.Pointer[string] // reason, while the broker blocks publishing
	lastErr atomic.Pointer[error]  // the last dial failure, for diagnostics
}

// Open starts connecting in the background and keeps the connection up until
// Close. Use WaitConnected to block until the first connection.
func Open(cfg ConnConfig) *Conn {
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
	go c.run()
	return c
}

// Connected reports whether the broker connection is up now.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current != nil && !c.current.IsClosed()
}

// Blocked reports whether the broker has blocked the connection (it does so
// during a memory or disk alarm), and why.
func (c *Conn) Blocked() (string, bool) {
	if r := c.blocked.Load(); r != nil {
		return *r, true
	}
	return "", false
}

// LastError returns why the last connection attempt failed (nil if it did not).
func (c *Conn) LastError() error {
	if e := c.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// WaitConnected blocks until the connection is up or ctx ends.
func (c *Conn) WaitConnected(ctx context.Context) error {
	_, err := c.await(ctx)
	return err
}

// await returns the live connection, waiting for one if needed.
func (c *Conn) await(ctx context.Context) (*amqp.Connection, error) {
	for {
		c.mu.Lock()
		cur, ready := c.current, c.ready
		c.mu.Unlock()
		if cur != nil && !cur.IsClosed() {
			return cur, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrNotConnected
		}
	}
}

// Close stops reconnecting and closes the connection.
func (c *Conn) Close() error {
	c.cancel()
	<-c.done
	return nil
}

func (c *Conn) run() {
	defer close(c.done)
	if len(c.cfg.URLs) == 0 {
		c.log.Error("no broker URL configured")
		return
	}
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	next, failed := 0, 0
	for c.ctx.Err() == nil {
		raw := c.cfg.URLs[next%len(c.cfg.URLs)]
		conn, err := c.dial(raw)
		if err != nil {
			c.lastErr.Store(&err)
			next++
			failed++
			if failed < len(c.cfg.URLs) {
				// Try the other nodes of the cluster before backing off.
				c.log.Warn("broker connection failed, trying the next node", zap.String("broker", redact(raw)), zap.Error(err))
				continue
			}
			failed = 0
			wait := backoff + rand.N(backoff/2+1)
			c.log.Warn("broker connection failed", zap.String("broker", redact(raw)), zap.Error(err), zap.Duration("retry_in", wait))
			if !c.sleep(wait) {
				return
			}
			backoff = min(backoff*2, c.cfg.MaxBackoff)
			continue
		}
		failed = 0
		c.lastErr.Store(nil)
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		go c.watchBlocked(conn.NotifyBlocked(make(chan amqp.Blocking, 4)))
		c.mu.Lock()
		c.current = conn
		close(c.ready)
		c.mu.Unlock()
		c.log.Info("broker connected", zap.String("broker", redact(raw)))
		since := time.Now()

		lost := false
		select {
		case err := <-closed:
			c.log.Warn("broker connection lost", zap.String("broker", redact(raw)), zap.Any("reason", err))
			lost = true
		case <-c.ctx.Done():
			_ = conn.Close()
		}
		c.mu.Lock()
		c.current = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
		c.blocked.Store(nil)
		if !lost {
			return
		}
		// Move on to the next node. A connection that lived long was healthy:
		// reconnect at once; one that died young backs off like a failed dial.
		next++
		if time.Since(since) > 10*c.cfg.MaxBackoff {
			backoff = minBackoff
			continue
		}
		if !c.sleep(backoff + rand.N(backoff/2+1)) {
			return
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// sleep waits d unless the Conn is closed first (false).
func (c *Conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// watchBlocked follows connection.blocked/unblocked until the connection closes.
func (c *Conn) watchBlocked(ch <-chan amqp.Blocking) {
	for b := range ch {
		if b.Active {
			reason := b.Reason
			c.blocked.Store(&reason)
			c.log.Warn("broker blocked publishing on this connection", zap.String("reason", reason))
		} else {
			c.blocked.Store(nil)
			c.log.Info("broker unblocked the connection")
		}
	}
}

func (c *Conn) dial(raw string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	if c.cfg.Name != "" {
		props.SetClientConnectionName(c.cfg.Name)
	}
	cfg := amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Properties: props,
		Dial:       amqp.DefaultDial(5 * time.Second),
	}
	if c.cfg.TLS != nil {
		// amqp091 writes the URL's host into an empty ServerName of the config
		// it is given; a shared config would then verify every later node
		// against the first node's name.
		cfg.TLSClientConfig = c.cfg.TLS.Clone()
	}
	return amqp.DialConfig(raw, cfg)
}

// redact hides the password of a broker URL in logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "invalid-url"
	}
	return u.Redacted()
}
