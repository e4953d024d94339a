package eventbus

import (
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acker settles the deliveries of one consuming channel. Workers finish out
// of order; the acker acknowledges the contiguous run of finished delivery
// tags with a single multiple-ack, so under load one frame (and, for a quorum
// queue, one settle command in the queue's log) covers many messages. A tag
// finished behind a slow one is acknowledged on its own after a short wait,
// so one slow handler never holds the prefetch window of the others.
//
// Every delivery of the channel must be reported exactly once: done (to be
// acknowledged) or settled (already nacked by the caller, who sent that frame
// before reporting, so no later multiple-ack can cover it first).
type acker struct {
	ch       ackChannel
	lagLimit int           // finished tags waiting behind a gap before they are acked one by one
	maxWait  time.Duration // how long a finished tag may wait behind a gap

	mu      sync.Mutex
	next    uint64          // lowest tag not finished yet
	waiting map[uint64]bool // finished tags >= next: true = still to acknowledge
	since   map[uint64]time.Time
	wake    chan struct{}
	closed  bool
	stopped chan struct{}
}

// ackChannel is what the acker needs of *amqp.Channel.
type ackChannel interface {
	Ack(tag uint64, multiple bool) error
	IsClosed() bool
}

var _ ackChannel = (*amqp.Channel)(nil)

func newAcker(ch ackChannel, prefetch int) *acker {
	a := &acker{ch: ch, lagLimit: max(prefetch/4, 1), maxWait: 20 * time.Millisecond, next: 1,
		waiting: map[uint64]bool{}, since: map[uint64]time.Time{}, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go a.run()
	return a
}

// done reports a delivery whose processing finished and that should be acknowledged.
func (a *acker) done(tag uint64) { a.report(tag, true) }

// settled reports a delivery the caller already nacked.
func (a *acker) settled(tag uint64) { a.report(tag, false) }

func (a *acker) report(tag uint64, ack bool) {
	a.mu.Lock()
	if tag >= a.next {
		a.waiting[tag] = ack
		if ack {
			a.since[tag] = time.Now()
		}
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// close acknowledges everything finished and stops the acker.
func (a *acker) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	<-a.stopped
}

func (a *acker) run() {
	defer close(a.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-a.wake:
		case <-timer.C:
		}
		closing, wait := a.flush()
		if closing {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if wait > 0 {
			timer.Reset(wait)
		}
	}
}

// flush sends the acknowledgements that are due. It returns whether the
// acker is closing and, if finished tags are left waiting behind a gap, how
// soon to look again.
func (a *acker) flush() (closing bool, wait time.Duration) {
	a.mu.Lock()
	closing = a.closed
	// The contiguous run from next: one multiple-ack.
	var upTo uint64
	for {
		ack, ok := a.waiting[a.next]
		if !ok {
			break
		}
		if ack {
			upTo = a.next
		}
		delete(a.waiting, a.next)
		delete(a.since, a.next)
		a.next++
	}
	// Tags finished behind a gap: acknowledged one by one once too many wait
	// or one waited too long (or at close).
	var single []uint64
	now := time.Now()
	oldest := time.Duration(0)
	pending := 0
	for _, ack := range a.waiting {
		if ack {
			pending++
		}
	}
	for tag, at := range a.since {
		age := now.Sub(at)
		if closing || pending >= a.lagLimit || age >= a.maxWait {
			single = append(single, tag)
			a.waiting[tag] = false // acknowledged; still marks the tag finished
			delete(a.since, tag)
		} else if age > oldest {
			oldest = age
		}
	}
	if len(a.since) > 0 {
		wait = max(a.maxWait-oldest, time.Millisecond)
	}
	a.mu.Unlock()

	if upTo > 0 {
		_ = a.ch.Ack(upTo, true) // a closed channel requeues on its own
	}
	for _, tag := range single {
		_ = a.ch.Ack(tag, false)
	}
	return closing, wait
}
