package mongodb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/personscore/localmongo/mongotest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func casCollection(t *testing.T, revs map[int64]int64) *mongo.Collection {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(mongotest.Start(t).URI()).SetTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database("score").Collection("scores")
	for cpf, rev := range revs {
		if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: cpf}, {Key: "rev", Value: rev}}); err != nil {
			t.Fatal(err)
		}
	}
	return coll
}

func revUpdate(next int64) bson.D {
	return bson.D{{Key: "$set", Value: bson.D{{Key: "rev", Value: next}, {Key: "touched", Value: true}}}}
}

func newOp(ctx context.Context, cpf, rev, next int64) *casOp {
	return &casOp{ctx: ctx, cpf: cpf, rev: rev, next: next, update: revUpdate(next), done: make(chan struct{})}
}

// storedRevs is each document's revision, by cpf.
func storedRevs(t *testing.T, coll *mongo.Collection) map[int64]int64 {
	t.Helper()
	cur, err := coll.Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		CPF int64 `bson:"_id"`
		Rev int64 `bson:"rev"`
	}
	if err := cur.All(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	out := map[int64]int64{}
	for _, r := range rows {
		out[r.CPF] = r.Rev
	}
	return out
}

// One command carries several compare-and-swaps, and its answer tells each
// one's outcome.
func TestCASBatchTellsEachOutcome(t *testing.T) {
	coll := casCollection(t, map[int64]int64{1: 1, 2: 1, 3: 1, 5: 1})
	b := &casBatcher{coll: coll}
	ctx := context.Background()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	ops := []*casOp{
		newOp(ctx, 1, 1, 2),  // applies
		newOp(ctx, 2, 7, 8),  // stale revision: refused
		newOp(ctx, 4, 1, 2),  // no such document: the upsert is undone
		newOp(gone, 3, 1, 2), // its caller gave up: not sent
		newOp(ctx, 5, 1, 2),  // the same document twice: only one applies
		newOp(ctx, 5, 1, 3),
	}
	before := mongotest.Commands(t, coll, "update")
	b.write(ops)
	if n := mongotest.Commands(t, coll, "update") - before; n != 1 {
		t.Errorf("%d update commands, want 1", n)
	}
	want := []bool{true, false, false, false}
	for i, w := range want {
		if ops[i].ok != w {
			t.Errorf("op %d: ok = %v, want %v", i, ops[i].ok, w)
		}
		if wantErr := i == 3; (ops[i].err != nil) != wantErr || (wantErr && !errors.Is(ops[i].err, ErrUnavailable)) {
			t.Errorf("op %d: err = %v", i, ops[i].err)
		}
	}
	if ops[4].ok == ops[5].ok || ops[4].err != nil || ops[5].err != nil {
		t.Errorf("two swaps of one revision: ok %v and %v (errors %v, %v), want exactly one applied", ops[4].ok, ops[5].ok, ops[4].err, ops[5].err)
	}
	got := storedRevs(t, coll)
	rev5 := int64(2)
	if ops[5].ok {
		rev5 = 3
	}
	for cpf, rev := range map[int64]int64{1: 2, 2: 1, 3: 1, 5: rev5} {
		if got[cpf] != rev {
			t.Errorf("cpf %d at revision %d, want %d", cpf, got[cpf], rev)
		}
	}
	if _, ok := got[4]; ok || len(got) != 4 {
		t.Errorf("documents %v, want cpfs 1, 2, 3, 5 only", got)
	}
}

// Swaps that come while every sender has a command under way go out together
// in the next.
func TestCASBatcherSendsWhatWaitedInOneCommand(t *testing.T) {
	const n = 64
	revs := map[int64]int64{}
	for cpf := int64(1); cpf <= n; cpf++ {
		revs[cpf] = 1
	}
	coll := casCollection(t, revs)
	b := &casBatcher{coll: coll}
	b.inFlight = casInFlight // as if every sender had a command under way
	before := mongotest.Commands(t, coll, "update")
	results := make(chan error, n)
	for cpf := int64(1); cpf <= n; cpf++ {
		go func() {
			ok, err := b.cas(context.Background(), cpf, 1, 2, revUpdate(2))
			if err == nil && !ok {
				err = errors.New("not applied")
			}
			results <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		queued := len(b.queue)
		b.mu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d swaps queued", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
	b.send() // a command under way is answered: its sender sends what waited
	for range n {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if c := mongotest.Commands(t, coll, "update") - before; c != 1 {
		t.Errorf("%d swaps sent with %d update commands, want 1", n, c)
	}
	for cpf, rev := range storedRevs(t, coll) {
		if rev != 2 {
			t.Errorf("cpf %d at revision %d, want 2", cpf, rev)
		}
	}
	b.mu.Lock()
	b.inFlight-- // the other command under way is answered too
	inFlight := b.inFlight
	b.mu.Unlock()
	if inFlight != 0 {
		t.Errorf("%d senders still running with nothing queued", inFlight)
	}
	// And one that comes now goes out at once, alone.
	if ok, err := b.cas(context.Background(), 1, 2, 3, revUpdate(3)); !ok || err != nil {
		t.Errorf("a swap on an idle batcher: ok %v, err %v", ok, err)
	}
}
