package mongodb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/person"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// addReq is one AddItem waiting for its person's turn.
type addReq struct {
	kind person.Kind
	in   person.NewItem
	done chan struct{} // closed with item and err set
	item person.Item
	err  error
	stop context.CancelFunc // ends the owner's wait for the turn
}

// addQueues holds, per cpf, the AddItems not yet taken by a holder of its turn.
type addQueues struct {
	mu sync.Mutex
	q  map[person.CPF][]*addReq
}

func (a *addQueues) push(cpf person.CPF, r *addReq) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.q == nil {
		a.q = map[person.CPF][]*addReq{}
	}
	a.q[cpf] = append(a.q[cpf], r)
}

// take removes and returns every queued request of cpf.
func (a *addQueues) take(cpf person.CPF) []*addReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.q[cpf]
	delete(a.q, cpf)
	return rs
}

// withdraw removes r if no holder took it yet; false means one did (and
// will finish it).
func (a *addQueues) withdraw(cpf person.CPF, r *addReq) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.q[cpf]
	for i, x := range rs {
		if x == r {
			a.q[cpf] = append(rs[:i:i], rs[i+1:]...)
			if len(a.q[cpf]) == 0 {
				delete(a.q, cpf)
			}
			return true
		}
	}
	return false
}

func (r *addReq) finish(it person.Item, err error) {
	r.item, r.err = it, err
	close(r.done)
	r.stop()
}

// maxBatch bounds the items one write stores.
const maxBatch = 256

// addItem queues the item and waits for the cpf's turn; whoever gets the turn
// first stores every queued item of the cpf.
func (s *Store) addItem(ctx context.Context, cpf person.CPF, kind person.Kind, in person.NewItem) (person.Item, error) {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	r := &addReq{kind: kind, in: in, done: make(chan struct{}), stop: stop}
	s.adds.push(cpf, r)
	held, tctx, done, err := s.turn(wctx, cpf)
	if err != nil {
		if s.adds.withdraw(cpf, r) {
			return person.Item{}, unavailable(ctx.Err())
		}
		<-r.done // a holder took it: its store work runs to the end
		return r.item, r.err
	}
	defer done()
	for {
		batch := s.adds.take(cpf)
		if len(batch) == 0 {
			break // ours was stored by an earlier holder
		}
		for len(batch) > 0 {
			n := min(len(batch), maxBatch)
			s.addBatchLocked(tctx, held, cpf, batch[:n])
			batch = batch[n:]
		}
	}
	<-r.done
	return r.item, r.err
}

// addBatchLocked stores the items of reqs in one compare-and-swap on the
// version, versions cur+1..cur+n in order, and finishes every request.
func (s *Store) addBatchLocked(ctx context.Context, held *cpfLock, cpf person.CPF, reqs []*addReq) {
	fail := func(err error) {
		for _, r := range reqs {
			r.finish(person.Item{}, err)
		}
	}
	known := held.live
	held.live = 0 // until this change succeeds
	for attempt := range maxCASAttempts {
		filter := bson.D{{Key: "_id", Value: cpf}}
		var base int64
		if attempt == 0 && known > 0 {
			base = known
			filter = append(filter, bson.E{Key: "deleted", Value: false})
		} else {
			if err := casBackoff(ctx, attempt); err != nil {
				fail(unavailable(err))
				return
			}
			cur, err := s.load(ctx, cpf)
			if err == nil && cur.Deleted {
				err = person.ErrNotFound
			}
			if err != nil {
				fail(err)
				return
			}
			base = cur.Version
		}
		items := make([]person.Item, len(reqs))
		events := make([]eventbus.Event, len(reqs))
		set := bson.D{}
		now := time.Now().UTC()
		for i, r := range reqs {
			next := base + int64(i) + 1
			it := person.Item{ID: uuid.Must(uuid.NewV7()).String(), Kind: r.kind, Type: r.in.Type, Value: r.in.Value, Version: next, CreatedAt: now}
			data := person.ItemCreatedData(cpf, it)
			ev, err := newEvent(ctx, person.ItemEventType(r.kind, true), cpf, next, data)
			if err != nil {
				fail(err)
				return
			}
			items[i], events[i] = it, ev
			set = append(set, bson.E{Key: "items." + it.ID, Value: it})
		}
		last := base + int64(len(reqs))
		lastEv := events[len(events)-1]
		set = append(set, bson.E{Key: "version", Value: last}, bson.E{Key: "updated_at", Value: now}, bson.E{Key: lastEventField, Value: lastEv.ID})
		update := outbox.With(bson.D{{Key: "$set", Value: set}}, events...)
		filter = append(filter, bson.E{Key: "version", Value: base})
		swap := s.swap(filter, update)
		matched, err := swap(ctx)
		if err != nil {
			if err := s.resolve(cpf, last, lastEv.ID, err, swap); err != nil {
				fail(err)
				return
			}
			matched = true
		}
		if matched {
			s.outbox.Notify(cpf, events...)
			held.live = last
			for i, r := range reqs {
				r.finish(items[i], nil)
			}
			return
		}
	}
	fail(fmt.Errorf("%w: too much contention on cpf %s", person.ErrUnavailable, cpf))
}
