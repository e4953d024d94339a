package eventbus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus/eventbustest"
)

// Dead-letter replay: messages move from the .dlq back to the work queue with
// a fresh retry budget, counted, and a limit is honoured.
func TestReplayDeadLetters(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-replay", RetryDelays: []time.Duration{}}
	c := f.consumer(conn, &cfg)
	var fixed atomic.Bool
	var mu sync.Mutex
	handled := map[string]int{}
	c.Handle("report.due", func(ctx context.Context, ev Event) error {
		if !fixed.Load() {
			return errors.New("bug #42")
		}
		mu.Lock()
		handled[ev.ID]++
		mu.Unlock()
		return nil
	})
	startConsumer(t, c)
	var events []Event
	for range 5 {
		events = append(events, mustEvent(t, "report.due", "1", 1, nil))
	}
	publish(t, newPub(t, f, conn), events...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitFor(t, 10*time.Second, "5 dead letters", func() bool {
		n, err := DeadLetterCount(ctx, conn, cfg.Service)
		return err == nil && n == 5
	})

	peeked, err := PeekDeadLetters(ctx, conn, cfg.Service, 3)
	if err != nil || len(peeked) != 3 {
		t.Fatalf("peek: %d, %v", len(peeked), err)
	}
	if p := peeked[0]; p.Reason != "bug #42" || p.Attempts != 1 || p.RoutingKey != "report.due" || p.Type != "report.due" || p.FailedAt == "" {
		t.Errorf("peeked %+v", p)
	}
	if n, _ := DeadLetterCount(ctx, conn, cfg.Service); n != 5 {
		t.Fatalf("peek removed messages: %d left", n)
	}

	fixed.Store(true)
	var progress []int
	moved, err := ReplayDeadLetters(ctx, conn, cfg.Service, 2, func(n int) { progress = append(progress, n) })
	if err != nil || moved != 2 {
		t.Fatalf("replay limit 2: moved %d, %v", moved, err)
	}
	if len(progress) == 0 || progress[len(progress)-1] != 2 {
		t.Errorf("progress %v", progress)
	}
	moved, err = ReplayDeadLetters(ctx, conn, cfg.Service, 0, nil)
	if err != nil || moved != 3 {
		t.Fatalf("replay all: moved %d, %v", moved, err)
	}
	waitFor(t, 10*time.Second, "replayed events handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 5 })
	// Quorum queue message counts lag behind acknowledgements.
	waitFor(t, 10*time.Second, "an empty dlq", func() bool { n, _ := DeadLetterCount(ctx, conn, cfg.Service); return n == 0 })
	if moved, err := ReplayDeadLetters(ctx, conn, cfg.Service, 0, nil); moved != 0 || err != nil {
		t.Errorf("replay of an empty dlq: %d, %v", moved, err)
	}
}

// A delivery that is never acknowledged (its consumer keeps crashing) is
// dead-lettered by the broker once the explicit delivery limit is reached,
// and replay knows why it is there.
func TestDeliveryLimitDeadLetters(t *testing.T) {
	f := newFixture(t)
	conn := openConn(t, ConnConfig{})
	cfg := ConsumerConfig{Service: "eb-limit", RetryDelays: []time.Duration{}, DeliveryLimit: 2}
	c := f.consumer(conn, &cfg)
	c.Handle("crash.me", func(context.Context, Event) error { return nil })
	startConsumer(t, c).stop(t) // declares the topology
	ev := mustEvent(t, "crash.me", "1", 1, nil)
	publish(t, newPub(t, f, conn), ev)

	raw := rawChannel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// Take the message and hand it back, as a consumer that dies holding it
	// would, until the broker dead-letters it. Quorum queue message counts lag,
	// so the loop asks the dead-letter queue, not the work queue, when to stop.
	deliveries := 0
	for deadline := time.Now().Add(30 * time.Second); ; {
		if n, _ := DeadLetterCount(ctx, conn, cfg.Service); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not dead-lettered after %d deliveries (limit %d)", deliveries, cfg.DeliveryLimit)
		}
		d, ok, err := raw.Get(WorkQueue(cfg.Service), false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			deliveries++
			if deliveries > 10 {
				t.Fatal("the broker kept redelivering past the delivery limit")
			}
			_ = d.Nack(false, true)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p, err := PeekDeadLetters(ctx, conn, cfg.Service, 1)
	if err != nil || len(p) != 1 {
		t.Fatalf("peek: %v %v", p, err)
	}
	if p[0].MessageID != ev.ID || !strings.Contains(p[0].Reason, "delivery_limit") || p[0].RoutingKey != "crash.me" {
		t.Errorf("dead letter %+v", p[0])
	}
}

func TestDeadLetterOpsOnUnknownService(t *testing.T) {
	conn := openConn(t, ConnConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc := eventbustest.Unique("eb-never-ran")
	if _, err := DeadLetterCount(ctx, conn, svc); !errors.Is(err, ErrNoQueue) {
		t.Errorf("count: %v, want ErrNoQueue", err)
	}
	if _, err := ReplayDeadLetters(ctx, conn, svc, 0, nil); !errors.Is(err, ErrNoQueue) {
		t.Errorf("replay: %v, want ErrNoQueue", err)
	}
}
