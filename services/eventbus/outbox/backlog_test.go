package outbox

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// switchPublisher is unreachable while down is set, and says so (Ready).
type switchPublisher struct {
	next  Publisher
	down  atomic.Bool
	calls atomic.Int32
}

func (p *switchPublisher) Publish(ctx context.Context, events ...eventbus.Event) error {
	p.calls.Add(1)
	if p.down.Load() {
		return eventbus.ErrNotConnected
	}
	return p.next.Publish(ctx, events...)
}

func (p *switchPublisher) Ready() bool { return !p.down.Load() }

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func versionsBySubject(events []eventbus.Event) map[string][]int64 {
	out := map[string][]int64{}
	for _, ev := range events {
		out[ev.Subject] = append(out[ev.Subject], ev.Version)
	}
	return out
}

// While the broker is unreachable, the backlog is counted from the writes
// themselves (Backlog, the pending gauge, the oldest event's age), the relay
// makes no publish attempt and the sweep reads nothing; once the broker is
// back the sweep drains it in version order per document and counts the
// drained events.
func TestBacklogCountedInMemoryWhileBrokerDown(t *testing.T) {
	e := newEnv(t)
	pub := &switchPublisher{next: e.pub}
	pub.down.Store(true)
	ob := New(Config{Collection: e.coll, Publisher: pub, SweepInterval: 20 * time.Millisecond, MinAge: time.Millisecond, Metrics: e.metrics})
	// An event left by a predecessor: the one read at start counts it, and
	// once it is counted that read is over, so no later read can be confused
	// with it.
	start := time.Now()
	write(t, e.coll, "P", event(t, "score.changed", "P", 1))
	runOutbox(t, ob)
	waitFor(t, "the read at start", func() bool { n, _ := ob.Backlog(); return n == 1 })
	for _, subject := range []string{"A", "B"} {
		for v := int64(1); v <= 3; v++ {
			ev := event(t, "score.changed", subject, v)
			write(t, e.coll, subject, ev)
			ob.Notify(subject, ev)
		}
	}
	// Another process's event: no sweep reads the collection while the broker is down.
	write(t, e.coll, "O", event(t, "score.changed", "O", 1))
	time.Sleep(200 * time.Millisecond) // 10 sweep intervals
	n, oldest := ob.Backlog()
	if n != 7 || oldest.IsZero() || oldest.After(time.Now()) || oldest.Before(start.Add(-time.Second)) {
		t.Errorf("Backlog() = %d, %v while down; want 7 and the first write's time", n, oldest)
	}
	if g := testutil.ToFloat64(e.metrics.OutboxPending.WithLabelValues(e.coll.Name())); g != 7 {
		t.Errorf("pending gauge %v, want 7", g)
	}
	if calls := pub.calls.Load(); calls != 0 {
		t.Errorf("%d publish attempts while the publisher said it was not ready", calls)
	}
	if age := testutil.ToFloat64(e.metrics.OutboxOldest.WithLabelValues(e.coll.Name())); age <= 0 {
		t.Errorf("oldest pending age %v, want > 0", age)
	}

	pub.down.Store(false)
	got := e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) >= 8 })
	for subject, vs := range versionsBySubject(got) {
		if want := map[string]int{"A": 3, "B": 3, "O": 1, "P": 1}[subject]; !slices.IsSorted(vs) || len(vs) != want {
			t.Errorf("subject %s published as %v", subject, vs)
		}
	}
	waitFor(t, "an empty backlog", func() bool { n, _ := ob.Backlog(); return n == 0 && pendingCount(t, e.coll) == 0 })
	if d := testutil.ToFloat64(e.metrics.OutboxDrained.WithLabelValues(e.coll.Name())); d != 8 {
		t.Errorf("drained counter %v, want 8", d)
	}
	waitFor(t, "the oldest age back to 0", func() bool {
		return testutil.ToFloat64(e.metrics.OutboxOldest.WithLabelValues(e.coll.Name())) == 0
	})
}

// A process started while the broker is unreachable counts the backlog its
// predecessor left in the store (one read at start), young events included.
func TestRestartCountsTheStoredBacklog(t *testing.T) {
	e := newEnv(t)
	for _, subject := range []string{"A", "B", "C"} {
		for v := int64(1); v <= 4; v++ {
			write(t, e.coll, subject, event(t, "score.changed", subject, v))
		}
	}
	pub := &switchPublisher{next: e.pub}
	pub.down.Store(true)
	ob := New(Config{Collection: e.coll, Publisher: pub, SweepInterval: 50 * time.Millisecond, MinAge: 2 * time.Second, Metrics: e.metrics})
	runOutbox(t, ob)
	waitFor(t, "the stored backlog counted", func() bool { n, _ := ob.Backlog(); return n == 12 })
	pub.down.Store(false)
	got := e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) >= 12 })
	for subject, vs := range versionsBySubject(got) {
		if !slices.Equal(vs, []int64{1, 2, 3, 4}) {
			t.Errorf("subject %s published as %v", subject, vs)
		}
	}
	waitFor(t, "an empty backlog", func() bool { n, _ := ob.Backlog(); return n == 0 })
}

// A new event of a document whose older events are still in the backlog
// does not overtake them: the relay publishes the document's whole outbox in
// version order, without waiting for a sweep.
func TestNewEventDoesNotOvertakeItsBacklog(t *testing.T) {
	e := newEnv(t)
	pub := &switchPublisher{next: e.pub}
	pub.down.Store(true)
	ob := New(Config{Collection: e.coll, Publisher: pub, SweepInterval: time.Hour, IdleSweepInterval: time.Hour,
		MinAge: time.Hour, Metrics: e.metrics})
	runOutbox(t, ob)
	var last eventbus.Event
	for v := int64(1); v <= 3; v++ {
		last = event(t, "score.changed", "A", v)
		write(t, e.coll, "A", last)
		ob.Notify("A", last)
	}
	waitFor(t, "the relay to leave the events to the backlog", func() bool { return !ob.relaying(last.ID) })
	pub.down.Store(false)
	ev := event(t, "score.changed", "A", 4)
	write(t, e.coll, "A", ev)
	ob.Notify("A", ev)
	got := e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) >= 4 })
	if vs := versionsBySubject(got)["A"]; !slices.Equal(vs, []int64{1, 2, 3, 4}) {
		t.Errorf("published as %v, want [1 2 3 4]", vs)
	}
	waitFor(t, "an empty outbox", func() bool { n, _ := ob.Backlog(); return n == 0 && pendingCount(t, e.coll) == 0 })
	if d := testutil.ToFloat64(e.metrics.OutboxDrained.WithLabelValues(e.coll.Name())); d != 3 {
		t.Errorf("drained counter %v, want 3 (the backlog, not the new event)", d)
	}
}

// A complete sweep forgets events it no longer finds (another replica
// published and cleared them).
func TestSweepForgetsWhatOthersCleared(t *testing.T) {
	e := newEnv(t)
	pub := &switchPublisher{next: e.pub}
	pub.down.Store(true)
	ob := New(Config{Collection: e.coll, Publisher: pub, SweepInterval: 20 * time.Millisecond, MinAge: time.Hour, Metrics: e.metrics})
	ev := event(t, "score.changed", "A", 1)
	write(t, e.coll, "A", ev)
	ob.Notify("A", ev)
	if n, _ := ob.Backlog(); n != 1 {
		t.Fatalf("Backlog() = %d after one write, want 1", n)
	}
	// Cleared elsewhere, then a sweep (broker back) finds nothing.
	if _, err := e.coll.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "A"}}, bson.D{{Key: "$set", Value: bson.D{{Key: Field, Value: bson.A{}}}}}); err != nil {
		t.Fatal(err)
	}
	pub.down.Store(false)
	runOutbox(t, ob)
	waitFor(t, "the cleared event forgotten", func() bool { n, _ := ob.Backlog(); return n == 0 })
}
