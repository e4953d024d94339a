package integration_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/personevents"
	"github.com/personscore/score/rebuild"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// mongoEnv is one embedded MongoDB; each replica connects with its own client.
type mongoEnv struct{ *scoretest.Mongo }

func startMongo(t *testing.T) *mongoEnv { return &mongoEnv{scoretest.StartMongo(t)} }

// replica is one score process: its own MongoDB client, store, router and
// consumer of the shared queue. applied counts the events its consumer
// handled.
type replica struct {
	router  *rebuild.Router
	applied atomic.Int64
}

func (r *replica) Apply(ctx context.Context, ev eventbus.Event) error {
	r.applied.Add(1)
	return r.router.Apply(ctx, ev)
}

func (r *replica) ApplyBatch(ctx context.Context, evs []eventbus.Event) error {
	err := r.router.ApplyBatch(ctx, evs)
	if err == nil { // a failed batch comes back event by event, through Apply
		r.applied.Add(int64(len(evs)))
	}
	return err
}

func (r *replica) SnapshotCompleted(ctx context.Context, ev eventbus.Event) error {
	return r.router.SnapshotCompleted(ctx, ev)
}

// startReplica starts a score replica consuming service's queue; with run it
// also runs the router (rebuild driver), the store's watcher and the
// score.changed relays, as main does.
func startReplica(t *testing.T, env *mongoEnv, b *scoretest.Broker, service string, run bool) *replica {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	sc := mongodb.Config{DB: env.Connect(t), Logger: log}
	rc := rebuild.Config{Logger: log, MetaInterval: 100 * time.Millisecond}
	if run {
		rc.Publisher = b.Publisher()
		sc.Relays = scoretest.NewRelays(t, sc.DB, rc.Publisher, 500*time.Millisecond)
	}
	rc.Store = mongodb.New(sc)
	r := &replica{router: rebuild.New(rc)}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, run := range []func(context.Context) error{r.router.Run, rc.Store.Run} {
			wg.Add(1)
			go func() { defer wg.Done(); _ = run(ctx) }()
		}
		t.Cleanup(func() { cancel(); wg.Wait() })
	}
	c := b.Consumer(service, 4)
	personevents.Register(c, r)
	b.Run(c)
	return r
}

// waitVersions waits until every history's document in the active collection
// has applied its final version.
func waitVersions(t *testing.T, s *rebuild.Router, env *mongoEnv, hs []*historytest.History, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := scoretest.Semantics(t, env.DB.Collection(scoretest.Active(t, s)))
		behind := 0
		for _, h := range hs {
			if got[h.CPF].Version < h.Final() {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d cpfs not at their final version within %s", behind, len(hs), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
