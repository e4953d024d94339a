// Package personevents subscribes score to person's events: every change of a
// person, the snapshots person sends for a rebuild and the end of a snapshot run.
package personevents

import (
	"context"

	"github.com/personscore/eventbus"
	"github.com/personscore/score"
)

// Store is what the handlers need (mongodb.Store).
type Store interface {
	Apply(ctx context.Context, ev eventbus.Event) error
	ApplyBatch(ctx context.Context, evs []eventbus.Event) error
	SnapshotCompleted(ctx context.Context, ev eventbus.Event) error
}

// Register subscribes c to every event type the read model understands; the
// events of one cpf waiting together are applied together.
func Register(c *eventbus.Consumer, store Store) {
	for _, typ := range score.EventTypes() {
		c.Handle(typ, store.Apply)
	}
	c.HandleBatch(score.EventTypes(), store.ApplyBatch)
	c.Handle(score.SnapshotCompleted, store.SnapshotCompleted)
}
