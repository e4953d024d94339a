package rebuild_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/score"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/rebuild"
	"go.uber.org/zap/zaptest"
)

// replica is one score process: a Router on a Store with its own MongoDB
// client, as a separate pod would have.
type replica struct {
	*rebuild.Router
	store *mongodb.Store
}

// Get reads the read model as score's API does.
func (r replica) Get(ctx context.Context, cpf int64) (score.Document, error) {
	return r.store.Get(ctx, cpf)
}

// newReplica is a replica on env of which nothing runs and nothing relays
// score.changed.
func newReplica(t *testing.T, env *scoretest.Mongo, cfg rebuild.Config) replica {
	t.Helper()
	return replicaOf(t, cfg, mongodb.Config{DB: env.Connect(t)})
}

func replicaOf(t *testing.T, cfg rebuild.Config, sc mongodb.Config) replica {
	t.Helper()
	sc.Logger = zaptest.NewLogger(t)
	cfg.Store = mongodb.New(sc)
	cfg.Logger = sc.Logger
	return replica{rebuild.New(cfg), cfg.Store}
}

// runReplica is a replica on env that runs as cmd/score runs it (router,
// read-your-writes watcher, score.changed relayed to cfg.Publisher by outboxes
// sweeping every sweep) until the test ends.
func runReplica(t *testing.T, env *scoretest.Mongo, cfg rebuild.Config, sweep time.Duration) replica {
	t.Helper()
	db := env.Connect(t)
	r := replicaOf(t, cfg, mongodb.Config{DB: db, Relays: scoretest.NewRelays(t, db, cfg.Publisher, sweep)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{r.Run, r.store.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

func applyAll(t *testing.T, r replica, events []eventbus.Event) {
	t.Helper()
	for _, ev := range events {
		if err := r.Apply(context.Background(), ev); err != nil {
			t.Fatalf("Apply(%s %s v%d): %v", ev.Type, ev.Subject, ev.Version, err)
		}
	}
}

// ev is an event of person about cpf 22222.
func ev(t *testing.T, typ string, v int64, data any) eventbus.Event {
	return scoretest.Event(t, typ, v, data)
}

func waitRebuild(t *testing.T, r replica, within time.Duration, state string) score.Rebuild {
	t.Helper()
	var rb score.Rebuild
	scoretest.Eventually(t, within, "rebuild reaches "+state, func() bool {
		var err error
		rb, err = r.RebuildStatus(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rb.State != state && !rb.Running() {
			t.Fatalf("rebuild ended %s (%s), want %s", rb.State, rb.Error, state)
		}
		return rb.State == state
	})
	return rb
}
