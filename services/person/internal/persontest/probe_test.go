package persontest

import (
	"context"
	"testing"
	"time"

	"github.com/personscore/localmongo/mongotest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestProbe(t *testing.T) {
	t0 := time.Now()
	srv := mongotest.Start(t)
	t.Log("start", time.Since(t0))
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	coll := c.Database("x").Collection("y")
	t0 = time.Now()
	for i := range 200 {
		if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: i}, {Key: "s", Value: "a\x00b"}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("200 inserts", time.Since(t0))
	var d bson.M
	if err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: 1}}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	t.Logf("%q", d["s"])
}
