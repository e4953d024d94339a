package scoretest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/score"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/relays"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"
)

// NewRelays returns score's relays of db's collections (see relays.Relays),
// publishing to pub and sweeping every sweep (0: the outbox's default),
// running until the test ends.
func NewRelays(t testing.TB, db *mongo.Database, pub outbox.Publisher, sweep time.Duration) *relays.Relays {
	r := relays.New(db, pub, zap.NewNop(), sweep, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// Doc is a stored document with its outbox.
type Doc struct {
	score.Document `bson:",inline"`
	Outbox         []eventbus.Event `bson:"outbox"`
}

// ReadDoc reads the document of cpf in coll; false if there is none.
func ReadDoc(t testing.TB, coll *mongo.Collection, cpf int64) (Doc, bool) {
	t.Helper()
	var d Doc
	err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: cpf}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return d, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return d, true
}

// Semantics reads what every document of coll means, by cpf.
func Semantics(t testing.TB, coll *mongo.Collection) map[int64]historytest.Semantic {
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

// ScoreChange is what a score.changed says.
type ScoreChange struct {
	Score int64 `json:"score"`
	Live  bool  `json:"live"`
}

// Changes decodes a document's pending score.changed events in version order.
func Changes(t testing.TB, events []eventbus.Event) []ScoreChange {
	t.Helper()
	events = slices.Clone(events)
	slices.SortFunc(events, func(a, b eventbus.Event) int { return int(a.Version - b.Version) })
	var out []ScoreChange
	for i, ev := range events {
		if ev.Type != contract.ScoreChanged {
			t.Fatalf("outbox holds %s", ev.Type)
		}
		if i > 0 && ev.Version <= events[i-1].Version {
			t.Fatalf("two score.changed with version %d", ev.Version)
		}
		var c ScoreChange
		if err := ev.DecodeData(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// Event is an event of person about cpf 22222.
func Event(t testing.TB, typ string, v int64, data any) eventbus.Event {
	t.Helper()
	e, err := eventbus.NewEvent(context.Background(), "/person", typ, "22222", v, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Eventually polls cond until it holds or the deadline passes.
var Eventually = eventbustest.Eventually

// RebuildStatuser reports the rebuild of a read model (rebuild.Router).
type RebuildStatuser interface {
	RebuildStatus(ctx context.Context) (score.Rebuild, error)
}

// Active is the collection serving s's read model now, as its rebuild status
// reports it (with or without a rebuild).
func Active(t testing.TB, s RebuildStatuser) string {
	t.Helper()
	r, err := s.RebuildStatus(context.Background())
	if err != nil && !errors.Is(err, score.ErrNoRebuild) {
		t.Fatalf("rebuild status: %v", err)
	}
	return r.Active
}
