package eventbus

import (
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acker settles the deliveries of one consuming channel. Workers finish out
// of order; the acker acknowledges the contiguous run of finished delivery
// tags with a single multiple-ack, at most once per coalesce interval unless
// many are waiting, so under load one frame (and, for a quorum queue, one
// settle command in the queue's log) covers many messages. A tag finished
// behind a slow one is acknowledged on its own after a short wait, so one
// slow handler never holds the prefetch window of the others.
//
// Every delivery of the channel must be reported exactly once: done (to be
// acknowledged) or settled (already nacked by the caller, who sent that frame
// before reporting, so no later multiple-ack can cover it first).
type acker struct {
	ch       ackChannel
	coalesce time.Duration // pause after sending, to gather the next acks
	urgent   int           // this many waiting acks end the pause at once
	maxWait  time.Duration // how long a finished tag may wait behind a gap

	mu      sync.Mutex
	next    uint64               // lowest tag not finished yet
	waiting map[uint64]bool      // finished tags >= next: true = still to acknowledge
	toAck   int                  // entries of waiting that are true
	behind  map[uint64]time.Time // finished tags seen waiting behind a gap, since when
	wake    chan struct{}
	hurry   chan struct{}
	quit    chan struct{}
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
	a := &acker{ch: ch, coalesce: time.Millisecond, urgent: max(prefetch/4, 1), maxWait: 20 * time.Millisecond,
		next: 1, waiting: map[uint64]bool{}, behind: map[uint64]time.Time{},
		wake: make(chan struct{}, 1), hurry: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{})}
	go a.run()
	return a
}

// done reports a delivery whose processing finished and that should be acknowledged.
func (a *acker) done(tag uint64) { a.report(tag, true) }

// settled reports a delivery the caller already nacked.
func (a *acker) settled(tag uint64) { a.report(tag, false) }

func (a *acker) report(tag uint64, ack bool) {
	a.mu.Lock()
	urgent := false
	if tag >= a.next && !a.closed {
		a.waiting[tag] = ack
		if ack {
			a.toAck++
			urgent = a.toAck >= a.urgent
		}
	}
	a.mu.Unlock()
	signal(a.wake)
	if urgent {
		signal(a.hurry)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// close acknowledges everything finished and stops the acker.
func (a *acker) close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.quit)
	}
	a.mu.Unlock()
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
		case <-a.quit:
		}
		sent, wait, closing := a.flush()
		if closing {
			return
		}
		if sent && a.coalesce > 0 {
			// Let more acks gather before the next frame, unless many wait.
			pause := time.NewTimer(a.coalesce)
			select {
			case <-pause.C:
			case <-a.hurry:
			case <-a.quit:
			}
			pause.Stop()
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

// flush sends the acknowledgements that are due. It reports whether it sent
// any, how soon to look again for tags left waiting behind a gap (0: none),
// and whether the acker is closing.
func (a *acker) flush() (sent bool, wait time.Duration, closing bool) {
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
			a.toAck--
		}
		delete(a.waiting, a.next)
		delete(a.behind, a.next)
		a.next++
	}
	// Tags finished behind a gap: acknowledged one by one once too many wait,
	// once one waited too long, or at close.
	var single []uint64
	now := time.Now()
	oldest := time.Duration(0)
	for tag, ack := range a.waiting {
		if !ack {
			continue
		}
		since, seen := a.behind[tag]
		if !seen {
			since = now
			a.behind[tag] = now
		}
		if closing || a.toAck >= a.urgent || now.Sub(since) >= a.maxWait {
			single = append(single, tag)
		} else if age := now.Sub(since); age > oldest {
			oldest = age
		}
	}
	for _, tag := range single {
		a.waiting[tag] = false // acknowledged; still marks the tag finished
		a.toAck--
	}
	if a.toAck > 0 {
		wait = max(a.maxWait-oldest, time.Millisecond)
	}
	a.mu.Unlock()

	// A closed channel makes these fail; the broker requeues on its own.
	if upTo > 0 {
		_ = a.ch.Ack(upTo, true)
	}
	for _, tag := range single {
		_ = a.ch.Ack(tag, false)
	}
	return upTo > 0 || len(single) > 0, wait, closing
}
