// Package outbox makes a MongoDB state change and the events describing it one
// atomic write, without multi-document transactions: the events are appended to
// an array field of the very document that changes. A relay publishes them right
// after the write and removes them once the broker confirmed them; a sweep
// republishes whatever a crash or a broker outage left behind: at start, every
// SweepInterval while something suggests events were left (a failed publish
// or removal, events another replica may be relaying), and every
// IdleSweepInterval otherwise, since a sweep reads every document. With
// Config.ClearDelay the removal waits a little for the document's next write
// (ClearWith), which then clears the events at no extra cost. The relay's own
// removals go out many documents per write: one unordered bulk write (a single
// update command) for all the documents due at once.
//
// While the broker is unreachable the events stay in their documents (the
// backlog), and neither the relay nor the sweep touches the store for them.
// Once it is back the sweep hands each document's backlog to the relay
// worker that publishes that document's new events too, and a new event of a
// document with older backlog brings them along, so each aggregate's events
// go out in version order. Backlog reports the backlog's size and age from
// memory, for a service to bound it.
//
// A relay worker keeps several batches in flight (Config.RelayInFlight): it
// publishes a batch while the confirms of earlier ones are on their way, all
// on one publisher channel, so the broker gets them in order. An event is
// cleared only once its own confirm came. If the broker nacks a batch while
// a later one is in flight, the later one may reach consumers first; the
// nacked events stay stored and go out again with their document's next
// events (or the sweep's). Consumers must therefore apply a document's events
// whatever their order, as they must for redeliveries anyway (score applies
// by version, person's copy of the score by its revision).
//
// Delivery is at least once: an event may be published twice (two replicas
// sweeping, a crash between confirm and removal), never lost.
package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personscore/eventbus"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// Field is the array field that holds a document's pending events.
const Field = "outbox"

// Publisher is what the outbox needs of the broker side (eventbus.Publisher).
type Publisher interface {
	Publish(ctx context.Context, events ...eventbus.Event) error
}

// asyncPublisher is implemented by publishers that can keep publishes in
// flight (eventbus.Publisher): the relay then publishes a batch while the
// confirms of earlier ones are on their way, in order on one channel per
// worker. Without it each batch waits for its confirms before the next.
type asyncPublisher interface {
	PublishAsyncOn(ctx context.Context, lane int, events ...eventbus.Event) (*eventbus.Pending, error)
}

// readier is implemented by publishers that know whether the broker is
// reachable (eventbus.Publisher); without it the outbox assumes it is.
type readier interface{ Ready() bool }

// Config tunes an Outbox; zero values take the defaults.
type Config struct {
	Collection *mongo.Collection
	Publisher  Publisher
	// SweepInterval is how often pending events are looked for while some
	// may have been left behind (default 2s); a slow sweep stretches it, so
	// sweeping never takes over the store.
	SweepInterval time.Duration
	// IdleSweepInterval is how often they are looked for when nothing
	// suggests any were left (default 1m): a safety net for a replica that
	// crashed and never came back.
	IdleSweepInterval time.Duration
	// MinAge keeps the sweep off fresh events (default 3s): another replica's
	// relay may be publishing them. This process's own relay work is skipped
	// whatever its age.
	MinAge time.Duration
	// RelayWorkers publish concurrently (default 4). The events of one document
	// always go through the same worker, so the relay keeps their order.
	RelayWorkers int
	// RelayInFlight is how many batches a relay worker may have published
	// and not yet seen confirmed (default 8, with an asyncPublisher; 1 is
	// publish, wait for the confirms, publish the next). A batch goes out
	// while earlier ones wait for their confirms, so an event waits for no
	// confirm but its own; its events are still cleared only once confirmed.
	RelayInFlight int
	// SweepBatch is how many events the sweep publishes per round (default 512).
	SweepBatch int
	// ClearDelay is how long published events wait for the next write of
	// their document to clear them (see ClearWith) before the relay clears
	// them with a write of its own (default 0: at once).
	ClearDelay time.Duration
	Logger     *zap.Logger
	Metrics    *eventbus.Metrics // default eventbus.DefaultMetrics()
}

// Outbox relays the events stored in one collection's documents.
type Outbox struct {
	cfg   Config
	log   *zap.Logger
	notes []chan note // one per relay worker
	seed  maphash.Seed
	wg    sync.WaitGroup

	backlog *backlog
	drained prometheus.Counter
	// publishAsync publishes events on the channel of key and returns what
	// waits for their confirms (nil: the publisher has no asyncPublisher).
	publishAsync func(ctx context.Context, lane int, events []eventbus.Event) (func(context.Context) error, error)

	// suspect is set when events may have been left behind: after
	// a failed publish or removal, when the relay had no room, and when a
	// sweep saw events it left for another replica's relay.
	suspect atomic.Bool

	mu       sync.Mutex
	inflight map[string]struct{} // ids of events handed to the relay and not yet cleared
	// sent are the ids of events a relay worker has published and not yet
	// seen confirmed or failed, by document key: a catch-up leaves them out.
	sent map[string]map[string]struct{}
	held map[string]*heldEvents // published events waiting to be cleared, by document
}

// heldEvents are a document's published events waiting for ClearWith or
// their deadline.
type heldEvents struct {
	id     any
	events []eventbus.Event
	due    time.Time
}

type note struct {
	id     any
	events []eventbus.Event
	raw    []any // the events as stored, when read from the document, for an exact removal
	// notified are the relay's events a catch-up note replaces (see catchUp),
	// fresh how many of them were written, not found by a sweep.
	notified []eventbus.Event
	fresh    int
	// swept: a sweep found these events left behind and handed them to the
	// relay, which publishes a document's events in order.
	swept bool
}

// New creates the outbox of a collection; call Run to start relaying.
func New(cfg Config) *Outbox {
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 2 * time.Second
	}
	if cfg.IdleSweepInterval <= 0 {
		cfg.IdleSweepInterval = time.Minute
	}
	if cfg.MinAge <= 0 {
		cfg.MinAge = 3 * time.Second
	}
	if cfg.RelayWorkers <= 0 {
		cfg.RelayWorkers = 4
	}
	if cfg.RelayInFlight <= 0 {
		cfg.RelayInFlight = 8
	}
	if _, ok := cfg.Publisher.(asyncPublisher); !ok {
		cfg.RelayInFlight = 1 // each publish returns confirmed: nothing to overlap
	}
	if cfg.SweepBatch <= 0 {
		cfg.SweepBatch = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = eventbus.DefaultMetrics()
	}
	o := &Outbox{cfg: cfg, log: cfg.Logger.With(zap.String("outbox", cfg.Collection.Name())), seed: maphash.MakeSeed(),
		inflight: map[string]struct{}{}, held: map[string]*heldEvents{}, sent: map[string]map[string]struct{}{}}
	pending := cfg.Metrics.OutboxPending.WithLabelValues(cfg.Collection.Name())
	age := cfg.Metrics.OutboxOldest.WithLabelValues(cfg.Collection.Name())
	o.backlog = newBacklog(func(n int, oldest time.Time) {
		pending.Set(float64(n))
		if oldest.IsZero() {
			age.Set(0)
		} else {
			age.Set(max(time.Since(oldest).Seconds(), 0))
		}
	})
	o.drained = cfg.Metrics.OutboxDrained.WithLabelValues(cfg.Collection.Name())
	if ap, ok := cfg.Publisher.(asyncPublisher); ok {
		o.publishAsync = func(ctx context.Context, lane int, events []eventbus.Event) (func(context.Context) error, error) {
			pd, err := ap.PublishAsyncOn(ctx, lane, events...)
			if err != nil {
				return nil, err
			}
			return pd.Wait, nil
		}
	}
	for range cfg.RelayWorkers {
		o.notes = append(o.notes, make(chan note, max(8192/cfg.RelayWorkers, 256)))
	}
	return o
}

// With adds events to an update document so that they are stored by the same
// single-document write as the state change. It merges into an existing $push.
func With(update bson.D, events ...eventbus.Event) bson.D {
	push := bson.E{Key: Field, Value: bson.D{{Key: "$each", Value: events}}}
	for i, op := range update {
		if op.Key == "$push" {
			fields, _ := op.Value.(bson.D)
			update[i].Value = append(fields, push)
			return update
		}
	}
	return append(update, bson.E{Key: "$push", Value: bson.D{push}})
}

// Notify hands the events just written to document id to the relay. It never
// blocks: when the relay is saturated the sweep picks the events up later.
func (o *Outbox) Notify(id any, events ...eventbus.Event) {
	if len(events) == 0 {
		return
	}
	i := maphash.String(o.seed, docKey(id)) % uint64(len(o.notes))
	o.backlog.add(docKey(id), events...)
	o.track(events, true)
	select {
	case o.notes[i] <- note{id: id, events: events}:
	default:
		o.track(events, false)
		o.suspect.Store(true)
	}
}

// track marks events as the relay's (so the sweep leaves them alone) or not.
func (o *Outbox) track(events []eventbus.Event, relaying bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ev := range events {
		if relaying {
			o.inflight[ev.ID] = struct{}{}
		} else {
			delete(o.inflight, ev.ID)
		}
	}
}

func docKey(id any) string { return fmt.Sprint(id) }

// Backlog returns how many events this process knows to be stored and not yet
// confirmed by the broker, and the time of the oldest of them (zero when
// none). It reads no store: it counts the events this process wrote, plus
// those a sweep found due (seeded by the sweep at start, so a restarted
// process counts what its predecessor left). Events other live replicas
// wrote count only once a sweep here found them due, so with several
// replicas each bounds mostly its own backlog.
func (o *Outbox) Backlog() (pending int, oldest time.Time) { return o.backlog.size() }

// brokerReady reports whether the publisher can publish now.
func (o *Outbox) brokerReady() bool {
	r, ok := o.cfg.Publisher.(readier)
	return !ok || r.Ready()
}

// refreshOldest sets the oldest-pending gauge from the backlog (which sets it
// on every change too; this keeps the age growing between changes).
func (o *Outbox) refreshOldest() {
	_, oldest := o.backlog.size()
	age := 0.0
	if !oldest.IsZero() {
		age = max(time.Since(oldest).Seconds(), 0)
	}
	o.cfg.Metrics.OutboxOldest.WithLabelValues(o.cfg.Collection.Name()).Set(age)
}

// ClearWith lets a write the caller is about to make to document id also
// clear the events of id that the relay has published, sparing the relay a
// write of its own. It returns update with a $pullAll added (update must not
// touch the outbox otherwise: With's $push in the same update would
// conflict) and a func to call with whether the update matched; if it did not,
// the relay clears them as before.
func (o *Outbox) ClearWith(id any, update bson.D) (bson.D, func(matched bool)) {
	o.mu.Lock()
	h := o.held[docKey(id)]
	delete(o.held, docKey(id))
	o.mu.Unlock()
	if h == nil {
		return update, func(bool) {}
	}
	elems := make([]any, len(h.events))
	for i, ev := range h.events {
		elems[i] = ev
	}
	update = append(slices.Clone(update), bson.E{Key: "$pullAll", Value: bson.D{{Key: Field, Value: elems}}})
	return update, func(matched bool) {
		if matched {
			o.track(h.events, false)
			return
		}
		o.hold(h.id, h.events, time.Now())
	}
}

// Replaced is ClearWith for a write that replaces document id's whole
// outbox (for events where a newer one supersedes the older, such as a
// latest-value notification): the published events held for id count as
// cleared if that write matched. Call the returned func with whether it did.
func (o *Outbox) Replaced(id any) func(matched bool) {
	_, done := o.ClearWith(id, nil)
	return done
}

// hold keeps published events of a document for ClearWith until due.
func (o *Outbox) hold(id any, events []eventbus.Event, due time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := docKey(id)
	if h := o.held[k]; h != nil {
		h.events = append(h.events, events...)
		if due.Before(h.due) {
			h.due = due
		}
		return
	}
	o.held[k] = &heldEvents{id: id, events: events, due: due}
}

// removeTimeout bounds each removal of published events (one bulk write).
const removeTimeout = 5 * time.Second

// clearDue clears, with writes of the relay's own, the held events whose
// deadline passed (all of them with all set): one bulk write for many
// documents (removeAll). A document whose removal failed has its events
// left to the sweep, which republishes them. Once ctx ends the rest are held
// again, for Run's clearing at shutdown.
func (o *Outbox) clearDue(ctx context.Context, all bool) {
	now := time.Now()
	var due []*heldEvents
	o.mu.Lock()
	for k, h := range o.held {
		if all || !h.due.After(now) {
			due = append(due, h)
			delete(o.held, k)
		}
	}
	o.mu.Unlock()
	if len(due) == 0 {
		return
	}
	rs := make([]removal, len(due))
	for i, h := range due {
		rs[i] = removal{id: h.id, elems: asElems(h.events)}
	}
	errs := o.removeAll(ctx, rs, true)
	failed := 0
	var first error
	for i, h := range due {
		switch err := errs[i]; {
		case err == nil:
			o.track(h.events, false)
		case errors.Is(err, errStopped):
			o.hold(h.id, h.events, now)
		default:
			failed++
			first = cmp.Or(first, err)
			o.track(h.events, false)
		}
	}
	if failed > 0 {
		o.log.Warn("could not clear published events; they will be republished", zap.Error(first),
			zap.Int("documents", failed))
		o.suspect.Store(true)
	}
}

func (o *Outbox) relaying(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.inflight[id]
	return ok
}

// Run relays and sweeps until ctx ends, then flushes what is pending within
// flushTimeout so a clean shutdown leaves nothing behind.
func (o *Outbox) Run(ctx context.Context, flushTimeout time.Duration) error {
	for i, notes := range o.notes {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.relay(ctx, i, notes)
		}()
	}
	tick := time.NewTicker(o.cfg.SweepInterval)
	defer tick.Stop()
	var last time.Time      // when the last sweep started
	var pause time.Duration // how long after it the next may start
	sweepNow := func() {
		last = time.Now()
		if err := o.sweep(ctx, o.cfg.MinAge, true); err != nil && ctx.Err() == nil {
			o.log.Warn("outbox sweep failed", zap.Error(err))
		}
		// A sweep reads every document; when that is slow (a big
		// collection, a loaded store) wait longer, so sweeping takes at
		// most a fifth of the store's time.
		pause = 4 * time.Since(last)
	}
	sweepNow() // at once: a crash may have left events behind
	var clearTick <-chan time.Time
	if o.cfg.ClearDelay > 0 {
		t := time.NewTicker(max(o.cfg.ClearDelay/4, 10*time.Millisecond))
		defer t.Stop()
		clearTick = t.C
	}
	for {
		select {
		case <-clearTick:
			o.clearDue(ctx, false)
		case <-tick.C:
			o.refreshOldest()
			since := time.Since(last)
			if since < pause || (!o.suspect.Load() && since < o.cfg.IdleSweepInterval) {
				continue
			}
			if !o.brokerReady() {
				// Nothing could be published: the backlog waits in the
				// store, counted in memory, without a read of the collection.
				continue
			}
			sweepNow()
		case <-ctx.Done():
			o.wg.Wait()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			o.clearDue(fctx, true)
			if !o.brokerReady() {
				n, _ := o.backlog.size()
				o.log.Warn("broker unreachable at shutdown; the backlog stays in the store for the next start", zap.Int("events", n))
				return nil
			}
			// The relay has stopped: what it held is pending like the rest.
			if err := o.sweep(fctx, 0, false); err != nil {
				o.log.Warn("outbox flush at shutdown incomplete; the next start republishes", zap.Error(err))
				return err
			}
			return nil
		}
	}
}

// relay publishes notified events in batches: one pipelined publish for many
// documents, then, once the broker confirmed it, the removals (held for
// ClearDelay, or at once) in one bulk write for many documents.
// Up to RelayInFlight batches are out at once, published in order on one
// channel and settled in that order by a second goroutine, so a batch does
// not wait for the confirms of the one before. What it has published but not
// cleared when ctx ends stays held, and Run clears it at shutdown, so it is
// not published again at the next start.
func (o *Outbox) relay(ctx context.Context, worker int, notes chan note) {
	slots := make(chan struct{}, o.cfg.RelayInFlight)
	published := make(chan sentBatch, o.cfg.RelayInFlight)
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		// Once ctx ended, the confirms still on their way get removeTimeout
		// in all, so that the flush at shutdown does not publish again
		// what was confirmed.
		var grace context.Context
		cancel := func() {}
		defer func() { cancel() }()
		stopping := func() context.Context {
			if grace == nil {
				grace, cancel = context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
			}
			return grace
		}
		for b := range published {
			o.settle(ctx, b, stopping)
			<-slots
		}
	}()
	defer func() {
		close(published)
		<-settled
	}()
	for {
		// A free slot first: while every one is taken the notes wait
		// and the next batch grows.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var batch []note
		select {
		case n := <-notes:
			batch = append(batch, n)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < 256 {
			select {
			case n := <-notes:
				batch = append(batch, n)
			default:
				break more
			}
		}
		if !o.brokerReady() {
			// The broker is unreachable: the events stay in the backlog,
			// for the sweep once it is back, without a publish attempt or a
			// catch-up read per batch.
			for _, n := range batch {
				o.track(n.events, false)
			}
			o.suspect.Store(true)
			<-slots
			continue
		}
		batch = o.catchUp(ctx, o.unpublished(batch))
		events := inDocumentOrder(batch)
		o.sending(batch, true)
		wait, err := o.publish(ctx, worker, events)
		if err != nil {
			o.sending(batch, false)
			o.failed(batch, len(events), err)
			<-slots
			continue
		}
		published <- sentBatch{notes: batch, events: len(events), wait: wait}
	}
}

// sentBatch is a batch the relay published, waiting for its confirms.
type sentBatch struct {
	notes  []note
	events int
	wait   func(context.Context) error
}

// publish sends events on the publisher's channel lane, and returns what
// waits for their confirms; a publisher that cannot stream them confirms
// them first.
func (o *Outbox) publish(ctx context.Context, lane int, events []eventbus.Event) (func(context.Context) error, error) {
	if o.publishAsync != nil {
		return o.publishAsync(ctx, lane, events)
	}
	if err := o.cfg.Publisher.Publish(ctx, events...); err != nil {
		return nil, err
	}
	return func(context.Context) error { return nil }, nil
}

// sending marks a batch's events as published and awaiting their confirms
// (or not any more).
func (o *Outbox) sending(batch []note, on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range batch {
		k := docKey(n.id)
		for _, ev := range n.events {
			if on {
				if o.sent[k] == nil {
					o.sent[k] = map[string]struct{}{}
				}
				o.sent[k][ev.ID] = struct{}{}
				continue
			}
			delete(o.sent[k], ev.ID)
		}
		if len(o.sent[k]) == 0 {
			delete(o.sent, k)
		}
	}
}

// isSent reports whether event id of document k is published and awaiting
// its confirm.
func (o *Outbox) isSent(k, id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.sent[k][id]
	return ok
}

// failed gives a batch that was not confirmed back to the sweep; a later
// note of one of its documents brings its events along (catchUp), in order.
func (o *Outbox) failed(batch []note, events int, err error) {
	o.log.Warn("relay publish failed; the sweep will retry", zap.Error(err), zap.Int("events", events))
	for _, n := range batch {
		o.track(n.events, false)
		o.track(n.notified, false)
	}
	o.suspect.Store(true)
}

// settle waits for a published batch's confirms, then clears its events: it
// holds them for the document's next write (ClearWith), or clears them now,
// all due documents' removals in one bulk write (clearDue). A catch-up
// note's events are removed at once, in one bulk write for the batch,
// exactly as read. Once ctx ends it waits for the confirms within the
// context stopping returns.
func (o *Outbox) settle(ctx context.Context, b sentBatch, stopping func() context.Context) {
	err := b.wait(ctx)
	if ctx.Err() != nil {
		err = b.wait(stopping())
	}
	// Confirmed or failed, they are out of flight: a failed batch's events
	// are older events for the catch-up of the next note of their document.
	if err != nil {
		o.sending(b.notes, false)
		o.failed(b.notes, b.events, err)
		return
	}
	due := time.Now().Add(o.cfg.ClearDelay)
	var rs []removal
	var caught []note // notes removed exactly as read
	for _, n := range b.notes {
		o.backlog.done(eventIDs(n.events)...)
		if n.raw == nil {
			o.hold(n.id, n.events, due)
			continue
		}
		if n.swept {
			o.drained.Add(float64(len(n.events)))
		} else {
			o.drained.Add(float64(max(len(n.events)-n.fresh, 0)))
		}
		if len(n.raw) > 0 {
			rs = append(rs, removal{id: n.id, elems: n.raw})
		}
		caught = append(caught, n)
	}
	if len(rs) > 0 {
		if err := failedRemovals(o.removeAll(context.WithoutCancel(ctx), rs, true)); err != nil {
			o.log.Warn("could not clear published events; they will be republished", zap.Error(err))
			o.suspect.Store(true)
		}
	}
	for _, n := range caught {
		o.track(n.events, false)
		o.track(n.notified, false)
	}
	o.sending(b.notes, false)
	if o.cfg.ClearDelay == 0 {
		o.clearDue(ctx, false)
	}
}

// unpublished drops from the sweep's notes the events this process has
// published since the sweep read them (a catch-up did), or is publishing,
// so they are not published twice.
func (o *Outbox) unpublished(batch []note) []note {
	out := batch[:0]
	for _, n := range batch {
		if !n.swept {
			out = append(out, n)
			continue
		}
		kept := note{id: n.id, raw: []any{}, swept: true}
		for i, ev := range n.events {
			switch {
			case o.isSent(docKey(n.id), ev.ID):
				// In flight: its batch's settling untracks it.
			case o.backlog.tracked(ev.ID):
				kept.events = append(kept.events, ev)
				kept.raw = append(kept.raw, n.raw[i])
			default:
				o.track([]eventbus.Event{ev}, false)
			}
		}
		if len(kept.events) > 0 {
			out = append(out, kept)
		}
	}
	return out
}

// inDocumentOrder lists a batch's events for one publish: document by
// document, each document's events in version order (a document's notes may
// have arrived out of order: a write's before the sweep's older events).
func inDocumentOrder(batch []note) []eventbus.Event {
	var keys []string
	byDoc := map[string][]eventbus.Event{}
	for _, n := range batch {
		k := docKey(n.id)
		if _, ok := byDoc[k]; !ok {
			keys = append(keys, k)
		}
		byDoc[k] = append(byDoc[k], n.events...)
	}
	var events []eventbus.Event
	for _, k := range keys {
		evs := byDoc[k]
		slices.SortStableFunc(evs, func(a, b eventbus.Event) int { return cmp.Compare(a.Version, b.Version) })
		events = append(events, evs...)
	}
	return events
}

// catchUp replaces the notes of each document that still has older events in
// the backlog (a publish failed while the broker was down, a crash left them)
// with one note holding the document's whole outbox in version order, so the
// new events do not overtake the old ones. Events the relay has published
// (awaiting their confirms, or held for clearing) are left out. If the document cannot be read, the
// notes go as they are (the sweep publishes the rest later).
func (o *Outbox) catchUp(ctx context.Context, batch []note) []note {
	type docNotes struct {
		first int
		min   int64
		ids   map[string]bool
	}
	docs := map[string]*docNotes{}
	for i, n := range batch {
		k := docKey(n.id)
		d := docs[k]
		if d == nil {
			d = &docNotes{first: i, min: n.events[0].Version, ids: map[string]bool{}}
			docs[k] = d
		}
		for _, ev := range n.events {
			d.min = min(d.min, ev.Version)
			d.ids[ev.ID] = true
		}
	}
	o.mu.Lock()
	for k, d := range docs {
		for id := range o.sent[k] {
			d.ids[id] = true
		}
	}
	o.mu.Unlock()
	replaced := map[string]note{}
	for k, d := range docs {
		if !o.backlog.olderThan(k, d.min, d.ids) {
			continue
		}
		n, err := o.readPending(ctx, batch[d.first].id)
		if err != nil {
			o.log.Warn("could not read a document's older events; the sweep will publish them", zap.Error(err))
			o.suspect.Store(true)
			continue
		}
		for _, m := range batch {
			if docKey(m.id) == k {
				n.notified = append(n.notified, m.events...)
				if !m.swept {
					n.fresh += len(m.events)
				}
			}
		}
		replaced[k] = n
	}
	if len(replaced) == 0 {
		return batch
	}
	out := make([]note, 0, len(batch))
	for i, n := range batch {
		k := docKey(n.id)
		r, ok := replaced[k]
		switch {
		case !ok:
			out = append(out, n)
		case docs[k].first == i:
			out = append(out, r)
		}
	}
	return out
}

// readPending reads a document's outbox: the events not published by this
// relay yet (nor being published), in version order, with their stored form.
func (o *Outbox) readPending(ctx context.Context, id any) (note, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	var doc pendingDoc
	err := o.cfg.Collection.FindOne(rctx, bson.D{{Key: "_id", Value: id}},
		options.FindOne().SetProjection(bson.D{{Key: Field, Value: 1}})).Decode(&doc)
	if err != nil {
		return note{}, err
	}
	published := map[string]bool{}
	o.mu.Lock()
	if h := o.held[docKey(id)]; h != nil {
		for _, ev := range h.events {
			published[ev.ID] = true
		}
	}
	for evID := range o.sent[docKey(id)] {
		published[evID] = true
	}
	o.mu.Unlock()
	type stored struct {
		ev  eventbus.Event
		raw bson.Raw
	}
	var due []stored
	for _, raw := range doc.Outbox {
		var ev eventbus.Event
		if err := bson.Unmarshal(raw, &ev); err != nil {
			return note{}, fmt.Errorf("document %v: undecodable outbox entry: %w", id, err)
		}
		if !published[ev.ID] {
			due = append(due, stored{ev, raw})
		}
	}
	slices.SortStableFunc(due, func(a, b stored) int { return cmp.Compare(a.ev.Version, b.ev.Version) })
	n := note{id: id, raw: []any{}}
	for _, d := range due {
		n.events = append(n.events, d.ev)
		n.raw = append(n.raw, d.raw)
	}
	return n, nil
}

func eventIDs(events []eventbus.Event) []string {
	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = ev.ID
	}
	return ids
}

// removal is one document's confirmed events to remove from its outbox:
// the events as encoded by With (asElems), which is how they were stored, or
// their raw BSON exactly as read from the document.
type removal struct {
	id    any
	elems []any
}

func asElems(events []eventbus.Event) []any {
	elems := make([]any, len(events))
	for i, ev := range events {
		elems[i] = ev
	}
	return elems
}

// A bulk removal holds at most removeChunkDocs documents and, past its first,
// removeChunkElems events, so each stays a modest command within removeTimeout.
const (
	removeChunkDocs  = 500
	removeChunkElems = 8192
)

// errStopped is the result of a removal not tried because ctx ended.
var errStopped = errors.New("outbox: removal not tried: stopping")

// removeAll removes confirmed events from many documents' outboxes: one
// unordered bulk write (a single update command, one $pullAll statement per
// document) per chunk, each chunk with its own removeTimeout, as removals
// queue behind the store's other writes. It returns each removal's error:
// nil once removed, the statement's own error if the store refused only it,
// the chunk's error if the whole command failed (the store did not answer:
// the removals of later chunks then fail with it untried, so a store that
// stopped answering holds the caller up once), errStopped if ctx ended before
// its chunk was sent. detach runs a chunk to its end once sent (only its
// timeout bounds it); otherwise ctx's end cancels it, and it fails with
// errStopped.
//
// $pullAll with the exact elements is what MongoDB and FerretDB v1 agree on;
// FerretDB v1 ignores $pull conditions such as {id: ...} (it only removes
// elements equal to the value given), silently.
func (o *Outbox) removeAll(ctx context.Context, rs []removal, detach bool) []error {
	errs := make([]error, len(rs))
	var broken error
	for start := 0; start < len(rs); {
		end, elems := start, 0
		for end < len(rs) && end-start < removeChunkDocs && (end == start || elems+len(rs[end].elems) <= removeChunkElems) {
			elems += len(rs[end].elems)
			end++
		}
		chunk := rs[start:end]
		if broken == nil && ctx.Err() != nil {
			broken = errStopped
		}
		if broken != nil {
			for i := start; i < end; i++ {
				errs[i] = broken
			}
			start = end
			continue
		}
		models := make([]mongo.WriteModel, len(chunk))
		for i, r := range chunk {
			models[i] = mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: r.id}}).
				SetUpdate(bson.D{{Key: "$pullAll", Value: bson.D{{Key: Field, Value: r.elems}}}})
		}
		parent := ctx
		if detach {
			parent = context.WithoutCancel(ctx)
		}
		rctx, cancel := context.WithTimeout(parent, removeTimeout)
		_, err := o.cfg.Collection.BulkWrite(rctx, models, options.BulkWrite().SetOrdered(false))
		cancel()
		var bwe mongo.BulkWriteException
		switch {
		case err == nil:
		case errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0:
			// The store answered: every statement but those it names applied.
			for _, we := range bwe.WriteErrors {
				if we.Index >= 0 && we.Index < len(chunk) {
					errs[start+we.Index] = fmt.Errorf("document %v: %w", chunk[we.Index].id, we)
				}
			}
		default:
			if !detach && ctx.Err() != nil {
				err = errStopped
			}
			broken = err
			for i := start; i < end; i++ {
				errs[i] = err
			}
		}
		start = end
	}
	return errs
}

// failedRemovals sums up removeAll's result: nil if every removal was done.
func failedRemovals(errs []error) error {
	var first error
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
			first = cmp.Or(first, err)
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d documents' events not cleared: %w", n, len(errs), first)
}

type pendingDoc struct {
	ID     any        `bson:"_id"`
	Outbox []bson.Raw `bson:"outbox"`
}

// sweep republishes the pending events older than minAge, those of one
// document in version order, and adds what it finds due to the backlog count.
// With relaying (the relay runs) it skips the events the relay holds and
// hands the due ones to the relay worker of their document, which publishes
// a document's events in order and, in this process, once; otherwise (a
// flush) it publishes them itself, many documents per pipelined publish.
// While the broker is unreachable (or once a publish failed) it only counts:
// every event not in the relay joins the backlog, young ones too, since
// nobody can be publishing them. After a complete read it drops from the
// backlog what it did not find. It clears suspect, and sets it again if it
// failed, only counted or left events for another replica's relay.
func (o *Outbox) sweep(ctx context.Context, minAge time.Duration, relaying bool) (err error) {
	// Cleared first, so that a failure during the sweep keeps it set.
	o.suspect.Store(false)
	leftYoung := false
	publishing := o.brokerReady()
	defer func() {
		if err != nil || leftYoung || !publishing {
			o.suspect.Store(true)
		}
		o.refreshOldest()
	}()
	mark := o.backlog.mark()
	found := map[string]bool{}
	cur, err := o.cfg.Collection.Find(ctx, bson.D{{Key: Field + ".0", Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: Field, Value: 1}}))
	if err != nil {
		return err
	}
	defer cur.Close(ctx)
	var errs []error
	var batch []note
	var events []eventbus.Event
	flush := func() {
		if len(events) == 0 {
			return
		}
		defer func() { batch, events = batch[:0], events[:0] }()
		if !publishing {
			return
		}
		if err := o.cfg.Publisher.Publish(ctx, events...); err != nil {
			errs = append(errs, err)
			publishing = false // the rest of the sweep only counts
			return
		}
		o.drained.Add(float64(len(events)))
		rs := make([]removal, 0, len(batch))
		for _, n := range batch {
			o.backlog.done(eventIDs(n.events)...)
			rs = append(rs, removal{id: n.id, elems: n.raw})
		}
		if err := failedRemovals(o.removeAll(ctx, rs, false)); err != nil {
			errs = append(errs, err)
		}
	}
	for cur.Next(ctx) {
		var doc pendingDoc
		if err := cur.Decode(&doc); err != nil {
			errs = append(errs, err)
			continue
		}
		type stored struct {
			ev  eventbus.Event
			raw bson.Raw
		}
		var due []stored
		for _, raw := range doc.Outbox {
			var ev eventbus.Event
			if err := bson.Unmarshal(raw, &ev); err != nil {
				errs = append(errs, fmt.Errorf("document %v: undecodable outbox entry: %w", doc.ID, err))
				continue
			}
			found[ev.ID] = true
			switch {
			case relaying && o.relaying(ev.ID):
			case publishing && time.Since(ev.Time) < minAge:
				leftYoung = true
			default:
				due = append(due, stored{ev, raw})
			}
		}
		if len(due) == 0 {
			continue
		}
		slices.SortStableFunc(due, func(a, b stored) int { return cmp.Compare(a.ev.Version, b.ev.Version) })
		n := note{id: doc.ID}
		for _, d := range due {
			n.events = append(n.events, d.ev)
			n.raw = append(n.raw, d.raw)
		}
		o.backlog.add(docKey(doc.ID), n.events...)
		if relaying {
			// Published since the read (a catch-up): nothing to hand out
			// (unpublished filters the rest when the relay gets to them).
			if !slices.ContainsFunc(n.events, func(ev eventbus.Event) bool { return o.backlog.tracked(ev.ID) }) {
				continue
			}
			if publishing = o.brokerReady(); !publishing {
				continue // the rest only counts
			}
			n.swept = true
			o.track(n.events, true)
			select {
			case o.notes[maphash.String(o.seed, docKey(doc.ID))%uint64(len(o.notes))] <- n:
			case <-ctx.Done():
				o.track(n.events, false)
				return ctx.Err()
			}
			continue
		}
		batch = append(batch, n)
		events = append(events, n.events...)
		if len(events) >= o.cfg.SweepBatch {
			flush()
		}
	}
	flush()
	if err := cur.Err(); err != nil {
		errs = append(errs, err)
	} else {
		o.backlog.reconcile(mark, found)
	}
	return errors.Join(errs...)
}
