package rebuild

import (
	"context"
	"time"
)

// MetaMaxAge lets tests wait out the routing meta document's staleness.
const MetaMaxAge = metaMaxAge

// Advance runs one of Run's rebuild checks: it may switch the read model.
func (s *Router) Advance(ctx context.Context) error {
	m, err := s.store.ReadMeta(ctx)
	if err != nil || !m.Rebuild.Running() {
		return err
	}
	return s.advance(ctx, m)
}

// PinRouting makes Apply route every event by the meta document as it is now,
// however old it gets: as an apply that read it just before a switch and
// wrote after it.
func (s *Router) PinRouting(ctx context.Context) error {
	m, err := s.store.ReadMeta(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.routeMeta, s.routeAt = m, time.Now().Add(time.Hour)
	s.mu.Unlock()
	return nil
}
