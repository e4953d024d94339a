package mongodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/personscore/score"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"
)

// MetaCollection holds the meta document naming the active collection.
const MetaCollection = "score_meta"

const metaID = "read_model"

// Meta is the meta document: it names the collection serving the read model
// and the current or last rebuild. Rev versions it for compare-and-swap.
type Meta struct {
	ID       string         `bson:"_id"`
	Active   string         `bson:"active"`
	Previous string         `bson:"previous,omitempty"`
	Rebuild  *score.Rebuild `bson:"rebuild,omitempty"`
	Rev      int64          `bson:"rev"`
}

// ReadMeta reads the meta document (Active DefaultCollection before the
// first rebuild).
func (s *Store) ReadMeta(ctx context.Context) (Meta, error) {
	var m Meta
	err := s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: metaID}}).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Meta{ID: metaID, Active: DefaultCollection}, nil
	}
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if m.Active == "" {
		m.Active = DefaultCollection
	}
	return m, nil
}

// SwapMeta replaces old by next if nobody changed it meanwhile; next gets its
// id and revision.
func (s *Store) SwapMeta(ctx context.Context, old Meta, next *Meta) (bool, error) {
	next.ID, next.Rev = metaID, old.Rev+1
	if old.Rev == 0 {
		_, err := s.meta.InsertOne(ctx, next)
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return true, nil
	}
	res, err := s.meta.ReplaceOne(ctx, bson.D{{Key: "_id", Value: metaID}, {Key: "rev", Value: old.Rev}}, next)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res.MatchedCount == 1, nil
}

// Follow takes note of a meta document read or written: when the active
// collection changed, reads are served from the new one, every waiting
// reader reads again and the relays follow it. A meta document older than
// one followed before (reads by several goroutines overlap) changes nothing.
func (s *Store) Follow(m Meta) {
	s.mu.Lock()
	old := s.active
	if m.Rev < s.seenRev {
		s.mu.Unlock()
		return
	}
	s.seenRev = m.Rev
	if old == m.Active {
		s.mu.Unlock()
		return
	}
	s.active = m.Active
	if s.relays != nil {
		s.relays.Follow(m.Active)
	}
	s.mu.Unlock()
	if old != "" {
		s.log.Info("read model switched", zap.String("from", old), zap.String("to", m.Active))
		s.hub.NotifyAll()
	}
}

// collection returns the active collection, reading the meta document the
// first time.
func (s *Store) collection(ctx context.Context) (*mongo.Collection, error) {
	s.mu.Lock()
	name := s.active
	s.mu.Unlock()
	if name == "" {
		m, err := s.ReadMeta(ctx)
		if err != nil {
			return nil, err
		}
		s.Follow(m)
		name = m.Active
	}
	return s.db.Collection(name), nil
}
