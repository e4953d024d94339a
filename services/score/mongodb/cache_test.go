package mongodb

import "testing"

func TestFullCacheDropsOneDocumentForANewOne(t *testing.T) {
	var c docCache
	for cpf := range int64(maxCached) {
		c.put("score", cpf, stored{})
	}
	c.put("score", 0, stored{}) // already there: nothing is dropped
	if n := len(c.docs); n != maxCached {
		t.Fatalf("%d documents after filling the cache, want %d", n, maxCached)
	}
	c.put("score", maxCached, stored{})
	if n := len(c.docs); n != maxCached {
		t.Fatalf("%d documents after one more, want %d", n, maxCached)
	}
	if _, ok := c.get("score", maxCached); !ok {
		t.Fatal("the new document is not cached")
	}
	kept := 0
	for cpf := range int64(maxCached) {
		if _, ok := c.get("score", cpf); ok {
			kept++
		}
	}
	if kept != maxCached-1 {
		t.Fatalf("%d of the %d earlier documents kept, want all but one", kept, maxCached)
	}
}
