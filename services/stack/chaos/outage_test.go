//go:build chaos

package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/personscore/stack"
	"github.com/personscore/stack/chaos"
)

// readyz returns a service's /readyz status and JSON body.
func (h *harness) readyz(name string) (int, map[string]any, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(h.s.URL(name) + "/readyz")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	err = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, err
}

// waitReadyz polls a service's /readyz until it answers 200 with a body ok
// accepts, and fails the test if that does not happen within bound.
func (h *harness) waitReadyz(name string, bound time.Duration, what string, ok func(map[string]any) bool) {
	h.t.Helper()
	deadline := time.Now().Add(bound)
	var code int
	var m map[string]any
	var err error
	for time.Now().Before(deadline) {
		if code, m, err = h.readyz(name); err == nil && code == http.StatusOK && ok(m) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("%s /readyz did not show %s within %s: last %d %v %v", name, what, bound, code, m, err)
}

// backlog is the outbox backlog in person's /readyz body (-1 if absent).
func backlog(m map[string]any) int {
	ob, _ := m["outbox"].(map[string]any)
	n, ok := ob["pending"].(float64)
	if !ok {
		return -1
	}
	return int(n)
}

// brokerUnreachable is a /readyz body saying the broker is unreachable.
func brokerUnreachable(m map[string]any) bool { return m["broker"] == "unreachable" }

// drained waits until person's /readyz shows the broker connected and an empty
// backlog, and returns how long after t0 that was.
func (h *harness) drained(t0 time.Time, bound time.Duration) time.Duration {
	h.t.Helper()
	h.waitReadyz(stack.Person, bound, "an empty backlog", func(m map[string]any) bool {
		return m["broker"] == "connected" && backlog(m) == 0
	})
	return time.Since(t0)
}

// readyWatch polls /readyz of the services every 200ms until stopped and
// counts the answers other than 200.
type readyWatch struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	polls  map[string]int
	unread map[string][]string
}

func (h *harness) watchReady(names ...string) *readyWatch {
	w := &readyWatch{stop: make(chan struct{}), polls: map[string]int{}, unread: map[string][]string{}}
	for _, name := range names {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				select {
				case <-w.stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				// A process being restarted answers nothing; that is not
				// an unready answer.
				code, m, err := h.readyz(name)
				if err != nil && code == 0 {
					continue
				}
				w.mu.Lock()
				w.polls[name]++
				if code != http.StatusOK {
					w.unread[name] = append(w.unread[name], fmt.Sprintf("%d %v", code, m))
				}
				w.mu.Unlock()
			}
		}()
	}
	return w
}

// done stops the watch and returns a summary; it fails the test for any
// answer other than 200.
func (w *readyWatch) done(t *testing.T) string {
	close(w.stop)
	w.wg.Wait()
	var parts []string
	for name, n := range w.polls {
		for _, u := range w.unread[name][:min(len(w.unread[name]), 5)] {
			t.Errorf("%s /readyz during the outage: %s", name, u)
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d", name, n-len(w.unread[name]), n))
	}
	return "/readyz 200 in " + strings.Join(parts, ", ") + " polls"
}

// staleRead waits until score answers a read of cpf marked stale because it
// is not receiving events, and fails the test if that does not happen.
func (h *harness) staleRead(cpf int64, bound time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(bound)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("%s/%d/score", h.s.URL(stack.Score), cpf))
		if err == nil {
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Stale") == "true" && m["stale"] == true &&
				strings.Contains(fmt.Sprint(m["stale_reason"]), "not receiving events") {
				return
			}
			last = fmt.Sprintf("%d X-Stale=%q %v", resp.StatusCode, resp.Header.Get("X-Stale"), m)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Errorf("score never marked a read stale while the broker was down: last %s", last)
}

// firstCreated returns a cpf the ledger knows was created (0 if none).
func firstCreated(l *chaos.Ledger) int64 {
	for _, p := range l.Persons() {
		if p.Created() {
			return p.CPF
		}
	}
	return 0
}

// Scenario 11: the outbox backlog's bound. person runs with a small
// OUTBOX_MAX_PENDING and its broker connection goes through a proxy, which is
// cut once the backlog is empty. One client then writes on and on: exactly
// the bound's number of writes are accepted (their events wait in the
// outbox), every write after them is refused with 503 problem+json and
// Retry-After, nothing written, while reads and /readyz (200, saying why)
// go on. The proxy is restored: the backlog drains by itself, writes are
// accepted again, and every accepted write reaches score exactly once.
func TestBacklogBound(t *testing.T) {
	bound := envInt("CHAOS_BACKLOG_BOUND", 300)
	var proxy *chaos.Proxy
	h := newHarness(t, setup{
		serviceAMQP: func(vhost string) map[string]string {
			proxy = newProxy(t, "person-amqp", brokerHostPort(t, vhost))
			return map[string]string{stack.Person: proxy.AMQPURL(vhost)}
		},
		cfg: stack.Config{ServiceEnv: map[string][]string{stack.Person: {fmt.Sprintf("OUTBOX_MAX_PENDING=%d", bound)}}},
	})
	w := &chaos.Workload{Client: h.client, CPFs: cpfs(1_100_001, 24), Writers: 6, DeleteOneIn: 8}
	stop := w.Start(t.Context())
	h.sleep(3 * time.Second)
	stop()
	h.drained(time.Now(), time.Minute)

	proxy.Cut()
	cut := time.Now()
	h.waitReadyz(stack.Person, time.Minute, "the broker unreachable", brokerUnreachable)
	before := h.client.Ledger.Counts()
	// One writer, so that no two writes race past the bound together.
	fill := &chaos.Workload{Client: h.client, CPFs: cpfs(1_100_001, 24), Writers: 1, DeleteOneIn: 8}
	stop = fill.Start(t.Context())
	deadline := time.Now().Add(5 * time.Minute)
	for c := h.client.Ledger.Counts(); c.Status["503"]-before.Status["503"] < 20; c = h.client.Ledger.Counts() {
		if time.Now().After(deadline) {
			t.Fatalf("20 refusals did not come within 5 minutes of the cut (accepted since: %d)", c.Accepted-before.Accepted)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	full := h.client.Ledger.Counts()
	accepted := full.Accepted - before.Accepted
	refused := full.Status["503"] - before.Status["503"]
	if accepted != int64(bound) {
		t.Errorf("%d writes accepted while the broker was cut, want exactly the bound %d", accepted, bound)
	}
	if other := (full.Attempted - before.Attempted) - accepted - int64(refused); other != 0 {
		t.Errorf("%d writes with outcomes other than 2xx or 503 while the backlog filled: %v", other, full.Status)
	}
	code, m, err := h.readyz(stack.Person)
	if err != nil || code != http.StatusOK || backlog(m) != bound || !strings.HasPrefix(fmt.Sprint(m["writes"]), "refused: outbox backlog full") {
		t.Errorf("person /readyz with the backlog full: %d %v %v", code, m, err)
	}
	probe := h.probeRefusal(firstCreated(h.client.Ledger))

	proxy.Restore()
	restored := time.Now()
	drain := h.drained(restored, 5*time.Minute)
	after := h.client.Ledger.Counts()
	w = &chaos.Workload{Client: h.client, CPFs: cpfs(1_100_001, 24), Writers: 6, DeleteOneIn: 8}
	stop = w.Start(t.Context())
	h.sleep(3 * time.Second)
	stop()
	end := h.client.Ledger.Counts()
	if n := end.Status["503"] - after.Status["503"]; n > 0 {
		t.Errorf("%d writes refused with 503 after the backlog drained", n)
	}
	if end.Accepted == after.Accepted {
		t.Errorf("no write accepted after the backlog drained")
	}
	r := chaos.Result{Scenario: 11, Test: t.Name(), Recovery: drain,
		Note: fmt.Sprintf("OUTBOX_MAX_PENDING=%d; person's broker connection cut for %s; one client wrote on: %d accepted (the bound), then %d refused with 503 (%s); proxy restored: backlog drained in %s (recovery), then %d of %d writes accepted",
			bound, restored.Sub(cut).Round(100*time.Millisecond), accepted, refused, probe, drain.Round(10*time.Millisecond),
			end.Accepted-after.Accepted, end.Attempted-after.Attempted)}
	v := h.verify(&r, 5*time.Minute, 0) // score applies the whole backlog first
	h.finish(&r, v.Applied)
}

// probeRefusal sends one more write to person and checks it is refused as a
// full backlog is: 503 problem+json, Retry-After, the reason, nothing written
// (the person's version does not move). It returns a short description.
func (h *harness) probeRefusal(cpf int64) string {
	h.t.Helper()
	version := func() float64 {
		resp, err := http.Get(fmt.Sprintf("%s/person/%d", h.s.URL(stack.Person), cpf))
		if err != nil {
			h.t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		v, _ := m["version"].(float64)
		return v
	}
	v0 := version()
	resp, err := http.Post(fmt.Sprintf("%s/person/%d/debt", h.s.URL(stack.Person), cpf), "application/json",
		strings.NewReader(`{"value": 1, "type": "probe"}`))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var p map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" ||
		resp.Header.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(p["detail"]), "outbox backlog full") {
		h.t.Errorf("a write past the bound: %d %v %v", resp.StatusCode, resp.Header, p)
	}
	if v1 := version(); v1 != v0 {
		h.t.Errorf("a refused write moved cpf %d from version %v to %v", cpf, v0, v1)
	}
	return fmt.Sprintf("503 application/problem+json, Retry-After %s: %q", resp.Header.Get("Retry-After"), p["detail"])
}

// Scenario 12: every node of a three-node RabbitMQ cluster is stopped
// (stop_app on all three at once) during a stream of writes, then all are
// started again. As with one node (scenario 1): writes go on being accepted
// into person's outbox backlog, person and score stay ready, score marks its
// reads stale; once the cluster is back the backlog drains by itself and
// every accepted write reaches score exactly once.
func TestClusterAllDown(t *testing.T) {
	<-clusterReady
	if clusterErr != nil {
		t.Fatalf("starting a private RabbitMQ cluster (starts per node %v, join tries per node %v): %v", startTries, clusterTries, clusterErr)
	}
	h, _, _ := newClusterHarness(t)
	w := &chaos.Workload{Client: h.client, CPFs: cpfs(1_200_001, 24), Writers: 6, DeleteOneIn: 8}
	stop := w.Start(t.Context())
	h.sleep(4 * time.Second)
	before := h.client.Ledger.Counts()
	t0 := time.Now()
	allNodes(t, func(ctx context.Context, n *chaos.Node) error { return n.StopApp(ctx) })
	stopped := time.Now()
	h.waitReadyz(stack.Person, time.Minute, "the broker unreachable", brokerUnreachable)
	h.waitReadyz(stack.Score, time.Minute, "the broker unreachable", brokerUnreachable)
	watch := h.watchReady(stack.Person, stack.Score)
	h.staleRead(firstCreated(h.client.Ledger), time.Minute)
	h.sleep(envDuration("CHAOS_BROKER_OUTAGE", 8*time.Second))
	during := h.client.Ledger.Counts()
	_, m, err := h.readyz(stack.Person)
	if err != nil {
		t.Fatal(err)
	}
	atEnd := backlog(m)
	ready := watch.done(t)
	t1 := time.Now()
	allNodes(t, func(ctx context.Context, n *chaos.Node) error { return n.StartApp(ctx) })
	started := time.Now()
	drain := h.drained(started, 5*time.Minute)
	h.sleep(4 * time.Second)
	stop()
	accepted := during.Accepted - before.Accepted
	if accepted == 0 {
		t.Errorf("no write was accepted while every node was down")
	}
	if refused := during.Status["503"] - before.Status["503"]; refused > 0 {
		t.Errorf("%d writes refused with 503 while the cluster was down, far under the backlog bound", refused)
	}
	r := chaos.Result{Scenario: 12, Test: t.Name(), Recovery: drain,
		Note: fmt.Sprintf("stop_app of all 3 nodes (took %s), cluster down %s, start_app of all 3 took %s; %d writes accepted into the outbox backlog meanwhile, %d refused with 503; backlog %d at start_app; %s; drained %s after start_app (recovery)",
			stopped.Sub(t0).Round(100*time.Millisecond), started.Sub(t0).Round(100*time.Millisecond), started.Sub(t1).Round(100*time.Millisecond),
			accepted, during.Status["503"]-before.Status["503"], atEnd, ready, drain.Round(10*time.Millisecond))}
	v := h.verify(&r, 5*time.Minute, 0) // score applies the whole backlog first
	h.finish(&r, v.Applied)
}

// allNodes runs op on every node of the cluster at once (a node of a stopped
// cluster waits for its peers when it starts) and fails the test on an error.
func allNodes(t *testing.T, op func(context.Context, *chaos.Node) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	errs := make([]error, len(cluster.Nodes))
	var wg sync.WaitGroup
	for i, n := range cluster.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = op(ctx, n) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %s: %v", cluster.Nodes[i].Name, err)
		}
	}
}
