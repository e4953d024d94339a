package mongodb

import (
	"context"
	"sync"
	"time"
)

// Hub wakes readers waiting for a cpf's document to reach a version
// (read-your-writes). A write by this replica wakes the waiters of its cpf at
// once. Writes by other replicas are noticed by one shared watcher per replica:
// while anybody waits, it reads the versions of all waited-for cpfs in one
// query per interval and wakes those whose version moved. A waiting request
// therefore never polls the database itself.
type Hub struct {
	interval time.Duration
	probe    func(ctx context.Context, cpfs []int64) (map[int64]int64, error)

	mu      sync.Mutex
	waiters map[int64]map[*Watch]struct{}
	kick    chan struct{}
}

// Watch is one reader waiting for one cpf.
type Watch struct {
	hub  *Hub
	cpf  int64
	ch   chan struct{}
	seen int64 // version the reader has seen; guarded by hub.mu
	want int64 // version the reader waits for (0: any newer one); guarded by hub.mu
	done bool  // guarded by hub.mu
}

// NewHub returns a hub; probe reads the current version of each cpf (absent
// cpfs may be left out). Run starts the shared watcher.
func NewHub(interval time.Duration, probe func(ctx context.Context, cpfs []int64) (map[int64]int64, error)) *Hub {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	return &Hub{interval: interval, probe: probe, waiters: map[int64]map[*Watch]struct{}{}, kick: make(chan struct{}, 1)}
}

// Watch registers a reader of cpf. Register before reading the document, then
// call Seen with the version read, wait on C, and Close when done.
func (h *Hub) Watch(cpf int64) *Watch {
	w := &Watch{hub: h, cpf: cpf, ch: make(chan struct{})}
	h.mu.Lock()
	set := h.waiters[cpf]
	if set == nil {
		set = map[*Watch]struct{}{}
		h.waiters[cpf] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
	return w
}

// Seen records the version the reader has and the one it waits for: only a
// version above seen and at least want wakes it (want 0: any above seen), so
// readers of a busy cpf are not woken by every write on the way.
func (w *Watch) Seen(v, want int64) {
	w.hub.mu.Lock()
	w.seen, w.want = v, want
	w.hub.mu.Unlock()
}

// wakes reports whether version v is what w waits for; hub.mu is held.
func (w *Watch) wakes(v int64) bool { return v > w.seen && v >= w.want }

// C is closed when the document may have changed.
func (w *Watch) C() <-chan struct{} { return w.ch }

// Close unregisters the reader.
func (w *Watch) Close() {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop(w)
}

// drop removes w and closes its channel; h.mu is held.
func (h *Hub) drop(w *Watch) {
	if w.done {
		return
	}
	w.done = true
	close(w.ch)
	if set := h.waiters[w.cpf]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.waiters, w.cpf)
		}
	}
}

// Notify tells the readers of cpf that it reached version: it wakes those
// waiting for it.
func (h *Hub) Notify(cpf, version int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waiters[cpf] {
		if w.wakes(version) {
			h.drop(w)
		}
	}
}

// NotifyAll wakes every reader (the active collection changed).
func (h *Hub) NotifyAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waiters {
		for w := range set {
			h.drop(w)
		}
	}
}

// Run is the shared watcher for writes made by other replicas; it sleeps
// while nobody waits.
func (h *Hub) Run(ctx context.Context) {
	if h.probe == nil {
		return
	}
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	for {
		h.mu.Lock()
		cpfs := make([]int64, 0, len(h.waiters))
		for cpf := range h.waiters {
			cpfs = append(cpfs, cpf)
		}
		h.mu.Unlock()
		if len(cpfs) == 0 {
			select {
			case <-h.kick:
			case <-ctx.Done():
				return
			}
			continue
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		versions, err := h.probe(pctx, cpfs)
		cancel()
		if err != nil {
			continue
		}
		h.mu.Lock()
		for _, cpf := range cpfs {
			v, ok := versions[cpf]
			if !ok {
				continue
			}
			for w := range h.waiters[cpf] {
				if w.wakes(v) {
					h.drop(w)
				}
			}
		}
		h.mu.Unlock()
	}
}
