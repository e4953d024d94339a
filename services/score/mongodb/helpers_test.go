package mongodb_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/personscore/eventbus"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"go.uber.org/zap/zaptest"
)

// mongoEnv is one embedded MongoDB; each replica connects with its own client.
type mongoEnv struct{ *scoretest.Mongo }

func startMongo(t *testing.T) *mongoEnv { return &mongoEnv{scoretest.StartMongo(t)} }

// replica is a Store with its own MongoDB client, as a separate pod would have.
func (e *mongoEnv) replica(t *testing.T, cfg mongodb.Config) *mongodb.Store {
	t.Helper()
	cfg.DB = e.Connect(t)
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	return mongodb.New(cfg)
}

// apply applies ev to the live default collection.
func apply(s *mongodb.Store, ev eventbus.Event) error {
	cpf, err := strconv.ParseInt(ev.Subject, 10, 64)
	if err != nil {
		return err
	}
	return s.Apply(context.Background(), mongodb.DefaultCollection, mongodb.Live, cpf, []eventbus.Event{ev})
}

func applyAll(t *testing.T, s *mongodb.Store, events []eventbus.Event) {
	t.Helper()
	for _, ev := range events {
		if err := apply(s, ev); err != nil {
			t.Fatalf("Apply(%s %s v%d): %v", ev.Type, ev.Subject, ev.Version, err)
		}
	}
}

// ev is an event of person about cpf 22222.
func ev(t *testing.T, typ string, v int64, data any) eventbus.Event {
	return scoretest.Event(t, typ, v, data)
}
