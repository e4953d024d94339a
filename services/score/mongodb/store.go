package mongodb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/score"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// DefaultCollection holds the read model until the first rebuild.
const DefaultCollection = "scores"

// Source is the CloudEvents source of score's events.
const Source = "/score"

// fromSnapshot marks, in a rebuild's collection, a document a snapshot was applied to.
const fromSnapshot = "from_snapshot"

const maxCASAttempts = 200

// clearDelay is how long published score.changed events wait in a document
// for its next write to clear them.
const clearDelay = time.Second

// retireAfter is how long the relay of a replaced collection keeps running.
const retireAfter = 3 * time.Second

// ErrUnavailable: the store cannot be used now.
var ErrUnavailable = errors.New("read model store unavailable")

// Config configures a Store; zero values take the defaults.
type Config struct {
	DB *mongo.Database
	// Publisher relays score.changed (through the outbox) and sends
	// snapshot.requested. Only Run and StartRebuild need it.
	Publisher outbox.Publisher
	Logger    *zap.Logger
	// WatchInterval is how often the shared read-your-writes watcher looks for
	// writes by other replicas while somebody waits (default 100ms).
	WatchInterval time.Duration
	// MetaInterval is how often Run reads the meta document and drives a
	// rebuild forward (default 500ms).
	MetaInterval time.Duration
	// RebuildTimeout fails a rebuild that has not switched by then (default 30m).
	RebuildTimeout time.Duration
	// OutboxSweep is the outbox's sweep interval (default the outbox's).
	OutboxSweep time.Duration
	// FlushTimeout bounds the outbox flush at shutdown (default 5s).
	FlushTimeout time.Duration
}

// Store applies events to the read model and reads it.
type Store struct {
	cfg  Config
	db   *mongo.Database
	meta *mongo.Collection
	hub  *Hub
	log  *zap.Logger

	mu      sync.Mutex
	active  string          // collection serving the read model, as last seen
	seenRev int64           // revision of the meta document active comes from
	runCtx  context.Context // set while Run runs
	relays  map[string]context.CancelFunc
	obs     map[string]*outbox.Outbox
	relayWG sync.WaitGroup

	cache docCache

	routeMeta metaDoc     // the meta document Apply routes events by
	routeAt   time.Time   // when the read of routeMeta started
	applying  atomic.Bool // an event was applied since Run last read ahead
	metaRead  *metaRead   // the meta read under way, if any
	metaNext  *metaRead   // the one to start after it, if any
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
func (s *Store) readAheadLoop(ctx context.Context) {
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
func (s *Store) routingMeta(ctx context.Context) (metaDoc, time.Time, error) {
	return s.metaSince(ctx, time.Now().Add(-metaMaxAge), true)
}

// metaSince returns a meta document whose read started after t, and when:
// the last one read (if last), the one being read if it started after t, or
// else the next read, which starts once the one under way is done. Callers
// share reads, so applies that finish together cost one or two reads, not
// one each.
func (s *Store) metaSince(ctx context.Context, t time.Time, last bool) (metaDoc, time.Time, error) {
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
		next.err = fmt.Errorf("%w: %v", ErrUnavailable, err)
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
	m     metaDoc
	err   error
}

func (r *metaRead) wait(ctx context.Context) (metaDoc, time.Time, error) {
	select {
	case <-r.done:
		return r.m, r.start, r.err
	case <-ctx.Done():
		return metaDoc{}, time.Time{}, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// freshMeta reads the meta document, keeps it for routingMeta and follows a
// switch it shows.
func (s *Store) freshMeta(ctx context.Context) (metaDoc, time.Time, error) {
	start := time.Now()
	m, err := s.readMeta(ctx)
	if err != nil {
		return m, start, err
	}
	s.remember(m, start)
	s.observe(m)
	return m, start, nil
}

// remember keeps m, read starting at start, for routingMeta.
func (s *Store) remember(m metaDoc, start time.Time) {
	s.mu.Lock()
	if start.After(s.routeAt) {
		s.routeMeta, s.routeAt = m, start
	}
	s.mu.Unlock()
}

// New returns a store on cfg.DB.
func New(cfg Config) *Store {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MetaInterval <= 0 {
		cfg.MetaInterval = 500 * time.Millisecond
	}
	if cfg.RebuildTimeout <= 0 {
		cfg.RebuildTimeout = 30 * time.Minute
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 5 * time.Second
	}
	s := &Store{cfg: cfg, db: cfg.DB, meta: cfg.DB.Collection(MetaCollection), log: cfg.Logger,
		relays: map[string]context.CancelFunc{}, obs: map[string]*outbox.Outbox{}}
	s.hub = NewHub(cfg.WatchInterval, s.versions)
	return s
}

// stored is a document as the collection holds it.
type stored struct {
	score.Document `bson:",inline"`
	FromSnapshot   bool `bson:"from_snapshot,omitempty"`
}

func (s *Store) load(ctx context.Context, coll *mongo.Collection, cpf int64) (stored, bool, error) {
	st := stored{Document: score.NewDocument(cpf)}
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: cpf}}, options.FindOne().SetProjection(bson.D{{Key: outbox.Field, Value: 0}})).Decode(&st)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return stored{Document: score.NewDocument(cpf)}, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	fill(&st)
	return st, true, nil
}

// fill gives a decoded document the maps Apply writes to.
func fill(st *stored) {
	if st.Items == nil {
		st.Items = map[string]score.Item{}
	}
	if st.Removed == nil {
		st.Removed = map[string]int64{}
	}
}

// collection returns the active collection, reading the meta document the
// first time.
func (s *Store) collection(ctx context.Context) (*mongo.Collection, error) {
	s.mu.Lock()
	name := s.active
	s.mu.Unlock()
	if name == "" {
		m, err := s.readMeta(ctx)
		if err != nil {
			return nil, err
		}
		s.observe(m)
		name = m.Active
	}
	return s.db.Collection(name), nil
}

// Get returns the read model of a cpf; ErrNotFound when no live person is known.
func (s *Store) Get(ctx context.Context, cpf int64) (score.Document, error) {
	coll, err := s.collection(ctx)
	if err != nil {
		return score.Document{}, err
	}
	st, found, err := s.load(ctx, coll, cpf)
	if err != nil {
		return st.Document, err
	}
	if !found || !st.Live() {
		return st.Document, score.ErrNotFound
	}
	return st.Document, nil
}

// CPF parses an event subject.
func CPF(subject string) (int64, error) {
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
// (see rebuild.go).
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
func (s *Store) Apply(ctx context.Context, ev eventbus.Event) error {
	return s.ApplyBatch(ctx, []eventbus.Event{ev})
}

// ApplyBatch applies events of one cpf as Apply applies one, with one write
// per collection for all of them and one score.changed for their result. It
// fails as a whole (nothing written) if any of them is malformed.
func (s *Store) ApplyBatch(ctx context.Context, evs []eventbus.Event) error {
	if len(evs) == 0 {
		return nil
	}
	cpf, err := CPF(evs[0].Subject)
	if err != nil {
		return err
	}
	s.applying.Store(true)
	for _, ev := range evs[1:] {
		if ev.Subject != evs[0].Subject {
			return fmt.Errorf("mongodb: a batch of subjects %q and %q", evs[0].Subject, ev.Subject)
		}
	}
	m, at, err := s.routingMeta(ctx)
	if err != nil {
		return err
	}
	republish := false
	for range maxCASAttempts {
		if err := s.applyTo(ctx, m.Active, cpf, evs, true); err != nil {
			return err
		}
		target := rebuildTarget(m)
		if target != "" {
			if err := s.applyTo(ctx, target, cpf, evs, false); err != nil {
				return err
			}
		}
		if republish {
			if err := s.republishScore(ctx, m.Active, cpf); err != nil {
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
	return fmt.Errorf("%w: the read model kept switching while applying an event to cpf %d", ErrUnavailable, cpf)
}

// switchAfter is the least time from a meta document without a running
// rebuild to a switch: StartRebuild waits that long before it even asks
// person for snapshots.
const switchAfter = 2 * metaMaxAge

// rebuildTarget is the collection of m's running rebuild, if any, that Apply
// writes to besides the active one.
func rebuildTarget(m metaDoc) string {
	if r := m.Rebuild; r.Running() && r.Target != m.Active {
		return r.Target
	}
	return ""
}

// nextRev is the revision after rev: it grows by at least one and follows the
// clock, so that score.changed versions (the revision) keep growing for a cpf
// when a rebuilt collection, with fewer changes behind it, takes over.
func nextRev(rev int64) int64 {
	return max(rev+1, time.Now().UnixMicro())
}

// applyTo applies evs to one collection. The active collection (primary)
// publishes score.changed and wakes readers; a rebuild's collection marks the
// documents a snapshot reached.
func (s *Store) applyTo(ctx context.Context, name string, cpf int64, evs []eventbus.Event, primary bool) error {
	coll := s.db.Collection(name)
	for attempt := range maxCASAttempts {
		st, found := s.cache.get(name, cpf)
		if !found || attempt > 0 {
			var err error
			if st, found, err = s.load(ctx, coll, cpf); err != nil {
				return err
			}
		}
		// st may be the cache's (read-only): Apply works on a copy.
		d := st.Document
		d.Items, d.Removed = maps.Clone(st.Items), maps.Clone(st.Removed)
		d.Applied.Ahead = slices.Clone(st.Applied.Ahead)
		before, wasLive, rev := d.Score, d.Live(), d.Rev
		changed, snapshot := false, false
		for _, ev := range evs {
			c, err := score.Apply(&d, ev)
			if err != nil {
				return err
			}
			changed = changed || c
			snapshot = snapshot || ev.Type == contract.PersonSnapshot
		}
		mark := !primary && snapshot && !st.FromSnapshot
		if !changed && !mark {
			return nil
		}
		d.Rev = nextRev(rev)
		if changed {
			d.UpdatedAt = time.Now().UTC()
		}
		var events []eventbus.Event
		if primary && (d.Score != before || d.Live() != wasLive) {
			out, err := scoreChanged(ctx, d)
			if err != nil {
				return err
			}
			events = append(events, out)
		}
		next := stored{Document: d, FromSnapshot: st.FromSnapshot || mark}
		var ok bool
		var err error
		if found {
			ok, err = s.writeChange(ctx, coll, st, next, rev, events)
		} else {
			ok, err = s.write(ctx, coll, next, false, rev, events)
		}
		if err != nil {
			return err
		}
		if ok {
			if primary {
				s.notify(name, cpf, d.Version, events)
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	return fmt.Errorf("%w: too much contention on cpf %d", ErrUnavailable, cpf)
}

func scoreChanged(ctx context.Context, d score.Document) (eventbus.Event, error) {
	return eventbus.NewEvent(ctx, Source, contract.ScoreChanged, contract.Subject(d.CPF), d.Rev,
		contract.ScoreChangedData{CPF: d.CPF, Score: d.Score, Live: d.Live(), Version: d.Version})
}

// notify hands new score.changed events to the collection's relay and wakes
// the readers of cpf waiting for version.
func (s *Store) notify(name string, cpf, version int64, events []eventbus.Event) {
	if len(events) > 0 {
		s.mu.Lock()
		ob := s.obs[name]
		s.mu.Unlock()
		if ob != nil {
			ob.Notify(cpf, events...)
		}
	}
	s.hub.Notify(cpf, version)
}

// write stores st if nobody changed it since revision rev; false means retry.
// The cache follows: it gets st when written, loses the cpf otherwise.
func (s *Store) write(ctx context.Context, coll *mongo.Collection, st stored, found bool, rev int64, events []eventbus.Event) (bool, error) {
	raw, err := bson.Marshal(st)
	if err != nil {
		return false, err
	}
	ok, err := s.writeRaw(ctx, coll, st.CPF, raw, found, rev, events)
	s.cached(coll.Name(), st, ok)
	return ok, err
}

// cached keeps st as the cpf's document after a successful write, and
// forgets the cpf after a failed one.
func (s *Store) cached(coll string, st stored, ok bool) {
	if ok {
		s.cache.put(coll, st.CPF, st)
	} else {
		s.cache.drop(coll, st.CPF)
	}
}

// writeChange stores next over prev (the document at revision rev) with an
// update of only what changed: items and removed entries one by one, the
// other fields whole, so a write costs the same whatever the number of items.
func (s *Store) writeChange(ctx context.Context, coll *mongo.Collection, prev, next stored, rev int64, events []eventbus.Event) (bool, error) {
	head := next
	head.Items, head.Removed = nil, nil
	raw, err := bson.Marshal(head)
	if err != nil {
		return false, err
	}
	var fields bson.D
	if err := bson.Unmarshal(raw, &fields); err != nil {
		return false, err
	}
	set := make(bson.D, 0, len(fields)+4)
	for _, f := range fields {
		if f.Key != "_id" && f.Key != "items" && f.Key != "removed" {
			set = append(set, f)
		}
	}
	var unset bson.D
	set, unset = diffMap(set, unset, "items", prev.Items, next.Items)
	set, unset = diffMap(set, unset, "removed", prev.Removed, next.Removed)
	// A new score.changed supersedes every older one of the cpf (person keeps
	// the latest by version), so it replaces the outbox: the write also
	// clears what the relay published, sparing it a write of its own.
	replaced := func(bool) {}
	if len(events) > 0 {
		set = append(set, bson.E{Key: outbox.Field, Value: events})
		s.mu.Lock()
		ob := s.obs[coll.Name()]
		s.mu.Unlock()
		if ob != nil {
			replaced = ob.Replaced(next.CPF)
		}
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: next.CPF}, {Key: "rev", Value: rev}}, update)
	if err != nil {
		replaced(false)
		s.cache.drop(coll.Name(), next.CPF)
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ok := res.MatchedCount == 1
	replaced(ok)
	s.cached(coll.Name(), next, ok)
	return ok, nil
}

// diffMap adds to set and unset what turns map field name from prev into
// next, entry by entry; the whole map when a key cannot be a path component.
func diffMap[V comparable](set, unset bson.D, name string, prev, next map[string]V) (bson.D, bson.D) {
	var s, u bson.D
	for k, v := range next {
		if old, ok := prev[k]; !ok || old != v {
			s = append(s, bson.E{Key: name + "." + k, Value: v})
		}
	}
	for k := range prev {
		if _, ok := next[k]; !ok {
			u = append(u, bson.E{Key: name + "." + k, Value: ""})
		}
	}
	for _, e := range append(slices.Clone(s), u...) {
		if k := e.Key[len(name)+1:]; k == "" || strings.ContainsAny(k, ".$") {
			if next == nil {
				next = map[string]V{}
			}
			return append(set, bson.E{Key: name, Value: next}), unset
		}
	}
	return append(set, s...), append(unset, u...)
}

func (s *Store) writeRaw(ctx context.Context, coll *mongo.Collection, cpf int64, raw bson.Raw, found bool, rev int64, events []eventbus.Event) (bool, error) {
	var fields bson.D
	if err := bson.Unmarshal(raw, &fields); err != nil {
		return false, err
	}
	if !found {
		if events == nil {
			events = []eventbus.Event{}
		}
		_, err := coll.InsertOne(ctx, append(fields, bson.E{Key: outbox.Field, Value: events}))
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return true, nil
	}
	set := make(bson.D, 0, len(fields))
	for _, f := range fields {
		if f.Key != "_id" {
			set = append(set, f)
		}
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(events) > 0 {
		update = outbox.With(update, events...)
	}
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: cpf}, {Key: "rev", Value: rev}}, update)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res.MatchedCount == 1, nil
}

// WaitForVersion returns the document once it has applied every version up to
// min, or the current one with stale=true when ctx ends first. It sleeps on
// the hub between reads: a read happens only when the document may have moved.
func (s *Store) WaitForVersion(ctx context.Context, cpf, min int64) (score.Document, bool, error) {
	var last stored
	seen, first := false, true
	for {
		w := s.hub.Watch(cpf)
		coll, err := s.collection(ctx)
		var st stored
		var found bool
		if err == nil {
			// What this process wrote last is in the store. If it is recent
			// enough no read is needed. If not, the first time we wait
			// without reading: this process, or the hub's watcher for other
			// replicas' writes, wakes us when the document moves; then we
			// read unless the cache has caught up.
			var cached bool
			if st, cached = s.cache.get(coll.Name(), cpf); cached && (st.Version >= min || first) {
				found = true
			} else {
				st, found, err = s.load(ctx, coll, cpf)
			}
			first = false
		}
		if err != nil {
			w.Close()
			if ctx.Err() != nil {
				return s.stale(last, seen)
			}
			return st.Document, false, err
		}
		last, seen = st, found
		if found && st.Version >= min {
			w.Close()
			return st.Document, false, nil
		}
		if min <= 0 { // nothing to wait for: the cpf is unknown
			w.Close()
			return st.Document, false, score.ErrNotFound
		}
		w.Seen(st.Version, min)
		select {
		case <-w.C():
			w.Close()
		case <-ctx.Done():
			w.Close()
			return s.stale(last, seen)
		}
	}
}

func (s *Store) stale(last stored, found bool) (score.Document, bool, error) {
	if !found {
		return last.Document, true, score.ErrNotFound
	}
	return last.Document, true, nil
}

// versions reads the version of each cpf in the active collection, for the
// hub: one _id lookup each, which every store serves from its _id index.
// (FerretDB v1 does not push an _id $in down: on a big collection one probe
// read every document, took longer than the hub's deadline, and the next
// started at once.) Cpfs not reached before ctx ends wait for the next probe.
func (s *Store) versions(ctx context.Context, cpfs []int64) (map[int64]int64, error) {
	coll, err := s.collection(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]int64, len(cpfs))
	for _, cpf := range cpfs {
		var row struct {
			Version int64 `bson:"version"`
		}
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: cpf}},
			options.FindOne().SetProjection(bson.D{{Key: "version", Value: 1}})).Decode(&row)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
		case err != nil && len(out) > 0:
			return out, nil
		case err != nil:
			return nil, err
		default:
			out[cpf] = row.Version
		}
	}
	return out, nil
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.Client().Ping(ctx, nil)
}

// Run relays score.changed from the active collection, runs the shared
// read-your-writes watcher, follows switches of the active collection made by
// any replica and drives a running rebuild forward, until ctx ends. Pending
// score.changed events are flushed before it returns.
func (s *Store) Run(ctx context.Context) error {
	if s.cfg.Publisher == nil {
		return errors.New("mongodb: Config.Publisher is required to run the store")
	}
	s.mu.Lock()
	s.runCtx = ctx
	if s.active != "" {
		s.startRelay(s.active)
	}
	s.mu.Unlock()
	hubDone, aheadDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(hubDone); s.hub.Run(ctx) }()
	go func() { defer close(aheadDone); s.readAheadLoop(ctx) }()

	tick := time.NewTicker(s.cfg.MetaInterval)
	defer tick.Stop()
	for {
		start := time.Now()
		if m, err := s.readMeta(ctx); err == nil {
			s.remember(m, start)
			s.observe(m)
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
			s.mu.Lock()
			for name, cancel := range s.relays {
				cancel()
				delete(s.relays, name)
			}
			s.runCtx = nil
			s.mu.Unlock()
			s.relayWG.Wait()
			<-hubDone
			<-aheadDone
			return nil
		}
	}
}

// observe takes note of the meta document: when the active collection
// changed, the relay follows it and every waiting reader reads again. A meta
// document older than one observed before (reads by Run and Apply overlap)
// changes nothing.
func (s *Store) observe(m metaDoc) {
	s.mu.Lock()
	old := s.active
	if m.Rev < s.seenRev {
		s.mu.Unlock()
		return
	}
	s.seenRev = m.Rev
	if old == m.Active {
		s.mu.Unlock()
		return
	}
	s.active = m.Active
	if s.runCtx != nil {
		s.startRelay(m.Active)
		if cancel, ok := s.relays[old]; ok {
			// Let the old relay finish what it is publishing, then stop it;
			// its Run flushes what the old collection still holds.
			delete(s.relays, old)
			time.AfterFunc(retireAfter, cancel)
		}
	}
	s.mu.Unlock()
	if old != "" {
		s.log.Info("read model switched", zap.String("from", old), zap.String("to", m.Active))
		s.hub.NotifyAll()
	}
}

// startRelay runs the outbox of collection name; s.mu is held.
func (s *Store) startRelay(name string) {
	if _, ok := s.relays[name]; ok {
		return
	}
	ob, ok := s.obs[name]
	if !ok {
		// Published score.changed wait up to clearDelay for the cpf's next
		// write, which replaces them (writeChange).
		ob = outbox.New(outbox.Config{Collection: s.db.Collection(name), Publisher: s.cfg.Publisher, Logger: s.log,
			SweepInterval: s.cfg.OutboxSweep, ClearDelay: clearDelay})
		s.obs[name] = ob
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	s.relays[name] = cancel
	s.relayWG.Add(1)
	go func() {
		defer s.relayWG.Done()
		_ = ob.Run(ctx, s.cfg.FlushTimeout)
	}()
}
