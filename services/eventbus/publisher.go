package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"
)

var (
	// ErrUnroutable: the broker returned a mandatory publish that no queue was bound for.
	ErrUnroutable = errors.New("eventbus: unroutable (no queue bound)")
	// ErrNacked: the broker refused the publish, or the channel closed before confirming it.
	ErrNacked = errors.New("eventbus: publish not confirmed")
)

// PublisherConfig tunes a Publisher; zero values take the defaults.
type PublisherConfig struct {
	Exchange string // default DefaultExchange
	// Window is how many publishes may wait for their confirm at once (default 2048).
	Window  int
	Logger  *zap.Logger
	Metrics *Metrics // default DefaultMetrics()
}

// Publisher sends events with publisher confirms and the mandatory flag. Many
// goroutines may call Publish at once: frames go out one at a time on the
// publisher's own channel and the confirms are awaited concurrently, so the
// broker sees a pipelined window instead of one message per round trip.
type Publisher struct {
	conn   *Conn
	cfg    PublisherConfig
	window chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex // serialises frames on ch and guards it
	ch    *pubChannel
	ready chan struct{}
}

type pubChannel struct {
	ch       *amqp.Channel
	returns  chan amqp.Return
	mu       sync.Mutex
	returned map[string]string // message id -> broker's reply text
}

// NewPublisher opens a confirm-mode channel on conn and keeps it open across reconnects.
func NewPublisher(conn *Conn, cfg PublisherConfig) *Publisher {
	if cfg.Exchange == "" {
		cfg.Exchange = DefaultExchange
	}
	if cfg.Window <= 0 {
		cfg.Window = 2048
	}
	if cfg.Logger == nil {
		cfg.Logger = conn.log
	}
	if cfg.Metrics == nil {
		cfg.Metrics = DefaultMetrics()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{conn: conn, cfg: cfg, window: make(chan struct{}, cfg.Window), cancel: cancel,
		done: make(chan struct{}), ready: make(chan struct{})}
	go p.run(ctx)
	return p
}

// Ready reports whether a publish could be sent now.
func (p *Publisher) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch != nil
}

// WaitReady blocks until the publisher's channel is open or ctx ends.
func (p *Publisher) WaitReady(ctx context.Context) error {
	for {
		p.mu.Lock()
		ready, ok := p.ready, p.ch != nil
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops the publisher; publishes still waiting for confirms fail.
func (p *Publisher) Close() error {
	p.cancel()
	<-p.done
	return nil
}

// Publish sends events to the exchange, routed by their type, and returns once
// the broker has confirmed every one of them (nil) or one failed. It fails fast
// with ErrNotConnected while the broker is unreachable.
func (p *Publisher) Publish(ctx context.Context, events ...Event) error {
	msgs := make([]outgoing, len(events))
	for i, ev := range events {
		body, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("eventbus: encode event %s: %w", ev.ID, err)
		}
		headers := amqp.Table{}
		if ev.TraceParent != "" {
			headers["traceparent"] = ev.TraceParent
		} else {
			propagation.TraceContext{}.Inject(ctx, tableCarrier(headers))
		}
		msgs[i] = outgoing{exchange: p.cfg.Exchange, key: ev.Type, msg: amqp.Publishing{
			ContentType:  ContentType,
			DeliveryMode: amqp.Persistent,
			MessageId:    ev.ID,
			Type:         ev.Type,
			Timestamp:    ev.Time,
			AppId:        ev.Source,
			Headers:      headers,
			Body:         body,
		}}
	}
	return p.send(ctx, msgs)
}

type outgoing struct {
	exchange, key string
	msg           amqp.Publishing
}

func (p *Publisher) send(ctx context.Context, msgs []outgoing) error {
	taken := 0
	defer func() {
		for ; taken > 0; taken-- {
			<-p.window
		}
	}()
	for range msgs {
		select {
		case p.window <- struct{}{}:
			taken++
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	p.mu.Lock()
	pc := p.ch
	if pc == nil {
		p.mu.Unlock()
		return ErrNotConnected
	}
	confirms := make([]*amqp.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, m.exchange, m.key, true, false, m.msg)
		if err != nil {
			p.mu.Unlock()
			return fmt.Errorf("eventbus: publish %s: %w", m.msg.Type, err)
		}
		confirms[i] = dc
		p.cfg.Metrics.Published.WithLabelValues(m.msg.Type).Inc()
	}
	p.mu.Unlock()

	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !acked {
			return fmt.Errorf("%w: %s %s", ErrNacked, msgs[i].msg.Type, msgs[i].msg.MessageId)
		}
		if reason, returned := pc.takeReturn(msgs[i].msg.MessageId); returned {
			p.cfg.Metrics.Returned.WithLabelValues(msgs[i].msg.Type).Inc()
			return fmt.Errorf("%w: %s %s to %q: %s", ErrUnroutable, msgs[i].msg.Type, msgs[i].msg.MessageId, msgs[i].key, reason)
		}
		p.cfg.Metrics.Confirmed.WithLabelValues(msgs[i].msg.Type).Inc()
	}
	return nil
}

// takeReturn reports whether the broker returned message id. The broker sends
// basic.return before the confirm of the same message, and the client library
// hands it to our buffered channel before it resolves the confirm, so draining
// the channel here sees every return that belongs to an already-acked publish.
func (pc *pubChannel) takeReturn(id string) (string, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
drain:
	for {
		select {
		case r, ok := <-pc.returns:
			if !ok {
				break drain
			}
			pc.returned[r.MessageId] = r.ReplyText
		default:
			break drain
		}
	}
	reason, found := pc.returned[id]
	delete(pc.returned, id)
	return reason, found
}

func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	for {
		conn, err := p.conn.await(ctx)
		if err != nil {
			return
		}
		pc, closed, err := p.open(conn)
		if err != nil {
			p.cfg.Logger.Warn("publisher channel failed", zap.Error(err))
			select {
			case <-time.After(200 * time.Millisecond):
				continue
			case <-ctx.Done():
				return
			}
		}
		p.mu.Lock()
		p.ch = pc
		close(p.ready)
		p.mu.Unlock()

		select {
		case <-closed:
		case <-ctx.Done():
		}
		p.mu.Lock()
		p.ch = nil
		p.ready = make(chan struct{})
		p.mu.Unlock()
		_ = pc.ch.Close()
		if ctx.Err() != nil {
			return
		}
	}
}

func (p *Publisher) open(conn *amqp.Connection) (*pubChannel, chan *amqp.Error, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, nil, err
	}
	if p.cfg.Exchange != "" {
		if err := declareExchange(ch, p.cfg.Exchange); err != nil {
			_ = ch.Close()
			return nil, nil, err
		}
	}
	pc := &pubChannel{ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, 4096)), returned: map[string]string{}}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	return pc, closed, nil
}

// tableCarrier lets OpenTelemetry propagators write AMQP headers.
type tableCarrier amqp.Table

func (t tableCarrier) Get(key string) string {
	if v, ok := t[key].(string); ok {
		return v
	}
	return ""
}
func (t tableCarrier) Set(key, value string) { t[key] = value }
func (t tableCarrier) Keys() []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	return keys
}
