// Package outboxtest holds what tests of code that relays events through an
// outbox share: a publisher that records what it is given.
package outboxtest

import (
	"context"
	"sync"

	"github.com/personscore/eventbus"
)

// Recorder is an outbox publisher (outbox.Publisher) that keeps every event
// it is given; told to fail, it refuses every publish, as a disconnected
// broker would.
type Recorder struct {
	mu     sync.Mutex
	events []eventbus.Event
	fail   error
}

// Publish keeps events, or fails as told by Fail.
func (r *Recorder) Publish(_ context.Context, events ...eventbus.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, events...)
	return nil
}

// Fail makes every later publish fail with err (nil: succeed again).
func (r *Recorder) Fail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

// Events returns what was published so far, in publish order.
func (r *Recorder) Events() []eventbus.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]eventbus.Event(nil), r.events...)
}

// Of returns the events of type typ published so far, in publish order.
func (r *Recorder) Of(typ string) []eventbus.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []eventbus.Event
	for _, ev := range r.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}
