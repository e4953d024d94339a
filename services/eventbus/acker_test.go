package eventbus

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// fakeBroker keeps a channel's outstanding deliveries the way RabbitMQ does
// and fails on what RabbitMQ would close the channel for: acknowledging an
// unknown tag, or a multiple-ack covering a delivery still being processed.
type fakeBroker struct {
	mu          sync.Mutex
	outstanding map[uint64]bool // tag -> finished by the consumer
	frames      int
	errs        []error
}

func newFakeBroker(n int) *fakeBroker {
	b := &fakeBroker{outstanding: map[uint64]bool{}}
	for tag := uint64(1); tag <= uint64(n); tag++ {
		b.outstanding[tag] = false
	}
	return b
}

func (b *fakeBroker) finish(tag uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.outstanding[tag]; ok {
		b.outstanding[tag] = true
	}
}

// nack is the consumer's own nack frame, sent before it reports the tag settled.
func (b *fakeBroker) nack(tag uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.outstanding, tag)
}

func (b *fakeBroker) Ack(tag uint64, multiple bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.frames++
	if !multiple {
		if _, ok := b.outstanding[tag]; !ok {
			b.errs = append(b.errs, fmt.Errorf("ack of unknown tag %d", tag))
		}
		delete(b.outstanding, tag)
		return nil
	}
	for t, finished := range b.outstanding {
		if t <= tag {
			if !finished {
				b.errs = append(b.errs, fmt.Errorf("multiple-ack %d covers tag %d still in progress", tag, t))
			}
			delete(b.outstanding, t)
		}
	}
	return nil
}

func (b *fakeBroker) IsClosed() bool { return false }

func (b *fakeBroker) left() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.outstanding)
}

// Whatever order deliveries finish in, and whichever are nacked, every
// finished delivery is acknowledged exactly once, no frame would make the
// broker close the channel, and under load far fewer frames than messages go
// out.
func TestAckerSettlesEverythingOnce(t *testing.T) {
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 7))
		const n = 2000
		b := newFakeBroker(n)
		a := newAcker(b, 256)
		a.maxWait = time.Millisecond
		order := make([]uint64, n)
		for i := range order {
			order[i] = uint64(i + 1)
		}
		// Mostly in order, as with several workers: local shuffles.
		for i := range order {
			j := min(n-1, i+r.IntN(16))
			order[i], order[j] = order[j], order[i]
		}
		var wg sync.WaitGroup
		parts := 4
		for p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := p; i < n; i += parts {
					tag := order[i]
					if tag%97 == 0 {
						b.nack(tag)
						a.settled(tag)
						continue
					}
					b.finish(tag)
					a.done(tag)
				}
			}()
		}
		wg.Wait()
		a.close()
		if b.left() != 0 {
			t.Fatalf("seed %d: %d deliveries never acknowledged", seed, b.left())
		}
		if len(b.errs) > 0 {
			t.Fatalf("seed %d: %v", seed, b.errs[0])
		}
		if seed == 0 {
			t.Logf("%d deliveries settled with %d ack frames", n, b.frames)
		}
	}
}

// A slow delivery does not hold back the others: finished tags behind it are
// acknowledged on their own after a short wait.
func TestAckerDoesNotWaitForSlowDelivery(t *testing.T) {
	b := newFakeBroker(10)
	a := newAcker(b, 256)
	defer a.close()
	for tag := uint64(2); tag <= 10; tag++ { // tag 1 is the slow one
		b.finish(tag)
		a.done(tag)
	}
	waitFor(t, time.Second, "tags 2..10 acknowledged", func() bool { return b.left() == 1 })
	b.finish(1)
	a.done(1)
	waitFor(t, time.Second, "tag 1 acknowledged", func() bool { return b.left() == 0 })
	if len(b.errs) > 0 {
		t.Fatal(b.errs)
	}
}
