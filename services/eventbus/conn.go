package eventbus

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// ErrNotConnected is returned at once by operations that need the broker while
// the connection is down; callers fail fast instead of queueing in memory.
var ErrNotConnected = errors.New("eventbus: not connected to the broker")

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
	ready   chan struct{} // closed while current is usable
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
	backoff := 100 * time.Millisecond
	next := 0
	for c.ctx.Err() == nil {
		if len(c.cfg.URLs) == 0 {
			c.log.Error("no broker URL configured")
			return
		}
		raw := c.cfg.URLs[next%len(c.cfg.URLs)]
		next++
		conn, err := c.dial(raw)
		if err != nil {
			c.log.Warn("broker connection failed", zap.String("broker", redact(raw)), zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-time.After(backoff + rand.N(backoff/2+1)):
			case <-c.ctx.Done():
				return
			}
			backoff = min(backoff*2, c.cfg.MaxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		next-- // stay on the node that answered, move on only when it fails
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		c.mu.Lock()
		c.current = conn
		close(c.ready)
		c.mu.Unlock()
		c.log.Info("broker connected", zap.String("broker", redact(raw)))

		select {
		case err := <-closed:
			c.log.Warn("broker connection lost", zap.String("broker", redact(raw)), zap.Any("reason", err))
			next++
		case <-c.ctx.Done():
			_ = conn.Close()
		}
		c.mu.Lock()
		c.current = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *Conn) dial(raw string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	if c.cfg.Name != "" {
		props.SetClientConnectionName(c.cfg.Name)
	}
	cfg := amqp.Config{
		Heartbeat:       10 * time.Second,
		Locale:          "en_US",
		Properties:      props,
		TLSClientConfig: c.cfg.TLS,
		Dial:            amqp.DefaultDial(5 * time.Second),
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
