package localmongo_test

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/personscore/localmongo"
	"github.com/personscore/localmongo/mongotest"
)

// BenchmarkSequentialUpsert measures one client upserting distinct documents
// one after another. The journal is a file, or a PostgreSQL table when
// MONGOTEST_POSTGRESQL_URL is set.
func BenchmarkSequentialUpsert(b *testing.B) {
	s := mongotest.Start(b)
	ctx := b.Context()
	coll := connect(b, s).Database("bench").Collection("upserts")
	opts := options.UpdateOne().SetUpsert(true)

	i := 0
	start := time.Now()
	for b.Loop() {
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("%011d", i)}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: i}}}, {Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}, opts)
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "docs/s")
}

// BenchmarkStart measures Start (journal load + readiness ping) to Close, journal in a file.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		s, err := localmongo.Start(b.Context(), localmongo.Config{Addr: "127.0.0.1:0", Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
	}
}
