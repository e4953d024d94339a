package localmongo_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/personscore/localmongo"
)

func connect(tb testing.TB, s *localmongo.Server, opts ...*options.ClientOptions) *mongo.Client {
	tb.Helper()
	c, err := mongo.Connect(append([]*options.ClientOptions{options.Client().ApplyURI(s.URI())}, opts...)...)
	if err != nil {
		tb.Fatalf("connect %s: %v", s.URI(), err)
	}
	tb.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}
