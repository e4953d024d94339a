package relays_test

import (
	"context"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox/outboxtest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/relays"
	"go.uber.org/zap/zaptest"
)

// The relays publish the score.changed of the collection the store serves
// from, follow it when it switches, and flush at the end of Run.
func TestRelaysFollowTheActiveCollection(t *testing.T) {
	db := scoretest.StartMongo(t).DB
	pub := &outboxtest.Recorder{}
	log := zaptest.NewLogger(t)
	out := relays.New(db, pub, log, 100*time.Millisecond, 5*time.Second)
	store := mongodb.New(mongodb.Config{DB: db, Relays: out, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- out.Run(ctx) }()
	defer func() { cancel(); <-done }()

	person := map[string]any{"cpf": 22222, "name": "a"}
	apply := func(coll string, evs ...eventbus.Event) {
		t.Helper()
		if err := store.Apply(ctx, coll, mongodb.Live, 22222, evs); err != nil {
			t.Fatal(err)
		}
	}
	published := func(version int64) func() bool {
		return func() bool {
			for _, ev := range pub.Of(contract.ScoreChanged) {
				var c contract.ScoreChangedData
				if ev.DecodeData(&c) == nil && c.Version == version {
					return true
				}
			}
			return false
		}
	}

	// The store follows the default collection at its first read.
	if _, err := store.Get(ctx, 22222); err == nil {
		t.Fatal("a person before any event")
	}
	if out.Outbox(mongodb.DefaultCollection) == nil {
		t.Fatal("no relay of the default collection after the store followed it")
	}
	apply(mongodb.DefaultCollection, scoretest.Event(t, contract.PersonCreated, 1, person))
	scoretest.Eventually(t, 5*time.Second, "score.changed of the default collection", published(1))

	// A switch: the relay of the new collection publishes its score.changed.
	m, err := store.ReadMeta(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := m
	next.Active = "scores_next"
	if ok, err := store.SwapMeta(ctx, m, &next); !ok || err != nil {
		t.Fatalf("SwapMeta = %v, %v", ok, err)
	}
	store.Follow(next)
	if out.Outbox("scores_next") == nil {
		t.Fatal("no relay of the new collection after the switch")
	}
	apply("scores_next", scoretest.Event(t, contract.PersonCreated, 1, person),
		scoretest.Event(t, "income.created", 2, map[string]any{"id": "i", "value_cents": 1000_00}))
	scoretest.Eventually(t, 5*time.Second, "score.changed of the new collection", published(2))
}
