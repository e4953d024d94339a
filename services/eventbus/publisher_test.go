package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/personscore/eventbus/eventbustest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Confirm path: a batch and many concurrent callers are all confirmed, and
// what reaches the queue is a persistent CloudEvent with id and type mirrored
// into the AMQP properties.
func TestPublishConfirmed(t *testing.T) {
	f := newFixture(t)
	raw := rawChannel(t)
	q := f.bindQueue(raw, "order.*")
	conn := openConn(t, ConnConfig{})
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics, Window: 64, Channels: 2})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// One call larger than the window goes out in window-sized chunks.
	var batch []Event
	for i := range 200 {
		batch = append(batch, mustEvent(t, "order.placed", fmt.Sprint(i%7), int64(i+1), map[string]int{"n": i}))
	}
	if err := pub.Publish(ctx, batch...); err != nil {
		t.Fatalf("batch publish: %v", err)
	}
	// Concurrent callers share the channels.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if err := pub.Publish(ctx, mustEvent(t, "order.shipped", fmt.Sprint(g), int64(i+1), nil)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent publish: %v", err)
	}

	got := drain(t, raw, q, 300, 10*time.Second)
	for i, d := range got[:200] { // one call's events keep their order
		ev, err := ParseEvent(d.Body)
		if err != nil {
			t.Fatalf("body is not an event: %v", err)
		}
		if ev.ID != batch[i].ID {
			t.Fatalf("message %d is %s, want %s (order lost)", i, ev.ID, batch[i].ID)
		}
		if d.MessageId != ev.ID || d.Type != ev.Type || d.ContentType != ContentType ||
			d.DeliveryMode != amqp.Persistent || d.RoutingKey != ev.Type || d.AppId != ev.Source {
			t.Fatalf("properties do not mirror the event: id=%s type=%s ct=%s mode=%d key=%s",
				d.MessageId, d.Type, d.ContentType, d.DeliveryMode, d.RoutingKey)
		}
	}
	if n := testutil.ToFloat64(f.metrics.Confirmed.WithLabelValues("order.placed")); n != 200 {
		t.Errorf("confirmed{order.placed} = %v, want 200", n)
	}
	if n := testutil.ToFloat64(f.metrics.Published.WithLabelValues("order.shipped")); n != 100 {
		t.Errorf("published{order.shipped} = %v, want 100", n)
	}
}

// Unroutable return: a mandatory publish nobody is bound for is an error, and
// the return of one publish is never mistaken for another's.
func TestPublishUnroutable(t *testing.T) {
	f := newFixture(t)
	raw := rawChannel(t)
	q := f.bindQueue(raw, "routed.event")
	conn := openConn(t, ConnConfig{})
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	lost := mustEvent(t, "nobody.listens", "1", 1, nil)
	err := pub.Publish(ctx, lost)
	if !errors.Is(err, ErrUnroutable) {
		t.Fatalf("err = %v, want ErrUnroutable", err)
	}
	// A mixed batch fails as a whole, but the routable events still arrive.
	ok := mustEvent(t, "routed.event", "1", 1, nil)
	if err := pub.Publish(ctx, ok, mustEvent(t, "nobody.listens", "2", 1, nil)); !errors.Is(err, ErrUnroutable) {
		t.Fatalf("mixed batch err = %v, want ErrUnroutable", err)
	}
	if err := pub.Publish(ctx, mustEvent(t, "routed.event", "2", 1, nil)); err != nil {
		t.Fatalf("routable publish after a return: %v", err)
	}
	if got := drain(t, raw, q, 2, 5*time.Second); got[0].MessageId != ok.ID {
		t.Errorf("first routed message %s, want %s", got[0].MessageId, ok.ID)
	}
	if n := testutil.ToFloat64(f.metrics.Returned.WithLabelValues("nobody.listens")); n != 2 {
		t.Errorf("returned = %v, want 2", n)
	}
}

// While the broker is unreachable a publish fails at once instead of waiting.
func TestPublishFailsFastWhenDisconnected(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	conn := Open(ConnConfig{URLs: []string{"amqp://guest:guest@" + addr + "/"}, Name: eventbustest.Unique("eventbus-test")})
	defer conn.Close()
	pub := NewPublisher(conn, PublisherConfig{Exchange: "unused", Metrics: NewMetrics(nil)})
	defer pub.Close()

	start := time.Now()
	err = pub.Publish(context.Background(), mustEvent(t, "a.b", "1", 1, nil))
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("err = %v, want ErrNotConnected", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond { // a dial attempt alone may take 5s
		t.Errorf("publish took %s to fail, want immediately", d)
	}
	if pub.Ready() || conn.Connected() {
		t.Error("Ready/Connected report true without a broker")
	}
	time.Sleep(300 * time.Millisecond)
	if conn.LastError() == nil {
		t.Error("LastError is nil after failed dials")
	}
}

// The context bounds a publish: an expired one fails before anything is sent.
func TestPublishHonoursContext(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if err := pub.Publish(expired, mustEvent(t, "a.b", "1", 1, nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
}

// Several broker addresses: the first (a closed port) is skipped and the
// connection lands on the second.
func TestConnSkipsDeadNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "amqp://guest:guest@" + l.Addr().String() + "/"
	l.Close()
	start := time.Now()
	conn := openConn(t, ConnConfig{URLs: []string{dead, eventbustest.BrokerURL()}})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s to reach the second node", d)
	}
	f := newFixture(t)
	raw := rawChannel(t)
	q := f.bindQueue(raw, "node.test")
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, mustEvent(t, "node.test", "1", 1, nil)); err != nil {
		t.Fatal(err)
	}
	drain(t, raw, q, 1, 5*time.Second)
}

// Reconnect after the broker closes the connection, with nothing lost. The
// broker-side close is `rabbitmqctl close_connection` on this test's own
// connection (found by its client-provided name): the same server-initiated
// close that `close_all_connections` performs, without cutting off the other
// suites that share the broker.
func TestReconnectAfterBrokerClosesConnection(t *testing.T) {
	f := newFixture(t)
	name := eventbustest.Unique("eventbus-reconnect")
	conn := openConn(t, ConnConfig{Name: name, MaxBackoff: time.Second})
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	defer pub.Close()
	cfg := ConsumerConfig{Service: "eb-reconnect", Workers: 4,
		RetryDelays: []time.Duration{100 * time.Millisecond}, ShutdownTimeout: 2 * time.Second}
	c := f.consumer(conn, &cfg)
	var mu sync.Mutex
	seen := map[string]int{}
	c.Handle("tick.happened", func(ctx context.Context, ev Event) error {
		mu.Lock()
		seen[ev.ID]++
		mu.Unlock()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	waitFor(t, 10*time.Second, "consumer attached", c.Ready)

	// Publish a steady stream; a failed publish is retried after reconnecting,
	// as the outbox would. Every event that was ever attempted must arrive.
	var published []string
	var pubMu sync.Mutex
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	failures := 0
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			batch := []Event{mustEvent(t, "tick.happened", fmt.Sprint(i%5), int64(i), nil),
				mustEvent(t, "tick.happened", fmt.Sprint(i%5+5), int64(i), nil)}
			pubMu.Lock()
			published = append(published, batch[0].ID, batch[1].ID)
			pubMu.Unlock()
			for {
				pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := pub.Publish(pctx, batch...)
				if err != nil {
					failures++
					_ = pub.WaitReady(pctx)
				}
				pcancel()
				if err == nil {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	waitFor(t, 10*time.Second, "traffic before the close", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) > 100 })
	closeConnectionNamed(t, name)
	waitFor(t, 15*time.Second, "reconnection", func() bool { return conn.Connected() && c.Ready() && pub.Ready() })
	mu.Lock()
	before := len(seen)
	mu.Unlock()
	waitFor(t, 10*time.Second, "traffic after the reconnection", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) > before+100 })
	close(stop)
	<-pubDone

	pubMu.Lock()
	want := published
	pubMu.Unlock()
	waitFor(t, 20*time.Second, "every published event consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range want {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	dups := 0
	mu.Lock()
	for _, n := range seen {
		dups += n - 1
	}
	mu.Unlock()
	t.Logf("%d events published, all consumed; %d publish failures during the outage; %d duplicate deliveries", len(want), failures, dups)
	cancel()
	<-runDone
}

// The connection follows the broker's connection.blocked: publishes fail fast
// while the broker blocks us.
func TestPublishFailsFastWhileBlocked(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	reason := "low on memory"
	conn.blocked.Store(&reason) // what watchBlocked records on connection.blocked
	err := pub.Publish(ctx, mustEvent(t, "a.b", "1", 1, nil))
	if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrNotConnected) {
		t.Errorf("err = %v, want ErrBlocked (an ErrNotConnected)", err)
	}
	if pub.Ready() {
		t.Error("Ready while blocked")
	}
	conn.blocked.Store(nil)
	if !pub.Ready() {
		t.Error("not Ready after unblock")
	}
}

func TestEventJSONHasTraceHeaders(t *testing.T) {
	ev := mustEvent(t, "a.b", "1", 1, nil)
	if h := traceHeaders(context.Background(), ev); h != nil {
		t.Errorf("headers without a trace: %v", h)
	}
	ev, _ = NewEvent(spanContext(t), "/s", "a.b", "1", 1, nil)
	h := traceHeaders(context.Background(), ev)
	if h[headerTraceParent] != ev.TraceParent || ev.TraceParent == "" {
		t.Errorf("headers %v, event traceparent %q", h, ev.TraceParent)
	}
	// An event without its own trace takes the publisher's.
	h = traceHeaders(spanContext(t), mustEvent(t, "a.b", "1", 1, nil))
	if _, ok := h[headerTraceParent]; !ok {
		t.Errorf("publisher trace not injected: %v", h)
	}
	b, _ := json.Marshal(ev)
	if !json.Valid(b) {
		t.Fatal("invalid json")
	}
}

// PublishAsync streams from one goroutine with a sliding window: Window
// publishes stay in flight while earlier ones are confirmed, and the events
// of one subject keep their order across the publisher's channels.
func TestPublishAsyncStreams(t *testing.T) {
	f := newFixture(t)
	raw := rawChannel(t)
	q := f.bindQueue(raw, "stream.item")
	conn := openConn(t, ConnConfig{})
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics, Window: 32})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 400
	pendings := make(chan *Pending, n)
	go func() {
		defer close(pendings)
		for i := range n {
			pd, err := pub.PublishAsync(ctx, mustEvent(t, "stream.item", fmt.Sprint(i%10), int64(i), nil))
			if err != nil {
				t.Errorf("PublishAsync: %v", err)
				return
			}
			if inWindow := len(pub.window); inWindow > 32 {
				t.Errorf("%d publishes in flight, window is 32", inWindow)
			}
			pendings <- pd
		}
	}()
	confirmed := 0
	for pd := range pendings {
		if err := pd.Wait(ctx); err != nil {
			t.Fatalf("confirm: %v", err)
		}
		confirmed++
	}
	if confirmed != n {
		t.Fatalf("%d confirmed", confirmed)
	}
	// Spread over four channels, each subject's events still arrive in order.
	last := map[string]int64{}
	for _, d := range drain(t, raw, q, n, 10*time.Second) {
		ev, err := ParseEvent(d.Body)
		if err != nil {
			t.Fatal(err)
		}
		if prev, seen := last[ev.Subject]; seen && ev.Version < prev {
			t.Fatalf("subject %s: version %d arrived after %d", ev.Subject, ev.Version, prev)
		}
		last[ev.Subject] = ev.Version
	}
	if got := testutil.ToFloat64(f.metrics.Confirmed.WithLabelValues("stream.item")); got != n {
		t.Errorf("confirmed metric %v", got)
	}
}

// readyPublisher is a publisher to the fixture's exchange, connected, and a
// context that ends after timeout; both end with the test.
func (f *fixture) readyPublisher(timeout time.Duration) (*Publisher, context.Context) {
	f.t.Helper()
	pub := NewPublisher(openConn(f.t, ConnConfig{}), PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	f.t.Cleanup(func() { pub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	f.t.Cleanup(cancel)
	if err := pub.WaitReady(ctx); err != nil {
		f.t.Fatal(err)
	}
	// WaitReady returns once one channel is open; a lane whose channel is not
	// open yet borrows another, so tests of lanes wait for all of them.
	waitFor(f.t, timeout, "every publisher channel open", func() bool {
		for _, s := range pub.slots {
			if s.current() == nil {
				return false
			}
		}
		return true
	})
	return pub, ctx
}

// Batches of mixed subjects streamed on one lane arrive in the order they
// were published, though their first subjects would spread them over the
// publisher's four channels.
func TestPublishAsyncOnKeepsALaneInOrder(t *testing.T) {
	f := newFixture(t)
	raw := rawChannel(t)
	q := f.bindQueue(raw, "lane.item")
	pub, ctx := f.readyPublisher(30 * time.Second)
	const batches, size = 150, 3
	var pendings []*Pending
	seq := int64(0)
	for b := range batches {
		var evs []Event
		for i := range size {
			seq++
			evs = append(evs, mustEvent(t, "lane.item", fmt.Sprint((b*7+i)%13), seq, nil))
		}
		pd, err := pub.PublishAsyncOn(ctx, 1, evs...)
		if err != nil {
			t.Fatal(err)
		}
		pendings = append(pendings, pd)
	}
	for _, pd := range pendings {
		if err := pd.Wait(ctx); err != nil {
			t.Fatalf("confirm: %v", err)
		}
	}
	prev := int64(0)
	for _, d := range drain(t, raw, q, batches*size, 10*time.Second) {
		ev, err := ParseEvent(d.Body)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Version != prev+1 {
			t.Fatalf("event %d arrived after %d", ev.Version, prev)
		}
		prev = ev.Version
	}
}

// A channel error (here: the exchange deleted under the publisher) fails the
// publishes in flight, the channel is reopened with the exchange declared
// again, and no window slot is lost on the way.
func TestPublisherRecoversFromChannelError(t *testing.T) {
	f := newFixture(t)
	raw := rawChannel(t)
	conn := openConn(t, ConnConfig{})
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics, Window: 16})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := raw.ExchangeDelete(f.exchange, false, false); err != nil {
		t.Fatal(err)
	}
	var batch []Event
	for i := range 10 {
		batch = append(batch, mustEvent(t, "lost.exchange", "1", int64(i), nil))
	}
	err := pub.Publish(ctx, batch...)
	if err == nil {
		t.Fatal("publish to a deleted exchange succeeded")
	}
	t.Logf("publish while the exchange was gone: %v", err)
	waitFor(t, 10*time.Second, "channel reopened", pub.Ready)
	q := f.bindQueue(raw, "lost.exchange") // the exchange exists again: the publisher redeclared it
	batch = batch[:0]
	for i := range 48 { // three windows' worth in one call
		batch = append(batch, mustEvent(t, "lost.exchange", "1", int64(i), nil))
	}
	if err := pub.Publish(ctx, batch...); err != nil {
		t.Fatalf("publish after recovery: %v", err)
	}
	drain(t, raw, q, 48, 5*time.Second)
	if len(pub.window) != 0 {
		t.Errorf("%d window slots still taken with nothing in flight", len(pub.window))
	}
}
