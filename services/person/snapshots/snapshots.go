// Package snapshots lets a consumer of person's events rebuild its copy from
// the source: on snapshot.requested, person publishes its whole current state
// as one person.snapshot per person (deleted ones included, through the
// outbox like every other event) and then snapshot.completed with how many it
// published, so the requester knows when it has them all.
//
// The conversation's types and payloads are in the contract package. A
// duplicate request publishes the snapshots again, which is harmless:
// consumers apply a snapshot at most once by its version.
package snapshots

import (
	"context"
	"fmt"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/person/mongodb"
	"go.uber.org/zap"
)

// Store publishes the snapshots (mongodb.Store).
type Store interface {
	PublishSnapshots(ctx context.Context, progress func(n int)) (int, error)
}

// Publisher sends snapshot.completed (eventbus.Publisher).
type Publisher interface {
	Publish(ctx context.Context, events ...eventbus.Event) error
}

// Register makes c answer snapshot.requested.
func Register(c *eventbus.Consumer, store Store, pub Publisher, log *zap.Logger) {
	c.Handle(contract.SnapshotRequested, Handler(store, pub, log))
}

// Handler answers one snapshot.requested.
func Handler(store Store, pub Publisher, log *zap.Logger) eventbus.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return func(ctx context.Context, ev eventbus.Event) error {
		var req contract.SnapshotRequest
		if err := ev.DecodeData(&req); err != nil {
			return err
		}
		if req.RebuildID == "" {
			return fmt.Errorf("%w: snapshot.requested without rebuild_id", eventbus.ErrMalformed)
		}
		l := log.With(zap.String("rebuild_id", req.RebuildID), zap.String("requested_by", ev.Source))
		l.Info("publishing snapshots of every person")
		start, lastLog := time.Now(), time.Now()
		n, err := store.PublishSnapshots(ctx, func(n int) {
			if time.Since(lastLog) >= 5*time.Second {
				l.Info("publishing snapshots", zap.Int("published", n))
				lastLog = time.Now()
			}
		})
		if err != nil {
			return fmt.Errorf("publish snapshots after %d: %w", n, err)
		}
		done, err := eventbus.NewEvent(ctx, mongodb.Source, contract.SnapshotCompleted, req.RebuildID, 1, contract.SnapshotCompletion{RebuildID: req.RebuildID, Count: int64(n)})
		if err != nil {
			return err
		}
		if err := pub.Publish(ctx, done); err != nil {
			return fmt.Errorf("publish %s: %w", contract.SnapshotCompleted, err)
		}
		l.Info("snapshots published", zap.Int("count", n), zap.Duration("elapsed", time.Since(start)))
		return nil
	}
}
