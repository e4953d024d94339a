package localmongo

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// errUnsupported marks query or update features the engine does not implement;
// the client gets a command error naming them instead of a silent mismatch.
type errUnsupported string

func (e errUnsupported) Error() string { return "localmongo: unsupported " + string(e) }

// lookup returns the value of key in d.
func lookup(d bson.D, key string) (any, bool) {
	for _, e := range d {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// resolve returns every value path reaches in v, with MongoDB's array
// semantics: a numeric component indexes an array, any other component is
// looked up in each document element of an array.
func resolve(v any, path []string, out []any) []any {
	if len(path) == 0 {
		return append(out, v)
	}
	switch c := v.(type) {
	case bson.D:
		if child, ok := lookup(c, path[0]); ok {
			return resolve(child, path[1:], out)
		}
	case bson.A:
		if i, err := strconv.Atoi(path[0]); err == nil && i >= 0 {
			if i < len(c) {
				out = resolve(c[i], path[1:], out)
			}
			return out
		}
		for _, el := range c {
			if d, ok := el.(bson.D); ok {
				out = resolve(d, path, out)
			}
		}
	}
	return out
}

// matches reports whether doc matches filter.
func matches(doc bson.D, filter bson.D) (bool, error) {
	for _, e := range filter {
		ok, err := matchElem(doc, e)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func matchElem(doc bson.D, e bson.E) (bool, error) {
	switch e.Key {
	case "$and", "$or", "$nor":
		list, ok := e.Value.(bson.A)
		if !ok || len(list) == 0 {
			return false, fmt.Errorf("%s needs a non-empty array", e.Key)
		}
		for _, sub := range list {
			f, ok := sub.(bson.D)
			if !ok {
				return false, fmt.Errorf("%s entries must be documents", e.Key)
			}
			m, err := matches(doc, f)
			if err != nil {
				return false, err
			}
			switch {
			case e.Key == "$and" && !m:
				return false, nil
			case e.Key == "$or" && m:
				return true, nil
			case e.Key == "$nor" && m:
				return false, nil
			}
		}
		return e.Key != "$or", nil
	case "$comment":
		return true, nil
	}
	if strings.HasPrefix(e.Key, "$") {
		return false, errUnsupported("query operator " + e.Key)
	}
	vals := resolve(doc, strings.Split(e.Key, "."), nil)
	if ops, ok := operatorDoc(e.Value); ok {
		return matchOps(vals, ops)
	}
	return matchEq(vals, e.Value), nil
}

// operatorDoc reports whether v is a document of query operators ({$gt: 1}).
func operatorDoc(v any) (bson.D, bool) {
	d, ok := v.(bson.D)
	if !ok || len(d) == 0 || !strings.HasPrefix(d[0].Key, "$") {
		return nil, false
	}
	return d, true
}

// matchEq: some value equals want, or is an array with an element equal to it;
// a missing field equals null.
func matchEq(vals []any, want any) bool {
	if len(vals) == 0 {
		return want == nil
	}
	for _, v := range vals {
		if equal(v, want) {
			return true
		}
		if a, ok := v.(bson.A); ok {
			for _, el := range a {
				if equal(el, want) {
					return true
				}
			}
		}
	}
	return false
}

// matchCmp: some value (or array element) of the same type class as want
// compares to it as ok says.
func matchCmp(vals []any, want any, ok func(c int) bool) bool {
	try := func(v any) bool {
		return typeClass(v) == typeClass(want) && ok(compare(v, want))
	}
	for _, v := range vals {
		if try(v) {
			return true
		}
		if a, isArr := v.(bson.A); isArr {
			for _, el := range a {
				if try(el) {
					return true
				}
			}
		}
	}
	return false
}

func matchOps(vals []any, ops bson.D) (bool, error) {
	for _, op := range ops {
		var m bool
		switch op.Key {
		case "$eq":
			m = matchEq(vals, op.Value)
		case "$ne":
			m = !matchEq(vals, op.Value)
		case "$gt":
			m = matchCmp(vals, op.Value, func(c int) bool { return c > 0 })
		case "$gte":
			m = matchCmp(vals, op.Value, func(c int) bool { return c >= 0 })
		case "$lt":
			m = matchCmp(vals, op.Value, func(c int) bool { return c < 0 })
		case "$lte":
			m = matchCmp(vals, op.Value, func(c int) bool { return c <= 0 })
		case "$in", "$nin":
			list, ok := op.Value.(bson.A)
			if !ok {
				return false, fmt.Errorf("%s needs an array", op.Key)
			}
			for _, w := range list {
				if matchEq(vals, w) {
					m = true
					break
				}
			}
			if op.Key == "$nin" {
				m = !m
			}
		case "$exists":
			m = (len(vals) > 0) == truthy(op.Value)
		case "$size":
			n, ok := asInt(op.Value)
			if !ok {
				return false, fmt.Errorf("$size needs a number")
			}
			for _, v := range vals {
				if a, isArr := v.(bson.A); isArr && int64(len(a)) == n {
					m = true
				}
			}
		case "$not":
			sub, ok := operatorDoc(op.Value)
			if !ok {
				return false, fmt.Errorf("$not needs an operator document")
			}
			inner, err := matchOps(vals, sub)
			if err != nil {
				return false, err
			}
			m = !inner
		case "$elemMatch":
			cond, ok := op.Value.(bson.D)
			if !ok {
				return false, fmt.Errorf("$elemMatch needs a document")
			}
			for _, v := range vals {
				a, isArr := v.(bson.A)
				if !isArr {
					continue
				}
				for _, el := range a {
					em, err := elemMatches(el, cond)
					if err != nil {
						return false, err
					}
					if em {
						m = true
						break
					}
				}
			}
		default:
			return false, errUnsupported("query operator " + op.Key)
		}
		if !m {
			return false, nil
		}
	}
	return true, nil
}

// elemMatches matches one array element: against operators when cond is an
// operator document, else as a document against a filter.
func elemMatches(el any, cond bson.D) (bool, error) {
	if ops, ok := operatorDoc(cond); ok {
		return matchOps([]any{el}, ops)
	}
	d, ok := el.(bson.D)
	if !ok {
		return false, nil
	}
	return matches(d, cond)
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case nil:
		return false
	}
	if n, ok := asFloat(v); ok {
		return n != 0
	}
	return true
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		if x == math.Trunc(x) {
			return int64(x), true
		}
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// typeClass orders BSON types as MongoDB compares them; numbers share a class.
func typeClass(v any) int {
	switch v.(type) {
	case bson.MinKey:
		return 0
	case nil, bson.Null, bson.Undefined:
		return 1
	case int32, int64, float64, bson.Decimal128:
		return 2
	case string, bson.Symbol:
		return 3
	case bson.D:
		return 4
	case bson.A:
		return 5
	case bson.Binary:
		return 6
	case bson.ObjectID:
		return 7
	case bool:
		return 8
	case bson.DateTime, time.Time:
		return 9
	case bson.Timestamp:
		return 10
	case bson.Regex:
		return 11
	case bson.MaxKey:
		return 13
	}
	return 12
}

func equal(a, b any) bool {
	return typeClass(a) == typeClass(b) && compare(a, b) == 0
}

// compare orders two values as MongoDB does (type class first).
func compare(a, b any) int {
	ca, cb := typeClass(a), typeClass(b)
	if ca != cb {
		return cmpInt(int64(ca), int64(cb))
	}
	switch x := a.(type) {
	case int32, int64, float64:
		return compareNumbers(a, b)
	case string:
		y, _ := b.(string)
		return strings.Compare(x, y)
	case bson.D:
		y := b.(bson.D)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := compare(x[i].Value, y[i].Value); c != 0 {
				return c
			}
			if c := strings.Compare(x[i].Key, y[i].Key); c != 0 {
				return c
			}
		}
		return cmpInt(int64(len(x)), int64(len(y)))
	case bson.A:
		y := b.(bson.A)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := compare(x[i], y[i]); c != 0 {
				return c
			}
		}
		return cmpInt(int64(len(x)), int64(len(y)))
	case bson.Binary:
		y := b.(bson.Binary)
		if c := cmpInt(int64(len(x.Data)), int64(len(y.Data))); c != 0 {
			return c
		}
		if c := cmpInt(int64(x.Subtype), int64(y.Subtype)); c != 0 {
			return c
		}
		return bytes.Compare(x.Data, y.Data)
	case bson.ObjectID:
		y := b.(bson.ObjectID)
		return bytes.Compare(x[:], y[:])
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case bson.DateTime:
		return cmpInt(int64(x), int64(dateOf(b)))
	case time.Time:
		return cmpInt(int64(dateOf(a)), int64(dateOf(b)))
	case bson.Timestamp:
		y := b.(bson.Timestamp)
		if c := cmpInt(int64(x.T), int64(y.T)); c != 0 {
			return c
		}
		return cmpInt(int64(x.I), int64(y.I))
	case nil, bson.Null, bson.Undefined, bson.MinKey, bson.MaxKey:
		return 0
	}
	// Anything else (regex, decimal, code…): by its encoding.
	ra, _ := bson.Marshal(bson.D{{Key: "v", Value: a}})
	rb, _ := bson.Marshal(bson.D{{Key: "v", Value: b}})
	return bytes.Compare(ra, rb)
}

func dateOf(v any) bson.DateTime {
	switch x := v.(type) {
	case bson.DateTime:
		return x
	case time.Time:
		return bson.NewDateTimeFromTime(x)
	}
	return 0
}

func compareNumbers(a, b any) int {
	ia, aInt := a.(int64)
	if i32, ok := a.(int32); ok {
		ia, aInt = int64(i32), true
	}
	ib, bInt := b.(int64)
	if i32, ok := b.(int32); ok {
		ib, bInt = int64(i32), true
	}
	if aInt && bInt {
		return cmpInt(ia, ib)
	}
	fa, _ := asFloat(a)
	fb, _ := asFloat(b)
	switch {
	case fa < fb:
		return -1
	case fa > fb:
		return 1
	}
	return 0
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sortDocs sorts docs by a sort specification ({field: 1|-1, ...}).
func sortLess(spec bson.D) func(a, b bson.D) int {
	return func(a, b bson.D) int {
		for _, k := range spec {
			dir, _ := asInt(k.Value)
			path := strings.Split(k.Key, ".")
			va, vb := sortValue(a, path), sortValue(b, path)
			if c := compare(va, vb); c != 0 {
				if dir < 0 {
					return -c
				}
				return c
			}
		}
		return 0
	}
}

func sortValue(d bson.D, path []string) any {
	vals := resolve(d, path, nil)
	if len(vals) == 0 {
		return nil
	}
	return vals[0]
}

// project applies a projection: inclusion ({a: 1}) or exclusion ({a: 0}),
// top-level or dotted fields; _id is kept unless excluded.
func project(doc bson.D, proj bson.D) (bson.D, error) {
	if len(proj) == 0 {
		return doc, nil
	}
	include := -1
	keepID := true
	for _, p := range proj {
		if _, isDoc := p.Value.(bson.D); isDoc || strings.HasPrefix(p.Key, "$") {
			return nil, errUnsupported("projection of " + p.Key)
		}
		on := truthy(p.Value)
		if p.Key == "_id" {
			keepID = on
			continue
		}
		v := 0
		if on {
			v = 1
		}
		if include >= 0 && include != v {
			return nil, fmt.Errorf("projection cannot mix inclusion and exclusion")
		}
		include = v
	}
	if include == 1 {
		out := bson.D{}
		if id, ok := lookup(doc, "_id"); ok && keepID {
			out = append(out, bson.E{Key: "_id", Value: id})
		}
		for _, p := range proj {
			if p.Key == "_id" {
				continue
			}
			if v, ok := getPath(doc, strings.Split(p.Key, ".")); ok {
				nd, _, err := setPath(out, strings.Split(p.Key, "."), v)
				if err != nil {
					return nil, err
				}
				out = nd.(bson.D)
			}
		}
		return out, nil
	}
	out := any(doc)
	for _, p := range proj {
		if p.Key == "_id" && keepID {
			continue
		}
		out, _ = unsetPath(out, strings.Split(p.Key, "."))
	}
	return out.(bson.D), nil
}
