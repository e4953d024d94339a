package eventbus

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Handler applies one event. Returning an error sends the event down the retry
// path; an error wrapping ErrMalformed dead-letters it at once. A panic counts
// as an error.
type Handler func(ctx context.Context, ev Event) error

// BatchHandler applies several events of one subject, in delivery order, as
// if each had been handled on its own. When it fails (or panics) nothing is
// acknowledged and each event goes through its own Handler, retries and dead
// letters as usual.
type BatchHandler func(ctx context.Context, evs []Event) error

// maxBatch bounds the events a worker takes from its queue at once.
const maxBatch = 256

// ConsumerConfig tunes a Consumer; zero values take the defaults.
type ConsumerConfig struct {
	// Service names the queues: <service>.queue, <service>.retry.<delay>, <service>.dlq.
	Service  string
	Exchange string // default DefaultExchange
	// Workers handle events concurrently; events of one subject always go to the
	// same worker, so one subject is never handled concurrently (default 8).
	Workers int
	// Prefetch bounds unacknowledged deliveries, and so memory (default 32 per worker).
	Prefetch int
	// RetryDelays is the backoff schedule: attempt n+1 waits RetryDelays[n] in a
	// delay queue. After len(RetryDelays)+1 failed attempts the event is
	// dead-lettered (default 500ms, 2s, 8s, 32s). Use an empty, non-nil slice
	// for no retries.
	RetryDelays []time.Duration
	// DeliveryLimit is the work queue's x-delivery-limit: deliveries that were
	// never acknowledged (the consumer crashed) before the broker dead-letters (default 10).
	DeliveryLimit int
	// HandlerTimeout bounds one handler call through its context (default 30s).
	HandlerTimeout time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight handlers (default 10s).
	ShutdownTimeout time.Duration
	Logger          *zap.Logger
	Metrics         *Metrics // default DefaultMetrics()
}

var defaultRetryDelays = []time.Duration{500 * time.Millisecond, 2 * time.Second, 8 * time.Second, 32 * time.Second}

// Header names the consumer writes on retried and dead-lettered messages.
const (
	HeaderAttempt       = "x-attempt"
	HeaderLastError     = "x-last-error"
	HeaderFailureReason = "x-failure-reason"
	HeaderRoutingKey    = "x-original-routing-key"
	HeaderFailedAt      = "x-failed-at"
)

// Consumer runs handlers for the event types it was given on the service's own
// quorum queue, with manual acks, per-subject ordering, retries and dead letters.
type Consumer struct {
	conn     *Conn
	cfg      ConsumerConfig
	log      *zap.Logger
	m        *Metrics
	handlers map[string]Handler
	batch    BatchHandler
	batched  map[string]bool // types batch takes
	pub      *Publisher
	ready    atomic.Bool
	stopping atomic.Bool
	seed     maphash.Seed
	types    map[string]*typeMetrics // fixed once Run starts
	tracer   trace.Tracer
}

// typeMetrics are the per-type instruments, resolved once instead of per event.
type typeMetrics struct {
	consumed, retried prometheus.Counter
	handler, lag      prometheus.Observer
	spanName          string
}

// NewConsumer prepares a consumer; register handlers with Handle, then call Run.
func NewConsumer(conn *Conn, cfg ConsumerConfig) *Consumer {
	if cfg.Exchange == "" {
		cfg.Exchange = DefaultExchange
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 32 * cfg.Workers
	}
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = slices.Clone(defaultRetryDelays)
	}
	if cfg.DeliveryLimit <= 0 {
		cfg.DeliveryLimit = 10
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = 30 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = conn.log
	}
	if cfg.Metrics == nil {
		cfg.Metrics = DefaultMetrics()
	}
	return &Consumer{conn: conn, cfg: cfg, log: cfg.Logger.With(zap.String("queue", WorkQueue(cfg.Service))),
		m: cfg.Metrics, handlers: map[string]Handler{}, seed: maphash.MakeSeed()}
}

// Handle registers h for events of type typ and binds the work queue to it.
// Events of types without a handler are dead-lettered. Call it before Run.
func (c *Consumer) Handle(typ string, h Handler) { c.handlers[typ] = h }

// HandleBatch lets a worker hand the events of one subject that wait in its
// queue together to h, when their types are among types (each still needs its
// Handler). A subject's events keep their order. Call it before Run.
func (c *Consumer) HandleBatch(types []string, h BatchHandler) {
	c.batch, c.batched = h, map[string]bool{}
	for _, t := range types {
		c.batched[t] = true
	}
}

// Ready reports whether the consumer is attached to its queue now.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// EventFields are the zap fields that identify an event in logs.
func EventFields(ev Event) []zap.Field {
	return []zap.Field{zap.String("event_id", ev.ID), zap.String("event_type", ev.Type),
		zap.String("subject", ev.Subject), zap.Int64("version", ev.Version)}
}

type job struct {
	d    amqp.Delivery
	acks *acker // of the channel d arrived on
	ev   Event
	bad  error // why the delivery is malformed, if it is
}

// attachment is one consuming channel and its acker.
type attachment struct {
	ch   *amqp.Channel
	acks *acker
}

// Run consumes until ctx is cancelled, reconnecting as needed. At shutdown it
// stops taking deliveries, returns those not started yet to the queue, and
// waits up to ShutdownTimeout for the handlers that are running; deliveries
// still unacknowledged after that go back to the queue too.
func (c *Consumer) Run(ctx context.Context) error {
	if c.cfg.Service == "" {
		return errors.New("eventbus: ConsumerConfig.Service is required")
	}
	if len(c.handlers) == 0 {
		return errors.New("eventbus: consumer has no handlers")
	}
	c.stopping.Store(false)
	c.types = make(map[string]*typeMetrics, len(c.handlers))
	for typ := range c.handlers {
		c.types[typ] = &typeMetrics{
			consumed: c.m.Consumed.WithLabelValues(c.cfg.Service, typ),
			retried:  c.m.Retried.WithLabelValues(c.cfg.Service, typ),
			handler:  c.m.HandlerSeconds.WithLabelValues(c.cfg.Service, typ),
			lag:      c.m.Lag.WithLabelValues(c.cfg.Service, typ),
			spanName: "process " + typ,
		}
	}
	c.tracer = otel.Tracer("github.com/personscore/eventbus")
	c.pub = NewPublisher(c.conn, PublisherConfig{Exchange: c.cfg.Exchange, Logger: c.log, Metrics: c.m, Channels: 2})
	defer c.pub.Close()

	// Handlers outlive ctx by up to ShutdownTimeout so in-flight work can finish.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	queues := make([]chan job, c.cfg.Workers)
	var workers sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan job, c.cfg.Prefetch)
		workers.Add(1)
		go func() {
			defer workers.Done()
			var jobs []job
			for j := range queues[i] {
				if c.batch == nil {
					c.work(hctx, j)
					continue
				}
				jobs = takeQueued(append(jobs[:0], j), queues[i])
				c.workAll(hctx, jobs)
			}
		}()
	}

	var open []attachment
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		at, attached, err := c.consume(ctx, queues)
		if at != nil {
			open = append(open, *at)
		}
		if attached {
			backoff = 100 * time.Millisecond
		}
		if err != nil && ctx.Err() == nil {
			var amqpErr *amqp.Error
			if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
				c.log.Error("the broker has this service's queues with other arguments (was DeliveryLimit or "+
					"RetryDelays changed?); delete the queues or align the configuration", zap.Error(err))
			}
			c.log.Warn("consumer interrupted, reattaching", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}

	c.stopping.Store(true)
	for _, q := range queues {
		close(q)
	}
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()
	timer := time.NewTimer(c.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		c.log.Warn("shutdown deadline passed with handlers still running; their deliveries will be redelivered")
		hcancel()
	}
	for _, at := range open {
		at.acks.close()   // acknowledge what finished
		_ = at.ch.Close() // unacknowledged deliveries go back to the queue
	}
	c.log.Info("consumer stopped")
	return nil
}

// consume attaches to the work queue and feeds workers until the channel
// closes or ctx ends. It returns the attachment still open (Run closes it
// after draining) and whether it got as far as consuming.
func (c *Consumer) consume(ctx context.Context, queues []chan job) (*attachment, bool, error) {
	conn, err := c.conn.await(ctx)
	if err != nil {
		return nil, false, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, false, err
	}
	keys := make([]string, 0, len(c.handlers))
	for k := range c.handlers {
		keys = append(keys, k)
	}
	if err := declareConsumerTopology(ch, c.cfg, keys); err != nil {
		_ = ch.Close()
		return nil, false, err
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, false, err
	}
	tag := fmt.Sprintf("%s-%d", c.cfg.Service, time.Now().UnixNano())
	deliveries, err := ch.Consume(WorkQueue(c.cfg.Service), tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return nil, false, err
	}
	acks := newAcker(ch, c.cfg.Prefetch)
	c.ready.Store(true)
	defer c.ready.Store(false)
	c.log.Info("consuming", zap.Int("workers", c.cfg.Workers), zap.Int("prefetch", c.cfg.Prefetch))
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				acks.close()
				_ = ch.Close()
				return nil, true, errors.New("delivery channel closed")
			}
			c.dispatch(acks, d, queues)
		case <-ctx.Done():
			// Stop new deliveries; those prefetched and not started are
			// returned by the workers, the rest when the channel closes.
			_ = ch.Cancel(tag, false)
			return &attachment{ch: ch, acks: acks}, true, nil
		}
	}
}

func (c *Consumer) dispatch(acks *acker, d amqp.Delivery, queues []chan job) {
	ev, err := ParseEvent(d.Body)
	if err == nil {
		if _, known := c.handlers[ev.Type]; !known {
			err = fmt.Errorf("%w: no handler for type %q", ErrMalformed, ev.Type)
		}
	}
	if err != nil {
		// A worker dead-letters it, so a flood of bad messages does not
		// hold up dispatching.
		i := d.DeliveryTag % uint64(len(queues))
		queues[i] <- job{d: d, acks: acks, bad: err}
		return
	}
	i := maphash.String(c.seed, ev.Subject) % uint64(len(queues))
	queues[i] <- job{d: d, acks: acks, ev: ev}
}

// takeQueued adds to jobs what waits in q, without blocking, up to maxBatch.
func takeQueued(jobs []job, q chan job) []job {
	for len(jobs) < maxBatch {
		select {
		case j, ok := <-q:
			if !ok {
				return jobs
			}
			jobs = append(jobs, j)
		default:
			return jobs
		}
	}
	return jobs
}

// workAll runs the jobs a worker took at once: the batchable events of one
// subject together, up to the first of its events that is not batchable,
// which runs on its own at its turn.
func (c *Consumer) workAll(ctx context.Context, jobs []job) {
	taken := make([]bool, len(jobs))
	var group []job
	for i, j := range jobs {
		if taken[i] {
			continue
		}
		if !c.batchable(j) {
			c.work(ctx, j)
			continue
		}
		group = append(group[:0], j)
		for k := i + 1; k < len(jobs); k++ {
			o := jobs[k]
			if taken[k] || o.bad != nil || o.ev.Subject != j.ev.Subject {
				continue
			}
			if !c.batchable(o) {
				break
			}
			taken[k] = true
			group = append(group, o)
		}
		c.workBatch(ctx, group)
	}
}

func (c *Consumer) batchable(j job) bool {
	return j.bad == nil && c.batched[j.ev.Type]
}

// workBatch hands the events of one subject to the batch handler; if it
// fails, each runs on its own.
func (c *Consumer) workBatch(ctx context.Context, jobs []job) {
	if len(jobs) == 1 || c.stopping.Load() || jobs[0].acks.ch.IsClosed() {
		for _, j := range jobs {
			c.work(ctx, j)
		}
		return
	}
	evs := make([]Event, len(jobs))
	spans := make([]trace.Span, len(jobs))
	var hctx context.Context
	for i, j := range jobs {
		evs[i] = j.ev
		sctx, span := c.tracer.Start(deliveryTraceContext(ctx, j.d.Headers, j.ev), c.types[j.ev.Type].spanName,
			trace.WithSpanKind(trace.SpanKindConsumer))
		spans[i] = span
		if i == 0 {
			hctx = sctx
		}
	}
	start := time.Now()
	err := c.callBatch(hctx, evs)
	took := time.Since(start).Seconds()
	for _, span := range spans {
		span.End()
	}
	if err != nil {
		if ce := c.log.Check(zapcore.DebugLevel, "batch failed; handling its events one by one"); ce != nil {
			ce.Write(zap.String("subject", evs[0].Subject), zap.Int("events", len(evs)), zap.Error(err))
		}
		for _, j := range jobs {
			c.work(ctx, j)
		}
		return
	}
	for _, j := range jobs {
		tm := c.types[j.ev.Type]
		tm.handler.Observe(took)
		j.acks.done(j.d.DeliveryTag)
		tm.consumed.Inc()
		if !j.ev.Time.IsZero() {
			tm.lag.Observe(time.Since(j.ev.Time).Seconds())
		}
		if ce := c.log.Check(zapcore.DebugLevel, "event handled"); ce != nil {
			ce.Write(append(EventFields(j.ev), zap.Int("attempt", attemptOf(j.d)+1), zap.Int("batch", len(jobs)))...)
		}
	}
}

func (c *Consumer) callBatch(ctx context.Context, evs []Event) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("batch handler panicked", zap.String("subject", evs[0].Subject), zap.Any("panic", r),
				zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("batch handler panic: %v", r)
		}
	}()
	return c.batch(ctx, evs)
}

// work runs one job on a worker.
func (c *Consumer) work(ctx context.Context, j job) {
	if j.acks.ch.IsClosed() {
		return // its channel is gone: the broker redelivers it, an ack would fail
	}
	if c.stopping.Load() {
		_ = j.d.Nack(false, true) // not started before shutdown: back to the queue
		j.acks.settled(j.d.DeliveryTag)
		return
	}
	if j.bad != nil {
		c.log.Error("malformed event, dead-lettering", zap.String("message_id", j.d.MessageId),
			zap.String("amqp_type", j.d.Type), zap.Error(j.bad))
		c.deadLetter(ctx, j, attemptOf(j.d)+1, j.bad)
		return
	}
	c.handle(ctx, j)
}

func (c *Consumer) handle(ctx context.Context, j job) {
	ev, d := j.ev, j.d
	tm := c.types[ev.Type]
	attempt := attemptOf(d) + 1
	ctx, span := c.tracer.Start(deliveryTraceContext(ctx, d.Headers, ev), tm.spanName, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.destination.name", WorkQueue(c.cfg.Service)),
			attribute.String("messaging.message.id", ev.ID),
			attribute.String("cloudevents.event_type", ev.Type),
			attribute.String("cloudevents.event_subject", ev.Subject),
			attribute.Int("eventbus.attempt", attempt))
	}

	start := time.Now()
	err := c.call(ctx, ev)
	tm.handler.Observe(time.Since(start).Seconds())
	if err == nil {
		j.acks.done(d.DeliveryTag)
		tm.consumed.Inc()
		if !ev.Time.IsZero() {
			tm.lag.Observe(time.Since(ev.Time).Seconds())
		}
		if ce := c.log.Check(zapcore.DebugLevel, "event handled"); ce != nil {
			ce.Write(append(EventFields(ev), zap.Int("attempt", attempt))...)
		}
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	fields := append(EventFields(ev), zap.Int("attempt", attempt), zap.Error(err))
	if errors.Is(err, ErrMalformed) || attempt > len(c.cfg.RetryDelays) {
		c.log.Error("handler failed for good, dead-lettering", fields...)
		c.deadLetter(ctx, j, attempt, err)
		return
	}
	delay := c.cfg.RetryDelays[attempt-1]
	c.log.Warn("handler failed, retrying later", append(fields, zap.Duration("delay", delay))...)
	if c.retry(ctx, j, attempt, delay, err) {
		tm.retried.Inc()
	}
}

func (c *Consumer) call(ctx context.Context, ev Event) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("handler panicked", append(EventFields(ev), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))...)
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return c.handlers[ev.Type](ctx, ev)
}

// park publishes a copy of d through the consumer's own publisher and then
// acknowledges d, so the event is never lost in between. If the copy cannot
// be confirmed the delivery goes back to the queue.
func (c *Consumer) park(ctx context.Context, j job, key string, msg amqp.Publishing) bool {
	d := j.d
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := c.pub.WaitReady(ctx)
	if err == nil {
		err = c.pub.send(ctx, d.MessageId, []outgoing{{key: key, msg: msg}})
	}
	if err != nil {
		c.log.Warn("could not move event to "+key+"; returning it to the queue",
			zap.String("message_id", d.MessageId), zap.Error(err))
		_ = d.Nack(false, true)
		j.acks.settled(d.DeliveryTag)
		return false
	}
	j.acks.done(d.DeliveryTag)
	return true
}

// retry parks the delivery in the delay queue for its attempt; when the TTL
// expires the broker dead-letters it back into the work queue.
func (c *Consumer) retry(ctx context.Context, j job, attempt int, delay time.Duration, cause error) bool {
	msg := republish(j.d, amqp.Table{HeaderAttempt: int32(attempt), HeaderLastError: truncate(cause.Error())})
	return c.park(ctx, j, delayQueue(c.cfg.Service, delay), msg)
}

// deadLetter moves the delivery to the service's dead-letter queue with the
// reason and attempt count, for a person to inspect and replay.
func (c *Consumer) deadLetter(ctx context.Context, j job, attempt int, cause error) {
	msg := republish(j.d, amqp.Table{
		HeaderAttempt:       int32(attempt),
		HeaderFailureReason: truncate(cause.Error()),
		HeaderFailedAt:      time.Now().UTC().Format(time.RFC3339Nano),
	})
	if !c.park(ctx, j, DeadLetterQueue(c.cfg.Service), msg) {
		return
	}
	reason := "handler"
	if errors.Is(cause, ErrMalformed) {
		reason = "malformed"
	}
	c.m.DeadLettered.WithLabelValues(c.cfg.Service, reason).Inc()
}

// republish copies a delivery into a new persistent message with extra headers.
func republish(d amqp.Delivery, extra amqp.Table) amqp.Publishing {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		if k == "x-death" || k == "x-delivery-count" || k == "x-first-death-exchange" ||
			k == "x-first-death-queue" || k == "x-first-death-reason" || k == "x-last-death-exchange" ||
			k == "x-last-death-queue" || k == "x-last-death-reason" {
			continue // broker bookkeeping of the previous hop
		}
		headers[k] = v
	}
	if _, ok := headers[HeaderRoutingKey]; !ok && d.RoutingKey != "" {
		headers[HeaderRoutingKey] = originalRoutingKey(d)
	}
	for k, v := range extra {
		headers[k] = v
	}
	return amqp.Publishing{
		ContentType:  d.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    d.MessageId,
		Type:         d.Type,
		Timestamp:    d.Timestamp,
		AppId:        d.AppId,
		Headers:      headers,
		Body:         d.Body,
	}
}

// originalRoutingKey is the key the event was first published with, even when
// the broker dead-lettered it on (a delivery-limit hit re-routes it by queue name).
func originalRoutingKey(d amqp.Delivery) string {
	if deaths, ok := d.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		if first, ok := deaths[len(deaths)-1].(amqp.Table); ok {
			if keys, ok := first["routing-keys"].([]any); ok && len(keys) > 0 {
				if k, ok := keys[0].(string); ok {
					return k
				}
			}
		}
	}
	return d.RoutingKey
}

func attemptOf(d amqp.Delivery) int {
	switch v := d.Headers[HeaderAttempt].(type) {
	case int32:
		return int(v)
	case int64:
		return int(v)
	case int:
		return v
	case int16:
		return int(v)
	case int8:
		return int(v)
	}
	return 0
}

func truncate(s string) string {
	if len(s) > 1024 {
		return s[:1024]
	}
	return s
}
