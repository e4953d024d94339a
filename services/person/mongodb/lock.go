package mongodb

import (
	"context"
	"sync"

	"github.com/personscore/person"
)

// cpfLocks queues the changes one process makes to the same person, so that
// concurrent requests for one cpf take turns instead of racing each other's
// compare-and-swap (which would make many of them retry and, under heavy
// contention, give up). The compare-and-swap still guards against other
// replicas; this only removes the needless conflicts inside one replica.
//
// Each change hands the next the version it left the person at, so the next
// change can try its compare-and-swap at once instead of reading the document
// first (if another replica changed the person meanwhile, the swap misses and
// the change reads). Once nobody waits, the entry is dropped and the version
// kept in a bounded map of recently changed persons.
type cpfLocks struct {
	mu    sync.Mutex
	locks map[person.CPF]*cpfLock
	known map[person.CPF]int64 // live versions of recently changed persons
}

// maxKnown bounds the remembered versions (about 40 bytes each); the map is
// emptied when full, which only costs a read per person afterwards.
const maxKnown = 100_000

type cpfLock struct {
	turn    chan struct{} // holds a token while the lock is taken
	waiters int           // holders and waiters; the entry is dropped at zero
	// live is the version a live person was left at by the previous holder,
	// 0 if unknown. Only the holder reads or writes it.
	live int64
}

// lock waits for cpf's turn or for ctx to end; call unlock to release it.
func (l *cpfLocks) lock(ctx context.Context, cpf person.CPF) (held *cpfLock, unlock func(), err error) {
	// A free turn and an ended ctx may both be ready; the ended ctx wins, so
	// a request that gave up never starts its (detached) store work.
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[person.CPF]*cpfLock{}
	}
	e := l.locks[cpf]
	if e == nil {
		e = &cpfLock{turn: make(chan struct{}, 1), live: l.known[cpf]}
		l.locks[cpf] = e
	}
	e.waiters++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		e.waiters--
		if e.waiters == 0 {
			delete(l.locks, cpf)
			if l.known == nil || len(l.known) >= maxKnown {
				l.known = map[person.CPF]int64{}
			}
			if e.live > 0 {
				l.known[cpf] = e.live
			} else {
				delete(l.known, cpf)
			}
		}
		l.mu.Unlock()
	}
	select {
	case e.turn <- struct{}{}:
		if err := ctx.Err(); err != nil {
			<-e.turn
			release()
			return nil, nil, err
		}
		return e, func() { <-e.turn; release() }, nil
	case <-ctx.Done():
		release()
		return nil, nil, ctx.Err()
	}
}
