package integration_test

import (
	"context"
	"math/rand/v2"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	"github.com/personscore/score"
	"github.com/personscore/score/admin"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"go.uber.org/zap"
)

// source plays person: it "writes" histories (a write makes the next version
// of a cpf current) and publishes each write's event, possibly late,
// shuffled or twice, as person's outbox relay and sweep may. On
// snapshot.requested it answers as person's snapshots package does:
// snapshot.completed with the count and one person.snapshot per cpf at the
// version written so far (here the completion goes first, which the outbox
// relay may also cause).
type source struct {
	mu      sync.Mutex
	hs      []*historytest.History
	written map[int64]int64
	pub     *eventbus.Publisher
	rng     *rand.Rand
	answers atomic.Int64
}

func (s *source) snapshotRequested(ctx context.Context, ev eventbus.Event) error {
	var req contract.SnapshotRequest
	if err := ev.DecodeData(&req); err != nil {
		return err
	}
	s.mu.Lock()
	var snaps []eventbus.Event
	for _, h := range s.hs {
		snaps = append(snaps, h.Snapshot(s.written[h.CPF]))
	}
	snaps = append(snaps, snaps[s.rng.IntN(len(snaps))]) // a duplicate delivery
	s.rng.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
	s.mu.Unlock()
	done, err := eventbus.NewEvent(ctx, historytest.Source, contract.SnapshotCompleted, req.RebuildID, 1,
		contract.SnapshotCompletion{RebuildID: req.RebuildID, Count: int64(len(s.hs))})
	if err != nil {
		return err
	}
	if err := s.pub.Publish(ctx, done); err != nil {
		return err
	}
	s.answers.Add(1)
	return s.pub.Publish(ctx, snaps...)
}

// write makes the next n versions of h current and returns their events.
func (s *source) write(h *historytest.History, n int) []eventbus.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.written[h.CPF]
	if int(from)+n > len(h.Events) {
		h.Extend(s.rng, int(from)+n-len(h.Events))
	}
	s.written[h.CPF] = from + int64(n)
	return h.Events[from : from+int64(n)]
}

// The rebuild test, end to end on the real broker: person writes,
// deletes and re-creates at random; events arrive shuffled and duplicated at
// two score replicas sharing one queue; the incrementally built read model
// is then rebuilt through the admin API (the rebuild command's client) from
// person's snapshots, and the rebuilt model equals it document for document.
// A second rebuild runs while person keeps writing, and converges to the
// exact final state too.
func TestRebuildEqualsIncrementalModel(t *testing.T) {
	b := scoretest.New(t)
	env := startMongo(t)
	service := eventbustest.Unique("score")
	a := startReplica(t, env, b, service, true)
	startReplica(t, env, b, service, true)

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	src := &source{written: map[int64]int64{}, pub: b.Publisher(), rng: rand.New(rand.NewPCG(seed, 5))}
	for i := range 8 {
		src.hs = append(src.hs, historytest.Generate(rng, int64(90_000+i), 0))
	}
	person := b.Consumer(eventbustest.Unique("person"), 1)
	person.Handle(contract.SnapshotRequested, src.snapshotRequested)
	person.Handle(contract.ScoreChanged, func(context.Context, eventbus.Event) error { return nil })
	b.Run(person)

	// Incremental build: random histories, delivered shuffled with duplicates.
	pub := b.Publisher()
	var deliveries []eventbus.Event
	for _, h := range src.hs {
		events := src.write(h, 5+rng.IntN(15))
		deliveries = append(deliveries, events...)
		for _, ev := range events {
			if rng.IntN(3) == 0 {
				deliveries = append(deliveries, ev)
			}
		}
	}
	rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	if err := pub.Publish(context.Background(), deliveries...); err != nil {
		t.Fatal(err)
	}
	waitVersions(t, a.router, env, src.hs, 60*time.Second)
	incremental := scoretest.Semantics(t, env.DB.Collection(mongodb.DefaultCollection))
	for _, h := range src.hs {
		if want := h.Want(h.Final()); !reflect.DeepEqual(incremental[h.CPF], want) {
			t.Fatalf("seed %d: incremental document of %d\n got %v\nwant %v", seed, h.CPF, incremental[h.CPF], want)
		}
	}

	// Rebuild through the admin API, as the rebuild command does.
	const token = "test-token"
	h, err := admin.NewHandler(a.router, token, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &admin.Client{BaseURL: srv.URL, Token: token}
	rebuild := func() score.Rebuild {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rb, err := client.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done, err := client.Follow(ctx, rb.ID, 100*time.Millisecond, func(r score.Rebuild) { t.Logf("rebuild %s: %s %d/%d", r.ID, r.State, r.Snapshotted, r.Expected) })
		if err != nil {
			t.Fatalf("rebuild %s: %v", rb.ID, err)
		}
		return done
	}
	first := rebuild()
	if first.Active != first.Target || first.From != mongodb.DefaultCollection || first.Snapshotted != int64(len(src.hs)) {
		t.Fatalf("first rebuild: %+v", first)
	}
	rebuilt := scoretest.Semantics(t, env.DB.Collection(first.Target))
	if !reflect.DeepEqual(rebuilt, incremental) {
		for cpf, inc := range incremental {
			if !reflect.DeepEqual(rebuilt[cpf], inc) {
				t.Errorf("cpf %d\nrebuilt     %v\nincremental %v", cpf, rebuilt[cpf], inc)
			}
		}
		t.Fatalf("seed %d: the rebuilt model (%d documents) differs from the incremental one (%d)", seed, len(rebuilt), len(incremental))
	}

	// A second rebuild while person keeps writing (deletes and re-creates
	// included), with late and duplicated deliveries.
	stop := make(chan struct{})
	writing := make(chan error, 1)
	go func() {
		wrng := rand.New(rand.NewPCG(seed, 6))
		var pending []eventbus.Event
		for {
			select {
			case <-stop:
				writing <- pub.Publish(context.Background(), pending...)
				return
			case <-time.After(20 * time.Millisecond):
			}
			h := src.hs[wrng.IntN(len(src.hs))]
			pending = append(pending, src.write(h, 1)...)
			if wrng.IntN(4) == 0 {
				pending = append(pending, pending[wrng.IntN(len(pending))])
			}
			if len(pending) >= 3 {
				wrng.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
				if err := pub.Publish(context.Background(), pending...); err != nil {
					writing <- err
					return
				}
				pending = pending[:0]
			}
		}
	}()
	second := rebuild()
	close(stop)
	if err := <-writing; err != nil {
		t.Fatal(err)
	}
	if second.From != first.Target || second.Active != second.Target {
		t.Fatalf("second rebuild: %+v", second)
	}
	waitVersions(t, a.router, env, src.hs, 60*time.Second)
	final := scoretest.Semantics(t, env.DB.Collection(second.Target))
	for _, h := range src.hs {
		if want := h.Want(h.Final()); !reflect.DeepEqual(final[h.CPF], want) {
			t.Fatalf("seed %d: after a rebuild under writes, cpf %d\n got %v\nwant %v", seed, h.CPF, final[h.CPF], want)
		}
	}
	if n := src.answers.Load(); n != 2 {
		t.Errorf("person answered %d snapshot requests, want 2", n)
	}
	if n := b.DeadLetters(service); n != 0 {
		t.Fatalf("%d events dead-lettered", n)
	}
}
