package mongodb_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/score"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap/zaptest"
)

// mongoEnv is one embedded MongoDB; each replica connects with its own client.
type mongoEnv struct{ *scoretest.Mongo }

func startMongo(t *testing.T) *mongoEnv { return &mongoEnv{scoretest.StartMongo(t)} }

// replica is a Store with its own MongoDB client, as a separate pod would have.
func (e *mongoEnv) replica(t *testing.T, cfg mongodb.Config) *mongodb.Store {
	t.Helper()
	cfg.DB = e.Connect(t)
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	return mongodb.New(cfg)
}

// recorder is a publisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []eventbus.Event
	fail   error
}

func (r *recorder) Publish(_ context.Context, events ...eventbus.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, events...)
	return nil
}

func (r *recorder) of(typ string) []eventbus.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []eventbus.Event
	for _, ev := range r.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// rawDoc is a stored document with its outbox.
type rawDoc struct {
	score.Document `bson:",inline"`
	Outbox         []eventbus.Event `bson:"outbox"`
}

func readDoc(t *testing.T, coll *mongo.Collection, cpf int64) (rawDoc, bool) {
	t.Helper()
	var d rawDoc
	err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: cpf}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return d, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return d, true
}

// semantics reads every document of coll.
func semantics(t *testing.T, coll *mongo.Collection) map[int64]historytest.Semantic {
	t.Helper()
	cur, err := coll.Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []rawDoc
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	out := map[int64]historytest.Semantic{}
	for _, d := range docs {
		out[d.CPF] = historytest.Of(d.Document)
	}
	return out
}

type scoreChange struct {
	Score int64 `json:"score"`
	Live  bool  `json:"live"`
}

// changes decodes a document's pending score.changed events in version order.
func changes(t *testing.T, events []eventbus.Event) []scoreChange {
	t.Helper()
	events = slices.Clone(events)
	slices.SortFunc(events, func(a, b eventbus.Event) int { return int(a.Version - b.Version) })
	var out []scoreChange
	for i, ev := range events {
		if ev.Type != contract.ScoreChanged {
			t.Fatalf("outbox holds %s", ev.Type)
		}
		if i > 0 && ev.Version <= events[i-1].Version {
			t.Fatalf("two score.changed with version %d", ev.Version)
		}
		var c scoreChange
		if err := ev.DecodeData(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func applyAll(t *testing.T, s *mongodb.Store, events []eventbus.Event) {
	t.Helper()
	for _, ev := range events {
		if err := s.Apply(context.Background(), ev); err != nil {
			t.Fatalf("Apply(%s %s v%d): %v", ev.Type, ev.Subject, ev.Version, err)
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
