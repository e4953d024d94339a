package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/score"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// MetaCollection holds the meta document naming the active collection.
const MetaCollection = "score_meta"

const metaID = "read_model"

// metaDoc names the collection serving the read model and the current or last
// rebuild. Rev versions it for compare-and-swap.
type metaDoc struct {
	ID       string         `bson:"_id"`
	Active   string         `bson:"active"`
	Previous string         `bson:"previous,omitempty"`
	Rebuild  *score.Rebuild `bson:"rebuild,omitempty"`
	Rev      int64          `bson:"rev"`
}

func (s *Store) readMeta(ctx context.Context) (metaDoc, error) {
	var m metaDoc
	err := s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: metaID}}).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return metaDoc{ID: metaID, Active: DefaultCollection}, nil
	}
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if m.Active == "" {
		m.Active = DefaultCollection
	}
	return m, nil
}

// casMeta replaces old by next if nobody changed it meanwhile; next gets its
// id and revision.
func (s *Store) casMeta(ctx context.Context, old metaDoc, next *metaDoc) (bool, error) {
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

// StartRebuild starts rebuilding the read model from person's snapshots; it
// returns at once. ErrRebuildRunning (with the running one) when a rebuild is
// in progress.
func (s *Store) StartRebuild(ctx context.Context) (score.Rebuild, error) {
	if s.cfg.Publisher == nil {
		return score.Rebuild{}, errors.New("mongodb: Config.Publisher is required to rebuild")
	}
	for range maxCASAttempts {
		m, err := s.readMeta(ctx)
		if err != nil {
			return score.Rebuild{}, err
		}
		if m.Rebuild.Running() {
			r := *m.Rebuild
			r.Active = m.Active
			return r, score.ErrRebuildRunning
		}
		// Collections of earlier rebuilds are no longer needed.
		for _, name := range []string{m.Previous, targetOf(m.Rebuild)} {
			if name != "" && name != m.Active {
				if err := s.db.Collection(name).Drop(ctx); err != nil {
					return score.Rebuild{}, fmt.Errorf("%w: drop %s: %v", ErrUnavailable, name, err)
				}
				s.cache.reset()
			}
		}
		id := uuid.Must(uuid.NewV7()).String()
		target := "scores_" + strings.ReplaceAll(id, "-", "")
		r := score.Rebuild{ID: id, From: m.Active, Target: target, State: score.RebuildSnapshotting, Expected: -1,
			StartedAt: time.Now().UTC().Truncate(time.Millisecond)}
		next := m
		next.Previous, next.Rebuild = "", &r
		casStart := time.Now()
		ok, err := s.casMeta(ctx, m, &next)
		if err != nil {
			return score.Rebuild{}, err
		}
		if !ok {
			continue
		}
		s.log.Info("rebuild started", zap.String("rebuild_id", id), zap.String("from", m.Active), zap.String("target", target))
		s.remember(next, casStart)
		// Every replica routes events by a meta document at most metaMaxAge
		// old: after this wait all of them apply events to the rebuild's
		// collection too, so none written after a snapshot is missed there.
		select {
		case <-time.After(switchAfter):
		case <-ctx.Done():
		}
		ev, err := eventbus.NewEvent(ctx, Source, contract.SnapshotRequested, id, 1, contract.SnapshotRequest{RebuildID: id})
		if err == nil {
			err = s.cfg.Publisher.Publish(ctx, ev)
		}
		if err != nil {
			reason := "could not ask person for snapshots: " + err.Error()
			if ferr := s.failRebuild(context.WithoutCancel(ctx), id, reason); ferr != nil {
				s.log.Warn("could not record the failed rebuild; it will time out", zap.Error(ferr))
			}
			return r, fmt.Errorf("%w: %s", ErrUnavailable, reason)
		}
		r.Active = m.Active
		return r, nil
	}
	return score.Rebuild{}, fmt.Errorf("%w: too much contention on the meta document", ErrUnavailable)
}

func targetOf(r *score.Rebuild) string {
	if r == nil {
		return ""
	}
	return r.Target
}

// SnapshotCompleted handles snapshot.completed: person has published count
// snapshots for the rebuild. Unknown, finished or repeated rebuilds are ignored.
func (s *Store) SnapshotCompleted(ctx context.Context, ev eventbus.Event) error {
	var c contract.SnapshotCompletion
	if err := ev.DecodeData(&c); err != nil {
		return err
	}
	if c.RebuildID == "" || c.Count < 0 {
		return fmt.Errorf("%w: snapshot.completed needs rebuild_id and a count >= 0", eventbus.ErrMalformed)
	}
	return s.updateRebuild(ctx, c.RebuildID, func(r *score.Rebuild) bool {
		if r.State != score.RebuildSnapshotting {
			return false
		}
		r.State, r.Expected = score.RebuildCatchingUp, c.Count
		s.log.Info("person published its snapshots", zap.String("rebuild_id", r.ID), zap.Int64("count", c.Count))
		return true
	})
}

// updateRebuild applies change to the rebuild id if it is still running.
func (s *Store) updateRebuild(ctx context.Context, id string, change func(r *score.Rebuild) bool) error {
	for range maxCASAttempts {
		m, err := s.readMeta(ctx)
		if err != nil {
			return err
		}
		if m.Rebuild == nil || m.Rebuild.ID != id || !m.Rebuild.Running() {
			return nil
		}
		r := *m.Rebuild
		if !change(&r) {
			return nil
		}
		next := m
		next.Rebuild = &r
		ok, err := s.casMeta(ctx, m, &next)
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("%w: too much contention on the meta document", ErrUnavailable)
}

func (s *Store) failRebuild(ctx context.Context, id, reason string) error {
	return s.updateRebuild(ctx, id, func(r *score.Rebuild) bool {
		now := time.Now().UTC().Truncate(time.Millisecond)
		r.State, r.Error, r.FinishedAt = score.RebuildFailed, reason, &now
		s.log.Warn("rebuild failed", zap.String("rebuild_id", id), zap.String("reason", reason))
		return true
	})
}

// RebuildStatus reports the current or last rebuild with its progress.
func (s *Store) RebuildStatus(ctx context.Context) (score.Rebuild, error) {
	m, err := s.readMeta(ctx)
	if err != nil {
		return score.Rebuild{}, err
	}
	if m.Rebuild == nil {
		return score.Rebuild{Active: m.Active}, score.ErrNoRebuild
	}
	r := *m.Rebuild
	r.Active = m.Active
	if r.State != score.RebuildFailed {
		n, err := s.db.Collection(r.Target).CountDocuments(ctx, bson.D{{Key: fromSnapshot, Value: true}})
		if err != nil {
			return r, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		r.Snapshotted = n
	}
	return r, nil
}

// advance fails a rebuild that took too long, or switches to its collection
// once it has caught up.
func (s *Store) advance(ctx context.Context, m metaDoc) error {
	r := m.Rebuild
	if time.Since(r.StartedAt) > s.cfg.RebuildTimeout {
		return s.failRebuild(ctx, r.ID, fmt.Sprintf("did not catch up within %s (state %s)", s.cfg.RebuildTimeout, r.State))
	}
	if r.State != score.RebuildCatchingUp {
		return nil
	}
	target := s.db.Collection(r.Target)
	n, err := target.CountDocuments(ctx, bson.D{{Key: fromSnapshot, Value: true}})
	if err != nil {
		return err
	}
	if n < r.Expected {
		return nil
	}
	live, err := versionsOf(ctx, s.db.Collection(m.Active))
	if err != nil {
		return err
	}
	rebuilt, err := versionsOf(ctx, target)
	if err != nil {
		return err
	}
	for cpf, v := range live {
		if rebuilt[cpf] < v {
			s.log.Debug("rebuild not caught up yet", zap.String("rebuild_id", r.ID), zap.Int64("cpf", cpf),
				zap.Int64("live_version", v), zap.Int64("rebuilt_version", rebuilt[cpf]))
			return nil
		}
	}
	done := *r
	now := time.Now().UTC().Truncate(time.Millisecond)
	done.State, done.FinishedAt = score.RebuildDone, &now
	next := m
	next.Active, next.Previous, next.Rebuild = r.Target, m.Active, &done
	casStart := time.Now()
	ok, err := s.casMeta(ctx, m, &next)
	if err != nil || !ok {
		return err
	}
	s.remember(next, casStart)
	s.log.Info("rebuild done, read model switched", zap.String("rebuild_id", r.ID), zap.String("from", m.Active),
		zap.String("to", r.Target), zap.Int64("snapshots", n), zap.Int("documents", len(rebuilt)))
	s.observe(next)
	return s.publishScores(ctx, r.Target)
}

// versionsOf reads the version of every document of coll.
func versionsOf(ctx context.Context, coll *mongo.Collection) (map[int64]int64, error) {
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "version", Value: 1}}))
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

// publishScores publishes score.changed from collection name for every cpf
// it holds. After a switch this is what heals person's copy: the replaced
// collection cannot tell what person was told (the rebuild exists because it
// may be damaged: a document it lost and then re-created from later events
// alone can agree with the rebuilt one while person still shows the score
// published before the loss), so every cpf gets its rebuilt score, with a
// version newer than any the replaced collection published.
func (s *Store) publishScores(ctx context.Context, name string) error {
	cur, err := s.db.Collection(name).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return err
	}
	var ids []struct {
		CPF int64 `bson:"_id"`
	}
	if err := cur.All(ctx, &ids); err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.republishScore(ctx, name, id.CPF); err != nil {
			return err
		}
	}
	s.log.Info("published the rebuilt scores", zap.String("collection", name), zap.Int("cpfs", len(ids)))
	return nil
}

// republishScore appends score.changed with the current score of cpf.
func (s *Store) republishScore(ctx context.Context, name string, cpf int64) error {
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
