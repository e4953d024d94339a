package mongotest

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Commands is how many commands named cmd (e.g. "update") the server has
// served on coll, from its `top` counters: a test reads it before and after
// to count round trips.
func Commands(tb testing.TB, coll *mongo.Collection, cmd string) int64 {
	tb.Helper()
	raw, err := coll.Database().Client().Database("admin").RunCommand(context.Background(), bson.D{{Key: "top", Value: 1}}).Raw()
	if err != nil {
		tb.Fatal(err)
	}
	n, _ := raw.Lookup("totals", coll.Database().Name()+"."+coll.Name(), cmd, "count").AsInt64OK()
	return n
}
