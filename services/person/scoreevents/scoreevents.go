// Package scoreevents keeps the latest score of each person, replicated back
// from the score service through score.changed events.
package scoreevents

import (
	"context"
	"fmt"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/person"
)

// Store is what the handler needs (mongodb.Store).
type Store interface {
	SetScore(ctx context.Context, cpf person.CPF, value, version int64, at time.Time) error
}

// Register subscribes c to score.changed.
func Register(c *eventbus.Consumer, store Store) {
	c.Handle(contract.ScoreChanged, Handler(store))
}

// Handler applies one score.changed: the person shows the score of the highest
// version seen, so duplicates and late, older events change nothing. An event
// that names no person, or another person than its subject, can never be
// applied and is dead-lettered; a store failure is retried.
func Handler(store Store) eventbus.Handler {
	return func(ctx context.Context, ev eventbus.Event) error {
		var d contract.ScoreChangedData
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		if d.CPF <= 0 || contract.Subject(d.CPF) != ev.Subject {
			return fmt.Errorf("%w: score.changed for cpf %d with subject %q", eventbus.ErrMalformed, d.CPF, ev.Subject)
		}
		return store.SetScore(ctx, person.CPF(d.CPF), d.Score, ev.Version, ev.Time)
	}
}
