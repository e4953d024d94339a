package localmongo_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/personscore/localmongo/mongotest"
)

const workers = 16

// perWorker is 200: 3,200 $inc updates of one document, as specified; -short
// runs 25 per worker. (FerretDB v1, the former engine, kept only 6-8% of them.)
func perWorker() int {
	if testing.Short() {
		return 25
	}
	return 200
}

const pushPerWorker = 25

type counterDoc struct {
	ID  string  `bson:"_id"`
	N   int     `bson:"n"`
	Log []int32 `bson:"log"`
}

// hammer runs workers×perWorker updates of one document concurrently and asserts
// that none was lost.
func hammer(t *testing.T, perWorker int, withLog bool, update func(ctx context.Context, coll *mongo.Collection, i int) error) {
	s := mongotest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	total := workers * perWorker
	coll := connect(t, s, options.Client().SetMaxPoolSize(workers)).Database("atomic").Collection("counters")

	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "n", Value: 0}, {Key: "log", Value: bson.A{}}}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := range workers {
		wg.Go(func() {
			for j := range perWorker {
				if err := update(ctx, coll, w*perWorker+j); err != nil {
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
	if got.N != total {
		t.Fatalf("lost updates: n=%d, want %d", got.N, total)
	}
	if !withLog {
		t.Logf("%d concurrent updates applied in %v", total, time.Since(start))
		return
	}
	if len(got.Log) != total {
		t.Fatalf("lost pushes: len(log)=%d, want %d", len(got.Log), total)
	}
	seen := make(map[int32]bool, len(got.Log))
	for _, v := range got.Log {
		seen[v] = true
	}
	if len(seen) != total {
		t.Fatalf("log has %d distinct values, want %d", len(seen), total)
	}
	t.Logf("%d concurrent updates applied in %v", total, time.Since(start))
}

func inc() bson.D { return bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}} }

func incPush(i int) bson.D {
	return bson.D{
		{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}},
		{Key: "$push", Value: bson.D{{Key: "log", Value: int32(i)}}},
	}
}

func TestConcurrentUpdateOneIsAtomic(t *testing.T) {
	hammer(t, perWorker(), false, func(ctx context.Context, coll *mongo.Collection, i int) error {
		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "x"}}, inc())
		if err == nil && res.ModifiedCount != 1 {
			t.Errorf("update %d: modified %d", i, res.ModifiedCount)
		}
		return err
	})
}

func TestConcurrentFindOneAndUpdateIsAtomic(t *testing.T) {
	hammer(t, perWorker(), false, func(ctx context.Context, coll *mongo.Collection, i int) error {
		return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "x"}}, inc()).Err()
	})
}

func TestConcurrentIncAndPushIsAtomic(t *testing.T) {
	hammer(t, pushPerWorker, true, func(ctx context.Context, coll *mongo.Collection, i int) error {
		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "x"}}, incPush(i))
		if err == nil && res.ModifiedCount != 1 {
			t.Errorf("update %d: modified %d", i, res.ModifiedCount)
		}
		return err
	})
}
