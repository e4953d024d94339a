package mongodb

import (
	"context"
	"fmt"

	"github.com/personscore/eventbus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// What a rebuild needs of whole collections.

// Snapshotted counts the documents of collection name a snapshot reached
// while it was a rebuild's collection.
func (s *Store) Snapshotted(ctx context.Context, name string) (int64, error) {
	return s.db.Collection(name).CountDocuments(ctx, bson.D{{Key: fromSnapshot, Value: true}})
}

// Versions reads the version of every document of collection name.
func (s *Store) Versions(ctx context.Context, name string) (map[int64]int64, error) {
	cur, err := s.db.Collection(name).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "version", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var rows []struct {
		CPF     int64 `bson:"_id"`
		Version int64 `bson:"version"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, err
	}
	out := make(map[int64]int64, len(rows))
	for _, r := range rows {
		out[r.CPF] = r.Version
	}
	return out, nil
}

// RepublishAll republishes (see Republish) the score of every cpf of
// collection name and returns how many there are.
func (s *Store) RepublishAll(ctx context.Context, name string) (int, error) {
	cur, err := s.db.Collection(name).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, err
	}
	var ids []struct {
		CPF int64 `bson:"_id"`
	}
	if err := cur.All(ctx, &ids); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := s.Republish(ctx, name, id.CPF); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// Republish appends score.changed with the current score of cpf in
// collection name, with a version newer than any published before.
func (s *Store) Republish(ctx context.Context, name string, cpf int64) error {
	coll := s.db.Collection(name)
	for range maxCASAttempts {
		st, found, err := s.load(ctx, coll, cpf)
		if err != nil || !found {
			return err
		}
		rev := st.Rev
		st.Rev = nextRev(rev)
		ev, err := scoreChanged(ctx, st.Document)
		if err != nil {
			return err
		}
		ok, err := s.write(ctx, coll, st, true, rev, []eventbus.Event{ev})
		if err != nil {
			return err
		}
		if ok {
			s.notify(name, cpf, st.Version, []eventbus.Event{ev})
			return nil
		}
	}
	return fmt.Errorf("%w: too much contention on cpf %d", ErrUnavailable, cpf)
}

// Drop drops collection name (the collection of an earlier rebuild).
func (s *Store) Drop(ctx context.Context, name string) error {
	if err := s.db.Collection(name).Drop(ctx); err != nil {
		return fmt.Errorf("%w: drop %s: %v", ErrUnavailable, name, err)
	}
	s.cache.reset()
	return nil
}
