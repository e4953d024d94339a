package rebuild

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/score/mongodb"
	"go.uber.org/zap"
)

const maxCASAttempts = 200

// Config configures a Router; zero values take the defaults.
type Config struct {
	// Store is the read model the router applies events to.
	Store *mongodb.Store
	// Publisher sends snapshot.requested; only StartRebuild needs it.
	Publisher outbox.Publisher
	Logger    *zap.Logger
	// MetaInterval is how often Run reads the meta document and drives a
	// rebuild forward (default 500ms).
	MetaInterval time.Duration
	// RebuildTimeout fails a rebuild that has not switched by then (default 30m).
	RebuildTimeout time.Duration
}

// Router applies person's events to the read model, to the active collection
// and, while a rebuild runs, to the rebuild's collection too, and runs
// rebuilds.
type Router struct {
	cfg   Config
	store *mongodb.Store
	log   *zap.Logger

	mu        sync.Mutex
	routeMeta mongodb.Meta // the meta document Apply routes events by
	routeAt   time.Time    // when the read of routeMeta started
	applying  atomic.Bool  // an event was applied since Run last read ahead
	metaRead  *metaRead    // the meta read under way, if any
	metaNext  *metaRead    // the one to start after it, if any
}

// New returns a router applying events to cfg.Store.
func New(cfg Config) *Router {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MetaInterval <= 0 {
		cfg.MetaInterval = 500 * time.Millisecond
	}
	if cfg.RebuildTimeout <= 0 {
		cfg.RebuildTimeout = 30 * time.Minute
	}
	return &Router{cfg: cfg, store: cfg.Store, log: cfg.Logger}
}

// metaMaxAge is how old the meta document Apply routes an event by may be
// (counted from the start of its read). StartRebuild waits twice as long after
// starting a rebuild before it asks person for snapshots, so every event
// written after a snapshot is routed by a meta document that knows the rebuild.
const metaMaxAge = 250 * time.Millisecond

// readAhead is how often Run reads the meta document while events are being
// applied, so that routingMeta seldom has to read it in an event's path.
const readAhead = metaMaxAge / 3

// readAheadLoop keeps the meta document young for routingMeta while events
// come in, until ctx ends.
func (s *Router) readAheadLoop(ctx context.Context) {
	tick := time.NewTicker(readAhead)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if s.applying.Swap(false) {
				_, _, _ = s.freshMeta(ctx) // a failed read leaves it to routingMeta
			}
		case <-ctx.Done():
			return
		}
	}
}

// routingMeta returns the meta document to route an event by and when its
// read started: the last one read, if young enough, else a fresh read.
func (s *Router) routingMeta(ctx context.Context) (mongodb.Meta, time.Time, error) {
	return s.metaSince(ctx, time.Now().Add(-metaMaxAge), true)
}

// metaSince returns a meta document whose read started after t, and when:
// the last one read (if last), the one being read if it started after t, or
// else the next read, which starts once the one under way is done. Callers
// share reads, so applies that finish together cost one or two reads, not
// one each.
func (s *Router) metaSince(ctx context.Context, t time.Time, last bool) (mongodb.Meta, time.Time, error) {
	s.mu.Lock()
	if last && s.routeAt.After(t) {
		m, at := s.routeMeta, s.routeAt
		s.mu.Unlock()
		return m, at, nil
	}
	cur := s.metaRead
	join := s.metaNext
	if cur != nil && cur.start.After(t) {
		join = cur
	}
	if join != nil {
		s.mu.Unlock()
		return join.wait(ctx)
	}
	next := &metaRead{done: make(chan struct{})}
	s.metaNext = next
	s.mu.Unlock()
	if cur != nil {
		select {
		case <-cur.done:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	s.metaNext = nil
	next.start = time.Now()
	s.metaRead = next
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		next.err = fmt.Errorf("%w: %v", mongodb.ErrUnavailable, err)
	} else {
		next.m, _, next.err = s.freshMeta(ctx)
	}
	close(next.done)
	s.mu.Lock()
	if s.metaRead == next {
		s.metaRead = nil
	}
	s.mu.Unlock()
	return next.m, next.start, next.err
}

// metaRead is a read of the meta document for metaSince; start, m and err
// are set before done closes.
type metaRead struct {
	start time.Time
	done  chan struct{}
	m     mongodb.Meta
	err   error
}

func (r *metaRead) wait(ctx context.Context) (mongodb.Meta, time.Time, error) {
	select {
	case <-r.done:
		return r.m, r.start, r.err
	case <-ctx.Done():
		return mongodb.Meta{}, time.Time{}, fmt.Errorf("%w: %v", mongodb.ErrUnavailable, ctx.Err())
	}
}

// freshMeta reads the meta document, keeps it for routingMeta and has the
// store follow a switch it shows.
func (s *Router) freshMeta(ctx context.Context) (mongodb.Meta, time.Time, error) {
	start := time.Now()
	m, err := s.store.ReadMeta(ctx)
	if err != nil {
		return m, start, err
	}
	s.remember(m, start)
	s.store.Follow(m)
	return m, start, nil
}

// remember keeps m, read starting at start, for routingMeta.
func (s *Router) remember(m mongodb.Meta, start time.Time) {
	s.mu.Lock()
	if start.After(s.routeAt) {
		s.routeMeta, s.routeAt = m, start
	}
	s.mu.Unlock()
}

// parseCPF parses an event subject.
func parseCPF(subject string) (int64, error) {
	cpf, err := strconv.ParseInt(subject, 10, 64)
	if err != nil || cpf <= 0 {
		return 0, fmt.Errorf("%w: subject %q is not a cpf", eventbus.ErrMalformed, subject)
	}
	return cpf, nil
}

// Apply applies one event exactly once to its cpf's document: in the active
// collection and, while a rebuild runs, in the rebuild's collection too. The
// meta document it routes by is at most metaMaxAge old, so an event is never
// applied only to the old collection once a rebuild has asked for snapshots
// (see the package documentation).
//
// A switch may happen while the event is being applied by a meta document
// read before it: the event then reaches the new collection without the
// score.changed and the wake-up that only the active collection gives, and
// the replaced one may publish a score.changed from its own, possibly wrong,
// score after the switching replica published the rebuilt scores. So when a
// switch could have happened since the routing read (a rebuild was running,
// or the apply took longer than a rebuild needs at least to start and
// switch), Apply reads the meta document again once its writes are done. If
// the routing changed, it applies the event again by the fresh one (a
// duplicate changes nothing) and, when the active collection changed,
// republishes the cpf's score from it: that score.changed is newer than any
// the replaced collection got from this event. If the routing did not change,
// the writes came before any switch, and the scores the switching replica
// publishes after it cover them.
func (s *Router) Apply(ctx context.Context, ev eventbus.Event) error {
	return s.ApplyBatch(ctx, []eventbus.Event{ev})
}

// ApplyBatch applies events of one cpf as Apply applies one, with one write
// per collection for all of them and one score.changed for their result. It
// fails as a whole (nothing written) if any of them is malformed.
func (s *Router) ApplyBatch(ctx context.Context, evs []eventbus.Event) error {
	if len(evs) == 0 {
		return nil
	}
	cpf, err := parseCPF(evs[0].Subject)
	if err != nil {
		return err
	}
	s.applying.Store(true)
	for _, ev := range evs[1:] {
		if ev.Subject != evs[0].Subject {
			return fmt.Errorf("rebuild: a batch of subjects %q and %q", evs[0].Subject, ev.Subject)
		}
	}
	m, at, err := s.routingMeta(ctx)
	if err != nil {
		return err
	}
	republish := false
	for range maxCASAttempts {
		if err := s.store.Apply(ctx, m.Active, mongodb.Live, cpf, evs); err != nil {
			return err
		}
		target := rebuildTarget(m)
		if target != "" {
			if err := s.store.Apply(ctx, target, mongodb.Rebuilding, cpf, evs); err != nil {
				return err
			}
		}
		if republish {
			if err := s.store.Republish(ctx, m.Active, cpf); err != nil {
				return err
			}
		}
		if target == "" && time.Since(at) < switchAfter {
			return nil
		}
		fresh, freshAt, err := s.metaSince(ctx, time.Now(), false)
		if err != nil {
			return err
		}
		if fresh.Active == m.Active && rebuildTarget(fresh) == target {
			return nil
		}
		republish = fresh.Active != m.Active
		m, at = fresh, freshAt
	}
	return fmt.Errorf("%w: the read model kept switching while applying an event to cpf %d", mongodb.ErrUnavailable, cpf)
}

// switchAfter is the least time from a meta document without a running
// rebuild to a switch: StartRebuild waits that long before it even asks
// person for snapshots.
const switchAfter = 2 * metaMaxAge

// rebuildTarget is the collection of m's running rebuild, if any, that Apply
// writes to besides the active one.
func rebuildTarget(m mongodb.Meta) string {
	if r := m.Rebuild; r.Running() && r.Target != m.Active {
		return r.Target
	}
	return ""
}

// Run follows switches of the active collection made by any replica, keeps
// the meta document that Apply routes by young while events come in, and
// drives a running rebuild forward, until ctx ends.
func (s *Router) Run(ctx context.Context) error {
	aheadDone := make(chan struct{})
	go func() { defer close(aheadDone); s.readAheadLoop(ctx) }()

	tick := time.NewTicker(s.cfg.MetaInterval)
	defer tick.Stop()
	for {
		if m, _, err := s.freshMeta(ctx); err == nil {
			if m.Rebuild.Running() {
				if err := s.advance(ctx, m); err != nil && ctx.Err() == nil {
					s.log.Warn("rebuild check failed; will retry", zap.Error(err))
				}
			}
		} else if ctx.Err() == nil {
			s.log.Warn("cannot read the read model's meta document", zap.Error(err))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			<-aheadDone
			return nil
		}
	}
}
