package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
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
	Window int
	// Channels is how many confirm-mode channels the publisher keeps open
	// (default 4). A channel is only ever written by one goroutine at a time.
	// Calls spread over the channels by the subject of their first event, so
	// the events of one subject keep their order even when streamed with
	// PublishAsync; several channels matter because the broker throttles each
	// channel to a few dozen unconfirmed quorum-queue publishes.
	Channels int
	Logger   *zap.Logger
	Metrics  *Metrics // default DefaultMetrics()
}

// Publisher sends events with publisher confirms and the mandatory flag. Many
// goroutines may call Publish at once: each call writes its frames on one of
// the publisher's channels, which no other goroutine writes meanwhile, and then
// waits for its confirms without holding the channel, so the broker sees a
// pipelined window instead of one message per round trip. The window is a
// sliding one: a slot frees as soon as its confirm arrives, so a producer that
// streams with PublishAsync keeps Window publishes in flight at all times.
type Publisher struct {
	conn    *Conn
	cfg     PublisherConfig
	window  chan struct{}
	slots   []*pubSlot
	next    atomic.Uint32
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	types   sync.Map // event type -> *pubTypeMetrics
	declare bool
	seed    maphash.Seed
}

// pubSlot is one channel of the publisher, reopened after every failure.
type pubSlot struct {
	write sync.Mutex // held while a goroutine writes frames on the channel

	mu    sync.Mutex // guards ch and ready
	ch    *pubChannel
	ready chan struct{} // closed while ch is usable
}

type pubChannel struct {
	ch       *amqp.Channel
	returns  chan amqp.Return
	mu       sync.Mutex
	returned map[string]returnedInfo // message id -> returns not yet taken
	inflight chan inflight           // published, awaiting their confirm, in order
	reaped   chan struct{}           // closed when the reaper has settled everything
}

type returnedInfo struct {
	n      int    // a message id published twice at once can come back twice
	reason string // the broker's reply text
}

// inflight is one published message waiting for its confirm.
type inflight struct {
	dc      *amqp.DeferredConfirmation
	msg     *outgoing
	pending *Pending
}

// Pending is a publish on its way to the broker; Wait for its outcome.
type Pending struct {
	mu        sync.Mutex
	remaining int
	err       error
	done      chan struct{}
}

func newPending(n int) *Pending {
	pd := &Pending{remaining: n, done: make(chan struct{})}
	if n == 0 {
		close(pd.done)
	}
	return pd
}

// settle records the outcome of one message.
func (pd *Pending) settle(err error) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	if err != nil && pd.err == nil {
		pd.err = err
	}
	pd.remaining--
	if pd.remaining == 0 {
		close(pd.done)
	}
}

// Done is closed once the broker has settled every event of the publish.
func (pd *Pending) Done() <-chan struct{} { return pd.done }

// Wait returns nil once the broker confirmed every event of the publish, the
// first failure (ErrUnroutable, ErrNacked) otherwise, or ctx's error if it
// ends first (the publish itself goes on).
func (pd *Pending) Wait(ctx context.Context) error {
	select {
	case <-pd.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return pd.err
}

type pubTypeMetrics struct {
	published, confirmed, returned prometheus.Counter
}

// NewPublisher opens confirm-mode channels on conn and keeps them open across
// reconnects; on every (re)open it declares the exchange.
func NewPublisher(conn *Conn, cfg PublisherConfig) *Publisher {
	return newPublisher(conn, cfg, true)
}

// newPublisher builds a publisher; declare says whether it declares its
// exchange (a publisher that only targets queues directly has none to declare).
func newPublisher(conn *Conn, cfg PublisherConfig, declare bool) *Publisher {
	if cfg.Exchange == "" {
		cfg.Exchange = DefaultExchange
	}
	if cfg.Window <= 0 {
		cfg.Window = 2048
	}
	if cfg.Channels <= 0 {
		cfg.Channels = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = conn.log
	}
	if cfg.Metrics == nil {
		cfg.Metrics = DefaultMetrics()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{conn: conn, cfg: cfg, window: make(chan struct{}, cfg.Window), cancel: cancel, declare: declare,
		seed: maphash.MakeSeed()}
	for range cfg.Channels {
		s := &pubSlot{ready: make(chan struct{})}
		p.slots = append(p.slots, s)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.run(ctx, s)
		}()
	}
	return p
}

// Ready reports whether a publish could be sent now.
func (p *Publisher) Ready() bool {
	if _, blocked := p.conn.Blocked(); blocked {
		return false
	}
	for _, s := range p.slots {
		if s.current() != nil {
			return true
		}
	}
	return false
}

// WaitReady blocks until one of the publisher's channels is open or ctx ends.
func (p *Publisher) WaitReady(ctx context.Context) error {
	for {
		var ready chan struct{}
		for _, s := range p.slots {
			s.mu.Lock()
			ok := s.ch != nil
			if ready == nil {
				ready = s.ready
			}
			s.mu.Unlock()
			if ok {
				return nil
			}
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
	p.wg.Wait()
	return nil
}

// Publish sends events to the exchange, routed by their type, and returns once
// the broker has confirmed every one of them (nil) or one failed. The events
// of one call go out in order on one channel. It fails fast with
// ErrNotConnected while the broker is unreachable; ctx bounds the wait for
// confirms.
func (p *Publisher) Publish(ctx context.Context, events ...Event) error {
	pd, err := p.PublishAsync(ctx, events...)
	if err != nil {
		return err
	}
	return pd.Wait(ctx)
}

// PublishAsync writes events to the broker like Publish but returns as soon
// as their frames are out, with a Pending to wait on for the confirms. Only
// a full window makes it wait (for confirms of earlier publishes), so one
// goroutine can stream events with Window of them in flight.
func (p *Publisher) PublishAsync(ctx context.Context, events ...Event) (*Pending, error) {
	msgs, err := p.encode(ctx, events)
	if err != nil {
		return nil, err
	}
	shard := ""
	if len(events) > 0 {
		shard = events[0].Subject
	}
	return p.sendAsync(ctx, shard, msgs)
}

// PublishAsyncOn is PublishAsync on channel lane (modulo Channels) instead
// of the one of the first event's subject: publishes made one after another
// on one lane reach the broker in that order, whatever subjects their events
// have (while that channel stays open), so a producer can keep several
// batches of mixed subjects in flight without one overtaking another; and
// producers on lanes 0..Channels-1 each get a channel of their own. While the
// lane's channel is not open (at start, after a connection loss) another open
// channel takes its batches, and order across that switch is not kept.
func (p *Publisher) PublishAsyncOn(ctx context.Context, lane int, events ...Event) (*Pending, error) {
	msgs, err := p.encode(ctx, events)
	if err != nil {
		return nil, err
	}
	return p.sendAsyncOn(ctx, p.laneSlot(lane), msgs)
}

func (p *Publisher) encode(ctx context.Context, events []Event) ([]outgoing, error) {
	msgs := make([]outgoing, len(events))
	for i, ev := range events {
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("eventbus: refusing to publish event %q: %w", ev.ID, err)
		}
		body, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("eventbus: encode event %s: %w", ev.ID, err)
		}
		msgs[i] = outgoing{exchange: p.cfg.Exchange, key: ev.Type, msg: amqp.Publishing{
			ContentType:  ContentType,
			DeliveryMode: amqp.Persistent,
			MessageId:    ev.ID,
			Type:         ev.Type,
			Timestamp:    ev.Time,
			AppId:        ev.Source,
			Headers:      traceHeaders(ctx, ev),
			Body:         body,
		}}
	}
	return msgs, nil
}

type outgoing struct {
	exchange, key string
	msg           amqp.Publishing
}

func (p *Publisher) typeMetrics(typ string) *pubTypeMetrics {
	if m, ok := p.types.Load(typ); ok {
		return m.(*pubTypeMetrics)
	}
	m := &pubTypeMetrics{
		published: p.cfg.Metrics.Published.WithLabelValues(typ),
		confirmed: p.cfg.Metrics.Confirmed.WithLabelValues(typ),
		returned:  p.cfg.Metrics.Returned.WithLabelValues(typ),
	}
	actual, _ := p.types.LoadOrStore(typ, m)
	return actual.(*pubTypeMetrics)
}

// send publishes msgs in order and waits for their confirms.
func (p *Publisher) send(ctx context.Context, shard string, msgs []outgoing) error {
	pd, err := p.sendAsync(ctx, shard, msgs)
	if err != nil {
		return err
	}
	return pd.Wait(ctx)
}

// sendAsync writes msgs in order on the channel of shard, taking a window
// slot for each; the channel's reaper settles them as their confirms arrive.
func (p *Publisher) sendAsync(ctx context.Context, shard string, msgs []outgoing) (*Pending, error) {
	return p.sendAsyncOn(ctx, p.shardSlot(shard), msgs)
}

// sendAsyncOn is sendAsync on the channel of slot home (or another open one
// while that one is down).
func (p *Publisher) sendAsyncOn(ctx context.Context, home int, msgs []outgoing) (*Pending, error) {
	if len(msgs) == 0 {
		return newPending(0), nil
	}
	if reason, blocked := p.conn.Blocked(); blocked {
		return nil, fmt.Errorf("%w: %s", ErrBlocked, reason)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := p.pickSlot(home)
	defer s.write.Unlock()
	pc := s.current()
	if pc == nil {
		return nil, ErrNotConnected
	}
	pd := newPending(len(msgs))
	for i := range msgs {
		m := &msgs[i]
		select {
		case p.window <- struct{}{}:
		case <-ctx.Done():
			p.abandon(pd, len(msgs)-i, ctx.Err())
			return nil, ctx.Err()
		}
		dc, err := pc.ch.PublishWithDeferredConfirm(m.exchange, m.key, true, false, m.msg)
		if err != nil {
			<-p.window
			if errors.Is(err, amqp.ErrClosed) {
				err = fmt.Errorf("%w: %v", ErrNotConnected, err)
			}
			err = fmt.Errorf("eventbus: publish %s: %w", m.msg.Type, err)
			p.abandon(pd, len(msgs)-i, err)
			if i == 0 {
				return nil, err
			}
			return pd, nil // the messages already out are settled by the reaper
		}
		p.typeMetrics(m.msg.Type).published.Inc()
		pc.inflight <- inflight{dc: dc, msg: m, pending: pd}
	}
	return pd, nil
}

// abandon settles the n messages of pd that were never sent.
func (p *Publisher) abandon(pd *Pending, n int, err error) {
	for range n {
		pd.settle(err)
	}
}

// reap settles a channel's publishes in order as their confirms arrive: it
// frees their window slots, takes their returns and counts the outcome. When
// the channel closes, the client library nacks whatever was unconfirmed.
func (p *Publisher) reap(pc *pubChannel) {
	defer close(pc.reaped)
	for f := range pc.inflight {
		<-f.dc.Done()
		<-p.window
		m := f.msg
		tm := p.typeMetrics(m.msg.Type)
		switch reason, returned := pc.takeReturn(m.msg.MessageId); {
		case !f.dc.Acked():
			f.pending.settle(fmt.Errorf("%w: %s %s", ErrNacked, m.msg.Type, m.msg.MessageId))
		case returned:
			tm.returned.Inc()
			f.pending.settle(fmt.Errorf("%w: %s %s to %q: %s", ErrUnroutable, m.msg.Type, m.msg.MessageId, m.key, reason))
		default:
			tm.confirmed.Inc()
			f.pending.settle(nil)
		}
	}
}

// shardSlot is the slot of the publishes of shard.
func (p *Publisher) shardSlot(shard string) int {
	return int(maphash.String(p.seed, shard) % uint64(len(p.slots)))
}

// laneSlot is the slot of lane.
func (p *Publisher) laneSlot(lane int) int {
	n := len(p.slots)
	return (lane%n + n) % n
}

// pickSlot returns slot home with its write lock held, or another open one
// while that one is down.
func (p *Publisher) pickSlot(home int) *pubSlot {
	n := len(p.slots)
	s := p.slots[home]
	if n > 1 && s.current() == nil {
		for i := range n {
			if other := p.slots[(home+i)%n]; other.current() != nil {
				s = other
				break
			}
		}
	}
	s.write.Lock()
	return s
}

func (s *pubSlot) current() *pubChannel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// drainLocked moves returns waiting in the notification channel into the map.
func (pc *pubChannel) drainLocked() {
	for {
		select {
		case r, ok := <-pc.returns:
			if !ok {
				return
			}
			info := pc.returned[r.MessageId]
			info.n++
			info.reason = r.ReplyText
			pc.returned[r.MessageId] = info
		default:
			return
		}
	}
}

// takeReturn reports whether the broker returned message id. The broker sends
// basic.return before the confirm of the same message, and the client library
// hands it to our buffered channel before it resolves the confirm, so draining
// the channel here sees every return that belongs to an already-acked publish.
func (pc *pubChannel) takeReturn(id string) (string, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.drainLocked()
	info, found := pc.returned[id]
	if !found {
		return "", false
	}
	if info.n--; info.n == 0 {
		delete(pc.returned, id)
	} else {
		pc.returned[id] = info
	}
	return info.reason, true
}

// run keeps one slot's channel open until ctx ends.
func (p *Publisher) run(ctx context.Context, s *pubSlot) {
	backoff := 100 * time.Millisecond
	for {
		conn, err := p.conn.await(ctx)
		if err != nil {
			return
		}
		pc, closed, err := p.open(conn)
		if err != nil {
			p.cfg.Logger.Warn("publisher channel failed", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 5*time.Second)
				continue
			case <-ctx.Done():
				return
			}
		}
		backoff = 100 * time.Millisecond
		s.mu.Lock()
		s.ch = pc
		close(s.ready)
		s.mu.Unlock()

		select {
		case err := <-closed:
			if err != nil {
				p.cfg.Logger.Warn("publisher channel closed", zap.Error(err))
			}
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.ch = nil
		s.ready = make(chan struct{})
		s.mu.Unlock()
		_ = pc.ch.Close() // resolves every unconfirmed publish as nacked
		s.write.Lock()    // no sender is between publishing and queueing now
		close(pc.inflight)
		s.write.Unlock()
		<-pc.reaped
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
	if p.declare {
		if err := declareExchange(ch, p.cfg.Exchange); err != nil {
			_ = ch.Close()
			return nil, nil, err
		}
	}
	// The return buffer exceeds the window, so the client's reader never waits on it.
	pc := &pubChannel{ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, p.cfg.Window+64)), returned: map[string]returnedInfo{},
		inflight: make(chan inflight, p.cfg.Window), reaped: make(chan struct{})}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	go p.reap(pc)
	return pc, closed, nil
}
