package localmongo

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Documents are immutable once stored: an update builds a new document that
// shares every part it does not change (copy on write along the changed
// paths), so readers never see a half-applied write and a failed update
// leaves nothing behind.

// getPath returns the value at path (no array expansion; numeric components index arrays).
func getPath(v any, path []string) (any, bool) {
	for _, k := range path {
		switch c := v.(type) {
		case bson.D:
			child, ok := lookup(c, k)
			if !ok {
				return nil, false
			}
			v = child
		case bson.A:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// setPath returns a copy of container with path set to val, creating
// documents along the way, and whether anything changed.
func setPath(container any, path []string, val any) (any, bool, error) {
	var w *cow
	return w.set(container, path, val)
}

// unsetPath returns a copy of container without path (an array element
// becomes null, as in MongoDB) and whether anything changed.
func unsetPath(container any, path []string) (any, bool) {
	var w *cow
	return w.unset(container, path)
}

// cow is one update's copy-on-write state. The documents it copied or made
// are seen by nobody else until the update is stored, so its later operators
// change them in place: an update of k fields of one big sub-document copies
// it once, and finds its keys by an index instead of a scan. A nil cow copies
// every time.
type cow struct {
	owned map[*bson.E]*ownedDoc // by the document's first element
}

type ownedDoc struct {
	pos   map[string]int // key → position, once built
	scans int            // lookups by scan so far
}

// An owned document of indexFrom fields or more is indexed after
// scansBeforeIndex lookups (building the index costs about that many scans).
const (
	indexFrom        = 32
	scansBeforeIndex = 8
)

// find returns the position of key in c, or -1. An owned document is
// indexed once it has been scanned a few times.
func (w *cow) find(c bson.D, key string) int {
	if w != nil && len(c) >= indexFrom {
		if o, ok := w.owned[&c[0]]; ok {
			if o.pos == nil && o.scans >= scansBeforeIndex {
				o.pos = make(map[string]int, len(c))
				for i := len(c) - 1; i >= 0; i-- { // the first of duplicate keys wins
					o.pos[c[i].Key] = i
				}
			}
			if o.pos != nil {
				if i, ok := o.pos[key]; ok {
					return i
				}
				return -1
			}
			o.scans++
		}
	}
	for i, e := range c {
		if e.Key == key {
			return i
		}
	}
	return -1
}

// own returns c itself when this update owns it, else a copy it then owns,
// with room for extra more elements.
func (w *cow) own(c bson.D, extra int) bson.D {
	if w != nil && len(c) > 0 {
		if _, ok := w.owned[&c[0]]; ok {
			return c
		}
	}
	out := make(bson.D, len(c), len(c)+extra)
	copy(out, c)
	w.adopt(out)
	return out
}

func (w *cow) adopt(c bson.D) {
	if w == nil || len(c) == 0 {
		return
	}
	if w.owned == nil {
		w.owned = map[*bson.E]*ownedDoc{}
	}
	if _, ok := w.owned[&c[0]]; !ok {
		w.owned[&c[0]] = &ownedDoc{}
	}
}

// appendField adds a field to c, owned or not.
func (w *cow) appendField(c bson.D, e bson.E) bson.D {
	out := w.own(c, 1+len(c)/4)
	var o *ownedDoc
	if w != nil && len(out) > 0 {
		o = w.owned[&out[0]]
		delete(w.owned, &out[0])
	}
	out = append(out, e)
	if w != nil {
		w.adopt(out)
		if o != nil {
			if o.pos != nil {
				o.pos[e.Key] = len(out) - 1
			}
			w.owned[&out[0]] = o
		}
	}
	return out
}

func (w *cow) set(container any, path []string, val any) (any, bool, error) {
	switch c := container.(type) {
	case bson.D:
		if i := w.find(c, path[0]); i >= 0 {
			nv, changed := val, !equalExact(c[i].Value, val)
			if len(path) > 1 {
				var err error
				if nv, changed, err = w.set(c[i].Value, path[1:], val); err != nil {
					return nil, false, err
				}
			}
			if !changed {
				return c, false, nil
			}
			out := w.own(c, 0)
			out[i].Value = nv
			return out, true, nil
		}
		nv := val
		if len(path) > 1 {
			var err error
			if nv, _, err = w.set(bson.D{}, path[1:], val); err != nil {
				return nil, false, err
			}
		}
		return w.appendField(c, bson.E{Key: path[0], Value: nv}), true, nil
	case bson.A:
		i, err := strconv.Atoi(path[0])
		if err != nil || i < 0 {
			return nil, false, fmt.Errorf("cannot create field %q in an array", path[0])
		}
		out := slices.Clone(c)
		for len(out) <= i {
			out = append(out, nil)
		}
		nv := val
		if len(path) > 1 {
			old := out[i]
			if old == nil {
				old = bson.D{}
			}
			var changed bool
			if nv, changed, err = w.set(old, path[1:], val); err != nil {
				return nil, false, err
			}
			if !changed && i < len(c) {
				return c, false, nil
			}
		} else if i < len(c) && equalExact(c[i], val) {
			return c, false, nil
		}
		out[i] = nv
		return out, true, nil
	}
	return nil, false, fmt.Errorf("cannot create field %q in a %T", path[0], container)
}

func (w *cow) unset(container any, path []string) (any, bool) {
	switch c := container.(type) {
	case bson.D:
		i := w.find(c, path[0])
		if i < 0 {
			return c, false
		}
		if len(path) == 1 {
			if w != nil && len(c) > 0 {
				if _, ok := w.owned[&c[0]]; ok {
					delete(w.owned, &c[0]) // positions move: owned again, unindexed
					out := slices.Delete(c, i, i+1)
					w.adopt(out)
					return out, true
				}
			}
			out := make(bson.D, 0, len(c)-1)
			out = append(out, c[:i]...)
			out = append(out, c[i+1:]...)
			w.adopt(out)
			return out, true
		}
		nv, changed := w.unset(c[i].Value, path[1:])
		if !changed {
			return c, false
		}
		out := w.own(c, 0)
		out[i].Value = nv
		return out, true
	case bson.A:
		i, err := strconv.Atoi(path[0])
		if err != nil || i < 0 || i >= len(c) {
			return c, false
		}
		out := slices.Clone(c)
		if len(path) == 1 {
			if out[i] == nil {
				return c, false
			}
			out[i] = nil
			return out, true
		}
		nv, changed := w.unset(c[i], path[1:])
		if !changed {
			return c, false
		}
		out[i] = nv
		return out, true
	}
	return container, false
}

// equalExact is equality including the numeric type (for "did $set change it").
func equalExact(a, b any) bool {
	if fmt.Sprintf("%T", a) != fmt.Sprintf("%T", b) {
		return false
	}
	return equal(a, b)
}

// isUpdateDoc reports whether u holds update operators (else it is a replacement).
func isUpdateDoc(u bson.D) bool {
	return len(u) > 0 && strings.HasPrefix(u[0].Key, "$")
}

// applyUpdate returns doc changed by the operators of u, and whether it changed.
// inserting applies $setOnInsert (an upsert's new document).
func applyUpdate(doc bson.D, u bson.D, inserting bool) (bson.D, bool, error) {
	cur := any(doc)
	changedAny := false
	w := &cow{}
	id, _ := lookup(doc, "_id")
	for _, op := range u {
		fields, ok := op.Value.(bson.D)
		if !ok {
			return nil, false, fmt.Errorf("%s needs a document", op.Key)
		}
		for _, f := range fields {
			path := strings.Split(f.Key, ".")
			if path[0] == "_id" && op.Key != "$setOnInsert" && !(op.Key == "$set" && equal(f.Value, id)) {
				return nil, false, fmt.Errorf("performing an update on the path '_id' would modify the immutable field '_id'")
			}
			var changed bool
			var err error
			switch op.Key {
			case "$set":
				cur, changed, err = w.set(cur, path, f.Value)
			case "$setOnInsert":
				if inserting {
					cur, changed, err = w.set(cur, path, f.Value)
				}
			case "$unset":
				cur, changed = w.unset(cur, path)
			case "$inc":
				old, found := getPath(cur, path)
				if !found {
					old = int32(0)
				}
				var sum any
				if sum, err = addNumbers(old, f.Value); err == nil {
					cur, changed, err = w.set(cur, path, sum)
				}
			case "$push", "$addToSet":
				cur, changed, err = w.push(cur, path, f.Value, op.Key == "$addToSet")
			case "$pull", "$pullAll":
				cur, changed, err = w.pull(cur, path, f.Value, op.Key == "$pullAll")
			default:
				return nil, false, errUnsupported("update operator " + op.Key)
			}
			if err != nil {
				return nil, false, err
			}
			changedAny = changedAny || changed
		}
	}
	return cur.(bson.D), changedAny, nil
}

func addNumbers(a, b any) (any, error) {
	if _, ok := asFloat(a); !ok {
		return nil, fmt.Errorf("cannot apply $inc to a value of non-numeric type %T", a)
	}
	if _, ok := asFloat(b); !ok {
		return nil, fmt.Errorf("cannot $inc with a non-numeric argument")
	}
	_, af := a.(float64)
	_, bf := b.(float64)
	if af || bf {
		x, _ := asFloat(a)
		y, _ := asFloat(b)
		return x + y, nil
	}
	x, _ := asInt(a)
	y, _ := asInt(b)
	s := x + y
	_, a32 := a.(int32)
	_, b32 := b.(int32)
	if a32 && b32 && s >= math.MinInt32 && s <= math.MaxInt32 {
		return int32(s), nil
	}
	return s, nil
}

func (w *cow) push(cur any, path []string, v any, unique bool) (any, bool, error) {
	items := bson.A{v}
	if d, ok := v.(bson.D); ok && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
		if len(d) != 1 || d[0].Key != "$each" {
			return nil, false, errUnsupported("push modifier " + d[0].Key)
		}
		each, ok := d[0].Value.(bson.A)
		if !ok {
			return nil, false, fmt.Errorf("$each needs an array")
		}
		items = each
	}
	old, found := getPath(cur, path)
	var arr bson.A
	if found {
		a, ok := old.(bson.A)
		if !ok {
			return nil, false, fmt.Errorf("the field '%s' must be an array", strings.Join(path, "."))
		}
		arr = a
	}
	out := make(bson.A, len(arr), len(arr)+len(items))
	copy(out, arr)
	for _, it := range items {
		if unique && slices.ContainsFunc(out, func(x any) bool { return equal(x, it) }) {
			continue
		}
		out = append(out, it)
	}
	if found && len(out) == len(arr) {
		return cur, false, nil
	}
	return w.set(cur, path, out)
}

func (w *cow) pull(cur any, path []string, cond any, all bool) (any, bool, error) {
	old, found := getPath(cur, path)
	if !found {
		return cur, false, nil
	}
	arr, ok := old.(bson.A)
	if !ok {
		return nil, false, fmt.Errorf("cannot apply $pull to a non-array value")
	}
	var drop func(el any) (bool, error)
	switch c := cond.(type) {
	case bson.A:
		if !all {
			drop = func(el any) (bool, error) { return equal(el, c), nil }
			break
		}
		drop = func(el any) (bool, error) {
			return slices.ContainsFunc(c, func(x any) bool { return equal(el, x) }), nil
		}
	case bson.D:
		if all {
			return nil, false, fmt.Errorf("$pullAll needs an array")
		}
		if ops, isOps := operatorDoc(c); isOps {
			drop = func(el any) (bool, error) { return matchOps([]any{el}, ops) }
		} else {
			drop = func(el any) (bool, error) {
				d, isDoc := el.(bson.D)
				if !isDoc {
					return false, nil
				}
				return matches(d, c)
			}
		}
	default:
		if all {
			return nil, false, fmt.Errorf("$pullAll needs an array")
		}
		drop = func(el any) (bool, error) { return equal(el, c), nil }
	}
	out := make(bson.A, 0, len(arr))
	for _, el := range arr {
		d, err := drop(el)
		if err != nil {
			return nil, false, err
		}
		if !d {
			out = append(out, el)
		}
	}
	if len(out) == len(arr) {
		return cur, false, nil
	}
	return w.set(cur, path, out)
}

// upsertSeed is the document an upsert starts from: the filter's plain
// equality fields (and $eq).
func upsertSeed(filter bson.D) (bson.D, error) {
	doc := any(bson.D{})
	for _, e := range filter {
		if strings.HasPrefix(e.Key, "$") {
			continue
		}
		v := e.Value
		if ops, ok := operatorDoc(v); ok {
			eq, has := lookup(ops, "$eq")
			if !has {
				continue
			}
			v = eq
		}
		var err error
		if doc, _, err = setPath(doc, strings.Split(e.Key, "."), v); err != nil {
			return nil, err
		}
	}
	return doc.(bson.D), nil
}

// withID puts _id first, adding id if the document has none.
func withID(doc bson.D, id any) bson.D {
	out := make(bson.D, 0, len(doc)+1)
	if v, ok := lookup(doc, "_id"); ok {
		id = v
	}
	out = append(out, bson.E{Key: "_id", Value: id})
	for _, e := range doc {
		if e.Key != "_id" {
			out = append(out, e)
		}
	}
	return out
}
