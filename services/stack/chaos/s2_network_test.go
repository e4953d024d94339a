//go:build chaos

package chaos_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/personscore/stack"
	"github.com/personscore/stack/chaos"
)

// Scenario 2: each service reaches RabbitMQ through its own in-process
// Toxiproxy, which during load adds latency, cuts every connection, resets
// connections as soon as they carry data, closes them mid-frame after a few
// kilobytes, black-holes them, and slices frames into tiny delayed pieces.
// Every accepted write ends in score exactly once.
func TestConnectionsCut(t *testing.T) {
	var pp, sp *chaos.Proxy
	h := newHarness(t, setup{serviceAMQP: func(vhost string) map[string]string {
		upstream := brokerHostPort(t, vhost)
		pp, sp = newProxy(t, "person-amqp", upstream), newProxy(t, "score-amqp", upstream)
		return map[string]string{stack.Person: pp.AMQPURL(vhost), stack.Score: sp.AMQPURL(vhost)}
	}})
	w := &chaos.Workload{Client: h.client, CPFs: cpfs(200_001, 24), Writers: 6, DeleteOneIn: 8}
	stop := w.Start(t.Context())
	phase := envDuration("CHAOS_PHASE", 3*time.Second)
	var log []string
	var recovery time.Duration
	step := func(name string, apply func() error, undo func()) {
		t.Helper()
		before := h.client.Ledger.Counts()
		if err := apply(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h.sleep(phase)
		undo()
		cleared := time.Now()
		after := h.client.Ledger.Counts()
		// Each fault must hit live connections carrying traffic: wait until
		// writes are accepted again before the next one.
		back := h.firstAcceptAfter(cleared, time.Minute)
		recovery = max(recovery, back)
		log = append(log, fmt.Sprintf("%s: %d accepted, %d refused, writes accepted again %s after",
			name, after.Accepted-before.Accepted, after.Refused-before.Refused, back.Round(10*time.Millisecond)))
		h.sleep(phase / 2)
	}
	both := func(f func(p *chaos.Proxy) error) func() error {
		return func() error {
			if err := f(pp); err != nil {
				return err
			}
			return f(sp)
		}
	}
	reset := func() { pp.Reset(); sp.Reset() }
	h.sleep(phase)
	step("latency 200±100ms both ways", both(func(p *chaos.Proxy) error {
		if err := p.Toxic("lat-up", "latency", "upstream", 1, map[string]any{"latency": 200, "jitter": 100}); err != nil {
			return err
		}
		return p.Toxic("lat-down", "latency", "downstream", 1, map[string]any{"latency": 200, "jitter": 100})
	}), reset)
	step("all connections cut, refused", both(func(p *chaos.Proxy) error { p.Cut(); return nil }),
		func() { _ = pp.Restore(); _ = sp.Restore() })
	step("reset_peer after 500ms", both(func(p *chaos.Proxy) error {
		return p.Toxic("rst", "reset_peer", "upstream", 1, map[string]any{"timeout": 500})
	}), reset)
	step("cut mid-frame after 2 KiB", both(func(p *chaos.Proxy) error {
		return p.Toxic("limit", "limit_data", "downstream", 1, map[string]any{"bytes": 2048})
	}), reset)
	step("black hole, closed after 3s", both(func(p *chaos.Proxy) error {
		return p.Toxic("hole", "timeout", "upstream", 1, map[string]any{"timeout": 3000})
	}), reset)
	step("frames sliced into 16-byte pieces, 2ms apart", both(func(p *chaos.Proxy) error {
		return p.Toxic("slice", "slicer", "downstream", 1, map[string]any{"average_size": 16, "size_variation": 8, "delay": 2000})
	}), reset)
	h.sleep(phase)
	stop()
	for _, l := range log {
		t.Log(l)
	}
	r := chaos.Result{Scenario: 2, Test: t.Name(), Recovery: recovery, Note: strings.Join(log, "; ") + "; recovery = slowest return to accepted writes after a fault was removed"}
	v := h.verify(&r, 2*time.Minute, 0)
	h.finish(&r, v.Applied)
}
