// Package relays publishes score.changed from the collection serving the read
// model: one outbox relay per collection, started when the store follows the
// collection (mongodb.Relays) and retired after a switch away from it.
package relays

import (
	"context"
	"sync"
	"time"

	"github.com/personscore/eventbus/outbox"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"
)

// clearDelay is how long published score.changed events wait in a document
// for its next write to clear them: a new score.changed replaces the outbox
// (mongodb.Store writes it so), sparing the relay a write of its own. What no
// write came for, the relay clears every clearDelay/4 with one update command
// for all the documents then due, so a longer delay means fewer commands, not
// more: the events it keeps are confirmed ones, outside the backlog count.
const clearDelay = time.Second

// retireAfter is how long the relay of a replaced collection keeps running.
const retireAfter = 3 * time.Second

// Relays relays score.changed from the collection serving the read model: one
// outbox per collection, started when the store follows the collection
// (mongodb.Relays) and retired retireAfter after a switch away from it, once
// it finished what it was publishing; its Run flushes what the replaced
// collection still holds.
type Relays struct {
	db        *mongo.Database
	publisher outbox.Publisher
	log       *zap.Logger
	sweep     time.Duration // the outboxes' sweep interval (0: the outbox's default)
	flush     time.Duration // bounds each outbox's flush at shutdown

	mu      sync.Mutex
	active  string          // the collection followed last
	runCtx  context.Context // set while Run runs
	running map[string]context.CancelFunc
	obs     map[string]*outbox.Outbox
	wg      sync.WaitGroup
}

// New returns the relays of db's collections to publisher; sweep is the
// outboxes' sweep interval (0: the outbox's default), flush bounds each
// outbox's flush when its relay stops.
func New(db *mongo.Database, publisher outbox.Publisher, log *zap.Logger, sweep, flush time.Duration) *Relays {
	return &Relays{db: db, publisher: publisher, log: log, sweep: sweep, flush: flush,
		running: map[string]context.CancelFunc{}, obs: map[string]*outbox.Outbox{}}
}

// Outbox is the outbox of collection name, nil until its relay first started.
func (r *Relays) Outbox(name string) *outbox.Outbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.obs[name]
}

// Follow makes collection name the one relayed: its relay starts (if Run
// runs) and the previous one retires.
func (r *Relays) Follow(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.active
	r.active = name
	if r.runCtx == nil || old == name {
		return
	}
	r.start(name)
	if cancel, ok := r.running[old]; ok {
		delete(r.running, old)
		time.AfterFunc(retireAfter, cancel)
	}
}

// Run relays until ctx ends, then stops every relay; each flushes what it has
// pending within the flush bound before Run returns.
func (r *Relays) Run(ctx context.Context) error {
	r.mu.Lock()
	r.runCtx = ctx
	if r.active != "" {
		r.start(r.active)
	}
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	for name, cancel := range r.running {
		cancel()
		delete(r.running, name)
	}
	r.runCtx = nil
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// start runs the outbox of collection name; r.mu is held.
func (r *Relays) start(name string) {
	if _, ok := r.running[name]; ok {
		return
	}
	ob, ok := r.obs[name]
	if !ok {
		ob = outbox.New(outbox.Config{Collection: r.db.Collection(name), Publisher: r.publisher, Logger: r.log,
			SweepInterval: r.sweep, ClearDelay: clearDelay})
		r.obs[name] = ob
	}
	ctx, cancel := context.WithCancel(r.runCtx)
	r.running[name] = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = ob.Run(ctx, r.flush)
	}()
}
