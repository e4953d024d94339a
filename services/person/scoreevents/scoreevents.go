// Package scoreevents keeps the latest score of each person, replicated back
// from the score service through score.changed events.
package scoreevents

import (
	"context"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/person"
)

// Store is what the handler needs (mongodb.Store).
type Store interface {
	SetScore(ctx context.Context, cpf person.CPF, value, version int64, at time.Time) error
}

// Register subscribes c to score.changed.
func Register(c *eventbus.Consumer, store Store) {
	c.Handle(person.ScoreChanged, func(ctx context.Context, ev eventbus.Event) error {
		var d person.ScoreData
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		return store.SetScore(ctx, d.CPF, d.Score, ev.Version, ev.Time)
	})
}
