// Package mongodb stores persons in MongoDB. Every change is one
// single-document compare-and-swap on the person's version that also appends
// the change's event to the document's outbox, so state and event are written
// together or not at all.
package mongodb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/person"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Source is the CloudEvents source of every event person publishes.
const Source = "/person"

// Collection is the name of the persons collection.
const Collection = "persons"

// maxCASAttempts bounds the retries of a change that keeps losing the race
// against concurrent changes of the same person made by other replicas
// (changes made through one Store never race: they take turns per cpf).
const maxCASAttempts = 200

// writeTimeout bounds a change's store work once its turn on the cpf is taken:
// the work then runs to the end even if the request that asked for it has
// given up, so the request's deadline only ever cuts the wait for the turn,
// where nothing has been written yet.
const writeTimeout = 5 * time.Second

// resolveTimeout bounds the work that settles the outcome of a write whose
// command failed after it was sent (sending it again, reading the person).
const resolveTimeout = 5 * time.Second

// Store reads and changes persons.
type Store struct {
	coll   *mongo.Collection
	outbox *outbox.Outbox
	locks  cpfLocks
	adds   addQueues
}

// New returns a store on db; ob relays the events the store writes.
func New(db *mongo.Database, ob *outbox.Outbox) *Store {
	return &Store{coll: db.Collection(Collection), outbox: ob}
}

// PersonsCollection is the collection a Store uses, for building its outbox.
func PersonsCollection(db *mongo.Database) *mongo.Collection { return db.Collection(Collection) }

type doc struct {
	CPF            person.CPF `bson:"_id"`
	person.Details `bson:",inline"`
	Items          map[string]person.Item `bson:"items"`
	Version        int64                  `bson:"version"`
	Deleted        bool                   `bson:"deleted"`
	Score          *person.Score          `bson:"score,omitempty"`
	ScoreVersion   int64                  `bson:"score_version"`
	CreatedAt      time.Time              `bson:"created_at"`
	UpdatedAt      time.Time              `bson:"updated_at"`
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %v", person.ErrUnavailable, err)
}

func (s *Store) load(ctx context.Context, cpf person.CPF) (doc, error) {
	var d doc
	err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: cpf}}, options.FindOne().SetProjection(bson.D{{Key: outbox.Field, Value: 0}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return d, person.ErrNotFound
	}
	if err != nil {
		return d, unavailable(err)
	}
	return d, nil
}

// Get returns a live person with its items and latest score.
func (s *Store) Get(ctx context.Context, cpf person.CPF) (person.Person, []person.Item, error) {
	d, err := s.load(ctx, cpf)
	if err != nil {
		return person.Person{}, nil, err
	}
	if d.Deleted {
		return person.Person{}, nil, person.ErrNotFound
	}
	items := make([]person.Item, 0, len(d.Items))
	for _, it := range d.Items {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b person.Item) int { return int(a.Version - b.Version) })
	return person.Person{CPF: d.CPF, Details: d.Details, Version: d.Version, Score: d.Score}, items, nil
}

func newEvent(ctx context.Context, typ string, cpf person.CPF, version int64, data any) (eventbus.Event, error) {
	return eventbus.NewEvent(ctx, Source, typ, cpf.String(), version, data)
}

// Create stores a new person; a cpf that was deleted before is created again
// with its version history continuing, so versions never repeat.
func (s *Store) Create(ctx context.Context, p person.NewPerson) (int64, error) {
	held, ctx, done, err := s.turn(ctx, p.CPF)
	if err != nil {
		return 0, err
	}
	defer done()
	held.live = 0
	now := time.Now().UTC()
	ev, err := newEvent(ctx, contract.PersonCreated, p.CPF, 1, person.PersonData(p.CPF, p.Details))
	if err != nil {
		return 0, err
	}
	d := bson.D{
		{Key: "_id", Value: p.CPF}, {Key: "name", Value: p.Name}, {Key: "address", Value: p.Address},
		{Key: "date_of_birth", Value: p.DateOfBirth}, {Key: "items", Value: bson.D{}}, {Key: "version", Value: int64(1)},
		{Key: "deleted", Value: false}, {Key: "score_version", Value: int64(0)},
		{Key: "created_at", Value: now}, {Key: "updated_at", Value: now},
		{Key: lastEventField, Value: ev.ID}, {Key: outbox.Field, Value: []eventbus.Event{ev}},
	}
	insert := func(ctx context.Context) (bool, error) {
		_, err := s.coll.InsertOne(ctx, d)
		return err == nil, err
	}
	_, err = insert(ctx)
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		err = s.resolve(p.CPF, 1, ev.ID, err, insert)
	}
	if err == nil {
		s.outbox.Notify(p.CPF, ev)
		held.live = 1
		return 1, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return 0, err
	}
	return s.changeLocked(ctx, held, p.CPF, recreate, func(cur doc, next int64) (bson.D, string, any, error) {
		if !cur.Deleted {
			return nil, "", nil, person.ErrExists
		}
		set := bson.D{{Key: "name", Value: p.Name}, {Key: "address", Value: p.Address},
			{Key: "date_of_birth", Value: p.DateOfBirth}, {Key: "items", Value: bson.D{}},
			{Key: "deleted", Value: false}, {Key: "created_at", Value: now}}
		return bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: "score", Value: ""}}}},
			contract.PersonCreated, person.PersonData(p.CPF, p.Details), nil
	})
}

// Update replaces a person's details.
func (s *Store) Update(ctx context.Context, cpf person.CPF, det person.Details) (int64, error) {
	return s.change(ctx, cpf, blind, func(cur doc, next int64) (bson.D, string, any, error) {
		set := bson.D{{Key: "name", Value: det.Name}, {Key: "address", Value: det.Address}, {Key: "date_of_birth", Value: det.DateOfBirth}}
		return bson.D{{Key: "$set", Value: set}}, contract.PersonUpdated, person.PersonData(cpf, det), nil
	})
}

// Delete removes a person and all its items; the document stays as a
// tombstone that keeps the version history.
func (s *Store) Delete(ctx context.Context, cpf person.CPF) (int64, error) {
	return s.change(ctx, cpf, blind, func(cur doc, next int64) (bson.D, string, any, error) {
		set := bson.D{{Key: "deleted", Value: true}, {Key: "items", Value: bson.D{}}, {Key: "name", Value: ""},
			{Key: "address", Value: ""}, {Key: "date_of_birth", Value: ""}}
		return bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: "score", Value: ""}}}},
			contract.PersonDeleted, person.DeletedData(cpf), nil
	})
}

// AddItem records an income, asset or debt and returns it with its id.
// Items added to one person while a change of it is under way queue up, and
// the next holder of the cpf's turn stores all of them in one write, each
// with its own version (see batch.go).
func (s *Store) AddItem(ctx context.Context, cpf person.CPF, kind person.Kind, in person.NewItem) (person.Item, error) {
	return s.addItem(ctx, cpf, kind, in)
}

// DeleteItem removes one item of the given kind.
func (s *Store) DeleteItem(ctx context.Context, cpf person.CPF, kind person.Kind, id string) (int64, error) {
	return s.change(ctx, cpf, readsItems, func(cur doc, next int64) (bson.D, string, any, error) {
		it, ok := cur.Items[id]
		if !ok || it.Kind != kind {
			return nil, "", nil, person.ErrItemMissing
		}
		data := person.ItemDeletedData(cpf, kind, id)
		return bson.D{{Key: "$unset", Value: bson.D{{Key: "items." + id, Value: ""}}}}, person.ItemEventType(kind, false), data, nil
	})
}

type buildFunc func(cur doc, next int64) (update bson.D, typ string, data any, err error)

// changeMode says what a change needs to know of the current document.
type changeMode int

const (
	// blind changes need only the version of a live person: when the previous
	// holder of the cpf's lock left it at a known version, the change goes
	// straight to its compare-and-swap without reading the document.
	blind changeMode = iota
	// readsItems changes look at the current document (build gets it whole).
	readsItems
	// recreate changes apply to a deleted person (Create of a deleted cpf).
	recreate
)

// change applies one versioned change: it reads the person, lets build describe
// the update and its event for version cur+1, and writes both with a
// compare-and-swap on the version, retrying when a concurrent change won.
func (s *Store) change(ctx context.Context, cpf person.CPF, mode changeMode, build buildFunc) (int64, error) {
	held, ctx, done, err := s.turn(ctx, cpf)
	if err != nil {
		return 0, err
	}
	defer done()
	return s.changeLocked(ctx, held, cpf, mode, build)
}

// turn waits for cpf's turn (bounded by ctx) and returns the context for the
// store work after it (bounded by writeTimeout, not by ctx); call done after.
func (s *Store) turn(ctx context.Context, cpf person.CPF) (*cpfLock, context.Context, func(), error) {
	held, unlock, err := s.locks.lock(ctx, cpf)
	if err != nil {
		return nil, nil, nil, unavailable(err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	return held, wctx, func() { cancel(); unlock() }, nil
}

// changeLocked is change for a caller holding cpf's lock.
func (s *Store) changeLocked(ctx context.Context, held *cpfLock, cpf person.CPF, mode changeMode, build buildFunc) (int64, error) {
	known := held.live
	held.live = 0 // until this change succeeds
	for attempt := range maxCASAttempts {
		var cur doc
		filter := bson.D{{Key: "_id", Value: cpf}}
		if attempt == 0 && mode == blind && known > 0 {
			// The previous holder left a live person at version known; if
			// another replica changed it since, the swap misses and we read.
			cur = doc{CPF: cpf, Version: known}
			filter = append(filter, bson.E{Key: "deleted", Value: false})
		} else {
			if err := casBackoff(ctx, attempt); err != nil {
				return 0, unavailable(err)
			}
			var err error
			if cur, err = s.load(ctx, cpf); err != nil {
				return 0, err
			}
			if cur.Deleted != (mode == recreate) {
				if cur.Deleted {
					return 0, person.ErrNotFound
				}
				return 0, person.ErrExists
			}
		}
		next := cur.Version + 1
		update, typ, data, err := build(cur, next)
		if err != nil {
			return 0, err
		}
		ev, err := newEvent(ctx, typ, cpf, next, data)
		if err != nil {
			return 0, err
		}
		update = setFields(update, bson.E{Key: "version", Value: next}, bson.E{Key: "updated_at", Value: time.Now().UTC()},
			bson.E{Key: lastEventField, Value: ev.ID})
		filter = append(filter, bson.E{Key: "version", Value: cur.Version})
		swap := s.swap(filter, outbox.With(update, ev))
		matched, err := swap(ctx)
		if err != nil {
			if err := s.resolve(cpf, next, ev.ID, err, swap); err != nil {
				return 0, err
			}
			matched = true
		}
		if matched {
			s.outbox.Notify(cpf, ev)
			if typ != contract.PersonDeleted {
				held.live = next
			}
			return next, nil
		}
	}
	return 0, fmt.Errorf("%w: too much contention on cpf %s", person.ErrUnavailable, cpf)
}

// lastEventField holds the id of the event of a person's latest change,
// written by the same update, so a write whose answer was lost can be looked up.
const lastEventField = "last_event"

// swap is the compare-and-swap of one change: true if filter matched and the
// update was applied.
func (s *Store) swap(filter, update bson.D) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		res, err := s.coll.UpdateOne(ctx, filter, update)
		return err == nil && res.MatchedCount == 1, err
	}
}

// resolve settles a write to version next, carrying event evID, whose command
// failed after it may have reached the store (a timeout, a dropped
// connection): it returns nil if the write is applied, ErrUnavailable if it
// certainly is not and never will be, and ErrOutcomeUnknown if that cannot be
// told.
//
// A command that was sent may still be on its way (queued in a loaded server)
// and be applied after any read, so a read alone proves nothing when it shows
// the write missing. Instead resolve sends the same command again (again: the
// compare-and-swap on the version, or the insert of the document; a duplicate
// key means it did not apply). It applies at most once, since whichever copy
// comes first moves the version (or creates the document) the other one is
// conditioned on. If the copy applied, the write is done. If it did not, the
// person has left the state the write needs and never returns to it (versions
// only grow), so the original cannot apply later either, and the person's
// version and last event tell whether it did.
func (s *Store) resolve(cpf person.CPF, next int64, evID string, cause error, again func(ctx context.Context) (bool, error)) error {
	if notSent(cause) {
		return unavailable(cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	applied, err := again(ctx)
	switch {
	case mongo.IsDuplicateKeyError(err):
	case err != nil:
		// The original may still arrive.
		return fmt.Errorf("%w: %v (sent again: %v)", person.ErrOutcomeUnknown, cause, err)
	case applied:
		return nil
	}
	var d struct {
		Version   int64  `bson:"version"`
		LastEvent string `bson:"last_event"`
	}
	opts := options.FindOne().SetProjection(bson.D{{Key: "version", Value: 1}, {Key: lastEventField, Value: 1}})
	err = s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: cpf}}, opts).Decode(&d)
	switch {
	case err != nil:
		// Missing after the copy found it is no state a write leaves.
		return fmt.Errorf("%w: %v (read back: %v)", person.ErrOutcomeUnknown, cause, err)
	case d.LastEvent == evID:
		return nil
	case d.Version <= next:
		// Another change took our version (ours would have left it at next
		// with our event, and only later changes move it past next).
		return unavailable(cause)
	default:
		// Later changes hide whether ours was among them.
		return fmt.Errorf("%w: %v", person.ErrOutcomeUnknown, cause)
	}
}

// notSent reports whether a failed command certainly never reached the store:
// no server could be selected, no connection was free, or the driver says so.
func notSent(err error) bool {
	var selection topology.ServerSelectionError
	var pool topology.WaitQueueTimeoutError
	var labeled mongo.LabeledError
	return errors.As(err, &selection) || errors.As(err, &pool) ||
		(errors.As(err, &labeled) && labeled.HasErrorLabel(driver.NoWritesPerformed))
}

// casBackoff waits before a retry of a lost compare-and-swap: nothing before
// the first attempt, then a short random pause growing up to about 20ms, so
// that replicas racing for one person spread out instead of colliding again.
func casBackoff(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return ctx.Err()
	}
	limit := time.Duration(min(attempt, 20)) * time.Millisecond
	t := time.NewTimer(time.Duration(rand.Int64N(int64(limit))) + 100*time.Microsecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setFields adds fields to the update's $set, creating it if needed.
func setFields(update bson.D, fields ...bson.E) bson.D {
	for i, op := range update {
		if op.Key == "$set" {
			update[i].Value = append(op.Value.(bson.D), fields...)
			return update
		}
	}
	return append(update, bson.E{Key: "$set", Value: bson.D(fields)})
}

// SetScore stores the latest score replicated from the score service; an
// older or repeated score.changed (by its version) changes nothing.
func (s *Store) SetScore(ctx context.Context, cpf person.CPF, value, version int64, at time.Time) error {
	filter := bson.D{{Key: "_id", Value: cpf}, {Key: "deleted", Value: false}, {Key: "score_version", Value: bson.D{{Key: "$lt", Value: version}}}}
	update := bson.D{{Key: "$set", Value: bson.D{
		{Key: "score", Value: person.Score{Value: value, Version: version, UpdatedAt: at}},
		{Key: "score_version", Value: version},
	}}}
	// The write also clears the person's published events, which spares
	// the outbox relay a write of its own.
	update, cleared := s.outbox.ClearWith(cpf, update)
	res, err := s.coll.UpdateOne(ctx, filter, update)
	cleared(err == nil && res.MatchedCount == 1)
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// PublishSnapshots appends a person.snapshot event with the current state of
// every person (deleted ones too) to its outbox, for a replica to rebuild from.
// It returns how many snapshots were queued.
func (s *Store) PublishSnapshots(ctx context.Context, progress func(n int)) (int, error) {
	cur, err := s.coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, unavailable(err)
	}
	var ids []struct {
		CPF person.CPF `bson:"_id"`
	}
	if err := cur.All(ctx, &ids); err != nil {
		return 0, unavailable(err)
	}
	n := 0
	for _, id := range ids {
		if err := s.snapshot(ctx, id.CPF); err != nil {
			return n, err
		}
		n++
		if progress != nil {
			progress(n)
		}
	}
	return n, nil
}

func (s *Store) snapshot(ctx context.Context, cpf person.CPF) error {
	_, unlock, err := s.locks.lock(ctx, cpf)
	if err != nil {
		return unavailable(err)
	}
	defer unlock()
	for attempt := range maxCASAttempts {
		if err := casBackoff(ctx, attempt); err != nil {
			return unavailable(err)
		}
		cur, err := s.load(ctx, cpf)
		if err != nil {
			return err
		}
		data := person.SnapshotData(cpf, cur.Deleted, cur.Details, cur.Items)
		ev, err := newEvent(ctx, contract.PersonSnapshot, cpf, cur.Version, data)
		if err != nil {
			return err
		}
		ev.ID = uuid.NewString()
		filter := bson.D{{Key: "_id", Value: cpf}, {Key: "version", Value: cur.Version}}
		res, err := s.coll.UpdateOne(ctx, filter, outbox.With(bson.D{}, ev))
		if err != nil {
			return unavailable(err)
		}
		if res.MatchedCount == 1 {
			s.outbox.Notify(cpf, ev)
			return nil
		}
	}
	return fmt.Errorf("%w: too much contention on cpf %s", person.ErrUnavailable, cpf)
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.coll.Database().Client().Ping(ctx, nil)
}
