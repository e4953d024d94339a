package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
)

func dlq(t *testing.T, url string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = run(ctx, args, url, &out, &errb)
	return code, out.String(), errb.String()
}

// The command a person runs: count, peek and replay (with and without a
// limit) against a real service's dead-letter queue, with progress and the
// number moved.
func TestCountPeekReplay(t *testing.T) {
	service, exchange := eventbustest.Unique("dlq-cmd"), eventbustest.Unique("dlq-cmd-x")
	t.Cleanup(func() {
		eventbustest.DeleteDeclared(t, exchange, eventbus.WorkQueue(service), eventbus.DeadLetterQueue(service))
	})
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(eventbustest.BrokerURL()), Name: eventbustest.Unique("dlq-cmd-test")})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.WaitConnected(ctx); err != nil {
		t.Fatalf("RabbitMQ unreachable at %s: %v (%v)", eventbustest.BrokerURL(), err, conn.LastError())
	}
	metrics := eventbus.NewMetrics(nil)
	c := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: service, Exchange: exchange, RetryDelays: []time.Duration{}, Metrics: metrics})
	var fixed atomic.Bool
	var handled atomic.Int32
	c.Handle("invoice.issued", func(context.Context, eventbus.Event) error {
		if !fixed.Load() {
			return errors.New("tax service down")
		}
		handled.Add(1)
		return nil
	})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	defer func() { stop(); <-done }()
	for !c.Ready() {
		if ctx.Err() != nil {
			t.Fatal("consumer never attached")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: exchange, Metrics: metrics})
	defer pub.Close()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ev, _ := eventbus.NewEvent(ctx, "/billing", "invoice.issued", "42", int64(i+1), nil)
		if err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for {
		n, err := eventbus.DeadLetterCount(ctx, conn, service)
		if err == nil && n == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("dead letters never arrived: %d %v", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if code, out, errs := dlq(t, eventbustest.BrokerURL(), "count", "-service", service); code != 0 || !strings.Contains(out, service+".dlq: 3 message(s)") {
		t.Fatalf("count: %d %q %q", code, out, errs)
	}
	code, out, errs := dlq(t, eventbustest.BrokerURL(), "peek", "-service", service, "-limit", "2")
	if code != 0 || strings.Count(out, "reason: tax service down") != 2 || !strings.Contains(out, "type=invoice.issued") {
		t.Fatalf("peek: %d %q %q", code, out, errs)
	}
	fixed.Store(true)
	code, out, errs = dlq(t, eventbustest.BrokerURL(), "replay", "-service", service, "-limit", "1")
	if code != 0 || !strings.Contains(out, "replaying 1 message(s)") || !strings.Contains(out, "moved 1/1") || !strings.Contains(out, "moved 1 message(s)") {
		t.Fatalf("replay -limit 1: %d %q %q", code, out, errs)
	}
	code, out, errs = dlq(t, eventbustest.BrokerURL(), "replay", "-service", service)
	if code != 0 || !strings.Contains(out, "moved 2 message(s)") {
		t.Fatalf("replay: %d %q %q", code, out, errs)
	}
	for handled.Load() != 3 {
		if ctx.Err() != nil {
			t.Fatalf("%d of 3 replayed events handled", handled.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Quorum queue message counts lag behind acknowledgements: ask until 0.
	for {
		code, out, _ := dlq(t, eventbustest.BrokerURL(), "count", "-service", service)
		if code == 0 && strings.Contains(out, ": 0 message(s)") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("count after replay: %q", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Mistakes get a clear message and a non-zero exit code.
func TestErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "amqp://guest:secret@" + l.Addr().String() + "/"
	l.Close()
	cases := []struct {
		name, url string
		args      []string
		code      int
		want      string
	}{
		{"no command", eventbustest.BrokerURL(), nil, 2, "usage:"},
		{"unknown command", eventbustest.BrokerURL(), []string{"purge", "-service", "x"}, 2, `unknown command "purge"`},
		{"no service", eventbustest.BrokerURL(), []string{"count"}, 2, "-service is required"},
		{"negative limit", eventbustest.BrokerURL(), []string{"replay", "-service", "x", "-limit", "-1"}, 2, "must not be negative"},
		{"bad url", "http://localhost/", []string{"count", "-service", "x"}, 2, "not an amqp:// or amqps:// URL"},
		{"unreachable broker", closed, []string{"count", "-service", "x", "-timeout", "500ms"}, 1, "cannot reach RabbitMQ at amqp://guest:xxxxx@"},
		{"unknown service", eventbustest.BrokerURL(), []string{"replay", "-service", eventbustest.Unique("never-ran")}, 1, "ever consumed on this broker?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := dlq(t, c.url, c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, stderr %q (stdout %q); want exit %d mentioning %q", code, errs, out, c.code, c.want)
			}
			if strings.Contains(errs, "secret") {
				t.Errorf("password leaked: %s", errs)
			}
		})
	}
}
