package localmongo

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// topStats counts the commands per namespace, as MongoDB's `top` admin
// command reports them (counts only; times are 0): what a benchmark reads to
// tell how many store round trips a user write costs.
type topStats struct {
	mu  sync.Mutex
	nss map[string]*nsCounts
}

type nsCounts struct {
	queries, getmore, insert, update, remove, commands atomic.Int64
}

// count records one command on ns.
func (t *topStats) count(ns, cmd string) {
	t.mu.Lock()
	if t.nss == nil {
		t.nss = map[string]*nsCounts{}
	}
	c := t.nss[ns]
	if c == nil {
		c = &nsCounts{}
		t.nss[ns] = c
	}
	t.mu.Unlock()
	switch strings.ToLower(cmd) {
	case "find", "count", "aggregate":
		c.queries.Add(1)
	case "getmore":
		c.getmore.Add(1)
	case "insert":
		c.insert.Add(1)
	case "update":
		c.update.Add(1)
	case "delete":
		c.remove.Add(1)
	default:
		c.commands.Add(1)
	}
}

// reply is the `top` command's answer: {totals: {<ns>: {<kind>: {time, count}}}}.
func (t *topStats) reply() bson.D {
	t.mu.Lock()
	names := make([]string, 0, len(t.nss))
	for n := range t.nss {
		names = append(names, n)
	}
	t.mu.Unlock()
	sort.Strings(names)
	totals := bson.D{{Key: "note", Value: "all times in microseconds"}}
	for _, n := range names {
		t.mu.Lock()
		c := t.nss[n]
		t.mu.Unlock()
		kind := func(v int64) bson.D { return bson.D{{Key: "time", Value: int64(0)}, {Key: "count", Value: v}} }
		q, g, i, u, r, m := c.queries.Load(), c.getmore.Load(), c.insert.Load(), c.update.Load(), c.remove.Load(), c.commands.Load()
		totals = append(totals, bson.E{Key: n, Value: bson.D{
			{Key: "total", Value: kind(q + g + i + u + r + m)},
			{Key: "queries", Value: kind(q)}, {Key: "getmore", Value: kind(g)}, {Key: "insert", Value: kind(i)},
			{Key: "update", Value: kind(u)}, {Key: "remove", Value: kind(r)}, {Key: "commands", Value: kind(m)},
		}})
	}
	return bson.D{{Key: "totals", Value: totals}, {Key: "ok", Value: 1.0}}
}
