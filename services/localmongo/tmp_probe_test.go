package localmongo_test

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/personscore/localmongo/mongotest"
)

func TestProbeGrowth(t *testing.T) {
	s := mongotest.Start(t)
	ctx := testCtx(t)
	coll := connect(t, s).Database("b").Collection("u")
	opts := options.UpdateOne().SetUpsert(true)
	start := time.Now()
	for i := range 1500 {
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: i}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: i}}}}, opts); err != nil {
			t.Fatal(err)
		}
		if i%250 == 249 {
			t.Logf("%d: %.0f/s", i+1, 250/time.Since(start).Seconds())
			start = time.Now()
		}
	}
	start = time.Now()
	for i := range 250 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 100000 + i}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("insert: %.0f/s", 250/time.Since(start).Seconds())
	start = time.Now()
	for i := range 250 {
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: i}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("findOne by _id: %.0f/s", 250/time.Since(start).Seconds())
}
