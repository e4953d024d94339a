package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox/outboxtest"
	"github.com/personscore/score"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/rebuild"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Two running replicas rebuild a read model that was built incrementally and
// then damaged (a wrong score, a lost document) while person keeps writing;
// snapshot.completed arrives before the snapshots. The switch waits for every
// snapshot and for the live events; the new collection is exact, document for
// document, and person is told the corrected scores.
func TestRebuildFromSnapshots(t *testing.T) {
	env := scoretest.StartMongo(t)
	pub := &outboxtest.Recorder{}
	cfg := rebuild.Config{Publisher: pub, MetaInterval: 50 * time.Millisecond}
	a, b := runReplica(t, env, cfg, 100*time.Millisecond), runReplica(t, env, cfg, 100*time.Millisecond)
	ctx := context.Background()
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 2))
	t.Logf("seed %d", seed)

	var hs []*historytest.History
	for i := range 6 {
		hs = append(hs, historytest.Generate(rng, int64(50_000+i), 5+rng.IntN(20)))
	}
	replicas := []replica{a, b}
	for i, h := range hs {
		applyAll(t, replicas[i%2], h.Delivery(rng, true, 0.5, 1))
	}
	live := env.DB.Collection(mongodb.DefaultCollection)
	for _, h := range hs {
		if got := scoretest.Semantics(t, live)[h.CPF]; !reflect.DeepEqual(got, h.Want(h.Final())) {
			t.Fatalf("incremental model of %d: %v, want %v", h.CPF, got, h.Want(h.Final()))
		}
	}
	// Damage the live model: a wrong score and a lost document.
	if _, err := live.UpdateOne(ctx, bson.D{{Key: "_id", Value: hs[0].CPF}}, bson.D{{Key: "$set", Value: bson.D{{Key: "score", Value: int64(999)}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := live.DeleteOne(ctx, bson.D{{Key: "_id", Value: hs[1].CPF}}); err != nil {
		t.Fatal(err)
	}

	r, err := a.StartRebuild(ctx)
	if err != nil || r.State != score.RebuildSnapshotting || r.From != mongodb.DefaultCollection || r.Target == "" || r.Target == r.From {
		t.Fatalf("StartRebuild = %+v, %v", r, err)
	}
	if again, err := b.StartRebuild(ctx); !errors.Is(err, score.ErrRebuildRunning) || again.ID != r.ID {
		t.Fatalf("second StartRebuild = %+v, %v; want the running one and ErrRebuildRunning", again, err)
	}
	reqs := pub.Of(contract.SnapshotRequested)
	var req contract.SnapshotRequest
	if len(reqs) != 1 || reqs[0].DecodeData(&req) != nil || req.RebuildID != r.ID {
		t.Fatalf("snapshot.requested published %d times (%+v), want once for %s", len(reqs), req, r.ID)
	}

	// Person keeps writing: snapshots are taken at the versions written so
	// far; half of the later events arrive before the snapshots, half after.
	snapAt := map[int64]int64{}
	var early, late []eventbus.Event
	for i, h := range hs {
		snapAt[h.CPF] = h.Final()
		from := len(h.Events)
		h.Extend(rng, 4)
		if i%2 == 0 {
			early = append(early, h.Events[from:]...)
		} else {
			late = append(late, h.Events[from:]...)
		}
	}
	applyAll(t, b, early)
	completed, _ := eventbus.NewEvent(ctx, "/person", contract.SnapshotCompleted, r.ID, 1, contract.SnapshotCompletion{RebuildID: r.ID, Count: int64(len(hs))})
	if err := b.SnapshotCompleted(ctx, completed); err != nil {
		t.Fatal(err)
	}
	if err := a.SnapshotCompleted(ctx, completed); err != nil { // a duplicate
		t.Fatal(err)
	}
	st := waitRebuild(t, a, 5*time.Second, score.RebuildCatchingUp)
	if st.Expected != int64(len(hs)) {
		t.Fatalf("expected %d snapshots, status says %d", len(hs), st.Expected)
	}
	time.Sleep(200 * time.Millisecond) // several checks by both replicas
	if act := scoretest.Active(t, a); act != mongodb.DefaultCollection {
		t.Fatalf("switched to %s before any snapshot arrived", act)
	}
	var snaps []eventbus.Event
	for _, h := range hs {
		snaps = append(snaps, h.Snapshot(snapAt[h.CPF]))
	}
	snaps = append(snaps, snaps[0])
	rng.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
	applyAll(t, a, snaps[:3])
	time.Sleep(200 * time.Millisecond)
	if act := scoretest.Active(t, a); act != mongodb.DefaultCollection {
		t.Fatalf("switched to %s with snapshots missing", act)
	}
	applyAll(t, b, snaps[3:])
	applyAll(t, a, late)

	done := waitRebuild(t, b, 10*time.Second, score.RebuildDone)
	if done.Active != r.Target || done.Snapshotted != int64(len(hs)) || done.FinishedAt == nil {
		t.Fatalf("done: %+v", done)
	}
	rebuilt := scoretest.Semantics(t, env.DB.Collection(r.Target))
	if len(rebuilt) != len(hs) {
		t.Fatalf("rebuilt model has %d documents, want %d", len(rebuilt), len(hs))
	}
	for _, h := range hs {
		if got, want := rebuilt[h.CPF], h.Want(h.Final()); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: rebuilt document of %d\n got %v\nwant %v", seed, h.CPF, got, want)
		}
	}
	// Both replicas read the new model once they have seen the switch (the
	// one that did not make it reads the meta document within
	// MetaInterval); person hears the corrected scores.
	for i, s := range replicas {
		for _, h := range hs[:2] {
			want := h.Want(h.Final())
			var d score.Document
			var err error
			scoretest.Eventually(t, 5*time.Second, fmt.Sprintf("replica %d reading %d from the new model", i, h.CPF), func() bool {
				d, err = s.Get(ctx, h.CPF)
				return want.Live && err == nil && d.Score == want.Score || !want.Live && errors.Is(err, score.ErrNotFound)
			})
		}
	}
	for _, h := range hs[:2] {
		want := h.Want(h.Final())
		scoretest.Eventually(t, 5*time.Second, "corrected score.changed of "+h.Subject(), func() bool {
			var last eventbus.Event
			for _, ev := range pub.Of(contract.ScoreChanged) {
				if ev.Subject == h.Subject() && ev.Version > last.Version {
					last = ev
				}
			}
			var c scoretest.ScoreChange
			return last.ID != "" && last.DecodeData(&c) == nil && c.Score == want.Score && c.Live == want.Live
		})
	}

	// Events after the switch go to the new collection only, once every
	// replica routes by a meta document read after it: Apply may use one up
	// to MetaMaxAge old, which still names the old collection too.
	time.Sleep(rebuild.MetaMaxAge)
	h := hs[2]
	from := len(h.Events)
	h.Extend(rng, 2)
	applyAll(t, a, h.Events[from:])
	if got := scoretest.Semantics(t, env.DB.Collection(r.Target))[h.CPF]; !reflect.DeepEqual(got, h.Want(h.Final())) {
		t.Fatalf("after the switch: %v, want %v", got, h.Want(h.Final()))
	}
	if old := scoretest.Semantics(t, live)[h.CPF]; old.Version == h.Final() {
		t.Fatal("the replaced collection still receives events")
	}

	// The next rebuild starts from the new collection and drops the old one.
	r2, err := a.StartRebuild(ctx)
	if err != nil || r2.From != r.Target {
		t.Fatalf("second rebuild = %+v, %v", r2, err)
	}
	names, err := env.DB.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, mongodb.DefaultCollection) {
		t.Fatalf("collections %v: the replaced one was not dropped", names)
	}
}

func TestRebuildFailures(t *testing.T) {
	env := scoretest.StartMongo(t)
	pub := &outboxtest.Recorder{}
	s := runReplica(t, env, rebuild.Config{Publisher: pub, MetaInterval: 50 * time.Millisecond, RebuildTimeout: 300 * time.Millisecond}, 0)
	ctx := context.Background()
	if _, err := s.RebuildStatus(ctx); !errors.Is(err, score.ErrNoRebuild) {
		t.Fatalf("status before any rebuild: %v", err)
	}
	applyAll(t, s, []eventbus.Event{ev(t, contract.PersonCreated, 1, map[string]any{"name": "a"})})

	t.Run("person never answers", func(t *testing.T) {
		r, err := s.StartRebuild(ctx)
		if err != nil {
			t.Fatal(err)
		}
		failed := waitRebuild(t, s, 5*time.Second, score.RebuildFailed)
		if failed.ID != r.ID || failed.Error == "" || failed.Active != mongodb.DefaultCollection {
			t.Fatalf("failed rebuild: %+v", failed)
		}
		if d, err := s.Get(ctx, 22222); err != nil || d.Version != 1 {
			t.Fatalf("the live model is affected: %+v %v", d, err)
		}
		late, _ := eventbus.NewEvent(ctx, "/person", contract.SnapshotCompleted, r.ID, 1, contract.SnapshotCompletion{RebuildID: r.ID, Count: 1})
		if err := s.SnapshotCompleted(ctx, late); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.RebuildStatus(ctx); st.State != score.RebuildFailed {
			t.Fatalf("a late snapshot.completed revived the rebuild: %+v", st)
		}
	})
	t.Run("the request cannot be published", func(t *testing.T) {
		pub.Fail(errors.New("broker down"))
		defer pub.Fail(nil)
		if _, err := s.StartRebuild(ctx); !errors.Is(err, mongodb.ErrUnavailable) {
			t.Fatalf("StartRebuild = %v, want ErrUnavailable", err)
		}
		if st, _ := s.RebuildStatus(ctx); st.State != score.RebuildFailed || st.Error == "" {
			t.Fatalf("status %+v, want failed with the reason", st)
		}
	})
	t.Run("malformed completion", func(t *testing.T) {
		bad, _ := eventbus.NewEvent(ctx, "/person", contract.SnapshotCompleted, "x", 1, map[string]any{"count": 3})
		if err := s.SnapshotCompleted(ctx, bad); !errors.Is(err, eventbus.ErrMalformed) {
			t.Fatalf("SnapshotCompleted = %v, want ErrMalformed", err)
		}
	})
}

// The smallest rebuild: one replica, one person, the snapshot applied through
// the consumer path before snapshot.completed arrives.
func TestRebuildOfOnePerson(t *testing.T) {
	env := scoretest.StartMongo(t)
	s := runReplica(t, env, rebuild.Config{Publisher: &outboxtest.Recorder{}, MetaInterval: 50 * time.Millisecond}, 0)
	ctx := context.Background()
	applyAll(t, s, []eventbus.Event{ev(t, contract.PersonCreated, 1, map[string]any{"name": "old"})})
	r, err := s.StartRebuild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := ev(t, contract.PersonSnapshot, 1, map[string]any{"deleted": false, "person": map[string]any{"name": "a"}, "items": []any{}})
	applyAll(t, s, []eventbus.Event{snap})
	c, _ := eventbus.NewEvent(ctx, "/person", contract.SnapshotCompleted, r.ID, 1, contract.SnapshotCompletion{RebuildID: r.ID, Count: 1})
	if err := s.SnapshotCompleted(ctx, c); err != nil {
		t.Fatal(err)
	}
	done := waitRebuild(t, s, 10*time.Second, score.RebuildDone)
	if d, err := s.Get(ctx, 22222); done.Active != r.Target || err != nil || d.Person.Name != "a" {
		t.Fatalf("after the switch: %+v, %+v, %v", done, d, err)
	}
}

// A replica applies an event by the meta document it read just before another
// replica switched the read model (and published the rebuilt scores): the event
// lands in the replaced collection as if it were still active and in the new
// one as if a rebuild still ran. The newest score.changed of the cpf must
// still carry the new collection's score, and the new document the event.
func TestSwitchDuringApply(t *testing.T) {
	env := scoretest.StartMongo(t)
	cfg := rebuild.Config{Publisher: &outboxtest.Recorder{}}
	a, b := newReplica(t, env, cfg), newReplica(t, env, cfg)
	ctx := context.Background()
	person := map[string]any{"cpf": 22222, "name": "a", "date_of_birth": "2000-01-01"}
	income := map[string]any{"id": "i", "value_cents": 1000_00}
	applyAll(t, b, []eventbus.Event{ev(t, contract.PersonCreated, 1, person), ev(t, "income.created", 2, income)})
	live := env.DB.Collection(mongodb.DefaultCollection)
	// Damage: the live model lost the income (its score still says 20).
	if _, err := live.UpdateOne(ctx, bson.D{{Key: "_id", Value: 22222}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "items.i", Value: ""}}}}); err != nil {
		t.Fatal(err)
	}

	r, err := b.StartRebuild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := ev(t, contract.PersonSnapshot, 2, map[string]any{"deleted": false, "person": person,
		"items": []any{map[string]any{"id": "i", "kind": "income", "value_cents": 1000_00, "version": 2}}})
	applyAll(t, b, []eventbus.Event{snap})
	completed, _ := eventbus.NewEvent(ctx, "/person", contract.SnapshotCompleted, r.ID, 1, contract.SnapshotCompletion{RebuildID: r.ID, Count: 1})
	if err := b.SnapshotCompleted(ctx, completed); err != nil {
		t.Fatal(err)
	}
	if err := a.PinRouting(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Advance(ctx); err != nil {
		t.Fatal(err)
	}
	if act := scoretest.Active(t, b); act != r.Target {
		t.Fatalf("active %s, want the rebuilt %s", act, r.Target)
	}

	// An asset worth 50 points: the replaced collection, which lost the
	// income, computes a score of 50 instead of 70.
	applyAll(t, a, []eventbus.Event{ev(t, "asset.created", 3, map[string]any{"id": "a", "value_cents": 1000_00})})

	rebuilt, _ := scoretest.ReadDoc(t, env.DB.Collection(r.Target), 22222)
	if rebuilt.Version != 3 || rebuilt.Score != 70 || !rebuilt.Live() {
		t.Fatalf("rebuilt document: version %d score %d live %v, want 3, 70, live", rebuilt.Version, rebuilt.Score, rebuilt.Live())
	}
	old, _ := scoretest.ReadDoc(t, live, 22222)
	if c := newestScoreChange(t, old.Outbox, rebuilt.Outbox); c != (scoretest.ScoreChange{Score: 70, Live: true}) {
		t.Fatalf("newest score.changed of 22222: %+v, want score 70, live", c)
	}
}

// newestScoreChange decodes the score.changed of the highest version among
// the outboxes given.
func newestScoreChange(t *testing.T, outboxes ...[]eventbus.Event) scoretest.ScoreChange {
	t.Helper()
	var newest eventbus.Event
	for _, e := range slices.Concat(outboxes...) {
		if e.Version > newest.Version {
			newest = e
		}
	}
	var c scoretest.ScoreChange
	if newest.ID == "" {
		t.Fatal("no score.changed in the outboxes")
	}
	if err := newest.DecodeData(&c); err != nil {
		t.Fatalf("score.changed %s: %v", newest.Data, err)
	}
	return c
}

// The live model lost a document, and the only later event (a delete) made it
// anew, agreeing with the rebuilt one (no live person, score 0) while person
// still shows the score published before the loss. The switch tells person
// the rebuilt score all the same.
func TestRebuildTellsPersonWhatTheOldModelLost(t *testing.T) {
	env := scoretest.StartMongo(t)
	s := newReplica(t, env, rebuild.Config{Publisher: &outboxtest.Recorder{}})
	ctx := context.Background()
	person := map[string]any{"cpf": 22222, "name": "a", "date_of_birth": "2000-01-01"}
	income := map[string]any{"id": "i", "value_cents": 1000_00}
	applyAll(t, s, []eventbus.Event{ev(t, contract.PersonCreated, 1, person), ev(t, "income.created", 2, income)})
	live := env.DB.Collection(mongodb.DefaultCollection)
	lost, _ := scoretest.ReadDoc(t, live, 22222)
	told := lost.Outbox // what the relay publishes to person
	if _, err := live.DeleteOne(ctx, bson.D{{Key: "_id", Value: 22222}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.StartRebuild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := ev(t, contract.PersonSnapshot, 2, map[string]any{"deleted": false, "person": person,
		"items": []any{map[string]any{"id": "i", "kind": "income", "value_cents": 1000_00, "version": 2}}})
	applyAll(t, s, []eventbus.Event{ev(t, contract.PersonDeleted, 3, map[string]any{"cpf": 22222}), snap})
	completed, _ := eventbus.NewEvent(ctx, "/person", contract.SnapshotCompleted, r.ID, 1, contract.SnapshotCompletion{RebuildID: r.ID, Count: 1})
	if err := s.SnapshotCompleted(ctx, completed); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(ctx); err != nil {
		t.Fatal(err)
	}
	if act := scoretest.Active(t, s); act != r.Target {
		t.Fatalf("active %s, want the rebuilt %s", act, r.Target)
	}
	old, _ := scoretest.ReadDoc(t, live, 22222)
	rebuilt, _ := scoretest.ReadDoc(t, env.DB.Collection(r.Target), 22222)
	if c := newestScoreChange(t, told, old.Outbox, rebuilt.Outbox); c != (scoretest.ScoreChange{Score: 0, Live: false}) {
		t.Fatalf("newest score.changed of 22222: %+v, want score 0, not live", c)
	}
}

func TestApplyRejectsABadSubject(t *testing.T) {
	env := scoretest.StartMongo(t)
	s := newReplica(t, env, rebuild.Config{})
	e := ev(t, contract.PersonCreated, 1, map[string]any{"name": "x"})
	e.Subject = "not-a-cpf"
	if err := s.Apply(context.Background(), e); !errors.Is(err, eventbus.ErrMalformed) {
		t.Fatalf("Apply = %v, want ErrMalformed", err)
	}
}
