package mongodb_test

import (
	"testing"
	"time"

	"github.com/personscore/person/internal/persontest"
	"github.com/personscore/person/mongodb"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestSpeed(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	coll := mongodb.PersonsCollection(env.DB)
	coll.InsertOne(c, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 0}})
	t0 := time.Now()
	for range 50 {
		coll.FindOne(c, bson.D{{Key: "_id", Value: 1}})
	}
	t.Log("find", time.Since(t0)/50)
	t0 = time.Now()
	for i := range 50 {
		coll.UpdateOne(c, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: i}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: i + 1}}}})
	}
	t.Log("update", time.Since(t0)/50)
	t0 = time.Now()
	for i := range 50 {
		coll.UpdateOne(c, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$push", Value: bson.D{{Key: "a", Value: i}}}})
	}
	t.Log("push", time.Since(t0)/50)
}
