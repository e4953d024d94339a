package integration_test

import (
	"context"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	"github.com/personscore/score/internal/historytest"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
)

// Three score replicas (each its own consumer, connection, MongoDB client and
// Store) share one queue on the real broker. Many events of ONE cpf are
// published shuffled, with duplicates, from several publishers at once, so
// the replicas apply the same document concurrently. The final document is
// exactly the history's final state: no update lost, no duplicate counted.
func TestReplicasShareOneQueue(t *testing.T) {
	b := scoretest.New(t)
	env := startMongo(t)
	service := eventbustest.Unique("score")
	var replicas []*replica
	for range 3 {
		replicas = append(replicas, startReplica(t, env, b, service, false))
	}

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	h := historytest.Generate(rng, 77777, 80)
	deliveries := h.Delivery(rng, true, 0.5, 3)

	const publishers = 3
	var wg sync.WaitGroup
	for p := range publishers {
		pub := b.Publisher()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []eventbus.Event
			for i := p; i < len(deliveries); i += publishers {
				batch = append(batch, deliveries[i])
				if len(batch) == 8 || i+publishers >= len(deliveries) {
					if err := pub.Publish(context.Background(), batch...); err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					batch = batch[:0]
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	waitVersions(t, replicas[0].router, env, []*historytest.History{h}, 60*time.Second)
	// Let redeliveries and late duplicates land before judging.
	total := func() int64 {
		var n int64
		for _, r := range replicas {
			n += r.applied.Load()
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for total() < int64(len(deliveries)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := scoretest.Semantics(t, env.DB.Collection(mongodb.DefaultCollection))[h.CPF]
	if want := h.Want(h.Final()); !reflect.DeepEqual(got, want) {
		t.Fatalf("seed %d: after %d deliveries to 3 replicas\n got %v\nwant %v", seed, len(deliveries), got, want)
	}
	for i, r := range replicas {
		if r.applied.Load() == 0 {
			t.Errorf("replica %d handled no event: the test did not exercise concurrent replicas", i)
		}
		t.Logf("replica %d handled %d deliveries", i, r.applied.Load())
	}
	if n := b.DeadLetters(service); n != 0 {
		t.Fatalf("%d events dead-lettered", n)
	}
}
