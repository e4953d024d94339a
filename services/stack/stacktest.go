package stack

import (
	"bytes"
	"context"
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

// StartForTest builds the binaries once per test binary and starts a stack on
// free loopback ports, in its own RabbitMQ vhost and data folder. It fails the
// test (never skips) when RabbitMQ or the build is unavailable, and stops the
// stack at the end, printing its output if the test failed.
func StartForTest(t testing.TB, env ...string) *Stack {
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
	base := os.Getenv("AMQP_URL")
	if base == "" {
		base = "amqp://guest:guest@localhost:5672/"
	}
	if err := CheckBroker(base, 3*time.Second); err != nil {
		t.Fatalf("this test needs RabbitMQ: %v (start it with `rabbitmq-server -detached`)", err)
	}
	url, dropVhost, err := NewVhost(base, "test")
	if err != nil {
		t.Fatalf("creating a RabbitMQ vhost: %v", err)
	}
	var out syncBuffer
	cfg := Config{
		BinDir: buildDir, DataDir: filepath.Join(t.TempDir(), "mongo"), AMQPURL: url,
		MongoAddr: FreeAddr(t), PersonAddr: FreeAddr(t), ScoreAddr: FreeAddr(t),
		Env: env, Output: &out,
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		dropVhost()
		t.Fatalf("starting the stack: %v\n%s", err, out.String())
	}
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
