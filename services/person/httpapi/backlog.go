package httpapi

import (
	"context"
	"fmt"
	"time"
)

// BacklogBound admits writes while the outbox backlog (events stored and not
// yet confirmed by the broker) stays under its bounds. A write stores its
// event with it whether or not the broker is reachable, so a broker outage
// costs no writes until the backlog reaches MaxPending events or its oldest
// event MaxAge; past either, writes are refused (503, nothing written) until
// the broker is back and the backlog drains under it.
type BacklogBound struct {
	// Backlog returns the backlog's size and the time of its oldest event
	// (outbox.Outbox.Backlog); it must not read the store.
	Backlog    func() (pending int, oldest time.Time)
	MaxPending int           // 0: no bound on the count
	MaxAge     time.Duration // 0: no bound on the age
	// BrokerReady reports whether the broker is reachable now (for Status).
	BrokerReady func() bool
}

// BacklogFullError is why a write is refused: the backlog is at its bound.
type BacklogFullError struct {
	Pending, MaxPending int
	Age, MaxAge         time.Duration
}

func (e *BacklogFullError) Error() string {
	if e.MaxPending > 0 && e.Pending >= e.MaxPending {
		return fmt.Sprintf("outbox backlog full: %d events wait for the event broker (bound %d)", e.Pending, e.MaxPending)
	}
	return fmt.Sprintf("outbox backlog too old: its oldest event has waited %s for the event broker (bound %s)",
		e.Age.Round(time.Second), e.MaxAge)
}

// RetryAfter is the Retry-After of a write refused for a full backlog: the
// backlog drains only once the broker is back, so asking again at once
// would not help.
const RetryAfter = 5 * time.Second

// Check returns a *BacklogFullError while the backlog is at a bound, else nil.
func (b BacklogBound) Check(context.Context) error {
	pending, oldest := b.Backlog()
	var age time.Duration
	if !oldest.IsZero() {
		age = time.Since(oldest)
	}
	if (b.MaxPending > 0 && pending >= b.MaxPending) || (b.MaxAge > 0 && age >= b.MaxAge) {
		return &BacklogFullError{Pending: pending, MaxPending: b.MaxPending, Age: age, MaxAge: b.MaxAge}
	}
	return nil
}

// Status describes the broker and the backlog for /readyz.
func (b BacklogBound) Status() map[string]any {
	pending, oldest := b.Backlog()
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Round(time.Second).Seconds()
	}
	broker := "connected"
	if b.BrokerReady != nil && !b.BrokerReady() {
		broker = "unreachable"
	}
	writes := "accepted"
	if err := b.Check(context.Background()); err != nil {
		writes = "refused: " + err.Error()
	} else if broker != "connected" {
		writes = "accepted into the outbox backlog; published when the broker is back"
	}
	return map[string]any{
		"broker": broker,
		"writes": writes,
		"outbox": map[string]any{
			"pending": pending, "oldest_pending_seconds": age,
			"max_pending": b.MaxPending, "max_age_seconds": b.MaxAge.Seconds(),
		},
	}
}
