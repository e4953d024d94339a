package localmongo_test

import (
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/personscore/localmongo/mongotest"
)

const (
	workers   = 16
	perWorker = 200
)

type counterDoc struct {
	ID  string  `bson:"_id"`
	N   int     `bson:"n"`
	Log []int32 `bson:"log"`
}

// hammer runs workers×perWorker updates of one document concurrently and asserts
// that none was lost: FerretDB alone loses most of them, the gate must not.
func hammer(t *testing.T, update func(coll *mongo.Collection, i int) error) {
	s := mongotest.Start(t)
	ctx := testCtx(t)
	coll := connect(t, s, options.Client().SetMaxPoolSize(workers)).Database("atomic").Collection("counters")

	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "n", Value: 0}, {Key: "log", Value: bson.A{}}}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for j := range perWorker {
				if err := update(coll, w*perWorker+j); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var got counterDoc
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.N != workers*perWorker || len(got.Log) != workers*perWorker {
		t.Fatalf("lost updates: n=%d len(log)=%d, want %d each", got.N, len(got.Log), workers*perWorker)
	}
	seen := make(map[int32]bool, len(got.Log))
	for _, v := range got.Log {
		seen[v] = true
	}
	if len(seen) != workers*perWorker {
		t.Fatalf("log has %d distinct values, want %d", len(seen), workers*perWorker)
	}
}

func incPush(i int) bson.D {
	return bson.D{
		{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}},
		{Key: "$push", Value: bson.D{{Key: "log", Value: int32(i)}}},
	}
}

func TestConcurrentUpdateOneIsAtomic(t *testing.T) {
	hammer(t, func(coll *mongo.Collection, i int) error {
		res, err := coll.UpdateOne(t.Context(), bson.D{{Key: "_id", Value: "x"}}, incPush(i))
		if err == nil && res.ModifiedCount != 1 {
			t.Errorf("update %d: modified %d", i, res.ModifiedCount)
		}
		return err
	})
}

func TestConcurrentFindOneAndUpdateIsAtomic(t *testing.T) {
	hammer(t, func(coll *mongo.Collection, i int) error {
		return coll.FindOneAndUpdate(t.Context(), bson.D{{Key: "_id", Value: "x"}}, incPush(i)).Err()
	})
}
