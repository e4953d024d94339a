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
// KiB); it is emptied when full, which only costs reads afterwards.
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
	if c.docs == nil || len(c.docs) >= maxCached {
		c.docs = map[cacheKey]stored{}
	}
	c.docs[cacheKey{coll, cpf}] = st
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
