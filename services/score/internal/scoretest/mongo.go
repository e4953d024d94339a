package scoretest

import (
	"context"
	"testing"
	"time"

	"github.com/personscore/localmongo/mongotest"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Mongo is one test's embedded MongoDB-wire store.
type Mongo struct {
	URI string
	// DB is the score database through a client of the test's own, for
	// assertions.
	DB *mongo.Database
}

// StartMongo starts the store; it stops when the test ends.
func StartMongo(t testing.TB) *Mongo {
	t.Helper()
	m := &Mongo{URI: mongotest.Start(t).URI()}
	m.DB = m.Connect(t)
	return m
}

// Connect opens a client of its own, as a separate process would have, and
// returns its score database.
func (m *Mongo) Connect(t testing.TB) *mongo.Database {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(m.URI).SetTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database("score")
}
