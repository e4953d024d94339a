package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/personscore/localmongo"
	"github.com/personscore/stack/measure"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// StoreConfig is one store benchmark.
type StoreConfig struct {
	// PostgreSQLURL selects the PostgreSQL journal: a fresh database is
	// created next to the one it names and dropped at the end. Empty: the
	// file journal in a temporary folder.
	PostgreSQLURL string
	Duration      time.Duration // per operation
	// Sizes are the collection sizes the find, update and cas operations
	// run on (default 100 and 1000 documents).
	Sizes []int
}

func (c StoreConfig) sizes() []int {
	if len(c.Sizes) == 0 {
		return []int{100, 1000}
	}
	return c.Sizes
}

// StoreResult is one operation's sequential rate on one backend.
type StoreResult struct {
	Backend string          `json:"backend"`
	Op      string          `json:"op"`
	Docs    int             `json:"docs,omitempty"` // documents in the collection
	IDType  string          `json:"id_type"`        // int or string _id
	N       int             `json:"n"`
	Seconds float64         `json:"seconds"`
	PerS    float64         `json:"per_s"`
	Latency measure.Summary `json:"latency"`
}

// Store operations measured, each by one client, one after another. Besides
// the plain upsert rate, they show what the services' access pattern costs
// (an int64 _id as person and score use, _id plus version as a
// compare-and-swap), on collections of two sizes: a store whose cost grows
// with the collection shows it here.
const (
	StoreUpsert = "upsert_new" // updateOne upsert of a new _id ($set + $inc): the FACTS.md number
	StoreFind   = "find"       // findOne by _id
	StoreUpdate = "update"     // updateOne by _id of a person-sized document ($set + $push)
	StoreCAS    = "cas"        // findOne + updateOne on {_id, version}: one person change
)

// BenchStore starts a fresh embedded server (the same localmongo package
// bin/localmongo runs) and measures sequential operations.
func BenchStore(ctx context.Context, cfg StoreConfig) ([]StoreResult, error) {
	backend := "file"
	lc := localmongo.Config{Addr: "127.0.0.1:0"}
	if cfg.PostgreSQLURL != "" {
		backend = "postgresql"
		u, drop, err := FreshPostgreSQL(ctx, cfg.PostgreSQLURL, "loadgen_store")
		if err != nil {
			return nil, err
		}
		defer drop()
		lc.PostgreSQLURL = u
	} else {
		dir, err := os.MkdirTemp("", "loadgen-store-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		lc.Dir = dir
	}
	srv, err := localmongo.Start(ctx, lc)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		return nil, err
	}
	defer client.Disconnect(context.Background())
	db := client.Database("bench")
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}

	var out []StoreResult
	measure := func(op string, docs int, idType string, f func(i int) error) error {
		var lat []time.Duration
		start := time.Now()
		i := 0
		for time.Since(start) < cfg.Duration {
			t := time.Now()
			if err := f(i); err != nil {
				return fmt.Errorf("%s %s: %w", backend, op, err)
			}
			lat = append(lat, time.Since(t))
			i++
		}
		secs := time.Since(start).Seconds()
		out = append(out, StoreResult{Backend: backend, Op: op, Docs: docs, IDType: idType, N: i, Seconds: secs,
			PerS: float64(i) / secs, Latency: measure.Summarize(lat)})
		return nil
	}

	upserts := db.Collection("upserts")
	upsert := options.UpdateOne().SetUpsert(true)
	if err := measure(StoreUpsert, 0, "int", func(i int) error {
		_, err := upserts.UpdateOne(ctx, bson.D{{Key: "_id", Value: i}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: i}}}, {Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}, upsert)
		return err
	}); err != nil {
		return out, err
	}

	for _, n := range cfg.sizes() {
		for _, idType := range []string{"int", "string"} {
			coll := db.Collection(fmt.Sprintf("persons_%s_%d", idType, n))
			id := func(i int) any {
				if idType == "string" {
					return fmt.Sprint(i % n)
				}
				return int64(i % n)
			}
			var batch []any
			for i := range n {
				batch = append(batch, personDoc(id(i)))
				if len(batch) == 100 || i == n-1 {
					if _, err := coll.InsertMany(ctx, batch); err != nil {
						return out, err
					}
					batch = batch[:0]
				}
			}
			if err := measure(StoreFind, n, idType, func(i int) error {
				return coll.FindOne(ctx, bson.D{{Key: "_id", Value: id(i * 7)}}).Err()
			}); err != nil {
				return out, err
			}
			if err := measure(StoreUpdate, n, idType, func(i int) error {
				_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id(i * 7)}}, bson.D{
					{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprint("n", i)}, {Key: "updated_at", Value: time.Now()}}},
					{Key: "$push", Value: bson.D{{Key: "outbox", Value: bson.D{{Key: "id", Value: fmt.Sprint("e", i)}, {Key: "type", Value: "person.updated"}}}}},
				})
				return err
			}); err != nil {
				return out, err
			}
			if err := measure(StoreCAS, n, idType, func(i int) error {
				key := id(i * 7)
				var cur struct {
					Version int64 `bson:"version"`
				}
				if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&cur); err != nil {
					return err
				}
				res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "version", Value: cur.Version}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: cur.Version + 1}}}})
				if err == nil && res.MatchedCount != 1 {
					err = fmt.Errorf("compare-and-swap lost with one writer")
				}
				return err
			}); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func personDoc(id any) bson.D {
	items := bson.D{}
	for k := range 5 {
		items = append(items, bson.E{Key: fmt.Sprintf("0190%v-item-%d", id, k), Value: bson.D{
			{Key: "id", Value: fmt.Sprintf("0190%v-item-%d", id, k)}, {Key: "kind", Value: "income"},
			{Key: "type", Value: "salary"}, {Key: "value", Value: int64(123456)}, {Key: "version", Value: int64(k + 2)},
			{Key: "created_at", Value: time.Now()},
		}})
	}
	return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: "load"}, {Key: "address", Value: "rua"},
		{Key: "date_of_birth", Value: "1980-01-02"}, {Key: "items", Value: items}, {Key: "version", Value: int64(6)},
		{Key: "deleted", Value: false}, {Key: "score_version", Value: int64(0)}, {Key: "created_at", Value: time.Now()},
		{Key: "updated_at", Value: time.Now()}, {Key: "outbox", Value: bson.A{}}}
}

// FreshPostgreSQL creates an empty database beside the one baseURL names and
// returns its URL and a function that drops it.
func FreshPostgreSQL(ctx context.Context, baseURL, prefix string) (string, func(), error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", nil, err
	}
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	name := prefix + "_" + hex.EncodeToString(rnd[:])
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL %s: %w", u.Redacted(), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, baseURL)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// PGWrites counts the row writes (inserts + updates + deletes) PostgreSQL has
// seen in a database's tables: with FerretDB's PostgreSQL backend one row is
// one MongoDB document, so this counts document writes. Statistics are
// reported with a small delay; callers wait a second before reading.
func PGWrites(ctx context.Context, dbURL string) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	_, _ = conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
	rows, err := conn.Query(ctx, `SELECT schemaname, coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
		FROM pg_stat_user_tables GROUP BY schemaname`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var schema string
		var n int64
		if err := rows.Scan(&schema, &n); err != nil {
			return nil, err
		}
		out[schema] = n
	}
	return out, rows.Err()
}
