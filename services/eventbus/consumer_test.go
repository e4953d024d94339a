package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// running is a consumer started in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	took   time.Duration
}

func startConsumer(t testing.TB, c *Consumer) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	waitFor(t, 10*time.Second, "consumer attached", c.Ready)
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the consumer and waits for Run to return; it reports how long that took.
func (r *running) stop(t testing.TB) time.Duration {
	r.once.Do(func() {
		start := time.Now()
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		r.took = time.Since(start)
	})
	return r.took
}

func newPub(t testing.TB, f *fixture, conn *Conn) *Publisher {
	t.Helper()
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	t.Cleanup(func() { pub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return pub
}

func publish(t testing.TB, pub *Publisher, events ...Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.Publish(ctx, events...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func histogramCount(t testing.TB, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// Retry schedule and dead letter after N attempts: each retry waits its delay
// in a delay queue (the worker meanwhile handles other events), and after the
// last attempt the event lands in <service>.dlq with reason and attempt count.
func TestRetryScheduleThenDeadLetter(t *testing.T) {
	f := newFixture(t)
	core, logs := observer.New(zapcore.InfoLevel)
	conn := openConn(t, ConnConfig{})
	// Not monotonic on purpose: each attempt must wait its own delay. The
	// first is long enough for the other event to be published meanwhile.
	delays := []time.Duration{800 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond}
	cfg := ConsumerConfig{Service: "eb-retry", Workers: 1, RetryDelays: delays,
		Logger: zap.New(core)}
	c := f.consumer(conn, &cfg)
	var mu sync.Mutex
	var attempts []time.Time
	otherDone := make(chan time.Time, 1)
	c.Handle("job.failed", func(ctx context.Context, ev Event) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, time.Now())
		return errors.New("boom: downstream unavailable")
	})
	c.Handle("job.other", func(ctx context.Context, ev Event) error {
		otherDone <- time.Now()
		return nil
	})
	startConsumer(t, c)
	pub := newPub(t, f, conn)
	bad := mustEvent(t, "job.failed", "s1", 1, map[string]string{"k": "v"})
	publish(t, pub, bad)
	waitFor(t, 5*time.Second, "first attempt", func() bool { mu.Lock(); defer mu.Unlock(); return len(attempts) == 1 })
	publish(t, pub, mustEvent(t, "job.other", "s1", 2, nil)) // same subject, same (only) worker
	select {
	case at := <-otherDone:
		mu.Lock()
		first := attempts[0]
		mu.Unlock()
		if at.Sub(first) >= delays[0] {
			t.Errorf("the other event waited %s behind the failing one: the retry blocks the worker", at.Sub(first))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other event was not handled while the failing one waited for its retry")
	}

	raw := rawChannel(t)
	waitFor(t, 10*time.Second, "dead letter", func() bool { return queueLen(t, raw, DeadLetterQueue(cfg.Service)) == 1 })
	mu.Lock()
	got := slices.Clone(attempts)
	mu.Unlock()
	if len(got) != len(delays)+1 {
		t.Fatalf("%d attempts, want %d", len(got), len(delays)+1)
	}
	for i, d := range delays {
		gap := got[i+1].Sub(got[i])
		if gap < d-5*time.Millisecond || gap > d+2*time.Second {
			t.Errorf("gap before attempt %d = %s, want about %s", i+2, gap, d)
		}
	}
	dl := drain(t, raw, DeadLetterQueue(cfg.Service), 1, time.Second)[0]
	if dl.MessageId != bad.ID || string(dl.Body) != string(mustJSON(t, bad)) {
		t.Errorf("dead letter %s is not the original event", dl.MessageId)
	}
	if a := attemptOf(dl); a != 4 {
		t.Errorf("%s = %v, want 4", HeaderAttempt, dl.Headers[HeaderAttempt])
	}
	if r, _ := dl.Headers[HeaderFailureReason].(string); !strings.Contains(r, "boom: downstream unavailable") {
		t.Errorf("%s = %q", HeaderFailureReason, r)
	}
	if k, _ := dl.Headers[HeaderRoutingKey].(string); k != "job.failed" {
		t.Errorf("%s = %q, want job.failed", HeaderRoutingKey, k)
	}
	if at, _ := dl.Headers[HeaderFailedAt].(string); at == "" {
		t.Errorf("no %s header", HeaderFailedAt)
	}
	if n := testutil.ToFloat64(f.metrics.Retried.WithLabelValues(cfg.Service, "job.failed")); n != 3 {
		t.Errorf("retried = %v, want 3", n)
	}
	if n := testutil.ToFloat64(f.metrics.DeadLettered.WithLabelValues(cfg.Service, "handler")); n != 1 {
		t.Errorf("dead_lettered{handler} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(f.metrics.Consumed.WithLabelValues(cfg.Service, "job.other")); n != 1 {
		t.Errorf("consumed{job.other} = %v, want 1", n)
	}
	if n := histogramCount(t, f.reg, "eventbus_handler_seconds"); n != 5 {
		t.Errorf("handler_seconds count = %d, want 5", n)
	}
	if n := histogramCount(t, f.reg, "eventbus_lag_seconds"); n != 1 {
		t.Errorf("lag_seconds count = %d, want 1", n)
	}
	// Logs carry the event's identity.
	retries := logs.FilterMessage("handler failed, retrying later").All()
	if len(retries) != 3 {
		t.Fatalf("%d retry log entries, want 3", len(retries))
	}
	fields := retries[0].ContextMap()
	if fields["event_id"] != bad.ID || fields["event_type"] != "job.failed" || fields["subject"] != "s1" {
		t.Errorf("retry log fields %v", fields)
	}
}

func mustJSON(t testing.TB, ev Event) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A handler error or panic goes down the retry path and a later attempt can succeed.
func TestRetryAfterErrorAndPanic(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-panic", Workers: 2,
		RetryDelays: []time.Duration{50 * time.Millisecond, 50 * time.Millisecond}}
	c := f.consumer(conn, &cfg)
	var calls atomic.Int32
	handled := make(chan int, 1)
	c.Handle("flaky.thing", func(ctx context.Context, ev Event) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("transient")
		case 2:
			panic("handler bug")
		}
		handled <- 1
		return nil
	})
	startConsumer(t, c)
	publish(t, newPub(t, f, conn), mustEvent(t, "flaky.thing", "1", 1, nil))
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatalf("not handled after an error and a panic (%d calls)", calls.Load())
	}
	if calls.Load() != 3 {
		t.Errorf("%d calls, want 3", calls.Load())
	}
	if n := testutil.ToFloat64(f.metrics.Retried.WithLabelValues(cfg.Service, "flaky.thing")); n != 2 {
		t.Errorf("retried = %v, want 2", n)
	}
	raw := rawChannel(t)
	if n := queueLen(t, raw, DeadLetterQueue(cfg.Service)); n != 0 {
		t.Errorf("dlq has %d", n)
	}
}

// Malformed messages (bad JSON, missing id or type, a type without handler,
// a handler saying ErrMalformed) are dead-lettered at once with the reason,
// never retried.
func TestMalformedMessagesDeadLetteredAtOnce(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-malformed", Workers: 2,
		RetryDelays: []time.Duration{50 * time.Millisecond}}
	c := f.consumer(conn, &cfg)
	var calls atomic.Int32
	c.Handle("thing.done", func(ctx context.Context, ev Event) error {
		calls.Add(1)
		var v struct{ N int }
		return ev.DecodeData(&v) // data is a string: ErrMalformed
	})
	startConsumer(t, c)
	raw := rawChannel(t)
	unknown, _ := json.Marshal(mustEvent(t, "thing.unknown", "1", 1, nil))
	badData, _ := json.Marshal(mustEvent(t, "thing.done", "1", 1, "not an object"))
	bodies := map[string]string{
		"bad-json":     `{"specversion":"1.0",`,
		"missing-id":   `{"specversion":"1.0","source":"/s","type":"thing.done","subject":"1"}`,
		"missing-type": `{"specversion":"1.0","id":"x","source":"/s","subject":"1"}`,
		"unknown-type": string(unknown),
		"bad-data":     string(badData),
	}
	wantReason := map[string]string{
		"bad-json":     "malformed event: unexpected end of JSON input",
		"missing-id":   "missing id",
		"missing-type": "missing type",
		"unknown-type": `no handler for type "thing.unknown"`,
		"bad-data":     "thing.done data",
	}
	for id, body := range bodies {
		// Routed with a bound key; the message id names the case.
		err := raw.PublishWithContext(context.Background(), f.exchange, "thing.done", true, false,
			amqp.Publishing{MessageId: id, ContentType: ContentType, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
	}
	dead := drain(t, raw, DeadLetterQueue(cfg.Service), len(bodies), 10*time.Second)
	for _, d := range dead {
		reason, _ := d.Headers[HeaderFailureReason].(string)
		if !strings.Contains(reason, "malformed event") || !strings.Contains(reason, wantReason[d.MessageId]) {
			t.Errorf("%s: reason %q, want it to contain %q", d.MessageId, reason, wantReason[d.MessageId])
		}
		if a := attemptOf(d); a != 1 {
			t.Errorf("%s: attempt %d, want 1 (no retries)", d.MessageId, a)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("handler called %d times, want 1 (only the well-formed event)", calls.Load())
	}
	if n := testutil.ToFloat64(f.metrics.DeadLettered.WithLabelValues(cfg.Service, "malformed")); n != 5 {
		t.Errorf("dead_lettered{malformed} = %v, want 5", n)
	}
	if n := testutil.ToFloat64(f.metrics.Retried.WithLabelValues(cfg.Service, "thing.done")); n != 0 {
		t.Errorf("retried = %v, want 0", n)
	}
}

// Per-subject order under concurrency: with 8 workers, one subject is never
// handled concurrently and its events are handled in publish order, while
// different subjects do run in parallel.
func TestPerSubjectOrderUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-order", Workers: 8}
	c := f.consumer(conn, &cfg)
	const subjects, versions = 24, 40
	var mu sync.Mutex
	order := map[string][]int64{}
	inflight := map[string]*atomic.Int32{}
	for s := range subjects {
		inflight[fmt.Sprint("cpf-", s)] = new(atomic.Int32)
	}
	var running, maxRunning atomic.Int32
	var overlaps atomic.Int32
	c.Handle("item.changed", func(ctx context.Context, ev Event) error {
		if inflight[ev.Subject].Add(1) != 1 {
			overlaps.Add(1)
		}
		n := running.Add(1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
		mu.Lock()
		order[ev.Subject] = append(order[ev.Subject], ev.Version)
		mu.Unlock()
		running.Add(-1)
		inflight[ev.Subject].Add(-1)
		return nil
	})
	startConsumer(t, c)
	var events []Event
	for v := int64(1); v <= versions; v++ {
		for s := range subjects {
			events = append(events, mustEvent(t, "item.changed", fmt.Sprint("cpf-", s), v, nil))
		}
	}
	publish(t, newPub(t, f, conn), events...)
	waitFor(t, 30*time.Second, "all events handled", func() bool {
		return testutil.ToFloat64(f.metrics.Consumed.WithLabelValues(cfg.Service, "item.changed")) == subjects*versions
	})
	if overlaps.Load() != 0 {
		t.Errorf("a subject was handled concurrently %d times", overlaps.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	checkOrder(t, order, versions)
	if maxRunning.Load() < 2 {
		t.Errorf("at most %d handlers ran at once; workers are not concurrent", maxRunning.Load())
	}
	t.Logf("up to %d handlers ran at once", maxRunning.Load())
}

// Graceful shutdown: the running handler finishes and is acknowledged, the
// deliveries not started yet go back to the queue at once.
func TestGracefulShutdownDrainsInFlight(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-shutdown", Workers: 2,
		ShutdownTimeout: 5 * time.Second}
	c := f.consumer(conn, &cfg)
	started := make(chan struct{}, 10)
	var finished atomic.Int32
	c.Handle("slow.job", func(ctx context.Context, ev Event) error {
		started <- struct{}{}
		time.Sleep(700 * time.Millisecond)
		finished.Add(1)
		return nil
	})
	r := startConsumer(t, c)
	var events []Event
	for v := range 5 {
		events = append(events, mustEvent(t, "slow.job", "same-subject", int64(v+1), nil))
	}
	publish(t, newPub(t, f, conn), events...)
	<-started
	time.Sleep(50 * time.Millisecond) // let the other four be prefetched
	took := r.stop(t)
	if finished.Load() != 1 {
		t.Errorf("%d handlers finished, want exactly the one in flight", finished.Load())
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("Run returned %s after cancel; want it to wait for the running handler (~650ms) and no more", took)
	}
	if n := testutil.ToFloat64(f.metrics.Consumed.WithLabelValues(cfg.Service, "slow.job")); n != 1 {
		t.Errorf("consumed = %v, want 1", n)
	}
	raw := rawChannel(t)
	waitFor(t, 5*time.Second, "unstarted deliveries back in the queue", func() bool {
		return queueLen(t, raw, WorkQueue(cfg.Service)) == 4
	})
}

// Past ShutdownTimeout the handler's context is cancelled, Run returns, and
// the unacknowledged delivery is redelivered later.
func TestShutdownDeadline(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-deadline", Workers: 1,
		ShutdownTimeout: 300 * time.Millisecond}
	c := f.consumer(conn, &cfg)
	started := make(chan struct{})
	cancelled := make(chan struct{})
	c.Handle("stuck.job", func(ctx context.Context, ev Event) error {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	})
	r := startConsumer(t, c)
	publish(t, newPub(t, f, conn), mustEvent(t, "stuck.job", "1", 1, nil))
	<-started
	took := r.stop(t)
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("Run returned %s after cancel, want about the 300ms deadline", took)
	}
	select {
	case <-cancelled:
	case <-time.After(2 * time.Second):
		t.Error("handler context not cancelled at the deadline")
	}
	raw := rawChannel(t)
	waitFor(t, 5*time.Second, "the delivery back in the queue", func() bool { return queueLen(t, raw, WorkQueue(cfg.Service)) == 1 })
}

// Topology: declared at every (re)start without conflict, quorum queues with
// an explicit delivery limit, delay queues with their TTL.
func TestTopologyDeclaredIdempotently(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-topology", DeliveryLimit: 7,
		RetryDelays: []time.Duration{250 * time.Millisecond, time.Second}}
	c := f.consumer(conn, &cfg)
	for range 2 { // a restart redeclares the same topology
		c.Handle("a.b", func(context.Context, Event) error { return nil })
		startConsumer(t, c).stop(t)
		c = NewConsumer(conn, cfg)
	}
	conflicts := func(queue string, args amqp.Table) bool {
		t.Helper()
		ch := rawChannel(t)
		_, err := ch.QueueDeclare(queue, true, false, false, false, args)
		var e *amqp.Error
		if errors.As(err, &e) && e.Code == amqp.PreconditionFailed {
			return true
		}
		if err != nil {
			t.Fatalf("declare %s: %v", queue, err)
		}
		return false
	}
	work := quorumArgs()
	work["x-delivery-limit"] = int64(7)
	work["x-dead-letter-exchange"] = ""
	work["x-dead-letter-routing-key"] = DeadLetterQueue(cfg.Service)
	if conflicts(WorkQueue(cfg.Service), work) {
		t.Error("work queue is not a quorum queue with delivery limit 7 dead-lettering to the dlq")
	}
	work["x-delivery-limit"] = int64(8)
	if !conflicts(WorkQueue(cfg.Service), work) {
		t.Error("work queue accepted a different delivery limit: none is set explicitly")
	}
	delay := quorumArgs()
	delay["x-message-ttl"] = int64(250)
	delay["x-dead-letter-exchange"] = ""
	delay["x-dead-letter-routing-key"] = WorkQueue(cfg.Service)
	if conflicts(delayQueue(cfg.Service, 250*time.Millisecond), delay) {
		t.Error("delay queue is not a quorum queue with a 250ms TTL dead-lettering to the work queue")
	}
	if conflicts(DeadLetterQueue(cfg.Service), quorumArgs()) {
		t.Error("dlq is not a quorum queue")
	}
	if !conflicts(DeadLetterQueue(cfg.Service), amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic}) {
		t.Error("dlq accepted classic: not a quorum queue")
	}
	// The binding exists: a publish of the handled type is routable.
	if err := newPub(t, f, conn).Publish(context.Background(), mustEvent(t, "a.b", "1", 1, nil)); err != nil {
		t.Errorf("publish to the bound type: %v", err)
	}
}

// OpenTelemetry: the trace context of the code that created the event reaches
// the handler through the AMQP headers; the handler runs in a consumer span
// whose parent is the producer's span.
func TestTraceContextPropagated(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-trace"}
	c := f.consumer(conn, &cfg)
	got := make(chan trace.SpanContext, 1)
	c.Handle("traced.event", func(ctx context.Context, ev Event) error {
		got <- trace.SpanContextFromContext(ctx)
		return nil
	})
	startConsumer(t, c)
	raw := rawChannel(t)
	tap := f.bindQueue(raw, "traced.event")
	producer := spanContext(t)
	ev, err := NewEvent(producer, "/s", "traced.event", "1", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, newPub(t, f, conn), ev)
	want := trace.SpanContextFromContext(producer)
	select {
	case sc := <-got:
		if sc.TraceID() != want.TraceID() {
			t.Errorf("handler trace %s, want %s", sc.TraceID(), want.TraceID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not handled")
	}
	d := drain(t, raw, tap, 1, 5*time.Second)[0]
	if tp, _ := d.Headers["traceparent"].(string); !strings.Contains(tp, want.TraceID().String()) {
		t.Errorf("AMQP traceparent header = %q", tp)
	}
	waitFor(t, 5*time.Second, "consumer span ended", func() bool { return len(rec.Ended()) > 0 })
	span := rec.Ended()[0]
	if span.SpanKind() != trace.SpanKindConsumer || span.Parent().SpanID() != want.SpanID() || span.Name() != "process traced.event" {
		t.Errorf("span %q kind %v parent %s, want consumer span under %s", span.Name(), span.SpanKind(), span.Parent().SpanID(), want.SpanID())
	}
}

// Consumer configuration mistakes are reported, not retried forever.
func TestConsumerRejectsBadConfig(t *testing.T) {
	conn := &Conn{log: zap.NewNop()}
	if err := NewConsumer(conn, ConsumerConfig{Metrics: NewMetrics(nil)}).Run(context.Background()); err == nil {
		t.Error("Run without a service name succeeded")
	}
	if err := NewConsumer(conn, ConsumerConfig{Service: "x", Metrics: NewMetrics(nil)}).Run(context.Background()); err == nil {
		t.Error("Run without handlers succeeded")
	}
}

// HandleBatch: the events of a subject that wait together reach the batch
// handler in order; the other types run on their own at their turn; a
// failed batch (the first) is handled again event by event.
func TestBatchHandlerKeepsOrderAndFallsBack(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-batch", Workers: 1}
	c := f.consumer(conn, &cfg)
	gate := make(chan struct{})
	var mu sync.Mutex
	order := map[string][]int64{}
	var batches, biggest, failedBatches, single atomic.Int32
	record := func(evs ...Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			order[ev.Subject] = append(order[ev.Subject], ev.Version)
		}
	}
	one := func(ctx context.Context, ev Event) error {
		<-gate
		single.Add(1)
		record(ev)
		return nil
	}
	c.Handle("item.changed", one)
	c.Handle("item.renamed", one)
	c.HandleBatch([]string{"item.changed"}, func(ctx context.Context, evs []Event) error {
		<-gate
		for _, ev := range evs {
			if ev.Type != "item.changed" || ev.Subject != evs[0].Subject {
				t.Errorf("batch of %s %s with %s %s", evs[0].Type, evs[0].Subject, ev.Type, ev.Subject)
			}
		}
		if failedBatches.CompareAndSwap(0, 1) { // the first batch fails
			return errors.New("refused")
		}
		batches.Add(1)
		for {
			m := biggest.Load()
			if int32(len(evs)) <= m || biggest.CompareAndSwap(m, int32(len(evs))) {
				break
			}
		}
		record(evs...)
		return nil
	})
	startConsumer(t, c)
	const subjects, versions = 3, 30
	var events []Event
	for v := int64(1); v <= versions; v++ {
		for s := range subjects {
			typ := "item.changed"
			if v%10 == 5 {
				typ = "item.renamed"
			}
			events = append(events, mustEvent(t, typ, fmt.Sprint("s", s), v, nil))
		}
	}
	publish(t, newPub(t, f, conn), events...)
	time.Sleep(time.Second) // let the deliveries queue behind the gate
	close(gate)
	waitFor(t, 30*time.Second, "all events handled", func() bool {
		return testutil.ToFloat64(f.metrics.Consumed.WithLabelValues(cfg.Service, "item.changed"))+
			testutil.ToFloat64(f.metrics.Consumed.WithLabelValues(cfg.Service, "item.renamed")) == subjects*versions
	})
	mu.Lock()
	defer mu.Unlock()
	checkOrder(t, order, versions)
	if biggest.Load() < 2 {
		t.Errorf("no batch of more than one event (biggest %d)", biggest.Load())
	}
	if failedBatches.Load() == 0 {
		t.Error("no batch came")
	}
	t.Logf("%d batches (biggest %d), %d failed, %d events on their own", batches.Load(), biggest.Load(), failedBatches.Load(), single.Load())
}

// checkOrder fails unless every subject saw versions 1..versions in order.
func checkOrder(t *testing.T, order map[string][]int64, versions int) {
	t.Helper()
	for s, got := range order {
		if !slices.IsSorted(got) || len(got) != versions {
			t.Errorf("subject %s handled in order %v", s, got)
		}
	}
}
