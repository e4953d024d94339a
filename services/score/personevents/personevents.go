// Package personevents subscribes score to person's events: every change of a
// person, the snapshots person sends for a rebuild and the end of a snapshot run.
package personevents

import (
	"context"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
)

// Store is what the handlers need (rebuild.Router).
type Store interface {
	Apply(ctx context.Context, ev eventbus.Event) error
	ApplyBatch(ctx context.Context, evs []eventbus.Event) error
	SnapshotCompleted(ctx context.Context, ev eventbus.Event) error
}

// Register subscribes c to every event type the read model understands; the
// events of one cpf waiting together are applied together.
func Register(c *eventbus.Consumer, store Store) {
	for _, typ := range contract.PersonEventTypes() {
		c.Handle(typ, store.Apply)
	}
	c.HandleBatch(contract.PersonEventTypes(), store.ApplyBatch)
	c.Handle(contract.SnapshotCompleted, store.SnapshotCompleted)
}
