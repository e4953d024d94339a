package integration_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/score"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/personevents"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// mongoEnv is one embedded MongoDB; each replica connects with its own client.
type mongoEnv struct{ *scoretest.Mongo }

func startMongo(t *testing.T) *mongoEnv { return &mongoEnv{scoretest.StartMongo(t)} }

// replica is one score process: its own MongoDB client, store and consumer of
// the shared queue. applied counts the events its consumer handled.
type replica struct {
	store   *mongodb.Store
	applied atomic.Int64
}

func (r *replica) Apply(ctx context.Context, ev eventbus.Event) error {
	r.applied.Add(1)
	return r.store.Apply(ctx, ev)
}

func (r *replica) ApplyBatch(ctx context.Context, evs []eventbus.Event) error {
	err := r.store.ApplyBatch(ctx, evs)
	if err == nil { // a failed batch comes back event by event, through Apply
		r.applied.Add(int64(len(evs)))
	}
	return err
}

func (r *replica) SnapshotCompleted(ctx context.Context, ev eventbus.Event) error {
	return r.store.SnapshotCompleted(ctx, ev)
}

// startReplica starts a score replica consuming service's queue; with run it
// also runs the store (relay, watcher, rebuild driver) as main does.
func startReplica(t *testing.T, env *mongoEnv, b *scoretest.Broker, service string, run bool) *replica {
	t.Helper()
	cfg := mongodb.Config{DB: env.Connect(t), Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
		MetaInterval: 100 * time.Millisecond, OutboxSweep: 500 * time.Millisecond}
	if run {
		cfg.Publisher = b.Publisher()
	}
	r := &replica{store: mongodb.New(cfg)}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.store.Run(ctx) }()
		t.Cleanup(func() { cancel(); wg.Wait() })
	}
	c := b.Consumer(service, 4)
	personevents.Register(c, r)
	b.Run(c)
	return r
}

func semantics(t *testing.T, coll *mongo.Collection) map[int64]historytest.Semantic {
	t.Helper()
	cur, err := coll.Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []score.Document
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	out := map[int64]historytest.Semantic{}
	for _, d := range docs {
		out[d.CPF] = historytest.Of(d)
	}
	return out
}

// waitVersions waits until every history's document in the active collection
// has applied its final version.
func waitVersions(t *testing.T, s *mongodb.Store, env *mongoEnv, hs []*historytest.History, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := semantics(t, env.DB.Collection(scoretest.Active(t, s)))
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
