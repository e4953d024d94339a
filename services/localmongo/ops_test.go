package localmongo_test

import (
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/personscore/localmongo/mongotest"
)

type event struct {
	ID   string `bson:"id"`
	Type string `bson:"type"`
}

type person struct {
	ID      string  `bson:"_id"`
	Email   string  `bson:"email,omitempty"`
	Name    string  `bson:"name,omitempty"`
	Version int     `bson:"version"`
	Outbox  []event `bson:"outbox"`
}

// TestOperations covers every MongoDB operation the services rely on.
func TestOperations(t *testing.T) {
	s := mongotest.Start(t)
	ctx := testCtx(t)
	db := connect(t, s).Database("ops")

	t.Run("InsertDuplicateID", func(t *testing.T) {
		coll := db.Collection("dup")
		if _, err := coll.InsertOne(ctx, person{ID: "a"}); err != nil {
			t.Fatal(err)
		}
		_, err := coll.InsertOne(ctx, person{ID: "a"})
		if !mongo.IsDuplicateKeyError(err) {
			t.Fatalf("second insert: want duplicate key error, got %v", err)
		}
		var we mongo.WriteException
		if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != 11000 {
			t.Fatalf("want WriteException with code 11000, got %#v", err)
		}
	})

	t.Run("UniqueSecondaryIndex", func(t *testing.T) {
		coll := db.Collection("uniq")
		_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{
			Keys:    bson.D{{Key: "email", Value: 1}},
			Options: options.Index().SetUnique(true).SetName("email_unique"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := coll.InsertOne(ctx, person{ID: "1", Email: "a@x"}); err != nil {
			t.Fatal(err)
		}
		_, err = coll.InsertOne(ctx, person{ID: "2", Email: "a@x"})
		if !mongo.IsDuplicateKeyError(err) {
			t.Fatalf("insert with same email: want duplicate key error, got %v", err)
		}
		if _, err := coll.InsertOne(ctx, person{ID: "3", Email: "b@x"}); err != nil {
			t.Fatal(err)
		}
		// An update that would break a unique index is a duplicate key error too.
		_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "3"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: "a@x"}}}})
		if !mongo.IsDuplicateKeyError(err) {
			t.Fatalf("update to a taken email: want duplicate key error, got %v", err)
		}
		var still person
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "3"}}).Decode(&still); err != nil || still.Email != "b@x" {
			t.Fatalf("document changed by rejected update: %+v, %v", still, err)
		}
	})

	t.Run("FindOneAndUpdateUpsertReturnAfter", func(t *testing.T) {
		coll := db.Collection("fam")
		opts := options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)
		upd := bson.D{
			{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}},
			{Key: "$setOnInsert", Value: bson.D{{Key: "name", Value: "Ana"}}},
		}
		for want := 1; want <= 2; want++ {
			var got person
			if err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "p1"}}, upd, opts).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.ID != "p1" || got.Version != want || got.Name != "Ana" {
				t.Fatalf("call %d: got %+v", want, got)
			}
		}
	})

	t.Run("CompareAndSwapUpdateOne", func(t *testing.T) {
		coll := db.Collection("cas")
		if _, err := coll.InsertOne(ctx, person{ID: "k", Version: 3}); err != nil {
			t.Fatal(err)
		}
		bump := bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "new"}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}}
		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k"}, {Key: "version", Value: 2}}, bump)
		if err != nil {
			t.Fatal(err)
		}
		if res.MatchedCount != 0 || res.ModifiedCount != 0 {
			t.Fatalf("stale version: matched %d modified %d, want 0", res.MatchedCount, res.ModifiedCount)
		}
		res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k"}, {Key: "version", Value: 3}}, bump)
		if err != nil {
			t.Fatal(err)
		}
		if res.MatchedCount != 1 || res.ModifiedCount != 1 {
			t.Fatalf("current version: matched %d modified %d, want 1", res.MatchedCount, res.ModifiedCount)
		}
	})

	t.Run("PushEachAndPull", func(t *testing.T) {
		coll := db.Collection("outbox")
		if _, err := coll.InsertOne(ctx, person{ID: "o", Outbox: []event{}}); err != nil {
			t.Fatal(err)
		}
		push := bson.D{{Key: "$push", Value: bson.D{{Key: "outbox", Value: bson.D{
			{Key: "$each", Value: bson.A{event{ID: "e1", Type: "a"}, event{ID: "e2", Type: "b"}, event{ID: "e3", Type: "c"}}},
		}}}}}
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "o"}}, push); err != nil {
			t.Fatal(err)
		}
		outbox := func() []bson.Raw {
			var doc struct {
				Outbox []bson.Raw `bson:"outbox"`
			}
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "o"}}).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			return doc.Outbox
		}
		if got := outbox(); len(got) != 3 {
			t.Fatalf("after $push $each: %d elements, want 3", len(got))
		}

		pull := func(v any) int64 {
			res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "o"}},
				bson.D{{Key: "$pull", Value: bson.D{{Key: "outbox", Value: v}}}})
			if err != nil {
				t.Fatal(err)
			}
			return res.ModifiedCount
		}
		// A document condition is a query on the elements (as in MongoDB).
		if n := pull(bson.D{{Key: "id", Value: "e1"}}); n != 1 {
			t.Fatalf("$pull by condition: modified %d, want 1", n)
		}
		// The exact element, as read from the document, is a condition on all its fields.
		if n := pull(outbox()[0]); n != 1 {
			t.Fatalf("$pull exact element: modified %d, want 1", n)
		}
		if n := pull(bson.D{{Key: "id", Value: "nope"}}); n != 0 {
			t.Fatalf("$pull matching nothing: modified %d, want 0", n)
		}
		got := outbox()
		var last event
		if len(got) != 1 || bson.Unmarshal(got[0], &last) != nil || last.ID != "e3" {
			t.Fatalf("outbox after $pull: %v", got)
		}
	})

	t.Run("NonEmptyArrayQueries", func(t *testing.T) {
		coll := db.Collection("pending")
		docs := []any{
			person{ID: "empty", Outbox: []event{}},
			person{ID: "one", Outbox: []event{{ID: "e1"}}},
			person{ID: "two", Outbox: []event{{ID: "e1"}, {ID: "e2"}}},
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
		for name, filter := range map[string]bson.D{
			`{"outbox.0": {$exists: true}}`: {{Key: "outbox.0", Value: bson.D{{Key: "$exists", Value: true}}}},
			`{outbox: {$ne: []}}`:           {{Key: "outbox", Value: bson.D{{Key: "$ne", Value: bson.A{}}}}},
			`{outbox: {$not: {$size: 0}}}`:  {{Key: "outbox", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$size", Value: 0}}}}}},
		} {
			t.Run(name, func(t *testing.T) {
				n, err := coll.CountDocuments(ctx, filter)
				if err != nil {
					t.Fatal(err)
				}
				if n != 2 {
					t.Fatalf("matched %d, want 2", n)
				}
			})
		}
	})

	t.Run("CountFindSortLimitDelete", func(t *testing.T) {
		coll := db.Collection("list")
		for i := range 10 {
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "score", Value: (i * 7) % 10}, {Key: "even", Value: i%2 == 0}}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "even", Value: true}})
		if err != nil || n != 5 {
			t.Fatalf("CountDocuments = %d, %v; want 5", n, err)
		}
		cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "score", Value: -1}}).SetLimit(3))
		if err != nil {
			t.Fatal(err)
		}
		var top []struct {
			Score int `bson:"score"`
		}
		if err := cur.All(ctx, &top); err != nil {
			t.Fatal(err)
		}
		if len(top) != 3 || top[0].Score != 9 || top[1].Score != 8 || top[2].Score != 7 {
			t.Fatalf("top 3 by score: %+v", top)
		}
		res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 4}})
		if err != nil || res.DeletedCount != 1 {
			t.Fatalf("DeleteOne = %+v, %v", res, err)
		}
		res, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 4}})
		if err != nil || res.DeletedCount != 0 {
			t.Fatalf("second DeleteOne = %+v, %v", res, err)
		}
		if n, _ := coll.CountDocuments(ctx, bson.D{}); n != 9 {
			t.Fatalf("after delete: %d docs, want 9", n)
		}
	})

	t.Run("ReplaceOneWithVersionFilter", func(t *testing.T) {
		coll := db.Collection("replace")
		if _, err := coll.InsertOne(ctx, person{ID: "r", Name: "old", Version: 1}); err != nil {
			t.Fatal(err)
		}
		res, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "r"}, {Key: "version", Value: 0}}, person{ID: "r", Name: "lost", Version: 1})
		if err != nil || res.MatchedCount != 0 {
			t.Fatalf("stale ReplaceOne = %+v, %v; want 0 matched", res, err)
		}
		res, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "r"}, {Key: "version", Value: 1}}, person{ID: "r", Name: "new", Version: 2})
		if err != nil || res.MatchedCount != 1 || res.ModifiedCount != 1 {
			t.Fatalf("current ReplaceOne = %+v, %v; want 1 matched", res, err)
		}
		var got person
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "r"}}).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.Name != "new" || got.Version != 2 {
			t.Fatalf("after replace: %+v", got)
		}
	})

	// Unacknowledged writes set OP_MSG moreToCome: the server must not answer
	// them, or the connection desynchronizes.
	t.Run("UnacknowledgedWrites", func(t *testing.T) {
		c := connect(t, s, options.Client().SetMaxPoolSize(1))
		coll := c.Database("ops").Collection("w0", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
		for i := range 20 {
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := coll.CountDocuments(ctx, bson.D{})
		if err != nil || n != 20 {
			t.Fatalf("CountDocuments = %d, %v; want 20", n, err)
		}
	})

	t.Run("FindOneAndUpdateProjection", func(t *testing.T) {
		coll := db.Collection("proj")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "p"}, {Key: "name", Value: "x"}, {Key: "big", Value: "y"}}); err != nil {
			t.Fatal(err)
		}
		var got bson.D
		err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "p"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "y"}}}},
			options.FindOneAndUpdate().SetProjection(bson.D{{Key: "name", Value: 1}}).SetReturnDocument(options.After)).Decode(&got)
		if err != nil {
			t.Fatal(err)
		}
		want := bson.D{{Key: "_id", Value: "p"}, {Key: "name", Value: "y"}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("findAndModify with projection = %v, want %v", got, want)
		}
	})
}

func TestTopCountsCommands(t *testing.T) {
	s := mongotest.Start(t)
	ctx := testCtx(t)
	c := connect(t, s)
	coll := c.Database("topdb").Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Err(); err != nil {
		t.Fatal(err)
	}
	raw, err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "top", Value: 1}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	count := func(kind string) int64 {
		n, _ := raw.Lookup("totals", "topdb.things", kind, "count").AsInt64OK()
		return n
	}
	if count("insert") != 1 || count("update") != 3 || count("queries") != 1 {
		t.Fatalf("top for topdb.things = %v, want 1 insert, 3 updates, 1 query", raw.Lookup("totals", "topdb.things"))
	}
}

func TestUpdateDoesNotCreateACollection(t *testing.T) {
	s := mongotest.Start(t)
	ctx := testCtx(t)
	db := connect(t, s).Database("nocreate")
	if _, err := db.Collection("gone").UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Collection("gone2").FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("findAndModify on a missing collection: %v", err)
	}
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil || len(names) != 0 {
		t.Fatalf("collections %v (%v), want none", names, err)
	}
	if _, err := db.Collection("made").UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
	if names, _ := db.ListCollectionNames(ctx, bson.D{}); len(names) != 1 || names[0] != "made" {
		t.Fatalf("after an upsert: collections %v, want [made]", names)
	}
}

// An unordered bulk write of updates is one update command with one statement
// per document: the store applies every statement it can, names each one it
// refused by its index, and counts one command in top; an ordered one stops
// at the first refused statement.
func TestBulkUpdateStatements(t *testing.T) {
	s := mongotest.Start(t)
	ctx := testCtx(t)
	c := connect(t, s)
	coll := c.Database("bulkdb").Collection("docs")
	seed := func() {
		t.Helper()
		if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
			t.Fatal(err)
		}
		// b's list is no array: $pullAll on it fails.
		if _, err := coll.InsertMany(ctx, []any{
			bson.D{{Key: "_id", Value: "a"}, {Key: "list", Value: bson.A{"x", "y"}}},
			bson.D{{Key: "_id", Value: "b"}, {Key: "list", Value: "x"}},
			bson.D{{Key: "_id", Value: "c"}, {Key: "list", Value: bson.A{"x"}}},
			bson.D{{Key: "_id", Value: "d"}, {Key: "list", Value: bson.A{"y"}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	models := func() []mongo.WriteModel {
		var ms []mongo.WriteModel
		for _, id := range []string{"a", "b", "c", "d", "missing"} {
			ms = append(ms, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).
				SetUpdate(bson.D{{Key: "$pullAll", Value: bson.D{{Key: "list", Value: bson.A{"x"}}}}}))
		}
		return ms
	}
	updates := func() int64 {
		t.Helper()
		raw, err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "top", Value: 1}}).Raw()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := raw.Lookup("totals", "bulkdb.docs", "update", "count").AsInt64OK()
		return n
	}
	lists := func() map[string]string {
		t.Helper()
		cur, err := coll.Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.M
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, d := range docs {
			out[d["_id"].(string)] = fmt.Sprint(d["list"])
		}
		return out
	}
	refused := func(err error, want int) {
		t.Helper()
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) != 1 || bwe.WriteErrors[0].Index != want {
			t.Fatalf("bulk error %v, want a BulkWriteException naming statement %d only", err, want)
		}
	}

	seed()
	before := updates()
	res, err := coll.BulkWrite(ctx, models(), options.BulkWrite().SetOrdered(false))
	refused(err, 1)
	if n := updates() - before; n != 1 {
		t.Errorf("the unordered bulk counted as %d update commands in top, want 1", n)
	}
	if res == nil || res.MatchedCount != 3 || res.ModifiedCount != 2 {
		t.Errorf("unordered bulk result %+v, want 3 matched (a, c, d), 2 modified (a, c)", res)
	}
	want := map[string]string{"a": "[y]", "b": "x", "c": "[]", "d": "[y]"}
	if got := lists(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the unordered bulk: %v, want %v", got, want)
	}

	seed()
	before = updates()
	_, err = coll.BulkWrite(ctx, models(), options.BulkWrite().SetOrdered(true))
	refused(err, 1)
	if n := updates() - before; n != 1 {
		t.Errorf("the ordered bulk counted as %d update commands in top, want 1", n)
	}
	want = map[string]string{"a": "[y]", "b": "x", "c": "[x]", "d": "[y]"}
	if got := lists(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the ordered bulk: %v, want %v", got, want)
	}
}
