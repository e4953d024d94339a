package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Run with a fixed message count per run, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x -count 6 | tee new.txt
//	benchstat -col /impl new.txt
//
// Every run gets its own exchange and quorum queue (deleted afterwards).
// Messages are ~1 KB persistent CloudEvents; every implementation sends or
// receives the same bytes and does the same application work: publishers
// encode each event to JSON, consumers decode each one (the library does
// both inside). impl=raw-bare is raw amqp091-go moving pre-encoded bytes
// without decoding them: the transport limit, for reference. ns/op is per
// message; msgs/s is the throughput (for consumers measured from the first
// to the last message, so start-up is excluded for every implementation
// alike).

const (
	payloadSize = 1024
	routingKey  = "bench.event"
	subjects    = 256 // distinct aggregates, so per-subject ordering can spread work
	// Callers of the abstractions (eventbus, watermill): goroutines and events
	// per Publish call, like the outbox relay (4 workers, batched).
	callers = 4
	batch   = 128
	// Confirms outstanding at once, for raw (split over its channels) and
	// for the library's window.
	rawWindow = callers * batch
	// Channels of raw-4ch; the library's default is the same.
	channels = 4
	prefetch = 256
)

// newEvent builds an event whose JSON encoding is payloadSize bytes.
func newEvent(b testing.TB, i int) eventbus.Event {
	ev, err := eventbus.NewEvent(context.Background(), "/bench", routingKey, fmt.Sprint("subject-", i%subjects), int64(i+1), map[string]string{"blob": ""})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(ev)
	pad := payloadSize - len(body)
	ev.Data, _ = json.Marshal(map[string]string{"blob": strings.Repeat("x", max(pad, 0))})
	return ev
}

// bodies are pre-encoded events (distinct subjects) for raw and watermill.
func bodies(b testing.TB) [][]byte {
	out := make([][]byte, subjects)
	for i := range out {
		out[i], _ = json.Marshal(newEvent(b, i))
	}
	return out
}

func rawPublishing(body []byte, id string) amqp.Publishing {
	return amqp.Publishing{ContentType: eventbus.ContentType, DeliveryMode: amqp.Persistent, MessageId: id, Type: routingKey, Body: body}
}

// topology is one run's exchange and queue on the broker.
type topology struct {
	b        testing.TB
	conn     *amqp.Connection
	ch       *amqp.Channel
	exchange string
	queues   []string
}

func newTopology(b testing.TB) *topology {
	conn, err := amqp.Dial(eventbustest.BrokerURL())
	if err != nil {
		b.Fatalf("RabbitMQ unreachable at %s: %v", eventbustest.BrokerURL(), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	t := &topology{b: b, conn: conn, ch: ch, exchange: eventbustest.Unique("bench-x")}
	if err := ch.ExchangeDeclare(t.exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	return t
}

// queue declares a quorum queue bound to routingKey.
func (t *topology) queue() string {
	name := eventbustest.Unique("bench-q")
	if _, err := t.ch.QueueDeclare(name, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		t.b.Fatal(err)
	}
	if err := t.ch.QueueBind(name, routingKey, t.exchange, false, nil); err != nil {
		t.b.Fatal(err)
	}
	t.queues = append(t.queues, name)
	return name
}

func (t *topology) close() {
	_ = t.conn.Close()
	eventbustest.DeleteDeclared(t.b, t.exchange, t.queues...)
}

// fill puts n messages into queue with pipelined confirms (not measured).
func (t *topology) fill(queue string, n int) {
	ch, err := t.conn.Channel()
	if err != nil {
		t.b.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.b.Fatal(err)
	}
	bs := bodies(t.b)
	var pending []*amqp.DeferredConfirmation
	for i := range n {
		if len(pending) == 1024 {
			if !pending[0].Wait() {
				t.b.Fatal("prefill nacked")
			}
			pending = pending[1:]
		}
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, rawPublishing(bs[i%len(bs)], fmt.Sprint(i)))
		if err != nil {
			t.b.Fatal(err)
		}
		pending = append(pending, dc)
	}
	for _, dc := range pending {
		if !dc.Wait() {
			t.b.Fatal("prefill nacked")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			t.b.Fatal(err)
		}
		if q.Messages >= n {
			return
		}
		if time.Now().After(deadline) {
			t.b.Fatalf("queue has %d of %d messages", q.Messages, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func report(b *testing.B, n int, elapsed time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkPublish: 1 KB persistent messages to a topic exchange routed to a
// quorum queue, mandatory, every one confirmed by the broker, each
// implementation used the way it publishes fastest: raw and eventbus stream
// from one goroutine with a sliding window of confirms (eventbus through
// PublishAsync), watermill (which waits for each confirm) from concurrent
// callers.
func BenchmarkPublish(b *testing.B) {
	runRotated(b, []impl{
		{"raw-bare", func(b *testing.B) { benchPublishRaw(b, false, 1) }},
		{"raw", func(b *testing.B) { benchPublishRaw(b, true, 1) }},
		{"raw-4ch", func(b *testing.B) { benchPublishRaw(b, true, channels) }},
		{"eventbus", benchPublishEventbusAsync},
		{"watermill", benchPublishWatermill},
	})
}

type impl struct {
	name string
	run  func(*testing.B)
}

// runRotated runs the implementations one after the other, starting with
// the one BENCH_ROUND selects, so that over several rounds none always runs
// first or last; it pauses a second before each, for the broker to finish
// deleting the previous run's queue and to measure its background CPU use.
func runRotated(b *testing.B, impls []impl) {
	round, _ := strconv.Atoi(os.Getenv("BENCH_ROUND"))
	for i := range impls {
		im := impls[(i+round)%len(impls)]
		measureBackground(time.Second)
		b.Run("impl="+im.name, im.run)
	}
}

// BenchmarkPublishBatched: the two abstractions called the same way, by
// concurrent callers publishing batches and waiting for their confirms (how
// the outbox relay publishes).
func BenchmarkPublishBatched(b *testing.B) {
	runRotated(b, []impl{{"eventbus", benchPublishEventbus}, {"watermill", benchPublishWatermill}})
}

// The limit: amqp091-go with a sliding window of deferred confirms per
// channel and returns drained by a listener, on one channel (the textbook
// pattern) or on several, each written by its own goroutine. encode says
// whether each event is encoded as it is published (as the library does) or
// sent pre-encoded.
func benchPublishRaw(b *testing.B, encode bool, nch int) {
	t := newTopology(b)
	defer t.close()
	t.queue()
	bs := bodies(b)
	events := make([]eventbus.Event, b.N)
	for i := range events {
		events[i] = newEvent(b, i)
	}
	chans := make([]*amqp.Channel, nch)
	var returned atomic.Int64
	for i := range chans {
		ch, err := t.conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		defer ch.Close()
		if err := ch.Confirm(false); err != nil {
			b.Fatal(err)
		}
		returns := ch.NotifyReturn(make(chan amqp.Return, rawWindow))
		go func() {
			for range returns {
				returned.Add(1)
			}
		}()
		chans[i] = ch
	}
	window := rawWindow / nch
	var wg sync.WaitGroup
	errs := make(chan error, nch)
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	for g, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ring := make([]*amqp.DeferredConfirmation, 0, window)
			for i := g; i < b.N; i += nch {
				if len(ring) == window {
					if !ring[0].Wait() {
						errs <- errors.New("nacked")
						return
					}
					ring = ring[1:]
				}
				body := bs[i%len(bs)]
				if encode {
					body, _ = json.Marshal(events[i])
				}
				dc, err := ch.PublishWithDeferredConfirm(t.exchange, routingKey, true, false, rawPublishing(body, events[i].ID))
				if err != nil {
					errs <- err
					return
				}
				ring = append(ring, dc)
			}
			for _, dc := range ring {
				if !dc.Wait() {
					errs <- errors.New("nacked")
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if returned.Load() != 0 {
		b.Fatalf("%d returned", returned.Load())
	}
	report(b, b.N, elapsed)
	cpu.report(b, b.N)
}

// split hands out b.N messages to callers goroutines in batches.
func split(n int, publish func(from, to int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(batch)) - batch
				if from >= n {
					return
				}
				if err := publish(from, min(from+batch, n)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// newEventbusPublisher returns a ready library publisher to t's exchange.
func newEventbusPublisher(b *testing.B, t *topology) (*eventbus.Publisher, func()) {
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(eventbustest.BrokerURL()), Name: "bench-eventbus"})
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: t.exchange, Metrics: eventbus.NewMetrics(nil), Window: rawWindow})
	if err := pub.WaitReady(context.Background()); err != nil {
		b.Fatal(err)
	}
	return pub, func() { pub.Close(); conn.Close() }
}

// The library streaming: PublishAsync from one goroutine, confirms awaited by
// another, the same window as raw.
func benchPublishEventbusAsync(b *testing.B) {
	t := newTopology(b)
	defer t.close()
	t.queue()
	pub, closePub := newEventbusPublisher(b, t)
	defer closePub()
	ctx := context.Background()
	events := make([]eventbus.Event, b.N)
	for i := range events {
		events[i] = newEvent(b, i)
	}
	pendings := make(chan *eventbus.Pending, rawWindow)
	waited := make(chan error, 1)
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	go func() {
		var first error
		for pd := range pendings {
			if err := pd.Wait(ctx); err != nil && first == nil {
				first = err
			}
		}
		waited <- first
	}()
	for i := range events {
		pd, err := pub.PublishAsync(ctx, events[i])
		if err != nil {
			b.Fatal(err)
		}
		pendings <- pd
	}
	close(pendings)
	err := <-waited
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, b.N, elapsed)
	cpu.report(b, b.N)
}

// The library as the outbox relay uses it: concurrent Publish calls of batches.
func benchPublishEventbus(b *testing.B) {
	t := newTopology(b)
	defer t.close()
	t.queue()
	pub, closePub := newEventbusPublisher(b, t)
	defer closePub()
	ctx := context.Background()
	events := make([]eventbus.Event, b.N)
	for i := range events {
		events[i] = newEvent(b, i)
	}
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	err := split(b.N, func(from, to int) error { return pub.Publish(ctx, events[from:to]...) })
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, b.N, elapsed)
	cpu.report(b, b.N)
}

// The peer: watermill-amqp with ConfirmDelivery, a channel per caller, the
// same callers and batches.
func benchPublishWatermill(b *testing.B) {
	t := newTopology(b)
	defer t.close()
	t.queue()
	cfg := wamqp.NewDurableTopicConfig(eventbustest.BrokerURL(), t.exchange, "")
	cfg.Exchange.Durable = true
	cfg.Publish.ConfirmDelivery = true
	cfg.Publish.Mandatory = true
	cfg.Publish.ChannelPoolSize = callers
	pub, err := wamqp.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	events := make([]eventbus.Event, b.N)
	for i := range events {
		events[i] = newEvent(b, i)
	}
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	err = split(b.N, func(from, to int) error {
		msgs := make([]*message.Message, 0, to-from)
		for _, ev := range events[from:to] {
			body, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			msgs = append(msgs, message.NewMessage(ev.ID, body))
		}
		return pub.Publish(routingKey, msgs...)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, b.N, elapsed)
	cpu.report(b, b.N)
}

// BenchmarkConsume: drain a quorum queue prefilled with b.N 1 KB events,
// acknowledging each one (manual acks, prefetch 256).
func BenchmarkConsume(b *testing.B) {
	runRotated(b, []impl{
		{"raw-bare", func(b *testing.B) { benchConsumeRaw(b, false) }},
		{"raw", func(b *testing.B) { benchConsumeRaw(b, true) }},
		{"eventbus", benchConsumeEventbus},
		{"watermill", func(b *testing.B) { benchConsumeWatermill(b, prefetch) }},
		{"watermill-default", func(b *testing.B) { benchConsumeWatermill(b, 0) }},
	})
}

// clock records the time of the first and the n-th message.
type clock struct {
	cpu         cpuMeter
	n           int64
	count       atomic.Int64
	first, last time.Time
	done        chan struct{}
}

// newClock starts counting; call it right before consuming starts.
func newClock(n int) *clock { return &clock{n: int64(n), done: make(chan struct{}), cpu: startCPU()} }

func (c *clock) tick() {
	switch c.count.Add(1) {
	case 1:
		c.first = time.Now()
		if c.n == 1 {
			c.last = c.first
			close(c.done)
		}
	case c.n:
		c.last = time.Now()
		close(c.done)
	}
}

func (c *clock) wait(b *testing.B) {
	select {
	case <-c.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("consumed %d of %d", c.count.Load(), c.n)
	}
	b.StopTimer()
	if c.n > 1 {
		b.ReportMetric(float64(c.n-1)/c.last.Sub(c.first).Seconds(), "msgs/s")
	}
	c.cpu.report(b, int(c.n))
}

// decode is the application's work on a received message: its CloudEvent.
func decode(b *testing.B, body []byte) {
	var ev eventbus.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		b.Error(err)
	}
}

// The limit: one amqp091-go consumer acknowledging every delivery (after
// decoding it, unless bare).
func benchConsumeRaw(b *testing.B, decodeEach bool) {
	t := newTopology(b)
	defer t.close()
	q := t.queue()
	b.StopTimer()
	t.fill(q, b.N)
	ch, err := t.conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Qos(prefetch, 0, false); err != nil {
		b.Fatal(err)
	}
	c := newClock(b.N)
	b.StartTimer()
	deliveries, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for d := range deliveries {
			if decodeEach {
				decode(b, d.Body)
			}
			if err := d.Ack(false); err != nil {
				return
			}
			c.tick()
		}
	}()
	c.wait(b)
}

// The library: a Consumer with its defaults (8 workers, per-subject
// ordering, prefetch 256), parsing and validating every event.
func benchConsumeEventbus(b *testing.B) {
	t := newTopology(b)
	defer t.close()
	b.StopTimer()
	service := eventbustest.Unique("bench-svc")
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(eventbustest.BrokerURL()), Name: "bench-eventbus"})
	defer conn.Close()
	cfg := eventbus.ConsumerConfig{Service: service, Exchange: t.exchange, Metrics: eventbus.NewMetrics(nil), Prefetch: prefetch}
	t.queues = append(t.queues, eventbus.WorkQueue(service), eventbus.DeadLetterQueue(service))
	for _, d := range []string{"500ms", "2s", "8s", "32s"} {
		t.queues = append(t.queues, service+".retry."+d)
	}
	run := func(handler eventbus.Handler) (stop func()) {
		c := eventbus.NewConsumer(conn, cfg)
		c.Handle(routingKey, handler)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	// Declare the service's topology, then fill its queue.
	stop := run(func(context.Context, eventbus.Event) error { return nil })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := t.ch.QueueDeclarePassive(eventbus.WorkQueue(service), true, false, false, false, nil); err == nil {
			break
		}
		t.ch, _ = t.conn.Channel()
		if time.Now().After(deadline) {
			b.Fatal("consumer topology not declared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	t.fill(eventbus.WorkQueue(service), b.N)

	c := newClock(b.N)
	b.StartTimer()
	stop = run(func(context.Context, eventbus.Event) error { c.tick(); return nil })
	c.wait(b)
	stop()
}

// The peer: a watermill-amqp subscriber acknowledging every message, with
// the same prefetch as the others, or (qos 0) with its default config's
// (which is 1).
func benchConsumeWatermill(b *testing.B, qos int) {
	t := newTopology(b)
	defer t.close()
	b.StopTimer()
	queue := eventbustest.Unique("bench-q")
	t.queues = append(t.queues, queue)
	cfg := wamqp.NewDurableTopicConfig(eventbustest.BrokerURL(), t.exchange, queue)
	cfg.Exchange.Durable = true
	cfg.Queue.Arguments = amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	if qos > 0 {
		cfg.Consume.Qos.PrefetchCount = qos
	}
	sub, err := wamqp.NewSubscriber(cfg, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	if err := sub.SubscribeInitialize(routingKey); err != nil {
		b.Fatal(err)
	}
	t.fill(queue, b.N)
	c := newClock(b.N)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.StartTimer()
	msgs, err := sub.Subscribe(ctx, routingKey)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for m := range msgs {
			decode(b, m.Payload)
			m.Ack()
			c.tick()
		}
	}()
	c.wait(b)
}
