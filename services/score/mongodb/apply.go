package mongodb

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/score"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Role is what a collection is to the read model when events are applied to it.
type Role int

const (
	// Live is the collection serving the read model: a change of a cpf's
	// score or liveness appends score.changed to its document, and readers
	// waiting for the cpf wake.
	Live Role = iota
	// Rebuilding is a rebuild's collection: a document a snapshot reaches is
	// marked (see Snapshotted).
	Rebuilding
)

// Apply applies evs, all events of cpf, exactly once to cpf's document in
// collection name with one compare-and-swap on its revision, so that several
// replicas applying events of one cpf never lose an update. It fails as a
// whole (nothing written) if any of them is malformed.
func (s *Store) Apply(ctx context.Context, name string, role Role, cpf int64, evs []eventbus.Event) error {
	primary := role == Live
	coll := s.db.Collection(name)
	for attempt := range maxCASAttempts {
		st, found := s.cache.get(name, cpf)
		if !found || attempt > 0 {
			var err error
			if st, found, err = s.load(ctx, coll, cpf); err != nil {
				return err
			}
		}
		// st may be the cache's (read-only): Apply works on a copy.
		d := st.Document
		d.Items, d.Removed = maps.Clone(st.Items), maps.Clone(st.Removed)
		d.Applied.Ahead = slices.Clone(st.Applied.Ahead)
		before, wasLive, rev := d.Score, d.Live(), d.Rev
		changed, snapshot := false, false
		for _, ev := range evs {
			c, err := score.Apply(&d, ev)
			if err != nil {
				return err
			}
			changed = changed || c
			snapshot = snapshot || ev.Type == contract.PersonSnapshot
		}
		mark := !primary && snapshot && !st.FromSnapshot
		if !changed && !mark {
			return nil
		}
		d.Rev = nextRev(rev)
		if changed {
			d.UpdatedAt = time.Now().UTC()
		}
		var events []eventbus.Event
		if primary && (d.Score != before || d.Live() != wasLive) {
			out, err := scoreChanged(ctx, d)
			if err != nil {
				return err
			}
			events = append(events, out)
		}
		next := stored{Document: d, FromSnapshot: st.FromSnapshot || mark}
		var ok bool
		var err error
		if found {
			ok, err = s.writeChange(ctx, coll, st, next, rev, events)
		} else {
			ok, err = s.write(ctx, coll, next, false, rev, events)
		}
		if err != nil {
			return err
		}
		if ok {
			if primary {
				s.notify(name, cpf, d.Version, events)
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	return fmt.Errorf("%w: too much contention on cpf %d", ErrUnavailable, cpf)
}

// nextRev is the revision after rev: it grows by at least one and follows the
// clock, so that score.changed versions (the revision) keep growing for a cpf
// when a rebuilt collection, with fewer changes behind it, takes over.
func nextRev(rev int64) int64 {
	return max(rev+1, time.Now().UnixMicro())
}

func scoreChanged(ctx context.Context, d score.Document) (eventbus.Event, error) {
	return eventbus.NewEvent(ctx, Source, contract.ScoreChanged, contract.Subject(d.CPF), d.Rev,
		contract.ScoreChangedData{CPF: d.CPF, Score: d.Score, Live: d.Live(), Version: d.Version})
}

// notify hands new score.changed events to the collection's relay and wakes
// the readers of cpf waiting for version.
func (s *Store) notify(name string, cpf, version int64, events []eventbus.Event) {
	if ob := s.outbox(name); ob != nil && len(events) > 0 {
		ob.Notify(cpf, events...)
	}
	s.hub.Notify(cpf, version)
}

// outbox is the outbox relaying collection name, if one runs.
func (s *Store) outbox(name string) *outbox.Outbox {
	if s.relays == nil {
		return nil
	}
	return s.relays.Outbox(name)
}

// write stores st if nobody changed it since revision rev; false means retry.
// The cache follows: it gets st when written, loses the cpf otherwise.
func (s *Store) write(ctx context.Context, coll *mongo.Collection, st stored, found bool, rev int64, events []eventbus.Event) (bool, error) {
	raw, err := bson.Marshal(st)
	if err != nil {
		return false, err
	}
	ok, err := s.writeRaw(ctx, coll, st.CPF, raw, found, rev, events)
	s.cached(coll.Name(), st, ok)
	return ok, err
}

// cached keeps st as the cpf's document after a successful write, and
// forgets the cpf after a failed one.
func (s *Store) cached(coll string, st stored, ok bool) {
	if ok {
		s.cache.put(coll, st.CPF, st)
	} else {
		s.cache.drop(coll, st.CPF)
	}
}

// writeChange stores next over prev (the document at revision rev) with an
// update of only what changed: items and removed entries one by one, the
// other fields whole, so a write costs the same whatever the number of items.
func (s *Store) writeChange(ctx context.Context, coll *mongo.Collection, prev, next stored, rev int64, events []eventbus.Event) (bool, error) {
	head := next
	head.Items, head.Removed = nil, nil
	raw, err := bson.Marshal(head)
	if err != nil {
		return false, err
	}
	var fields bson.D
	if err := bson.Unmarshal(raw, &fields); err != nil {
		return false, err
	}
	set := make(bson.D, 0, len(fields)+4)
	for _, f := range fields {
		if f.Key != "_id" && f.Key != "items" && f.Key != "removed" {
			set = append(set, f)
		}
	}
	var unset bson.D
	set, unset = diffMap(set, unset, "items", prev.Items, next.Items)
	set, unset = diffMap(set, unset, "removed", prev.Removed, next.Removed)
	// A new score.changed supersedes every older one of the cpf (person keeps
	// the latest by version), so it replaces the outbox: the write also
	// clears what the relay published, sparing it a write of its own.
	replaced := func(bool) {}
	if len(events) > 0 {
		set = append(set, bson.E{Key: outbox.Field, Value: events})
		if ob := s.outbox(coll.Name()); ob != nil {
			replaced = ob.Replaced(next.CPF)
		}
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: next.CPF}, {Key: "rev", Value: rev}}, update)
	if err != nil {
		replaced(false)
		s.cache.drop(coll.Name(), next.CPF)
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ok := res.MatchedCount == 1
	replaced(ok)
	s.cached(coll.Name(), next, ok)
	return ok, nil
}

// diffMap adds to set and unset what turns map field name from prev into
// next, entry by entry; the whole map when a key cannot be a path component.
func diffMap[V comparable](set, unset bson.D, name string, prev, next map[string]V) (bson.D, bson.D) {
	var s, u bson.D
	for k, v := range next {
		if old, ok := prev[k]; !ok || old != v {
			s = append(s, bson.E{Key: name + "." + k, Value: v})
		}
	}
	for k := range prev {
		if _, ok := next[k]; !ok {
			u = append(u, bson.E{Key: name + "." + k, Value: ""})
		}
	}
	for _, e := range append(slices.Clone(s), u...) {
		if k := e.Key[len(name)+1:]; k == "" || strings.ContainsAny(k, ".$") {
			if next == nil {
				next = map[string]V{}
			}
			return append(set, bson.E{Key: name, Value: next}), unset
		}
	}
	return append(set, s...), append(unset, u...)
}

func (s *Store) writeRaw(ctx context.Context, coll *mongo.Collection, cpf int64, raw bson.Raw, found bool, rev int64, events []eventbus.Event) (bool, error) {
	var fields bson.D
	if err := bson.Unmarshal(raw, &fields); err != nil {
		return false, err
	}
	if !found {
		if events == nil {
			events = []eventbus.Event{}
		}
		_, err := coll.InsertOne(ctx, append(fields, bson.E{Key: outbox.Field, Value: events}))
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
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: cpf}, {Key: "rev", Value: rev}}, update)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res.MatchedCount == 1, nil
}
