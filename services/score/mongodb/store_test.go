package mongodb_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/score"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
)

// Several replicas (each its own Store and MongoDB client), several goroutines
// each, apply a shuffled history of ONE cpf with duplicates and snapshots at
// once: the compare-and-swap on the revision must lose nothing, so the final
// document is exactly the history's final state, and the score.changed events
// in its outbox form a chain in which every event changes something.
func TestReplicasApplyingOneCPFConcurrently(t *testing.T) {
	env := startMongo(t)
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	h := historytest.Generate(rng, 11111, 60)
	deliveries := h.Delivery(rng, true, 0.6, 5)

	const replicas, perReplica = 3, 3
	stores := make([]*mongodb.Store, replicas)
	for i := range stores {
		stores[i] = env.replica(t, mongodb.Config{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, replicas*perReplica)
	for w := range replicas * perReplica {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%replicas]
			for i := w; i < len(deliveries); i += replicas * perReplica {
				if err := apply(s, deliveries[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	d, ok := scoretest.ReadDoc(t, env.DB.Collection(mongodb.DefaultCollection), h.CPF)
	if !ok {
		t.Fatal("no document")
	}
	if got, want := historytest.Of(d.Document), h.Want(h.Final()); !reflect.DeepEqual(got, want) {
		t.Fatalf("seed %d: after %d concurrent deliveries\n got %v\nwant %v", seed, len(deliveries), got, want)
	}
	chain := scoretest.Changes(t, d.Outbox)
	if len(chain) == 0 {
		// A score.changed tells person of a change from what it was told
		// before, and before the first one it knows nothing (no score, not
		// live). So none is owed only if the document never left that state:
		// when the history ends deleted and every creation was applied after
		// a later deletion (about 1 run in 100; see
		// TestNoScoreChangedForAPersonNeverLive).
		if d.Live() || d.Score != 0 {
			t.Fatalf("seed %d: no score.changed at all, document score %d live %v", seed, d.Score, d.Live())
		}
		t.Logf("never live: no score.changed owed")
		return
	}
	// The outbox keeps only the newest score.changed once published ones are cleared, so
	// the chain may start anywhere: compare each event with the one before it.
	for i := 1; i < len(chain); i++ {
		if chain[i] == chain[i-1] {
			t.Fatalf("score.changed #%d repeats %+v: published without a change", i, chain[i])
		}
	}
	if last := chain[len(chain)-1]; last.Score != d.Score || last.Live != d.Live() {
		t.Fatalf("last score.changed %+v, document score %d live %v", last, d.Score, d.Live())
	}
}

func TestScoreChangedOnlyWhenTheScoreChanges(t *testing.T) {
	env := startMongo(t)
	s := env.replica(t, mongodb.Config{})
	person := map[string]any{"cpf": 22222, "name": "a", "date_of_birth": "2000-01-01"}
	steps := []struct {
		name string
		ev   eventbus.Event
		want []scoretest.ScoreChange // appended by this step
	}{
		{"created: the score becomes known", ev(t, contract.PersonCreated, 1, person), []scoretest.ScoreChange{{Score: 0, Live: true}}},
		{"updated: no change", ev(t, contract.PersonUpdated, 2, person), nil},
		{"income", ev(t, "income.created", 3, map[string]any{"id": "i", "value_cents": 1000_00}), []scoretest.ScoreChange{{Score: 20, Live: true}}},
		{"duplicate income", ev(t, "income.created", 3, map[string]any{"id": "i", "value_cents": 1000_00}), nil},
		{"debt worth 0 points", ev(t, "debt.created", 4, map[string]any{"id": "d", "value_cents": 19_99}), nil},
		{"asset", ev(t, "asset.created", 5, map[string]any{"id": "a", "value_cents": 100000_00}), []scoretest.ScoreChange{{Score: 5020, Live: true}}},
		{"person deleted", ev(t, contract.PersonDeleted, 6, map[string]any{"cpf": 22222}), []scoretest.ScoreChange{{Score: 0, Live: false}}},
		{"stale event of the deleted person", ev(t, "debt.created", 4, map[string]any{"id": "d", "value_cents": 19_99}), nil},
	}
	// A new score.changed supersedes the older ones (person keeps the latest),
	// so the outbox holds the latest one; a step that changes no score adds none.
	var want []scoretest.ScoreChange
	var lastID string
	coll := env.DB.Collection(mongodb.DefaultCollection)
	for _, st := range steps {
		if err := apply(s, st.ev); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want = append(want, st.want...)
		d, _ := scoretest.ReadDoc(t, coll, 22222)
		if got := scoretest.Changes(t, d.Outbox); !reflect.DeepEqual(got, want[len(want)-1:]) {
			t.Fatalf("after %s: score.changed %+v, want the latest of %+v", st.name, got, want)
		}
		if id := d.Outbox[0].ID; (id != lastID) != (st.want != nil) {
			t.Fatalf("after %s: new score.changed %v, want %v", st.name, id != lastID, st.want != nil)
		}
		lastID = d.Outbox[0].ID
	}
	if _, err := s.Get(context.Background(), 22222); !errors.Is(err, score.ErrNotFound) {
		t.Fatalf("Get of a deleted person: %v, want ErrNotFound", err)
	}
}

// A person whose deletion is applied before its creation is never live in
// score: its document ends where person's knowledge of it starts (no score,
// not live), so no score.changed is written for it.
func TestNoScoreChangedForAPersonNeverLive(t *testing.T) {
	env := startMongo(t)
	s := env.replica(t, mongodb.Config{})
	applyAll(t, s, []eventbus.Event{
		ev(t, contract.PersonDeleted, 3, map[string]any{"cpf": 22222}),
		ev(t, "income.created", 2, map[string]any{"id": "i", "value_cents": 1000_00}),
		ev(t, contract.PersonCreated, 1, map[string]any{"cpf": 22222, "name": "a"}),
	})
	d, ok := scoretest.ReadDoc(t, env.DB.Collection(mongodb.DefaultCollection), 22222)
	if !ok || d.Live() || d.Score != 0 || d.Version != 3 {
		t.Fatalf("document found %v, live %v, score %d, version %d; want a tombstone at version 3", ok, d.Live(), d.Score, d.Version)
	}
	if chain := scoretest.Changes(t, d.Outbox); len(chain) != 0 {
		t.Fatalf("score.changed %+v for a person never live", chain)
	}
}

// A reader waiting for a version is woken by the write of its own replica at
// once (no polling: the shared watcher is not even running here).
func TestWaitForVersionWakesOnApply(t *testing.T) {
	env := startMongo(t)
	s := env.replica(t, mongodb.Config{})
	person := map[string]any{"cpf": 22222, "name": "a"}
	applyAll(t, s, []eventbus.Event{ev(t, contract.PersonCreated, 1, person)})

	type result struct {
		d       score.Document
		stale   bool
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d, stale, err := s.WaitForVersion(ctx, 22222, 3)
		done <- result{d, stale, err, time.Since(start)}
	}()
	scoretest.Eventually(t, 2*time.Second, "the reader registers", func() bool { return s.Hub().Waiting() == 1 })
	applyAll(t, s, []eventbus.Event{ev(t, "income.created", 2, map[string]any{"id": "i", "value_cents": 1000_00})})
	select {
	case r := <-done:
		t.Fatalf("returned at version 2 of 3: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if n := s.Hub().Waiting(); n != 1 {
		t.Fatalf("%d readers registered while waiting, want 1", n)
	}
	applied := time.Now()
	applyAll(t, s, []eventbus.Event{ev(t, "asset.created", 3, map[string]any{"id": "a", "value_cents": 100_00})})
	select {
	case r := <-done:
		if r.err != nil || r.stale || r.d.Version != 3 || r.d.Score != 25 {
			t.Fatalf("WaitForVersion = version %d score %d stale %v err %v", r.d.Version, r.d.Score, r.stale, r.err)
		}
		if lag := time.Since(applied); lag > 2*time.Second { // the bound is 10s
			t.Fatalf("reader returned %s after the write", lag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader not woken by the write")
	}
	if n := s.Hub().Waiting(); n != 0 {
		t.Fatalf("%d readers still registered", n)
	}
}

// A write by another replica wakes the reader through the shared watcher.
func TestWaitForVersionSeesOtherReplicas(t *testing.T) {
	env := startMongo(t)
	reader := env.replica(t, mongodb.Config{WatchInterval: 50 * time.Millisecond})
	writer := env.replica(t, mongodb.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reader.Hub().Run(ctx)

	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		d, stale, err := reader.WaitForVersion(wctx, 22222, 1)
		if err == nil && (stale || d.Version != 1) {
			err = errors.New("stale or wrong version")
		}
		done <- err
	}()
	scoretest.Eventually(t, 2*time.Second, "the reader registers", func() bool { return reader.Hub().Waiting() == 1 })
	applied := time.Now()
	applyAll(t, writer, []eventbus.Event{ev(t, contract.PersonCreated, 1, map[string]any{"name": "a"})})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if lag := time.Since(applied); lag > 3*time.Second { // the bound is 10s
			t.Fatalf("reader returned %s after the other replica's write", lag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader never saw the other replica's write")
	}
}

func TestWaitForVersionIsBounded(t *testing.T) {
	env := startMongo(t)
	s := env.replica(t, mongodb.Config{})
	applyAll(t, s, []eventbus.Event{ev(t, contract.PersonCreated, 1, map[string]any{"name": "a"})})

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	d, stale, err := s.WaitForVersion(ctx, 22222, 5)
	if elapsed := time.Since(start); err != nil || !stale || d.Version != 1 || elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("WaitForVersion = version %d stale %v err %v after %s; want the current document, stale, after the deadline", d.Version, stale, err, elapsed)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, stale, err := s.WaitForVersion(ctx2, 33333, 1); !stale || !errors.Is(err, score.ErrNotFound) {
		t.Fatalf("unknown cpf: stale %v err %v; want stale ErrNotFound", stale, err)
	}

	d, stale, err = s.WaitForVersion(context.Background(), 22222, 1)
	if err != nil || stale || d.Version != 1 {
		t.Fatalf("version already there: %d %v %v", d.Version, stale, err)
	}
}
