package mongodb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/score"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// DefaultCollection holds the read model until the first rebuild.
const DefaultCollection = "scores"

// Source is the CloudEvents source of score's events.
const Source = "/score"

// fromSnapshot marks, in a rebuild's collection, a document a snapshot was applied to.
const fromSnapshot = "from_snapshot"

const maxCASAttempts = 200

// ErrUnavailable: the store cannot be used now.
var ErrUnavailable = errors.New("read model store unavailable")

// Relays relays the score.changed events the store writes into a
// collection's documents (package relays runs one outbox per collection).
type Relays interface {
	// Outbox is the outbox relaying collection's score.changed, nil while
	// none runs (its sweep publishes them once one does).
	Outbox(collection string) *outbox.Outbox
	// Follow tells that collection serves the read model now: its
	// score.changed are the ones to relay.
	Follow(collection string)
}

// Config configures a Store; zero values take the defaults.
type Config struct {
	DB *mongo.Database
	// Relays relays score.changed; nil: none (they stay in the documents).
	Relays Relays
	Logger *zap.Logger
	// WatchInterval is how often the shared read-your-writes watcher looks for
	// writes by other replicas while somebody waits (default 100ms).
	WatchInterval time.Duration
}

// Store is score's read model in MongoDB: the documents of the collection
// that serves reads and of a rebuild's collection, and the meta document
// naming them.
type Store struct {
	db     *mongo.Database
	meta   *mongo.Collection
	hub    *Hub
	relays Relays
	log    *zap.Logger
	cache  docCache

	mu      sync.Mutex
	active  string // collection serving the read model, as last seen
	seenRev int64  // revision of the meta document active comes from
}

// New returns a store on cfg.DB.
func New(cfg Config) *Store {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Store{db: cfg.DB, meta: cfg.DB.Collection(MetaCollection), relays: cfg.Relays, log: cfg.Logger}
	s.hub = NewHub(cfg.WatchInterval, s.versions)
	return s
}

// stored is a document as the collection holds it.
type stored struct {
	score.Document `bson:",inline"`
	FromSnapshot   bool `bson:"from_snapshot,omitempty"`
}

func (s *Store) load(ctx context.Context, coll *mongo.Collection, cpf int64) (stored, bool, error) {
	st := stored{Document: score.NewDocument(cpf)}
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: cpf}}, options.FindOne().SetProjection(bson.D{{Key: outbox.Field, Value: 0}})).Decode(&st)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return stored{Document: score.NewDocument(cpf)}, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	fill(&st)
	return st, true, nil
}

// fill gives a decoded document the maps Apply writes to.
func fill(st *stored) {
	if st.Items == nil {
		st.Items = map[string]score.Item{}
	}
	if st.Removed == nil {
		st.Removed = map[string]int64{}
	}
}

// Get returns the read model of a cpf; ErrNotFound when no live person is known.
func (s *Store) Get(ctx context.Context, cpf int64) (score.Document, error) {
	coll, err := s.collection(ctx)
	if err != nil {
		return score.Document{}, err
	}
	st, found, err := s.load(ctx, coll, cpf)
	if err != nil {
		return st.Document, err
	}
	if !found || !st.Live() {
		return st.Document, score.ErrNotFound
	}
	return st.Document, nil
}

// WaitForVersion returns the document once it has applied every version up to
// min, or the current one with stale=true when ctx ends first. It sleeps on
// the hub between reads: a read happens only when the document may have moved.
func (s *Store) WaitForVersion(ctx context.Context, cpf, min int64) (score.Document, bool, error) {
	var last stored
	seen, first := false, true
	for {
		w := s.hub.Watch(cpf)
		coll, err := s.collection(ctx)
		var st stored
		var found bool
		if err == nil {
			// What this process wrote last is in the store. If it is recent
			// enough no read is needed. If not, the first time we wait
			// without reading: this process, or the hub's watcher for other
			// replicas' writes, wakes us when the document moves; then we
			// read unless the cache has caught up.
			var cached bool
			if st, cached = s.cache.get(coll.Name(), cpf); cached && (st.Version >= min || first) {
				found = true
			} else {
				st, found, err = s.load(ctx, coll, cpf)
			}
			first = false
		}
		if err != nil {
			w.Close()
			if ctx.Err() != nil {
				return s.stale(last, seen)
			}
			return st.Document, false, err
		}
		last, seen = st, found
		if found && st.Version >= min {
			w.Close()
			return st.Document, false, nil
		}
		if min <= 0 { // nothing to wait for: the cpf is unknown
			w.Close()
			return st.Document, false, score.ErrNotFound
		}
		w.Seen(st.Version, min)
		select {
		case <-w.C():
			w.Close()
		case <-ctx.Done():
			w.Close()
			return s.stale(last, seen)
		}
	}
}

func (s *Store) stale(last stored, found bool) (score.Document, bool, error) {
	if !found {
		return last.Document, true, score.ErrNotFound
	}
	return last.Document, true, nil
}

// versions reads the version of each cpf in the active collection, for the
// hub: one _id lookup each, which every store serves from its _id index.
// (FerretDB v1 does not push an _id $in down: on a big collection one probe
// read every document, took longer than the hub's deadline, and the next
// started at once.) Cpfs not reached before ctx ends wait for the next probe.
func (s *Store) versions(ctx context.Context, cpfs []int64) (map[int64]int64, error) {
	coll, err := s.collection(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]int64, len(cpfs))
	for _, cpf := range cpfs {
		var row struct {
			Version int64 `bson:"version"`
		}
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: cpf}},
			options.FindOne().SetProjection(bson.D{{Key: "version", Value: 1}})).Decode(&row)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
		case err != nil && len(out) > 0:
			return out, nil
		case err != nil:
			return nil, err
		default:
			out[cpf] = row.Version
		}
	}
	return out, nil
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.Client().Ping(ctx, nil)
}

// Run runs the shared read-your-writes watcher (see Hub) until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	s.hub.Run(ctx)
	return nil
}
