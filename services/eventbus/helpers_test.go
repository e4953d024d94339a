package eventbus

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/personscore/eventbus/eventbustest"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap/zaptest"
)

// Integration tests run against the real broker (AMQP_URL, default the local
// one). They never skip: an unreachable broker fails them loudly. Every test
// uses its own exchange and service names and deletes what it declared, as
// other suites share the broker.

// openConn opens a Conn with a unique client-provided name and waits for it.
func openConn(t testing.TB, cfg ConnConfig) *Conn {
	t.Helper()
	if cfg.URLs == nil {
		cfg.URLs = SplitURLs(eventbustest.BrokerURL())
	}
	if cfg.Name == "" {
		cfg.Name = eventbustest.Unique("eventbus-test")
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	c := Open(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		c.Close()
		t.Fatalf("RabbitMQ unreachable at %v: %v (last dial error: %v)", cfg.URLs, err, c.LastError())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawChannel is a plain amqp091 channel for arranging and asserting.
func rawChannel(t testing.TB) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(eventbustest.BrokerURL())
	if err != nil {
		t.Fatalf("RabbitMQ unreachable at %s: %v", eventbustest.BrokerURL(), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ch
}

// fixture is one test's private exchange, metrics and cleanup list.
type fixture struct {
	t        testing.TB
	exchange string
	metrics  *Metrics
	reg      *prometheus.Registry
	mu       sync.Mutex
	queues   []string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	f := &fixture{t: t, exchange: eventbustest.Unique("eb-test-x"), reg: reg, metrics: NewMetrics(reg)}
	t.Cleanup(f.cleanup)
	return f
}

// track schedules queues for deletion at the end of the test.
func (f *fixture) track(queues ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queues = append(f.queues, queues...)
}

// consumer completes cfg for this test (a unique service named after
// cfg.Service, the fixture's exchange and metrics), schedules every queue of
// that service for deletion and returns a consumer of cfg on conn.
func (f *fixture) consumer(conn *Conn, cfg *ConsumerConfig) *Consumer {
	cfg.Service = eventbustest.Unique(cfg.Service)
	cfg.Exchange = f.exchange
	cfg.Metrics = f.metrics
	f.track(WorkQueue(cfg.Service), DeadLetterQueue(cfg.Service))
	delays := cfg.RetryDelays
	if delays == nil {
		delays = defaultRetryDelays
	}
	for _, d := range delays {
		f.track(delayQueue(cfg.Service, d))
	}
	return NewConsumer(conn, *cfg)
}

func (f *fixture) cleanup() {
	f.mu.Lock()
	defer f.mu.Unlock()
	eventbustest.DeleteDeclared(f.t, f.exchange, f.queues...)
}

// bindQueue declares a quorum test queue bound to keys on the fixture's exchange.
func (f *fixture) bindQueue(ch *amqp.Channel, keys ...string) string {
	f.t.Helper()
	if err := declareExchange(ch, f.exchange); err != nil {
		f.t.Fatal(err)
	}
	name := eventbustest.Unique("eb-test-q")
	f.track(name)
	if _, err := ch.QueueDeclare(name, true, false, false, false, quorumArgs()); err != nil {
		f.t.Fatal(err)
	}
	for _, k := range keys {
		if err := ch.QueueBind(name, k, f.exchange, false, nil); err != nil {
			f.t.Fatal(err)
		}
	}
	return name
}

// queueLen is the number of ready messages in a queue.
func queueLen(t testing.TB, ch *amqp.Channel, name string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return q.Messages
}

// waitFor polls cond until it holds or the timeout passes.
var waitFor = eventbustest.Eventually

// drain gets up to n messages from a queue, waiting up to timeout for them.
func drain(t testing.TB, ch *amqp.Channel, queue string, n int, timeout time.Duration) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get %s: %v", queue, err)
		}
		if ok {
			out = append(out, d)
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d messages from %s within %s", len(out), n, queue, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

func mustEvent(t testing.TB, typ, subject string, version int64, data any) Event {
	t.Helper()
	ev, err := NewEvent(context.Background(), "/eventbus-test", typ, subject, version, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// closeConnectionNamed makes the broker close every connection whose
// client-provided name is name, the way an operator's close_connection (or
// close_all_connections, restricted to our own connections) does.
func closeConnectionNamed(t testing.TB, name string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v\n%s", err, out)
	}
	var pids []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"`+name+`"`) {
			pids = append(pids, strings.Fields(line)[0])
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no broker connection named %q in:\n%s", name, out)
	}
	for _, pid := range pids {
		if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pid, "eventbus test: forced close").CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl close_connection %s: %v\n%s", pid, err, out)
		}
	}
}
