package localmongo_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/personscore/localmongo"
	"github.com/personscore/localmongo/mongotest"
)

func TestCloseIsIdempotent(t *testing.T) {
	start := time.Now()
	s, err := localmongo.Start(t.Context(), localmongo.Config{Addr: "127.0.0.1:0", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v, URI %s", time.Since(start), s.URI())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The public port is released.
	conn, err := net.DialTimeout("tcp", hostOf(t, s.URI()), time.Second)
	if err == nil {
		_ = conn.Close()
		t.Fatal("still accepting connections after Close")
	}
}

func TestDataPersistsAcrossRestart(t *testing.T) {
	cfg := mongotest.Config(t)
	cfg.Dir = filepath.Join(cfg.Dir, "nested", "data") // created by Start
	ctx := testCtx(t)

	s1, err := localmongo.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	coll := connect(t, s1).Database("persist").Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "keep"}, {Key: "v", Value: 41}}); err != nil {
		t.Fatal(err)
	}
	// Updates are journaled as operators and replayed.
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "keep"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "gone"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "gone"}}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := localmongo.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var got struct {
		V int `bson:"v"`
	}
	if err := connect(t, s2).Database("persist").Collection("things").FindOne(ctx, bson.D{{Key: "_id", Value: "keep"}}).Decode(&got); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got.V != 42 {
		t.Fatalf("after restart: v=%d", got.V)
	}
	if n, err := connect(t, s2).Database("persist").Collection("things").CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("after restart: %d documents (%v), want 1", n, err)
	}
	// A second restart loads the snapshot the first one wrote.
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := localmongo.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if err := connect(t, s3).Database("persist").Collection("things").FindOne(ctx, bson.D{{Key: "_id", Value: "keep"}}).Decode(&got); err != nil || got.V != 42 {
		t.Fatalf("after the second restart: v=%d, %v", got.V, err)
	}
}

func TestStartFailsOnBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := localmongo.Start(context.Background(), localmongo.Config{Addr: ln.Addr().String(), Dir: t.TempDir()})
	if err == nil {
		s.Close()
		t.Fatal("Start on a busy address succeeded")
	}
	t.Log(err)
}

func hostOf(t *testing.T, uri string) string {
	t.Helper()
	// mongodb://host:port/?...
	const p = "mongodb://"
	rest := uri[len(p):]
	for i, c := range rest {
		if c == '/' {
			return rest[:i]
		}
	}
	return rest
}
