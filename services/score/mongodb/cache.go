package mongodb

import "sync"

// docCache keeps the documents this process wrote last (read-only: a caller
// that changes one works on a copy), so applying the next event of a cpf and answering a read-your-writes read
// need no store read. Writes stay compare-and-swaps on rev: when another
// replica (or a rebuild) changed a document, the swap misses, the entry is
// dropped and the document read.
type docCache struct {
	mu   sync.Mutex
	docs map[cacheKey]stored
}

type cacheKey struct {
	coll string
	cpf  int64
}

// maxCached bounds the cache (a document is a few hundred bytes to a few
// KiB); when it is full a new document takes the place of an arbitrary one.
// (Emptying it instead cost a store read for each of its cpfs every time it
// filled, as in a backlog of 10,000 cpfs.)
const maxCached = 10_000

func (c *docCache) get(coll string, cpf int64) (stored, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.docs[cacheKey{coll, cpf}]
	return st, ok
}

func (c *docCache) put(coll string, cpf int64, st stored) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := cacheKey{coll, cpf}
	if c.docs == nil {
		c.docs = map[cacheKey]stored{}
	}
	if _, ok := c.docs[key]; !ok && len(c.docs) >= maxCached {
		for k := range c.docs { // an arbitrary one: map order is random
			delete(c.docs, k)
			break
		}
	}
	c.docs[key] = st
}

func (c *docCache) drop(coll string, cpf int64) {
	c.mu.Lock()
	delete(c.docs, cacheKey{coll, cpf})
	c.mu.Unlock()
}

// reset forgets everything (a collection was dropped: its name may come back).
func (c *docCache) reset() {
	c.mu.Lock()
	c.docs = nil
	c.mu.Unlock()
}
