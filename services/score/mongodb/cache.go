package mongodb

import (
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// docCache keeps the documents this process wrote last, as the BSON it wrote,
// so applying the next event of a cpf and answering a read-your-writes read
// need no store read. Writes stay compare-and-swaps on rev: when another
// replica (or a rebuild) changed a document, the swap misses, the entry is
// dropped and the document read.
type docCache struct {
	mu   sync.Mutex
	docs map[cacheKey]bson.Raw
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
	raw, ok := c.docs[cacheKey{coll, cpf}]
	c.mu.Unlock()
	if !ok {
		return stored{}, false
	}
	var st stored
	if err := bson.Unmarshal(raw, &st); err != nil {
		return stored{}, false
	}
	fill(&st)
	return st, true
}

func (c *docCache) put(coll string, cpf int64, raw bson.Raw) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.docs == nil || len(c.docs) >= maxCached {
		c.docs = map[cacheKey]bson.Raw{}
	}
	c.docs[cacheKey{coll, cpf}] = raw
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
