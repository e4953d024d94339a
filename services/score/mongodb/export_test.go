package mongodb

// Hub is the store's read-your-writes notifier.
func (s *Store) Hub() *Hub { return s.hub }

// Waiting is the number of registered readers.
func (h *Hub) Waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.waiters {
		n += len(set)
	}
	return n
}
