package localmongo_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/personscore/localmongo"
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
	dir := filepath.Join(t.TempDir(), "nested", "data") // created by Start
	cfg := localmongo.Config{Addr: "127.0.0.1:0", Dir: dir}
	ctx := testCtx(t)

	s1, err := localmongo.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	coll := connect(t, s1).Database("persist").Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "keep"}, {Key: "v", Value: 42}}); err != nil {
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
