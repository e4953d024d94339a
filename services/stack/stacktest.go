package stack

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// BuildForTest builds the binaries once per test binary and returns the folder
// holding them; it fails the test when the build fails.
func BuildForTest(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		wd, _ := os.Getwd()
		root, err := RepoRoot(wd)
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "personscore-bin-")
		if buildErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			buildErr = Build(ctx, root, buildDir)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the binaries: %v", buildErr)
	}
	return buildDir
}

// StartForTest builds the binaries once per test binary and starts a stack on
// free loopback ports, in its own RabbitMQ vhost and data folder. It fails the
// test (never skips) when RabbitMQ or the build is unavailable, and stops the
// stack at the end, printing its output if the test failed.
func StartForTest(t testing.TB, env ...string) *Stack {
	t.Helper()
	return StartConfigForTest(t, Config{Env: env})
}

// StartConfigForTest is StartForTest with a custom configuration: fields left
// empty get the test defaults (built binaries, a data folder in t.TempDir(),
// free loopback ports). When cfg.AMQPURL is empty a fresh vhost of the broker
// at $AMQP_URL (default localhost:5672) is used and deleted at the end;
// otherwise cfg.AMQPURL is used as is.
func StartConfigForTest(t testing.TB, cfg Config) *Stack {
	t.Helper()
	if cfg.BinDir == "" {
		cfg.BinDir = BuildForTest(t)
	}
	dropVhost := func() {}
	if cfg.AMQPURL == "" {
		base := os.Getenv("AMQP_URL")
		if base == "" {
			base = "amqp://guest:guest@localhost:5672/"
		}
		if err := CheckBroker(base, 3*time.Second); err != nil {
			t.Fatalf("this test needs RabbitMQ: %v (start it with `rabbitmq-server -detached`)", err)
		}
		url, drop, err := NewVhost(base, "test")
		if err != nil {
			t.Fatalf("creating a RabbitMQ vhost: %v", err)
		}
		cfg.AMQPURL, dropVhost = url, drop
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "mongo")
	}
	// Each missing address is picked while the ports picked before it are
	// still held: a port released at once can be handed out again by the
	// next pick (CI once gave localmongo and person the same one).
	var held []net.Listener
	pick := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		return l.Addr().String()
	}
	if cfg.MongoAddr == "" && cfg.MongoURI == "" {
		cfg.MongoAddr = pick()
	}
	if cfg.PersonAddr == "" {
		cfg.PersonAddr = pick()
	}
	if cfg.ScoreAddr == "" {
		cfg.ScoreAddr = pick()
	}
	for _, l := range held {
		l.Close()
	}
	out := &syncBuffer{}
	if cfg.Output == nil {
		cfg.Output = out
	} else {
		cfg.Output = io.MultiWriter(cfg.Output, out)
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		dropVhost()
		t.Fatalf("starting the stack: %v\n%s", err, tail(out.String(), 200))
	}
	s.logs = out
	t.Cleanup(func() {
		if err := s.Stop(15 * time.Second); err != nil {
			t.Errorf("stopping the stack: %v", err)
		}
		dropVhost()
		if t.Failed() {
			t.Logf("stack output:\n%s", tail(out.String(), 200))
		}
	})
	return s
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
