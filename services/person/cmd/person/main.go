// Command person is the write side: it stores persons and their incomes,
// assets and debts in MongoDB and publishes every change through the outbox.
// It starts and stops as service.Run describes.
package main

import (
	"context"
	"time"

	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/person/httpapi"
	"github.com/personscore/person/mongodb"
	"github.com/personscore/person/scoreevents"
	"github.com/personscore/person/snapshots"
)

// personConfig is what person reads from the environment beyond service.Config.
type personConfig struct {
	// OutboxMaxPending and OutboxMaxAge bound the outbox backlog: writes are
	// accepted while the broker is unreachable until this process counts
	// that many unpublished events, or its oldest is that old (0: no bound).
	OutboxMaxPending int           `env:"OUTBOX_MAX_PENDING" envDefault:"100000"`
	OutboxMaxAge     time.Duration `env:"OUTBOX_MAX_AGE" envDefault:"1h"`
}

func main() { service.Main(spec) }

// spec is how person starts; service.Run gives the shutdown order: the outbox
// is flushed after the consumer stopped, so every write that got a 2xx is
// published.
func spec(own *personConfig) service.Spec {
	return service.Spec{Name: "person", HTTPAddr: ":8080", Build: func(rt *service.Runtime) error {
		// Published events wait up to ClearDelay for the score.changed their
		// write causes: storing that score clears them in the same write.
		ob := outbox.New(outbox.Config{Collection: mongodb.PersonsCollection(rt.DB), Publisher: rt.Publisher, Logger: rt.Log,
			ClearDelay: time.Second})
		store := mongodb.New(rt.DB, ob)
		scoreevents.Register(rt.Consumer, store)
		snapshots.Register(rt.Consumer, store, rt.Publisher, rt.Log) // answers score's rebuild requests
		rt.Background(func(ctx context.Context) error { return ob.Run(ctx, rt.Config.FlushTimeout()) })

		// The broker is not needed to take writes: their events wait in the
		// outbox, up to the backlog's bounds. Only the store makes person unready.
		bound := httpapi.BacklogBound{Backlog: ob.Backlog, MaxPending: own.OutboxMaxPending, MaxAge: own.OutboxMaxAge,
			BrokerReady: func() bool { return rt.Publisher.Ready() && rt.Consumer.Ready() }}
		rt.Ready = func(context.Context) (map[string]any, error) { return bound.Status(), nil }
		httpapi.Register(rt.Router, httpapi.Config{Store: store, Logger: rt.Log, CanWrite: bound.Check})
		return nil
	}}
}
