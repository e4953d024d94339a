package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/personscore/localmongo/mongotest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// account is a consumer's read model: a running total per subject, with the
// VersionLog stored in the same document and written by the same
// compare-and-swap as the total it protects.
type account struct {
	ID      string     `bson:"_id"`
	Total   int64      `bson:"total"`
	Applied VersionLog `bson:"applied"`
	Rev     int64      `bson:"rev"`
}

// applyOnce is the idempotent handler pattern: load, skip a version already
// applied, else apply and write state + log together, retrying on a lost race.
func applyOnce(ctx context.Context, coll *mongo.Collection, ev Event) error {
	var data struct{ Amount int64 }
	if err := ev.DecodeData(&data); err != nil {
		return err
	}
	for range 100 {
		var a account
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: ev.Subject}}).Decode(&a)
		found := err == nil
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return err
		}
		if !a.Applied.Add(ev.Version) {
			return nil // a duplicate: already applied
		}
		a.ID, a.Total = ev.Subject, a.Total+data.Amount
		if !found {
			a.Rev = 1
			if _, err := coll.InsertOne(ctx, a); mongo.IsDuplicateKeyError(err) {
				continue
			} else if err != nil {
				return err
			}
			return nil
		}
		rev := a.Rev
		a.Rev++
		res, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: a.ID}, {Key: "rev", Value: rev}}, a)
		if err != nil {
			return err
		}
		if res.MatchedCount == 1 {
			return nil
		}
	}
	return errors.New("too much contention")
}

// Idempotency: every event is published twice, out of order, and some are
// redelivered after their state change was already written (the handler
// fails after the write); each version still changes the state exactly once.
func TestIdempotentConsumerAppliesEachVersionOnce(t *testing.T) {
	srv := mongotest.Start(t)
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("idem").Collection("accounts")

	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-idem", Workers: 4,
		RetryDelays: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond}}
	c := f.consumer(conn, &cfg)
	var mu sync.Mutex
	failedOnce := map[string]bool{}
	c.Handle("money.deposited", func(ctx context.Context, ev Event) error {
		if err := applyOnce(ctx, coll, ev); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if ev.Version%3 == 0 && !failedOnce[ev.ID] {
			failedOnce[ev.ID] = true
			return errors.New("crashed after the write, before the ack")
		}
		return nil
	})
	startConsumer(t, c)

	const subjects, versions = 4, 12
	want := map[string]int64{}
	var events []Event
	for s := range subjects {
		subject := fmt.Sprint("acct-", s)
		for v := int64(1); v <= versions; v++ {
			amount := int64(rand.IntN(100) + 1)
			want[subject] += amount
			ev := mustEvent(t, "money.deposited", subject, v, map[string]int64{"amount": amount})
			events = append(events, ev, ev) // a duplicate publish
		}
	}
	rand.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	publish(t, newPub(t, f, conn), events...)

	waitFor(t, 30*time.Second, "all versions applied", func() bool {
		for subject := range want {
			var a account
			if err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: subject}}).Decode(&a); err != nil || a.Applied.Max() != versions || a.Applied.Applied != versions {
				return false
			}
		}
		return true
	})
	// Let the retries and duplicates still in flight arrive.
	waitFor(t, 10*time.Second, "the queue to settle", func() bool {
		return consumedTotal(f) == float64(2*subjects*versions)
	})
	for subject, total := range want {
		var a account
		if err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: subject}}).Decode(&a); err != nil {
			t.Fatal(err)
		}
		if a.Total != total {
			raw, _ := json.Marshal(a)
			t.Errorf("%s total %d, want %d (state changed twice by a duplicate): %s", subject, a.Total, total, raw)
		}
	}
}

func consumedTotal(f *fixture) float64 {
	families, _ := f.reg.Gather()
	for _, fam := range families {
		if fam.GetName() == "eventbus_consumed_total" {
			var n float64
			for _, m := range fam.GetMetric() {
				n += m.GetCounter().GetValue()
			}
			return n
		}
	}
	return 0
}
