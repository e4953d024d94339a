package mongodb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// casTimeout bounds one command of a casBatcher; it is not any one caller's:
// the command carries several callers' updates.
const casTimeout = 10 * time.Second

// casBatcher sends the compare-and-swap updates that concurrent applies make
// to one collection together: while fewer than casInFlight commands are under
// way an update goes out at once, alone or with what waits; beyond that,
// updates wait and go out together, as one unordered update command, when a
// command is answered. So an idle replica waits for nothing, and a busy one
// makes fewer store round trips than it applies events.
//
// Each statement is an upsert filtered by _id and revision, so that the one
// answer tells each statement's outcome: applied; refused with a duplicate
// _id because the document has another revision (somebody else wrote it:
// not applied, retry); or upserted because the document is gone (its
// collection was dropped): the upsert is undone and reported as not applied,
// as a plain update would have matched nothing.
type casBatcher struct {
	coll *mongo.Collection

	mu       sync.Mutex
	inFlight int      // senders running, each with a command under way or about to be
	queue    []*casOp // updates for the next command
}

// casInFlight is how many commands of one batcher may be under way at once:
// two, so that an update that comes while one command is under way does not
// wait for its answer unless the store is busy.
const casInFlight = 2

// casOp is one compare-and-swap: update cpf's document, if it is at revision
// rev, to revision next.
type casOp struct {
	ctx            context.Context
	cpf, rev, next int64
	update         bson.D

	done chan struct{} // closed once ok and err are set
	ok   bool
	err  error
}

func (op *casOp) finish(ok bool, err error) {
	op.ok, op.err = ok, err
	close(op.done)
}

// cas applies update to cpf's document if it is at revision rev; update sets
// the revision to next. false: the document is at another revision (or gone).
// An error leaves the outcome unknown.
func (b *casBatcher) cas(ctx context.Context, cpf, rev, next int64, update bson.D) (bool, error) {
	op := &casOp{ctx: ctx, cpf: cpf, rev: rev, next: next, update: update, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, op)
	start := b.inFlight < casInFlight
	if start {
		b.inFlight++
	}
	b.mu.Unlock()
	if start {
		go b.send() // so that this caller, too, can give up when ctx ends
	}
	select {
	case <-op.done:
		return op.ok, op.err
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// send sends what has queued as one command, then what queued meanwhile,
// until nothing is left.
func (b *casBatcher) send() {
	for {
		b.mu.Lock()
		ops := b.queue
		b.queue = nil
		if len(ops) == 0 {
			b.inFlight--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.write(ops)
	}
}

// write sends ops as one command and finishes each with its outcome. Ops
// whose caller has given up are not sent.
func (b *casBatcher) write(ops []*casOp) {
	live := make([]*casOp, 0, len(ops))
	for _, op := range ops {
		if err := op.ctx.Err(); err != nil {
			op.finish(false, fmt.Errorf("%w: %v", ErrUnavailable, err))
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return
	}
	models := make([]mongo.WriteModel, len(live))
	for i, op := range live {
		models[i] = mongo.NewUpdateOneModel().SetUpsert(true).
			SetFilter(bson.D{{Key: "_id", Value: op.cpf}, {Key: "rev", Value: op.rev}}).SetUpdate(op.update)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), casTimeout)
	defer cancel()
	res, err := b.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	failed := make([]error, len(live))
	refused := make([]bool, len(live))
	if err != nil {
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
			// No answer per statement: any of them may have been applied.
			for _, op := range live {
				op.finish(false, fmt.Errorf("%w: %v", ErrUnavailable, err))
			}
			return
		}
		for _, we := range bwe.WriteErrors {
			if we.Index < 0 || we.Index >= len(live) {
				continue
			}
			if we.Code == 11000 {
				refused[we.Index] = true
			} else {
				failed[we.Index] = fmt.Errorf("%w: %v", ErrUnavailable, we)
			}
		}
	}
	for i, op := range live {
		_, upserted := res.UpsertedIDs[int64(i)]
		switch {
		case failed[i] != nil:
			op.finish(false, failed[i])
		case refused[i]:
			op.finish(false, nil)
		case upserted:
			_, err := b.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: op.cpf}, {Key: "rev", Value: op.next}})
			if err != nil {
				err = fmt.Errorf("%w: undo an upsert of cpf %d: %v", ErrUnavailable, op.cpf, err)
			}
			op.finish(false, err)
		default:
			op.finish(true, nil)
		}
	}
}

// casBatcher returns the batcher of collection name.
func (s *Store) casBatcher(name string) *casBatcher {
	s.casMu.Lock()
	defer s.casMu.Unlock()
	b := s.batchers[name]
	if b == nil {
		if s.batchers == nil {
			s.batchers = map[string]*casBatcher{}
		}
		b = &casBatcher{coll: s.db.Collection(name)}
		s.batchers[name] = b
	}
	return b
}
