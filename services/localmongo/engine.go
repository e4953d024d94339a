package localmongo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/personscore/localmongo/internal/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// engine is the embedded document store behind the wire server: documents in
// memory, each collection behind its own lock (so every write to a document
// is atomic and applied in one order), every change appended to a journal
// file before it is answered. The journal logs the operation (an update's
// operators, not the whole document), so a write's cost does not grow with
// its document; it is replayed at start and then rewritten as a snapshot.
// Data survives a crash of the process (the journal is written, not fsynced,
// before each answer), not of the machine.
type engine struct {
	mu  sync.RWMutex
	dbs map[string]map[string]*collection
	j   journal
}

// journal keeps the engine's operations: a file, or a PostgreSQL table.
type journal interface {
	// append records one change, in the order the changes are applied; it
	// fails if the change cannot be journaled (nothing is applied then).
	append(rec bson.D) error
	// flush returns once every record appended so far is stored; a write
	// command is answered after it.
	flush() error
	close() error
}

type collection struct {
	mu      sync.RWMutex
	docs    map[string]*entry // by idKey(_id)
	seq     uint64            // insertion counter: natural order
	indexes []*index          // secondary indexes (the _id index is docs)
}

type entry struct {
	seq uint64
	doc bson.D // immutable: an update stores a new document
}

type index struct {
	spec   bson.D // as given to createIndexes
	name   string
	key    bson.D
	unique bool
	sparse bool
	keys   map[string]string // index key -> idKey (unique indexes only)
}

// errDuplicate is a unique index violation (MongoDB code 11000).
type errDuplicate struct{ coll, index, key string }

func (e errDuplicate) Error() string {
	return fmt.Sprintf("E11000 duplicate key error collection: %s index: %s dup key: %s", e.coll, e.index, e.key)
}

// idKey is the identity of an _id value: numbers that are equal are the same
// key whatever their BSON type, as in MongoDB.
func idKey(v any) string {
	switch x := v.(type) {
	case string:
		return "s" + x
	case int32:
		return "n" + strconv.FormatInt(int64(x), 10)
	case int64:
		return "n" + strconv.FormatInt(x, 10)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
			return "n" + strconv.FormatInt(int64(x), 10)
		}
		return "f" + strconv.FormatFloat(x, 'g', -1, 64)
	case nil:
		return "z"
	}
	t, raw, err := bson.MarshalValue(v)
	if err != nil {
		return fmt.Sprintf("?%v", v)
	}
	return "b" + string(rune(t)) + string(raw)
}

// openEngine loads the engine from its journal file in dir and rewrites it as a snapshot.
func openEngine(dir string) (*engine, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	e := &engine{dbs: map[string]map[string]*collection{}}
	path := filepath.Join(dir, "journal.bson")
	if err := e.replay(path); err != nil {
		return nil, err
	}
	j, err := writeSnapshot(path, e)
	if err != nil {
		return nil, err
	}
	e.j = j
	return e, nil
}

// snapshot calls write with records that rebuild the engine's state.
func (e *engine) snapshot(write func(rec bson.D) error) error {
	var werr error
	for _, db := range e.dbNames() {
		for _, name := range e.collNames(db) {
			c := e.coll(db, name, false)
			werr = errors.Join(werr, write(bson.D{{Key: "o", Value: "cc"}, {Key: "d", Value: db}, {Key: "c", Value: name}}))
			for _, ix := range c.indexes {
				werr = errors.Join(werr, write(bson.D{{Key: "o", Value: "ci"}, {Key: "d", Value: db}, {Key: "c", Value: name}, {Key: "spec", Value: ix.spec}}))
			}
			for _, en := range c.candidates(nil) {
				werr = errors.Join(werr, write(bson.D{{Key: "o", Value: "i"}, {Key: "d", Value: db}, {Key: "c", Value: name}, {Key: "doc", Value: en.doc}}))
			}
		}
	}
	return werr
}

func (e *engine) close() error {
	if e.j == nil {
		return nil
	}
	return e.j.close()
}

// coll returns the collection, creating it when create is set (nil otherwise).
func (e *engine) coll(db, name string, create bool) *collection {
	e.mu.RLock()
	c := e.dbs[db][name]
	e.mu.RUnlock()
	if c != nil || !create {
		return c
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c = e.dbs[db][name]; c != nil {
		return c
	}
	if e.dbs[db] == nil {
		e.dbs[db] = map[string]*collection{}
	}
	c = &collection{docs: map[string]*entry{}}
	e.dbs[db][name] = c
	return c
}

// collNames lists a database's collections, sorted.
func (e *engine) collNames(db string) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []string
	for n := range e.dbs[db] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (e *engine) dbNames() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []string
	for n := range e.dbs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// dropColl removes a collection; false if it did not exist.
func (e *engine) dropColl(db, name string, log bool) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.dbs[db][name]; !ok {
		return false, nil
	}
	if log {
		if err := e.j.append(bson.D{{Key: "o", Value: "dropc"}, {Key: "d", Value: db}, {Key: "c", Value: name}}); err != nil {
			return false, err
		}
	}
	delete(e.dbs[db], name)
	return true, nil
}

func (e *engine) dropDB(db string, log bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if log {
		if err := e.j.append(bson.D{{Key: "o", Value: "dropd"}, {Key: "d", Value: db}}); err != nil {
			return err
		}
	}
	delete(e.dbs, db)
	return nil
}

// --- collection operations; the caller holds c.mu as stated ---

// candidates returns the entries that may match filter in natural order: the
// one entry of a plain _id equality, else all. c.mu held (read or write).
func (c *collection) candidates(filter bson.D) []*entry {
	if v, ok := lookup(filter, "_id"); ok {
		if ops, isOps := operatorDoc(v); !isOps || (len(ops) == 1 && ops[0].Key == "$eq") {
			if isOps {
				v = ops[0].Value
			}
			if _, isArr := v.(bson.A); !isArr {
				if en := c.docs[idKey(v)]; en != nil {
					return []*entry{en}
				}
				return nil
			}
		}
	}
	out := make([]*entry, 0, len(c.docs))
	for _, en := range c.docs {
		out = append(out, en)
	}
	slices.SortFunc(out, func(a, b *entry) int { return cmpInt(int64(a.seq), int64(b.seq)) })
	return out
}

// find returns the matching documents, sorted, skipped and limited. c.mu held.
func (c *collection) find(filter, sortSpec bson.D, skip, limit int64) ([]bson.D, error) {
	var out []bson.D
	for _, en := range c.candidates(filter) {
		ok, err := matches(en.doc, filter)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, en.doc)
			if len(sortSpec) == 0 && limit > 0 && int64(len(out)) >= skip+limit {
				break
			}
		}
	}
	if len(sortSpec) > 0 {
		slices.SortStableFunc(out, sortLess(sortSpec))
	}
	if skip > 0 {
		out = out[min(int(skip), len(out)):]
	}
	if limit > 0 && int64(len(out)) > limit {
		out = out[:limit]
	}
	return out, nil
}

// indexKey is a document's key in an index; ok false for a sparse index the
// document is not in.
func (ix *index) indexKey(doc bson.D) (string, bool) {
	var b strings.Builder
	present := false
	for _, k := range ix.key {
		vals := resolve(doc, strings.Split(k.Key, "."), nil)
		var v any
		if len(vals) > 0 {
			v, present = vals[0], true
		}
		b.WriteString(idKey(v))
		b.WriteByte(0)
	}
	if ix.sparse && !present {
		return "", false
	}
	return b.String(), true
}

// checkUnique fails if doc (replacing the document with id key self, if any)
// would break a unique index. c.mu held.
func (c *collection) checkUnique(ns string, doc bson.D, self string) error {
	for _, ix := range c.indexes {
		if !ix.unique {
			continue
		}
		k, ok := ix.indexKey(doc)
		if !ok {
			continue
		}
		if owner, taken := ix.keys[k]; taken && owner != self {
			return errDuplicate{coll: ns, index: ix.name, key: fmt.Sprint(ix.key)}
		}
	}
	return nil
}

// put stores doc under id key k (replacing old, if any) and keeps the indexes. c.mu held for writing.
func (c *collection) put(k string, old *entry, doc bson.D) {
	for _, ix := range c.indexes {
		if !ix.unique {
			continue
		}
		if old != nil {
			if ok, in := ix.indexKey(old.doc); in {
				delete(ix.keys, ok)
			}
		}
		if nk, in := ix.indexKey(doc); in {
			ix.keys[nk] = k
		}
	}
	if old != nil {
		c.docs[k] = &entry{seq: old.seq, doc: doc}
		return
	}
	c.seq++
	c.docs[k] = &entry{seq: c.seq, doc: doc}
}

func (c *collection) remove(k string) {
	old := c.docs[k]
	if old == nil {
		return
	}
	for _, ix := range c.indexes {
		if ix.unique {
			if ok, in := ix.indexKey(old.doc); in {
				delete(ix.keys, ok)
			}
		}
	}
	delete(c.docs, k)
}

// addIndex adds a secondary index from its spec; an existing name is kept.
func (c *collection) addIndex(ns string, spec bson.D) error {
	name, _ := lookup(spec, "name")
	key, _ := lookup(spec, "key")
	keyDoc, ok := key.(bson.D)
	if !ok || len(keyDoc) == 0 {
		return fmt.Errorf("index spec needs a key document")
	}
	n, _ := name.(string)
	if n == "" {
		var parts []string
		for _, k := range keyDoc {
			parts = append(parts, fmt.Sprintf("%s_%v", k.Key, k.Value))
		}
		n = strings.Join(parts, "_")
	}
	if n == "_id_" || slices.ContainsFunc(c.indexes, func(ix *index) bool { return ix.name == n }) {
		return nil
	}
	u, _ := lookup(spec, "unique")
	sp, _ := lookup(spec, "sparse")
	ix := &index{spec: spec, name: n, key: keyDoc, unique: truthy(u), sparse: truthy(sp), keys: map[string]string{}}
	if ix.unique {
		for id, en := range c.docs {
			k, in := ix.indexKey(en.doc)
			if !in {
				continue
			}
			if _, taken := ix.keys[k]; taken {
				return errDuplicate{coll: ns, index: n, key: fmt.Sprint(keyDoc)}
			}
			ix.keys[k] = id
		}
	}
	c.indexes = append(c.indexes, ix)
	return nil
}

// --- journal ---

// fileJournal is a file of BSON records, written (not fsynced) per record.
type fileJournal struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func (j *fileJournal) append(rec bson.D) error {
	raw, err := bson.Marshal(rec)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("localmongo: store closed")
	}
	if _, err := j.w.Write(raw); err != nil {
		return err
	}
	return j.w.Flush()
}

// flush has nothing to wait for: append writes at once.
func (j *fileJournal) flush() error { return nil }

func (j *fileJournal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := errors.Join(j.w.Flush(), j.f.Sync(), j.f.Close())
	j.f = nil
	return err
}

// replay applies the journal at path to e (a missing file is an empty store).
// A torn last record (a crash while writing it) is dropped.
func (e *engine) replay(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil // EOF or a torn length
		}
		n := int(int32(uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16 | uint32(hdr[3])<<24))
		if n < 5 || n > wire.MaxSize {
			return fmt.Errorf("localmongo: journal %s is corrupt (record length %d)", path, n)
		}
		raw := make([]byte, n)
		copy(raw, hdr[:])
		if _, err := io.ReadFull(r, raw[4:]); err != nil {
			return nil // torn record
		}
		if err := e.applyRaw(raw); err != nil {
			return fmt.Errorf("localmongo: journal %s: %w", path, err)
		}
	}
}

func (e *engine) applyRaw(raw []byte) error {
	var rec bson.D
	if err := bson.Unmarshal(raw, &rec); err != nil {
		return err
	}
	return e.apply(rec)
}

// apply replays one journal record.
func (e *engine) apply(rec bson.D) error {
	str := func(k string) string { v, _ := lookup(rec, k); s, _ := v.(string); return s }
	db, name := str("d"), str("c")
	switch str("o") {
	case "dropc":
		_, err := e.dropColl(db, name, false)
		return err
	case "dropd":
		return e.dropDB(db, false)
	}
	c := e.coll(db, name, true)
	switch str("o") {
	case "cc":
	case "ci":
		spec, _ := lookup(rec, "spec")
		sd, _ := spec.(bson.D)
		return c.addIndex(db+"."+name, sd)
	case "di":
		c.indexes = slices.DeleteFunc(c.indexes, func(ix *index) bool { return ix.name == str("name") || str("name") == "*" })
	case "i", "r":
		v, _ := lookup(rec, "doc")
		doc, _ := v.(bson.D)
		id, _ := lookup(doc, "_id")
		k := idKey(id)
		c.put(k, c.docs[k], doc)
	case "u":
		id, _ := lookup(rec, "id")
		v, _ := lookup(rec, "u")
		u, _ := v.(bson.D)
		k := idKey(id)
		old := c.docs[k]
		if old == nil {
			return fmt.Errorf("update of missing document %v in %s.%s", id, db, name)
		}
		nd, _, err := applyUpdate(old.doc, u, false)
		if err != nil {
			return err
		}
		c.put(k, old, nd)
	case "x":
		id, _ := lookup(rec, "id")
		c.remove(idKey(id))
	default:
		return fmt.Errorf("unknown journal record %v", rec)
	}
	return nil
}

// writeSnapshot rewrites the journal at path as the current state (collections,
// indexes, documents), atomically, and opens it for appending.
func writeSnapshot(path string, e *engine) (*fileJournal, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	werr := e.snapshot(func(rec bson.D) error {
		raw, err := bson.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = w.Write(raw)
		return err
	})
	if err := errors.Join(werr, w.Flush(), f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	af, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &fileJournal{f: af, w: bufio.NewWriterSize(af, 64<<10)}, nil
}
