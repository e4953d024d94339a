package eventbus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Handler applies one event. Returning an error sends the event down the retry
// path; an error wrapping ErrMalformed dead-letters it at once. A panic counts
// as an error.
type Handler func(ctx context.Context, ev Event) error

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
	// dead-lettered (default 500ms, 2s, 8s, 32s).
	RetryDelays []time.Duration
	// DeliveryLimit is the work queue's x-delivery-limit: deliveries that were
	// never acknowledged (the consumer crashed) before the broker dead-letters (default 10).
	DeliveryLimit int
	// ShutdownTimeout bounds how long Run waits for in-flight handlers (default 10s).
	ShutdownTimeout time.Duration
	Logger          *zap.Logger
	Metrics         *Metrics // default DefaultMetrics()
}

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
	pub      *Publisher
	ready    atomic.Bool
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
		cfg.RetryDelays = []time.Duration{500 * time.Millisecond, 2 * time.Second, 8 * time.Second, 32 * time.Second}
	}
	if cfg.DeliveryLimit <= 0 {
		cfg.DeliveryLimit = 10
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
		m: cfg.Metrics, handlers: map[string]Handler{}}
}

// Handle registers h for events of type typ and binds the work queue to it.
// Events of types without a handler are dead-lettered.
func (c *Consumer) Handle(typ string, h Handler) { c.handlers[typ] = h }

// Ready reports whether the consumer is attached to its queue now.
func (c *Consumer) Ready() bool { return c.ready.Load() }

type job struct {
	d  amqp.Delivery
	ev Event
}

// Run consumes until ctx is cancelled, reconnecting as needed, then stops taking
// deliveries and waits up to ShutdownTimeout for in-flight handlers. Deliveries
// not acknowledged by then go back to the queue.
func (c *Consumer) Run(ctx context.Context) error {
	if c.cfg.Service == "" {
		return errors.New("eventbus: ConsumerConfig.Service is required")
	}
	if len(c.handlers) == 0 {
		return errors.New("eventbus: consumer has no handlers")
	}
	c.pub = NewPublisher(c.conn, PublisherConfig{Exchange: c.cfg.Exchange, Logger: c.log, Metrics: c.m})
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
			for j := range queues[i] {
				c.handle(hctx, j)
			}
		}()
	}

	var lastCh *amqp.Channel
	for ctx.Err() == nil {
		ch, err := c.consume(ctx, queues)
		if ch != nil {
			lastCh = ch
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("consumer interrupted, reattaching", zap.Error(err))
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}

	for _, q := range queues {
		close(q)
	}
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(c.cfg.ShutdownTimeout):
		c.log.Warn("shutdown deadline passed with handlers still running; their deliveries will be redelivered")
		hcancel()
	}
	if lastCh != nil {
		_ = lastCh.Close()
	}
	return nil
}

// consume attaches to the work queue and feeds workers until the channel
// closes or ctx ends. It returns the channel so Run can close it after draining.
func (c *Consumer) consume(ctx context.Context, queues []chan job) (*amqp.Channel, error) {
	conn, err := c.conn.await(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(c.handlers))
	for k := range c.handlers {
		keys = append(keys, k)
	}
	if err := declareConsumerTopology(ch, c.cfg, keys); err != nil {
		_ = ch.Close()
		return nil, err
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	tag := fmt.Sprintf("%s-%d", c.cfg.Service, time.Now().UnixNano())
	deliveries, err := ch.Consume(WorkQueue(c.cfg.Service), tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return nil, err
	}
	c.ready.Store(true)
	defer c.ready.Store(false)
	c.log.Info("consuming", zap.Int("workers", c.cfg.Workers), zap.Int("prefetch", c.cfg.Prefetch))
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				_ = ch.Close()
				return nil, errors.New("delivery channel closed")
			}
			c.dispatch(ctx, d, queues)
		case <-ctx.Done():
			// Stop new deliveries; those already prefetched but not dispatched
			// are requeued when the channel closes after the drain.
			_ = ch.Cancel(tag, false)
			return ch, nil
		}
	}
}

func (c *Consumer) dispatch(ctx context.Context, d amqp.Delivery, queues []chan job) {
	ev, err := ParseEvent(d.Body)
	if err == nil {
		if _, known := c.handlers[ev.Type]; !known {
			err = fmt.Errorf("%w: no handler for type %q", ErrMalformed, ev.Type)
		}
	}
	if err != nil {
		c.deadLetter(ctx, d, attemptOf(d)+1, err)
		return
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(ev.Subject))
	queues[h.Sum32()%uint32(len(queues))] <- job{d: d, ev: ev}
}

func (c *Consumer) handle(ctx context.Context, j job) {
	ev, d := j.ev, j.d
	attempt := attemptOf(d) + 1
	log := c.log.With(zap.String("event_id", ev.ID), zap.String("event_type", ev.Type),
		zap.String("subject", ev.Subject), zap.Int64("version", ev.Version), zap.Int("attempt", attempt))
	ctx, span := otel.Tracer("eventbus").Start(ev.traceContext(ctx), "consume "+ev.Type, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()

	start := time.Now()
	err := c.call(ctx, ev)
	c.m.HandlerSeconds.WithLabelValues(c.cfg.Service, ev.Type).Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		if ackErr := d.Ack(false); ackErr != nil {
			log.Warn("ack failed; the event will be redelivered", zap.Error(ackErr))
			return
		}
		c.m.Consumed.WithLabelValues(c.cfg.Service, ev.Type).Inc()
		c.m.Lag.WithLabelValues(c.cfg.Service, ev.Type).Observe(time.Since(ev.Time).Seconds())
	case errors.Is(err, ErrMalformed) || attempt > len(c.cfg.RetryDelays):
		log.Error("handler failed for good, dead-lettering", zap.Error(err))
		c.deadLetter(ctx, d, attempt, err)
	default:
		delay := c.cfg.RetryDelays[attempt-1]
		log.Warn("handler failed, retrying later", zap.Error(err), zap.Duration("delay", delay))
		c.retry(ctx, d, attempt, delay, err)
	}
}

func (c *Consumer) call(ctx context.Context, ev Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return c.handlers[ev.Type](ctx, ev)
}

// retry parks the delivery in the delay queue for its attempt; when the TTL
// expires the broker dead-letters it back into the work queue. The original is
// acknowledged only once the copy is confirmed, so nothing is lost in between.
func (c *Consumer) retry(ctx context.Context, d amqp.Delivery, attempt int, delay time.Duration, cause error) {
	msg := republish(d, amqp.Table{HeaderAttempt: int32(attempt), HeaderLastError: truncate(cause.Error())})
	if err := c.pub.send(ctx, []outgoing{{key: delayQueue(c.cfg.Service, delay), msg: msg}}); err != nil {
		c.log.Warn("could not park event for retry; returning it to the queue", zap.Error(err))
		_ = d.Nack(false, true)
		return
	}
	_ = d.Ack(false)
	c.m.Retried.WithLabelValues(c.cfg.Service, d.Type).Inc()
}

// deadLetter moves the delivery to the service's dead-letter queue with the
// reason and attempt count, for a person to inspect and replay.
func (c *Consumer) deadLetter(ctx context.Context, d amqp.Delivery, attempt int, cause error) {
	msg := republish(d, amqp.Table{
		HeaderAttempt:       int32(attempt),
		HeaderFailureReason: truncate(cause.Error()),
		HeaderRoutingKey:    d.RoutingKey,
		HeaderFailedAt:      time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err := c.pub.send(ctx, []outgoing{{key: DeadLetterQueue(c.cfg.Service), msg: msg}}); err != nil {
		c.log.Warn("could not dead-letter event; returning it to the queue", zap.Error(err))
		_ = d.Nack(false, true)
		return
	}
	_ = d.Ack(false)
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
		if k == "x-death" || k == "x-delivery-count" {
			continue // broker bookkeeping of the previous hop
		}
		headers[k] = v
	}
	if _, ok := headers[HeaderRoutingKey]; !ok && d.RoutingKey != "" {
		headers[HeaderRoutingKey] = d.RoutingKey
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

func attemptOf(d amqp.Delivery) int {
	switch v := d.Headers[HeaderAttempt].(type) {
	case int32:
		return int(v)
	case int64:
		return int(v)
	case int:
		return v
	}
	return 0
}

func truncate(s string) string {
	if len(s) > 1024 {
		return s[:1024]
	}
	return s
}
