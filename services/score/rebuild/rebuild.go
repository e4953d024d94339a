package rebuild

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
	"github.com/personscore/score/mongodb"
	"go.uber.org/zap"
)

// StartRebuild starts rebuilding the read model from person's snapshots; it
// returns at once. ErrRebuildRunning (with the running one) when a rebuild is
// in progress.
func (s *Router) StartRebuild(ctx context.Context) (score.Rebuild, error) {
	if s.cfg.Publisher == nil {
		return score.Rebuild{}, errors.New("rebuild: Config.Publisher is required to rebuild")
	}
	for range maxCASAttempts {
		m, err := s.store.ReadMeta(ctx)
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
				if err := s.store.Drop(ctx, name); err != nil {
					return score.Rebuild{}, err
				}
			}
		}
		id := uuid.Must(uuid.NewV7()).String()
		target := "scores_" + strings.ReplaceAll(id, "-", "")
		r := score.Rebuild{ID: id, From: m.Active, Target: target, State: score.RebuildSnapshotting, Expected: -1,
			StartedAt: time.Now().UTC().Truncate(time.Millisecond)}
		next := m
		next.Previous, next.Rebuild = "", &r
		casStart := time.Now()
		ok, err := s.store.SwapMeta(ctx, m, &next)
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
		ev, err := eventbus.NewEvent(ctx, mongodb.Source, contract.SnapshotRequested, id, 1, contract.SnapshotRequest{RebuildID: id})
		if err == nil {
			err = s.cfg.Publisher.Publish(ctx, ev)
		}
		if err != nil {
			reason := "could not ask person for snapshots: " + err.Error()
			if ferr := s.failRebuild(context.WithoutCancel(ctx), id, reason); ferr != nil {
				s.log.Warn("could not record the failed rebuild; it will time out", zap.Error(ferr))
			}
			return r, fmt.Errorf("%w: %s", mongodb.ErrUnavailable, reason)
		}
		r.Active = m.Active
		return r, nil
	}
	return score.Rebuild{}, fmt.Errorf("%w: too much contention on the meta document", mongodb.ErrUnavailable)
}

func targetOf(r *score.Rebuild) string {
	if r == nil {
		return ""
	}
	return r.Target
}

// SnapshotCompleted handles snapshot.completed: person has published count
// snapshots for the rebuild. Unknown, finished or repeated rebuilds are ignored.
func (s *Router) SnapshotCompleted(ctx context.Context, ev eventbus.Event) error {
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
func (s *Router) updateRebuild(ctx context.Context, id string, change func(r *score.Rebuild) bool) error {
	for range maxCASAttempts {
		m, err := s.store.ReadMeta(ctx)
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
		ok, err := s.store.SwapMeta(ctx, m, &next)
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("%w: too much contention on the meta document", mongodb.ErrUnavailable)
}

func (s *Router) failRebuild(ctx context.Context, id, reason string) error {
	return s.updateRebuild(ctx, id, func(r *score.Rebuild) bool {
		now := time.Now().UTC().Truncate(time.Millisecond)
		r.State, r.Error, r.FinishedAt = score.RebuildFailed, reason, &now
		s.log.Warn("rebuild failed", zap.String("rebuild_id", id), zap.String("reason", reason))
		return true
	})
}

// RebuildStatus reports the current or last rebuild with its progress.
func (s *Router) RebuildStatus(ctx context.Context) (score.Rebuild, error) {
	m, err := s.store.ReadMeta(ctx)
	if err != nil {
		return score.Rebuild{}, err
	}
	if m.Rebuild == nil {
		return score.Rebuild{Active: m.Active}, score.ErrNoRebuild
	}
	r := *m.Rebuild
	r.Active = m.Active
	if r.State != score.RebuildFailed {
		n, err := s.store.Snapshotted(ctx, r.Target)
		if err != nil {
			return r, fmt.Errorf("%w: %v", mongodb.ErrUnavailable, err)
		}
		r.Snapshotted = n
	}
	return r, nil
}

// advance fails a rebuild that took too long, or switches to its collection
// once it has caught up.
func (s *Router) advance(ctx context.Context, m mongodb.Meta) error {
	r := m.Rebuild
	if time.Since(r.StartedAt) > s.cfg.RebuildTimeout {
		return s.failRebuild(ctx, r.ID, fmt.Sprintf("did not catch up within %s (state %s)", s.cfg.RebuildTimeout, r.State))
	}
	if r.State != score.RebuildCatchingUp {
		return nil
	}
	n, err := s.store.Snapshotted(ctx, r.Target)
	if err != nil {
		return err
	}
	if n < r.Expected {
		return nil
	}
	live, err := s.store.Versions(ctx, m.Active)
	if err != nil {
		return err
	}
	rebuilt, err := s.store.Versions(ctx, r.Target)
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
	ok, err := s.store.SwapMeta(ctx, m, &next)
	if err != nil || !ok {
		return err
	}
	s.remember(next, casStart)
	s.log.Info("rebuild done, read model switched", zap.String("rebuild_id", r.ID), zap.String("from", m.Active),
		zap.String("to", r.Target), zap.Int64("snapshots", n), zap.Int("documents", len(rebuilt)))
	s.store.Follow(next)
	return s.publishScores(ctx, r.Target)
}

// publishScores publishes score.changed from collection name for every cpf
// it holds. After a switch this is what heals person's copy: the replaced
// collection cannot tell what person was told (the rebuild exists because it
// may be damaged: a document it lost and then re-created from later events
// alone can agree with the rebuilt one while person still shows the score
// published before the loss), so every cpf gets its rebuilt score, with a
// version newer than any the replaced collection published.
func (s *Router) publishScores(ctx context.Context, name string) error {
	n, err := s.store.RepublishAll(ctx, name)
	if err != nil {
		return err
	}
	s.log.Info("published the rebuilt scores", zap.String("collection", name), zap.Int("cpfs", n))
	return nil
}
