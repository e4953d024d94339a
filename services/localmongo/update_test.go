package localmongo

import (
	"fmt"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// An update of many fields of one big sub-document changes it in place after
// the first copy; the stored document it started from must stay as it was,
// and the result must be what the operators, one by one, give.
func TestUpdateOfManyFieldsLeavesTheOriginalAlone(t *testing.T) {
	items := bson.D{}
	for i := range 100 {
		items = append(items, bson.E{Key: fmt.Sprint("k", i), Value: int64(i)})
	}
	doc := bson.D{{Key: "_id", Value: int64(1)}, {Key: "items", Value: items}, {Key: "n", Value: int64(0)}}
	before := deepCopy(doc)

	set := bson.D{{Key: "n", Value: int64(1)}}
	for i := 0; i < 100; i += 3 {
		set = append(set, bson.E{Key: fmt.Sprint("items.k", i), Value: int64(-i)})
	}
	for i := 100; i < 140; i++ {
		set = append(set, bson.E{Key: fmt.Sprint("items.k", i), Value: int64(i)})
	}
	unset := bson.D{{Key: "items.k1", Value: ""}, {Key: "items.k120", Value: ""}, {Key: "items.k0", Value: ""}}
	u := bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: unset},
		{Key: "$inc", Value: bson.D{{Key: "items.k2", Value: int64(10)}, {Key: "items.k150", Value: int64(5)}}}}

	got, changed, err := applyUpdate(doc, u, false)
	if err != nil || !changed {
		t.Fatalf("applyUpdate: changed %v, err %v", changed, err)
	}
	if !reflect.DeepEqual(doc, before) {
		t.Fatal("the update changed the document it started from")
	}
	// The same operators, one update each (every one copies).
	want := doc
	for _, op := range u {
		for _, f := range op.Value.(bson.D) {
			if want, _, err = applyUpdate(want, bson.D{{Key: op.Key, Value: bson.D{f}}}, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("one update gave\n%v\nfield by field gave\n%v", got, want)
	}
	if v, _ := getPath(got, []string{"items", "k2"}); v != int64(12) {
		t.Fatalf("items.k2 = %v, want 12", v)
	}
	if _, ok := getPath(got, []string{"items", "k120"}); ok {
		t.Fatal("items.k120 still there after $unset")
	}
}

func deepCopy(d bson.D) bson.D {
	out := make(bson.D, len(d))
	for i, e := range d {
		if sub, ok := e.Value.(bson.D); ok {
			e.Value = deepCopy(sub)
		}
		out[i] = e
	}
	return out
}
