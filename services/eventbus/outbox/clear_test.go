package outbox

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/localmongo/mongotest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// seedDocs stores n documents id0, id1, … each with one event in its outbox,
// as a write with With would have left them, and returns the events.
func seedDocs(t *testing.T, coll *mongo.Collection, prefix string, n int) []eventbus.Event {
	t.Helper()
	evs := make([]eventbus.Event, n)
	docs := make([]any, n)
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		evs[i] = event(t, "score.changed", id, 1)
		docs[i] = bson.D{{Key: "_id", Value: id}, {Key: "version", Value: 1}, {Key: Field, Value: bson.A{evs[i]}}}
	}
	if _, err := coll.InsertMany(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
	return evs
}

func waitCleared(t *testing.T, coll *mongo.Collection) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pendingCount(t, coll) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still stored", pendingCount(t, coll))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The relay clears a whole batch's documents with one update command.
func TestRelayClearsManyDocumentsInOneCommand(t *testing.T) {
	e := newEnv(t)
	ob := New(Config{Collection: e.coll, Publisher: e.pub, SweepInterval: time.Hour, MinAge: time.Hour, RelayWorkers: 1, Metrics: e.metrics})
	const docs = 250 // one relay batch: all are notified before the relay runs
	evs := seedDocs(t, e.coll, "doc", docs)
	for _, ev := range evs {
		ob.Notify(ev.Subject, ev)
	}
	before := mongotest.Commands(t, e.coll, "update")
	runOutbox(t, ob)
	e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) == docs })
	waitCleared(t, e.coll)
	if n := mongotest.Commands(t, e.coll, "update") - before; n != 1 {
		t.Errorf("%d documents cleared with %d update commands, want 1", docs, n)
	}
}

// Held events cleared together (here at shutdown) go out removeChunkDocs
// documents per command.
func TestShutdownClearsHeldEventsInChunks(t *testing.T) {
	e := newEnv(t)
	ob := New(Config{Collection: e.coll, Publisher: e.pub, SweepInterval: time.Hour, MinAge: time.Hour, RelayWorkers: 1,
		ClearDelay: time.Hour, Metrics: e.metrics})
	docs := 2*removeChunkDocs + 100
	evs := seedDocs(t, e.coll, "doc", docs)
	for _, ev := range evs {
		ob.Notify(ev.Subject, ev)
	}
	before := mongotest.Commands(t, e.coll, "update")
	stop := runOutbox(t, ob)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ob.mu.Lock()
		held := len(ob.held)
		ob.mu.Unlock()
		if held == docs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay holds %d documents' events, want %d", held, docs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := pendingCount(t, e.coll); n != docs {
		t.Fatalf("%d events stored before the clear, want %d (nothing cleared before ClearDelay)", n, docs)
	}
	stop()
	if n := pendingCount(t, e.coll); n != 0 {
		t.Fatalf("%d events left after the shutdown's clear", n)
	}
	if n, want := mongotest.Commands(t, e.coll, "update")-before, int64(3); n != want {
		t.Errorf("%d held documents cleared with %d update commands, want %d", docs, n, want)
	}
}

// refusingDialer connects a test's MongoDB client; while armed, the store
// refuses each update statement that mentions mark: the connection renames
// the statement's $pullAll, in the message the client writes, to an operator
// the store does not know (the driver writes each message whole).
type refusingDialer struct {
	mark  []byte
	armed atomic.Bool

	mu        sync.Mutex
	refused   int   // statements refused
	bulkSizes []int // statements in each command that held a refused one
}

func (d *refusingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return refusingConn{Conn: c, d: d}, nil
}

type refusingConn struct {
	net.Conn
	d *refusingDialer
}

func (c refusingConn) Write(b []byte) (int, error) {
	if !c.d.armed.Load() || mongotest.CommandName(b) != "update" {
		return c.Conn.Write(b)
	}
	msg := slices.Clone(b)
	stmts := mongotest.SequenceDocs(msg)
	hit := 0
	for _, st := range stmts {
		if !bytes.Contains(st, c.d.mark) {
			continue
		}
		if i := bytes.Index(st, []byte("$pullAll\x00")); i >= 0 {
			copy(st[i:], "$pullAlx")
			hit++
		}
	}
	if hit > 0 {
		c.d.mu.Lock()
		c.d.refused += hit
		c.d.bulkSizes = append(c.d.bulkSizes, len(stmts))
		c.d.mu.Unlock()
	}
	return c.Conn.Write(msg)
}

func (d *refusingDialer) stats() (refused int, bulkSizes []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refused, slices.Clone(d.bulkSizes)
}

// When the store refuses one document's removal in a bulk clear, the other
// documents are cleared (and published once), while exactly that document's
// events stay stored, for the sweep to publish again and clear.
func TestFailedClearOfOneDocumentKeepsOnlyItsEvents(t *testing.T) {
	e := newEnv(t)
	p := &refusingDialer{mark: []byte("refused-doc")}
	client, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetDialer(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	proxied := client.Database(e.coll.Database().Name()).Collection(e.coll.Name())
	pub := &countingPublisher{next: e.pub, seen: map[string]int{}}
	logs, observed := observer.New(zap.WarnLevel)
	ob := New(Config{Collection: proxied, Publisher: pub, SweepInterval: 20 * time.Millisecond,
		IdleSweepInterval: 20 * time.Millisecond, MinAge: time.Millisecond, RelayWorkers: 1, Metrics: e.metrics,
		Logger: zap.New(logs)})

	evs := seedDocs(t, e.coll, "doc", 9)
	refused := event(t, "score.changed", "R", 1)
	write(t, e.coll, "refused-doc", refused)
	evs = append(evs[:4], append([]eventbus.Event{refused}, evs[4:]...)...)
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.Subject
		if ev.ID == refused.ID {
			ids[i] = "refused-doc"
		}
		ob.Notify(ids[i], ev)
	}
	p.armed.Store(true)
	runOutbox(t, ob)

	// The relay's bulk clear of all ten documents: nine cleared, one refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := p.stats()
		left := 0
		for _, id := range ids {
			if id != "refused-doc" {
				left += len(outboxIDs(t, e.coll, id))
			}
		}
		if n > 0 && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d removals refused, %d events of other documents still stored", n, left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, sizes := p.stats(); sizes[0] != len(evs) {
		t.Errorf("the first refused removal was in a command of %d statements, want one for all %d documents", sizes[0], len(evs))
	}
	if got := outboxIDs(t, e.coll, "refused-doc"); !slices.Equal(got, sortedIDs(refused)) {
		t.Errorf("the refused document's outbox: %v, want its event kept", got)
	}
	// The relay tells which documents' clears failed: that one only.
	warned := observed.FilterMessage("could not clear published events; they will be republished").All()
	if len(warned) == 0 || warned[0].ContextMap()["documents"] != int64(1) {
		t.Errorf("the relay's warnings of failed clears: %v, want the first for 1 document", warned)
	}

	// The store takes removals again. The sweep leaves an event it saw
	// confirmed alone for confirmedFor (a sweep may have read it before its
	// publish); once that passed (here: forgotten at once), the sweep
	// republishes it and the relay clears it.
	p.armed.Store(false)
	ob.backlog.mu.Lock()
	delete(ob.backlog.confirmed, refused.ID)
	delete(ob.backlog.confirmedBefore, refused.ID)
	ob.backlog.mu.Unlock()
	waitCleared(t, e.coll)
	e.received(t, 10*time.Second, func(g []eventbus.Event) bool {
		seen := map[string]bool{}
		for _, ev := range g {
			seen[ev.ID] = true
		}
		return len(seen) == len(evs)
	})
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for i, ev := range evs {
		switch {
		case ev.ID == refused.ID && pub.seen[ev.ID] < 2:
			t.Errorf("the refused document's event published %d times, want again after the failed clear", pub.seen[ev.ID])
		case ev.ID != refused.ID && pub.seen[ev.ID] != 1:
			t.Errorf("%s's event published %d times, want once", ids[i], pub.seen[ev.ID])
		}
	}
}
