package outbox

import (
	"slices"
	"sync"
	"time"

	"github.com/personscore/eventbus"
)

// backlog counts the events this process knows to be stored in the outbox
// and not yet confirmed by the broker: those it wrote (Notify), and those a
// sweep found due. Asking its size and the age of its oldest event costs no
// store read, so a service can ask before every write. It is one process's
// view: events another replica wrote count here only once a sweep of this
// process found them due.
type backlog struct {
	mu     sync.Mutex
	seq    uint64                      // bumped by every add
	events map[string]trackedEvent     // by event id
	docs   map[string]map[string]int64 // document key → event id → version
	// perSecond counts the events by the second of their time; seconds
	// holds its keys in order, and may hold seconds whose count fell to 0
	// (removed once they reach the front).
	perSecond map[int64]int
	seconds   []int64
	changed   func(n int, oldest time.Time) // called after every change, under mu
	// confirmed remembers the ids confirmed in the last one to two
	// confirmedFor, so that a sweep that read them before they were
	// published does not count (and hand out) them again.
	confirmed, confirmedBefore map[string]bool
	rotated                    time.Time
}

// confirmedFor is how long confirmed ids are remembered: longer than a
// sweep's read of the collection usually takes.
const confirmedFor = 30 * time.Second

type trackedEvent struct {
	doc     string
	version int64
	second  int64
	seq     uint64
}

func newBacklog(changed func(n int, oldest time.Time)) *backlog {
	return &backlog{events: map[string]trackedEvent{}, docs: map[string]map[string]int64{}, perSecond: map[int64]int{},
		changed: changed, confirmed: map[string]bool{}, confirmedBefore: map[string]bool{}, rotated: time.Now()}
}

// add tracks the events of document doc (those already tracked, or
// confirmed lately, stay as they are).
func (b *backlog) add(doc string, events ...eventbus.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	for _, ev := range events {
		if _, ok := b.events[ev.ID]; ok || b.confirmed[ev.ID] || b.confirmedBefore[ev.ID] {
			continue
		}
		sec := ev.Time.Unix()
		b.events[ev.ID] = trackedEvent{doc: doc, version: ev.Version, second: sec, seq: b.seq}
		if b.docs[doc] == nil {
			b.docs[doc] = map[string]int64{}
		}
		b.docs[doc][ev.ID] = ev.Version
		if _, ok := b.perSecond[sec]; !ok {
			i, _ := slices.BinarySearch(b.seconds, sec)
			b.seconds = slices.Insert(b.seconds, i, sec)
		}
		b.perSecond[sec]++
	}
	b.changed(len(b.events), b.oldestLocked())
}

// done stops tracking events: the broker confirmed them.
func (b *backlog) done(ids ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.rotated) > confirmedFor {
		b.confirmedBefore, b.confirmed, b.rotated = b.confirmed, map[string]bool{}, time.Now()
	}
	for _, id := range ids {
		b.removeLocked(id)
		b.confirmed[id] = true
	}
	b.changed(len(b.events), b.oldestLocked())
}

func (b *backlog) removeLocked(id string) {
	t, ok := b.events[id]
	if !ok {
		return
	}
	delete(b.events, id)
	if d := b.docs[t.doc]; d != nil {
		delete(d, id)
		if len(d) == 0 {
			delete(b.docs, t.doc)
		}
	}
	b.perSecond[t.second]--
}

// tracked reports whether event id is tracked (not yet confirmed).
func (b *backlog) tracked(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.events[id]
	return ok
}

// size returns how many events are tracked and the time of the oldest (zero
// when none), to the second.
func (b *backlog) size() (int, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events), b.oldestLocked()
}

func (b *backlog) oldestLocked() time.Time {
	for len(b.seconds) > 0 && b.perSecond[b.seconds[0]] <= 0 {
		delete(b.perSecond, b.seconds[0])
		b.seconds = b.seconds[1:]
	}
	if len(b.seconds) == 0 {
		return time.Time{}
	}
	return time.Unix(b.seconds[0], 0)
}

// olderThan reports whether document doc has tracked events of a version
// below version, other than those in except.
func (b *backlog) olderThan(doc string, version int64, except map[string]bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, v := range b.docs[doc] {
		if v < version && !except[id] {
			return true
		}
	}
	return false
}

// mark returns the current add sequence, for reconcile.
func (b *backlog) mark() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// reconcile drops the events tracked before mark that a complete read of the
// collection did not find: another replica published and cleared them.
func (b *backlog) reconcile(mark uint64, found map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, t := range b.events {
		if t.seq <= mark && !found[id] {
			b.removeLocked(id)
		}
	}
	b.changed(len(b.events), b.oldestLocked())
}
