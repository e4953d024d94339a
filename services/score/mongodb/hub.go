package mongodb

import (
	"sync"
	"time"
)

// Hub wakes readers waiting for a cpf's document to reach a version. A write
// by this replica wakes the waiters of its cpf at once; one shared ticker wakes
// every waiter now and then so writes by other replicas are noticed too.
type Hub struct {
	mu      sync.Mutex
	waiters map[int64]chan struct{}
	tick    chan struct{}
}

// NewHub starts a hub whose shared wake-up runs every interval.
func NewHub(interval time.Duration) *Hub {
	h := &Hub{waiters: map[int64]chan struct{}{}, tick: make(chan struct{})}
	go func() {
		for range time.Tick(interval) {
			h.mu.Lock()
			close(h.tick)
			h.tick = make(chan struct{})
			h.mu.Unlock()
		}
	}()
	return h
}

// Wait returns a channel closed at the next change of cpf (or the next tick).
func (h *Hub) Wait(cpf int64) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.waiters[cpf]
	if !ok {
		ch = make(chan struct{})
		h.waiters[cpf] = ch
		tick := h.tick
		go func() {
			select {
			case <-tick:
				h.mu.Lock()
				if h.waiters[cpf] == ch {
					delete(h.waiters, cpf)
					close(ch)
				}
				h.mu.Unlock()
			case <-ch:
			}
		}()
	}
	return ch
}

// Notify wakes the waiters of cpf.
func (h *Hub) Notify(cpf int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch, ok := h.waiters[cpf]; ok {
		delete(h.waiters, cpf)
		close(ch)
	}
}
