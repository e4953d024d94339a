package localmongo

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// maxWireVersion is what the server announces (MongoDB 7.0's).
const maxWireVersion = 21

// run executes one command and returns its reply document.
func (s *wireServer) run(cmd bson.D, connID int32) (reply bson.D) {
	if len(cmd) == 0 {
		return cmdError(59, "CommandNotFound", "empty command")
	}
	defer func() {
		if r := recover(); r != nil {
			reply = cmdError(1, "InternalError", fmt.Sprintf("localmongo: %v", r))
		}
	}()
	name := cmd[0].Key
	dbv, _ := lookup(cmd, "$db")
	db, _ := dbv.(string)
	collName, _ := cmd[0].Value.(string)
	ns := db + "." + collName
	str := func(k string) string { v, _ := lookup(cmd, k); x, _ := v.(string); return x }
	doc := func(k string) bson.D { v, _ := lookup(cmd, k); x, _ := v.(bson.D); return x }
	num := func(k string) int64 { v, _ := lookup(cmd, k); x, _ := asInt(v); return x }
	ok := bson.E{Key: "ok", Value: 1.0}
	if isWriteCommand(name) {
		defer func() {
			if err := s.eng.j.flush(); err != nil {
				reply = errDoc(err)
			}
		}()
	}
	if collName != "" {
		s.top.count(ns, name)
	} else if strings.EqualFold(name, "getMore") {
		c, _ := lookup(cmd, "collection")
		cn, _ := c.(string)
		s.top.count(db+"."+cn, name)
	}

	switch strings.ToLower(name) {
	case "hello", "ismaster":
		return bson.D{{Key: "ismaster", Value: true}, {Key: "isWritablePrimary", Value: true}, {Key: "helloOk", Value: true},
			{Key: "maxBsonObjectSize", Value: int32(16 << 20)}, {Key: "maxMessageSizeBytes", Value: int32(48_000_000)},
			{Key: "maxWriteBatchSize", Value: int32(100_000)}, {Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
			{Key: "logicalSessionTimeoutMinutes", Value: int32(30)}, {Key: "connectionId", Value: connID},
			{Key: "minWireVersion", Value: int32(0)}, {Key: "maxWireVersion", Value: int32(maxWireVersion)},
			{Key: "readOnly", Value: false}, ok}
	case "ping", "endsessions", "killallsessions", "killsessions", "refreshsessions", "getlasterror", "logout":
		return bson.D{ok}
	case "buildinfo":
		return bson.D{{Key: "version", Value: "7.0.0"}, {Key: "versionArray", Value: bson.A{int32(7), int32(0), int32(0), int32(0)}},
			{Key: "gitVersion", Value: "localmongo"}, {Key: "maxBsonObjectSize", Value: int32(16 << 20)}, ok}
	case "top":
		return s.top.reply()
	case "getparameter", "getcmdlineopts", "serverstatus", "hostinfo", "connectionstatus", "whatsmyuri", "getlog":
		return bson.D{ok}
	case "listdatabases":
		dbs := bson.A{}
		for _, n := range s.eng.dbNames() {
			dbs = append(dbs, bson.D{{Key: "name", Value: n}, {Key: "sizeOnDisk", Value: int64(0)}, {Key: "empty", Value: false}})
		}
		return bson.D{{Key: "databases", Value: dbs}, {Key: "totalSize", Value: int64(0)}, ok}
	case "listcollections":
		list := []bson.Raw{}
		for _, n := range s.eng.collNames(db) {
			d := bson.D{{Key: "name", Value: n}, {Key: "type", Value: "collection"}, {Key: "options", Value: bson.D{}},
				{Key: "info", Value: bson.D{{Key: "readOnly", Value: false}}}}
			m, err := matches(d, doc("filter"))
			if err != nil {
				return errDoc(err)
			}
			if m {
				raw, _ := bson.Marshal(d)
				list = append(list, raw)
			}
		}
		return s.firstBatch(db+".$cmd.listCollections", list, 0, false)
	case "create":
		s.eng.coll(db, collName, true)
		return bson.D{ok}
	case "drop":
		existed, err := s.eng.dropColl(db, collName, true)
		if err != nil {
			return errDoc(err)
		}
		if !existed {
			return cmdError(26, "NamespaceNotFound", "ns not found")
		}
		return bson.D{{Key: "ns", Value: ns}, {Key: "nIndexesWas", Value: int32(1)}, ok}
	case "dropdatabase":
		if err := s.eng.dropDB(db, true); err != nil {
			return errDoc(err)
		}
		return bson.D{{Key: "dropped", Value: db}, ok}
	case "createindexes":
		return s.createIndexes(db, collName, cmd)
	case "listindexes":
		c := s.eng.coll(db, collName, false)
		if c == nil {
			return cmdError(26, "NamespaceNotFound", "ns does not exist: "+ns)
		}
		specs := []bson.Raw{}
		raw, _ := bson.Marshal(bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}})
		specs = append(specs, raw)
		c.mu.RLock()
		for _, ix := range c.indexes {
			raw, _ := bson.Marshal(ix.spec)
			specs = append(specs, raw)
		}
		c.mu.RUnlock()
		return s.firstBatch(ns, specs, 0, false)
	case "dropindexes", "deleteindexes":
		c := s.eng.coll(db, collName, false)
		if c == nil {
			return cmdError(26, "NamespaceNotFound", "ns not found")
		}
		which := str("index")
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := s.eng.j.append(bson.D{{Key: "o", Value: "di"}, {Key: "d", Value: db}, {Key: "c", Value: collName}, {Key: "name", Value: which}}); err != nil {
			return errDoc(err)
		}
		n := len(c.indexes) + 1
		kept := c.indexes[:0]
		for _, ix := range c.indexes {
			if which != "*" && ix.name != which {
				kept = append(kept, ix)
			}
		}
		c.indexes = kept
		return bson.D{{Key: "nIndexesWas", Value: int32(n)}, ok}
	case "find":
		docs, err := s.query(db, collName, doc("filter"), doc("sort"), doc("projection"), num("skip"), num("limit"))
		if err != nil {
			return errDoc(err)
		}
		single, _ := lookup(cmd, "singleBatch")
		return s.firstBatch(ns, docs, int(num("batchSize")), truthy(single) || num("limit") < 0)
	case "getmore":
		id, _ := asInt(cmd[0].Value)
		return s.getMore(id, int(num("batchSize")))
	case "killcursors":
		v, _ := lookup(cmd, "cursors")
		ids, _ := v.(bson.A)
		return s.killCursors(ids)
	case "count":
		docs, err := s.query(db, collName, doc("query"), nil, bson.D{{Key: "_id", Value: 1}}, num("skip"), num("limit"))
		if err != nil {
			return errDoc(err)
		}
		return bson.D{{Key: "n", Value: int64(len(docs))}, ok}
	case "aggregate":
		return s.aggregate(db, collName, cmd)
	case "insert":
		return s.insert(db, collName, cmd)
	case "update":
		return s.update(db, collName, cmd)
	case "delete":
		return s.delete(db, collName, cmd)
	case "findandmodify":
		return s.findAndModify(db, collName, cmd)
	}
	return cmdError(59, "CommandNotFound", fmt.Sprintf("no such command: '%s'", name))
}

// isWriteCommand reports whether a command changes data (and so is
// answered only once its journal records are stored).
func isWriteCommand(name string) bool {
	switch strings.ToLower(name) {
	case "insert", "update", "delete", "findandmodify", "create", "drop", "dropdatabase", "createindexes", "dropindexes", "deleteindexes":
		return true
	}
	return false
}

// query runs a find and encodes its documents.
func (s *wireServer) query(db, coll string, filter, sortSpec, proj bson.D, skip, limit int64) ([]bson.Raw, error) {
	c := s.eng.coll(db, coll, false)
	if c == nil {
		return nil, nil
	}
	if limit < 0 {
		limit = -limit
	}
	c.mu.RLock()
	docs, err := c.find(filter, sortSpec, skip, limit)
	c.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	out := make([]bson.Raw, 0, len(docs))
	for _, d := range docs {
		p, err := project(d, proj)
		if err != nil {
			return nil, err
		}
		raw, err := bson.Marshal(p)
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}

func (s *wireServer) createIndexes(db, collName string, cmd bson.D) bson.D {
	v, _ := lookup(cmd, "indexes")
	specs, _ := v.(bson.A)
	c := s.eng.coll(db, collName, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	before := int32(len(c.indexes) + 1)
	for _, sp := range specs {
		spec, ok := sp.(bson.D)
		if !ok {
			return cmdError(2, "BadValue", "index specs must be documents")
		}
		n := len(c.indexes)
		if err := c.addIndex(db+"."+collName, spec); err != nil {
			return errDoc(err)
		}
		if len(c.indexes) == n {
			continue // already there
		}
		if err := s.eng.j.append(bson.D{{Key: "o", Value: "ci"}, {Key: "d", Value: db}, {Key: "c", Value: collName}, {Key: "spec", Value: spec}}); err != nil {
			c.indexes = c.indexes[:n]
			return errDoc(err)
		}
	}
	return bson.D{{Key: "numIndexesBefore", Value: before}, {Key: "numIndexesAfter", Value: int32(len(c.indexes) + 1)},
		{Key: "createdCollectionAutomatically", Value: false}, {Key: "ok", Value: 1.0}}
}

func writeError(i int, err error) bson.D {
	e := errDoc(err)
	code, _ := lookup(e, "code")
	msg, _ := lookup(e, "errmsg")
	return bson.D{{Key: "index", Value: int32(i)}, {Key: "code", Value: code}, {Key: "errmsg", Value: msg}}
}

// ordered reports the write command's "ordered" (default true).
func ordered(cmd bson.D) bool {
	v, ok := lookup(cmd, "ordered")
	return !ok || truthy(v)
}

func (s *wireServer) insert(db, collName string, cmd bson.D) bson.D {
	v, _ := lookup(cmd, "documents")
	docs, _ := v.(bson.A)
	c := s.eng.coll(db, collName, true)
	n := int32(0)
	var errs bson.A
	c.mu.Lock()
	for i, d := range docs {
		doc, ok := d.(bson.D)
		if !ok {
			errs = append(errs, writeError(i, errors.New("documents must be documents")))
			continue
		}
		if err := s.insertLocked(c, db, collName, doc); err != nil {
			errs = append(errs, writeError(i, err))
			if ordered(cmd) {
				break
			}
			continue
		}
		n++
	}
	c.mu.Unlock()
	out := bson.D{{Key: "n", Value: n}}
	if len(errs) > 0 {
		out = append(out, bson.E{Key: "writeErrors", Value: errs})
	}
	return append(out, bson.E{Key: "ok", Value: 1.0})
}

// insertLocked stores a new document; c.mu held for writing.
func (s *wireServer) insertLocked(c *collection, db, collName string, doc bson.D) error {
	doc = withID(doc, bson.NewObjectID())
	id := doc[0].Value
	k := idKey(id)
	ns := db + "." + collName
	if c.docs[k] != nil {
		return errDuplicate{coll: ns, index: "_id_", key: fmt.Sprintf("{ _id: %v }", id)}
	}
	if err := c.checkUnique(ns, doc, ""); err != nil {
		return err
	}
	if err := s.eng.j.append(bson.D{{Key: "o", Value: "i"}, {Key: "d", Value: db}, {Key: "c", Value: collName}, {Key: "doc", Value: doc}}); err != nil {
		return err
	}
	c.put(k, nil, doc)
	return nil
}

// modifyLocked applies u (operators or a replacement) to the stored entry
// en and stores the result; c.mu held for writing.
func (s *wireServer) modifyLocked(c *collection, db, collName string, en *entry, u bson.D) (bson.D, bool, error) {
	id := en.doc[0].Value
	k := idKey(id)
	var nd bson.D
	var changed bool
	rec := bson.D{{Key: "o", Value: "u"}, {Key: "d", Value: db}, {Key: "c", Value: collName}, {Key: "id", Value: id}, {Key: "u", Value: u}}
	if isUpdateDoc(u) {
		var err error
		if nd, changed, err = applyUpdate(en.doc, u, false); err != nil {
			return nil, false, err
		}
	} else {
		if v, ok := lookup(u, "_id"); ok && !equal(v, id) {
			return nil, false, errors.New("the _id field cannot be changed")
		}
		nd = withID(u, id)
		changed = compare(nd, en.doc) != 0
		rec = bson.D{{Key: "o", Value: "r"}, {Key: "d", Value: db}, {Key: "c", Value: collName}, {Key: "doc", Value: nd}}
	}
	if !changed {
		return en.doc, false, nil
	}
	if err := c.checkUnique(db+"."+collName, nd, k); err != nil {
		return nil, false, err
	}
	if err := s.eng.j.append(rec); err != nil {
		return nil, false, err
	}
	c.put(k, en, nd)
	return nd, true, nil
}

// upsertLocked inserts the document an upsert makes from filter and u.
func (s *wireServer) upsertLocked(c *collection, db, collName string, filter, u bson.D) (bson.D, error) {
	var doc bson.D
	if isUpdateDoc(u) {
		seed, err := upsertSeed(filter)
		if err != nil {
			return nil, err
		}
		if doc, _, err = applyUpdate(seed, u, true); err != nil {
			return nil, err
		}
	} else {
		doc = u
		if id, ok := lookup(filter, "_id"); ok {
			if _, isOps := operatorDoc(id); !isOps {
				doc = withID(u, id)
			}
		}
	}
	doc = withID(doc, bson.NewObjectID())
	return doc, s.insertLocked(c, db, collName, doc)
}

func (s *wireServer) update(db, collName string, cmd bson.D) bson.D {
	v, _ := lookup(cmd, "updates")
	ups, _ := v.(bson.A)
	// As in MongoDB, only an upsert creates a missing collection.
	upserts := false
	for _, x := range ups {
		st, _ := x.(bson.D)
		u, _ := lookup(st, "upsert")
		upserts = upserts || truthy(u)
	}
	c := s.eng.coll(db, collName, upserts)
	if c == nil {
		return bson.D{{Key: "n", Value: int32(0)}, {Key: "nModified", Value: int32(0)}, {Key: "ok", Value: 1.0}}
	}
	var n, modified int32
	var errs, upserted bson.A
	c.mu.Lock()
	for i, x := range ups {
		st, _ := x.(bson.D)
		qv, _ := lookup(st, "q")
		q, _ := qv.(bson.D)
		uv, _ := lookup(st, "u")
		u, isDoc := uv.(bson.D)
		multi, _ := lookup(st, "multi")
		upsert, _ := lookup(st, "upsert")
		err := func() error {
			if !isDoc {
				return errUnsupported("update pipelines")
			}
			if _, has := lookup(st, "arrayFilters"); has {
				return errUnsupported("arrayFilters")
			}
			limit := int64(1)
			if truthy(multi) {
				limit = 0
			}
			docs, err := c.find(q, nil, 0, limit)
			if err != nil {
				return err
			}
			if len(docs) == 0 && truthy(upsert) {
				doc, err := s.upsertLocked(c, db, collName, q, u)
				if err != nil {
					return err
				}
				n++
				upserted = append(upserted, bson.D{{Key: "index", Value: int32(i)}, {Key: "_id", Value: doc[0].Value}})
				return nil
			}
			for _, d := range docs {
				_, changed, err := s.modifyLocked(c, db, collName, c.docs[idKey(d[0].Value)], u)
				if err != nil {
					return err
				}
				n++
				if changed {
					modified++
				}
			}
			return nil
		}()
		if err != nil {
			errs = append(errs, writeError(i, err))
			if ordered(cmd) {
				break
			}
		}
	}
	c.mu.Unlock()
	out := bson.D{{Key: "n", Value: n}, {Key: "nModified", Value: modified}}
	if len(upserted) > 0 {
		out = append(out, bson.E{Key: "upserted", Value: upserted})
	}
	if len(errs) > 0 {
		out = append(out, bson.E{Key: "writeErrors", Value: errs})
	}
	return append(out, bson.E{Key: "ok", Value: 1.0})
}

func (s *wireServer) delete(db, collName string, cmd bson.D) bson.D {
	v, _ := lookup(cmd, "deletes")
	dels, _ := v.(bson.A)
	c := s.eng.coll(db, collName, false)
	var n int32
	var errs bson.A
	if c != nil {
		c.mu.Lock()
		for i, x := range dels {
			st, _ := x.(bson.D)
			qv, _ := lookup(st, "q")
			q, _ := qv.(bson.D)
			lv, _ := lookup(st, "limit")
			limit, _ := asInt(lv)
			docs, err := c.find(q, nil, 0, limit)
			for _, d := range docs {
				if err != nil {
					break
				}
				id := d[0].Value
				if err = s.eng.j.append(bson.D{{Key: "o", Value: "x"}, {Key: "d", Value: db}, {Key: "c", Value: collName}, {Key: "id", Value: id}}); err == nil {
					c.remove(idKey(id))
					n++
				}
			}
			if err != nil {
				errs = append(errs, writeError(i, err))
				if ordered(cmd) {
					break
				}
			}
		}
		c.mu.Unlock()
	}
	out := bson.D{{Key: "n", Value: n}}
	if len(errs) > 0 {
		out = append(out, bson.E{Key: "writeErrors", Value: errs})
	}
	return append(out, bson.E{Key: "ok", Value: 1.0})
}

func (s *wireServer) findAndModify(db, collName string, cmd bson.D) bson.D {
	get := func(k string) any { v, _ := lookup(cmd, k); return v }
	q, _ := get("query").(bson.D)
	sortSpec, _ := get("sort").(bson.D)
	fields, _ := get("fields").(bson.D)
	remove, upsert, returnNew := truthy(get("remove")), truthy(get("upsert")), truthy(get("new"))
	u, isDoc := get("update").(bson.D)
	if !remove && !isDoc {
		return errDoc(errUnsupported("findAndModify without a document update"))
	}
	c := s.eng.coll(db, collName, upsert && !remove)
	if c == nil {
		return bson.D{{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: int32(0)}}}, {Key: "value", Value: nil}, {Key: "ok", Value: 1.0}}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	docs, err := c.find(q, sortSpec, 0, 1)
	if err != nil {
		return errDoc(err)
	}
	lastErr := bson.D{{Key: "n", Value: int32(0)}}
	var value any
	switch {
	case len(docs) == 0 && upsert && !remove:
		doc, err := s.upsertLocked(c, db, collName, q, u)
		if err != nil {
			return errDoc(err)
		}
		lastErr = bson.D{{Key: "n", Value: int32(1)}, {Key: "updatedExisting", Value: false}, {Key: "upserted", Value: doc[0].Value}}
		if returnNew {
			value = doc
		}
	case len(docs) == 0:
	case remove:
		id := docs[0][0].Value
		if err := s.eng.j.append(bson.D{{Key: "o", Value: "x"}, {Key: "d", Value: db}, {Key: "c", Value: collName}, {Key: "id", Value: id}}); err != nil {
			return errDoc(err)
		}
		c.remove(idKey(id))
		lastErr = bson.D{{Key: "n", Value: int32(1)}}
		value = docs[0]
	default:
		nd, _, err := s.modifyLocked(c, db, collName, c.docs[idKey(docs[0][0].Value)], u)
		if err != nil {
			return errDoc(err)
		}
		lastErr = bson.D{{Key: "n", Value: int32(1)}, {Key: "updatedExisting", Value: true}}
		value = docs[0]
		if returnNew {
			value = nd
		}
	}
	if d, ok := value.(bson.D); ok {
		p, err := project(d, fields)
		if err != nil {
			return errDoc(err)
		}
		value = p
	}
	return bson.D{{Key: "lastErrorObject", Value: lastErr}, {Key: "value", Value: value}, {Key: "ok", Value: 1.0}}
}

// aggregate runs the pipelines the driver's helpers build: $match, $sort,
// $skip, $limit, $project, $count and a $group with constant _id and $sum.
func (s *wireServer) aggregate(db, collName string, cmd bson.D) bson.D {
	v, _ := lookup(cmd, "pipeline")
	pipeline, _ := v.(bson.A)
	var docs []bson.D
	if c := s.eng.coll(db, collName, false); c != nil {
		c.mu.RLock()
		for _, en := range c.candidates(nil) {
			docs = append(docs, en.doc)
		}
		c.mu.RUnlock()
	}
	for _, st := range pipeline {
		stage, _ := st.(bson.D)
		if len(stage) != 1 {
			return errDoc(errors.New("a pipeline stage must have exactly one field"))
		}
		arg := stage[0].Value
		switch stage[0].Key {
		case "$match":
			f, _ := arg.(bson.D)
			var kept []bson.D
			for _, d := range docs {
				m, err := matches(d, f)
				if err != nil {
					return errDoc(err)
				}
				if m {
					kept = append(kept, d)
				}
			}
			docs = kept
		case "$sort":
			f, _ := arg.(bson.D)
			sorted := append([]bson.D(nil), docs...)
			sortStable(sorted, f)
			docs = sorted
		case "$skip":
			n, _ := asInt(arg)
			docs = docs[min(int(n), len(docs)):]
		case "$limit":
			n, _ := asInt(arg)
			docs = docs[:min(int(n), len(docs))]
		case "$project":
			f, _ := arg.(bson.D)
			out := make([]bson.D, 0, len(docs))
			for _, d := range docs {
				p, err := project(d, f)
				if err != nil {
					return errDoc(err)
				}
				out = append(out, p)
			}
			docs = out
		case "$count":
			name, _ := arg.(string)
			if len(docs) == 0 {
				docs = nil
				break
			}
			docs = []bson.D{{{Key: name, Value: int32(len(docs))}}}
		case "$group":
			g, err := group(docs, arg)
			if err != nil {
				return errDoc(err)
			}
			docs = g
		default:
			return errDoc(errUnsupported("aggregation stage " + stage[0].Key))
		}
	}
	raws := make([]bson.Raw, 0, len(docs))
	for _, d := range docs {
		raw, err := bson.Marshal(d)
		if err != nil {
			return errDoc(err)
		}
		raws = append(raws, raw)
	}
	bs := 0
	if cur, ok := lookup(cmd, "cursor"); ok {
		if cd, ok := cur.(bson.D); ok {
			if b, ok := lookup(cd, "batchSize"); ok {
				n, _ := asInt(b)
				bs = int(n)
			}
		}
	}
	return s.firstBatch(db+"."+collName, raws, bs, false)
}

func sortStable(docs []bson.D, spec bson.D) {
	less := sortLess(spec)
	for i := 1; i < len(docs); i++ {
		for j := i; j > 0 && less(docs[j-1], docs[j]) > 0; j-- {
			docs[j-1], docs[j] = docs[j], docs[j-1]
		}
	}
}

// group supports {_id: <constant>, <field>: {$sum: <number or "$path">}, ...}.
func group(docs []bson.D, arg any) ([]bson.D, error) {
	spec, _ := arg.(bson.D)
	id, _ := lookup(spec, "_id")
	if s, ok := id.(string); ok && strings.HasPrefix(s, "$") {
		return nil, errUnsupported("$group by a field")
	}
	if len(docs) == 0 {
		return nil, nil
	}
	out := bson.D{{Key: "_id", Value: id}}
	for _, f := range spec {
		if f.Key == "_id" {
			continue
		}
		acc, _ := f.Value.(bson.D)
		if len(acc) != 1 || acc[0].Key != "$sum" {
			return nil, errUnsupported("$group accumulator")
		}
		var total any = int32(0)
		for _, d := range docs {
			var x any = acc[0].Value
			if p, ok := x.(string); ok && strings.HasPrefix(p, "$") {
				got, found := getPath(d, strings.Split(p[1:], "."))
				if _, isNum := asFloat(got); !found || !isNum {
					continue
				}
				x = got
			}
			sum, err := addNumbers(total, x)
			if err != nil {
				return nil, err
			}
			total = sum
		}
		out = append(out, bson.E{Key: f.Key, Value: total})
	}
	return []bson.D{out}, nil
}
