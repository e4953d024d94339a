// Package mongodb stores score's read model: one document per cpf, changed by a
// compare-and-swap on its revision so that several replicas applying events for
// the same cpf never lose an update. A score change appends score.changed to
// the document's outbox in the same write.
package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/score"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Collection is the read model's collection.
const Collection = "scores"

// Source is the CloudEvents source of score's events.
const Source = "/score"

// ScoreChanged is the type of the event published when a cpf's score changes.
const ScoreChanged = "score.changed"

const maxCASAttempts = 200

// ErrUnavailable: the store cannot be used now.
var ErrUnavailable = errors.New("read model store unavailable")

// Store applies events to the read model and reads it.
type Store struct {
	coll   *mongo.Collection
	outbox *outbox.Outbox
	hub    *Hub
}

// New returns a store on coll; ob relays score.changed, hub wakes readers
// waiting for a version.
func New(coll *mongo.Collection, ob *outbox.Outbox, hub *Hub) *Store {
	return &Store{coll: coll, outbox: ob, hub: hub}
}

func (s *Store) load(ctx context.Context, cpf int64) (score.Document, bool, error) {
	d := score.NewDocument(cpf)
	err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: cpf}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return score.NewDocument(cpf), false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return d, true, nil
}

// Get returns the read model of a cpf; ErrNotFound when no live person is known.
func (s *Store) Get(ctx context.Context, cpf int64) (score.Document, error) {
	d, found, err := s.load(ctx, cpf)
	if err != nil {
		return d, err
	}
	if !found || !d.Live() {
		return d, score.ErrNotFound
	}
	return d, nil
}

// CPF parses an event subject.
func CPF(subject string) (int64, error) {
	cpf, err := strconv.ParseInt(subject, 10, 64)
	if err != nil || cpf <= 0 {
		return 0, fmt.Errorf("%w: subject %q is not a cpf", eventbus.ErrMalformed, subject)
	}
	return cpf, nil
}

// Apply applies one event exactly once to its cpf's document.
func (s *Store) Apply(ctx context.Context, ev eventbus.Event) error {
	cpf, err := CPF(ev.Subject)
	if err != nil {
		return err
	}
	for range maxCASAttempts {
		d, found, err := s.load(ctx, cpf)
		if err != nil {
			return err
		}
		before, wasLive, rev := d.Score, d.Live(), d.Rev
		changed, err := score.Apply(&d, ev)
		if err != nil || !changed {
			return err
		}
		d.Rev = rev + 1
		d.UpdatedAt = time.Now().UTC()
		var events []eventbus.Event
		if d.Score != before || d.Live() != wasLive {
			out, err := eventbus.NewEvent(ctx, Source, ScoreChanged, ev.Subject, d.Rev, map[string]int64{"cpf": cpf, "score": d.Score})
			if err != nil {
				return err
			}
			events = append(events, out)
		}
		ok, err := s.write(ctx, d, found, rev, events)
		if err != nil {
			return err
		}
		if ok {
			if len(events) > 0 {
				s.outbox.Notify(cpf, events...)
			}
			s.hub.Notify(cpf)
			return nil
		}
	}
	return fmt.Errorf("%w: too much contention on cpf %d", ErrUnavailable, cpf)
}

// write stores d if nobody changed it since revision rev; false means retry.
func (s *Store) write(ctx context.Context, d score.Document, found bool, rev int64, events []eventbus.Event) (bool, error) {
	raw, err := bson.Marshal(d)
	if err != nil {
		return false, err
	}
	var fields bson.D
	if err := bson.Unmarshal(raw, &fields); err != nil {
		return false, err
	}
	if !found {
		if events == nil {
			events = []eventbus.Event{}
		}
		_, err := s.coll.InsertOne(ctx, append(fields, bson.E{Key: outbox.Field, Value: events}))
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return true, nil
	}
	set := make(bson.D, 0, len(fields))
	for _, f := range fields {
		if f.Key != "_id" {
			set = append(set, f)
		}
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(events) > 0 {
		update = outbox.With(update, events...)
	}
	res, err := s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.CPF}, {Key: "rev", Value: rev}}, update)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res.MatchedCount == 1, nil
}

// WaitForVersion returns the document once it has applied every version up to
// min, or the current one with stale=true when ctx ends first.
func (s *Store) WaitForVersion(ctx context.Context, cpf, min int64) (d score.Document, stale bool, err error) {
	for {
		wake := s.hub.Wait(cpf)
		d, found, err := s.load(ctx, cpf)
		if err != nil {
			return d, false, err
		}
		if found && d.Version >= min {
			return d, false, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			if !found {
				return d, true, score.ErrNotFound
			}
			return d, true, nil
		}
	}
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.coll.Database().Client().Ping(ctx, nil)
}
