package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/personscore/loadgen"
	"github.com/personscore/stack"
	"github.com/personscore/stack/measure"
)

// workloads are issue 14's: 600 writes of the seed's items from 16 clients,
// spread over 200 persons or all to one.
var workloads = map[string]struct{ persons, writes int }{
	"spread": {200, 600},
	"hot":    {1, 600},
}

// BenchResult is one `make bench` run.
type BenchResult struct {
	Machine Machine       `json:"machine"`
	Runs    []*BenchEntry `json:"runs"`
	Items   []*ItemsEntry `json:"items_ratio,omitempty"`
	// Backends compares the journals on each workload, runs alternating.
	Backends []*BackendsEntry `json:"backends_ratio,omitempty"`
	// Profile: CPU profiles of a closed-loop run (mixed writes, file journal).
	Profile map[string]ProfileInfo `json:"profile,omitempty"`
	// Store: the embedded store's own sequential rates.
	Store []loadgen.StoreResult `json:"store,omitempty"`
}

// ItemsEntry compares writes to a person with few items and one with many,
// on one system, measured alternately: a write should cost the same.
type ItemsEntry struct {
	Backend string                    `json:"backend"`
	Runs    []*loadgen.WorkloadResult `json:"runs"`
	// Ratio is the writes/s of the small person over the big one's (1: same cost).
	Ratio float64 `json:"ratio"`
}

// BackendsEntry compares the PostgreSQL journal with the file journal on one
// workload: both systems run at once and take turns, a fresh set of persons
// each turn, so that both see the same machine.
type BackendsEntry struct {
	Workload   string    `json:"workload"`
	File       []float64 `json:"file_writes_per_s"`
	PostgreSQL []float64 `json:"postgresql_writes_per_s"`
	// Ratio is PostgreSQL's median writes/s over the file's (≥ 1: no slower).
	Ratio float64 `json:"ratio"`
	Exact bool    `json:"exact"`
}

// backendRounds is how many turns each side of a comparison takes.
const backendRounds = 5

// BenchEntry is one workload on one backend: full rate, then half of it.
type BenchEntry struct {
	Backend  string                  `json:"backend"`
	Workload string                  `json:"workload"`
	Full     *loadgen.WorkloadResult `json:"full"`
	Half     *loadgen.WorkloadResult `json:"half"`
	// Hop is the broker alone at the lag run's rate, measured on the same
	// broker right before the lag run: the floor of its lag.
	Hop     *loadgen.HopResult     `json:"hop,omitempty"`
	Profile map[string]ProfileInfo `json:"profile,omitempty"`
}

// runBench runs every workload of -workloads on every backend of -backends,
// each on a fresh system: closed loop with -concurrency clients, then open
// loop at half the rate it reached with every write's lag measured.
func runBench(ctx context.Context, o options) error {
	bin, cleanup, err := binaries(ctx, o, loadgen.BuildOptions{})
	if err != nil {
		return err
	}
	defer cleanup()
	res := &BenchResult{Machine: machine(ctx, o.pgURL)}
	res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg("start"))
	if o.storeDuration > 0 {
		if res.Store, err = storeBench(ctx, o); err != nil {
			return err
		}
		res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg("after store"))
	}
	for _, backend := range strings.Split(o.backends, ",") {
		for _, name := range strings.Split(o.workloads, ",") {
			if name == "" {
				continue
			}
			wl, ok := workloads[name]
			if !ok {
				return fmt.Errorf("unknown workload %q (spread, hot)", name)
			}
			e, err := benchOne(ctx, o, bin, backend, name, wl.persons, wl.writes)
			if e != nil {
				res.Runs = append(res.Runs, e)
			}
			res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg("after "+backend+" "+name))
			_ = writeJSON(o.out, "bench.json", res)
			if err != nil {
				return err
			}
		}
	}
	if o.itemsRatio {
		for _, backend := range strings.Split(o.backends, ",") {
			e, err := itemsRatio(ctx, o, bin, backend)
			if e != nil {
				res.Items = append(res.Items, e)
			}
			_ = writeJSON(o.out, "bench.json", res)
			if err != nil {
				return err
			}
		}
	}
	if bs := strings.Split(o.backends, ","); slices.Contains(bs, "file") && slices.Contains(bs, "postgresql") {
		for _, name := range strings.Split(o.workloads, ",") {
			e, err := backendsRatio(ctx, o, bin, name)
			if e != nil {
				res.Backends = append(res.Backends, e)
			}
			_ = writeJSON(o.out, "bench.json", res)
			if err != nil {
				return err
			}
		}
		res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg("after backends ratio"))
	}
	if o.profile && ctx.Err() == nil {
		p, err := profileRun(ctx, o)
		if err != nil {
			logf("profile: %v", err)
		}
		res.Profile = p
		res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg("after profile"))
		_ = writeJSON(o.out, "bench.json", res)
	}
	fmt.Print(benchTable(res))
	if o.out != "" {
		return os.WriteFile(filepath.Join(o.out, "bench.md"), []byte(benchTable(res)), 0o644)
	}
	return nil
}

func benchOne(ctx context.Context, o options, bin, backend, name string, persons, writes int) (*BenchEntry, error) {
	sys, err := startSystem(ctx, o, bin, backend, false)
	if err != nil {
		return nil, err
	}
	defer sys.close()
	client := loadgen.NewClient(sys.URL(stack.Person), sys.URL(stack.Score), 64)
	e := &BenchEntry{Backend: backend, Workload: name}
	base := cpfBase()
	cfg := loadgen.WorkloadConfig{Name: name + " " + backend, Persons: persons, Writes: writes, Clients: o.concurrency, CPFBase: base,
		StoreURI: sys.MongoURI()}
	if e.Full, err = loadgen.RunWorkload(ctx, cfg, client); err != nil {
		return e, err
	}
	printWorkload(e.Full)
	if _, err := measure.Quiesce(ctx, []string{client.PersonURL, client.ScoreURL}, 2*time.Second, 3*time.Minute); err != nil {
		logf("quiesce: %v", err)
	}
	cfg.StoreURI = ""
	cfg.Rate = o.lagRate
	if cfg.Rate <= 0 {
		cfg.Rate = e.Full.Throughput / 2
	}
	cfg.Name += fmt.Sprintf(" at %.0f per s", cfg.Rate)
	cfg.CPFBase = base + 100_000
	if e.Hop, err = loadgen.RunHop(ctx, loadgen.HopConfig{URL: sys.vhost, Rate: cfg.Rate, Messages: writes}); err != nil {
		return e, fmt.Errorf("broker hop: %w", err)
	}
	printHop(e.Hop)
	if e.Half, err = loadgen.RunWorkload(ctx, cfg, client); err != nil {
		return e, err
	}
	printWorkload(e.Half)
	if o.out != "" {
		for _, r := range []*loadgen.WorkloadResult{e.Full, e.Half} {
			rr := &loadgen.RunResult{Name: r.Name, TargetRate: r.TargetRate, Timeline: r.Timeline, TimelineStepS: r.TimelineStepS, Errors: r.Errors}
			file := filepath.Join(o.out, strings.ReplaceAll(r.Name, " ", "-")+".png")
			if err := loadgen.PlotTimeline(rr, file); err != nil {
				logf("plot: %v", err)
			}
		}
	}
	return e, nil
}

func printWorkload(r *loadgen.WorkloadResult) {
	logf("%-28s %6.1f writes/s (%d writes, %d errors, %.2fs)  latency p50 %.1fms p99 %.1fms  lag p50 %.1fms p99 %.1fms  caught up %.0fms after the last write  exact %v",
		r.Name, r.Throughput, r.Writes, r.Errors, r.ElapsedS, r.Latency.P50MS, r.Latency.P99MS, r.Lag.P50MS, r.Lag.P99MS, r.CatchUpMS, r.Exact)
	for _, m := range r.Mismatches[:min(5, len(r.Mismatches))] {
		logf("  mismatch: %s", m)
	}
	for _, m := range r.ErrorSamples[:min(3, len(r.ErrorSamples))] {
		logf("  error: %s", m)
	}
}

func printHop(h *loadgen.HopResult) {
	logf("broker hop alone at %.0f/s (%d messages, quorum queue, confirm each): publish→delivery p50 %.1fms p95 %.1fms p99 %.1fms; publish→confirm p50 %.1fms p99 %.1fms; both p99 %.1fms",
		h.Rate, h.Messages, h.Delivered.P50MS, h.Delivered.P95MS, h.Delivered.P99MS, h.Confirmed.P50MS, h.Confirmed.P99MS, h.ConfirmedAndDelivered.P99MS)
}

func benchTable(r *BenchResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| backend | workload | writes/s (16 clients) | write p50/p99 ms | caught up after last write | exact | half rate | lag p50 | lag p95 | lag p99 | lag max ms |\n")
	fmt.Fprintf(&b, "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, e := range r.Runs {
		f, h := e.Full, e.Half
		if f == nil {
			continue
		}
		half := "| | | | | |"
		if h != nil {
			half = fmt.Sprintf("%.0f/s (%.1f) | %.1f | %.1f | %.1f | %.0f |", h.TargetRate, h.Throughput, h.Lag.P50MS, h.Lag.P95MS, h.Lag.P99MS, h.Lag.MaxMS)
			if !h.Exact {
				half += " (half-rate run not exact)"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f / %.1f | %.0f ms | %v | %s\n", e.Backend, e.Workload, f.Throughput,
			f.Latency.P50MS, f.Latency.P99MS, f.CatchUpMS, f.Exact, half)
	}
	for _, e := range r.Runs {
		if h := e.Hop; h != nil {
			fmt.Fprintf(&b, "\n%s %s: the broker hop alone at %.0f/s before the lag run (publish with confirm to a quorum queue, consume): delivery p50 %.1f / p95 %.1f / p99 %.1f ms, confirm p50 %.1f / p99 %.1f ms\n",
				e.Backend, e.Workload, h.Rate, h.Delivered.P50MS, h.Delivered.P95MS, h.Delivered.P99MS, h.Confirmed.P50MS, h.Confirmed.P99MS)
		}
	}
	for _, it := range r.Items {
		fmt.Fprintf(&b, "\n%s: writes/s to a person with 5 items ÷ to one with 5,000 (2,000 writes each, 16 clients, medians of %d turns each, alternating): **%.2f**", it.Backend, backendRounds, it.Ratio)
		for _, run := range it.Runs {
			fmt.Fprintf(&b, "; %s %.0f/s", run.Name, run.Throughput)
		}
		b.WriteString("\n")
	}
	for _, e := range r.Backends {
		fmt.Fprintf(&b, "\n%s: PostgreSQL's writes/s ÷ the file's, medians of %d turns each (both systems up, taking turns): **%.2f** (file %s; PostgreSQL %s; exact %v)\n",
			e.Workload, len(e.File), e.Ratio, rates(e.File), rates(e.PostgreSQL), e.Exact)
	}
	for _, e := range r.Runs {
		if e.Full != nil && e.Full.StoreCommandsPerWrite != nil {
			fmt.Fprintf(&b, "\n%s %s: store commands per write: person %.2f, score %.2f (", e.Backend, e.Workload,
				e.Full.StoreCommandsPerWrite["person"], e.Full.StoreCommandsPerWrite["score"])
			var parts []string
			for k, v := range e.Full.StoreCommandsPerWrite {
				if strings.Contains(k, " ") && v >= 0.01 {
					parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
				}
			}
			sort.Strings(parts)
			b.WriteString(strings.Join(parts, ", ") + ")\n")
		}
	}
	return b.String()
}

// itemsRatio preloads one person with 5 items and one with 5,000, then writes
// 2,000 items to each from -concurrency clients, backendRounds turns each,
// alternating which goes first; the ratio is of the medians.
func itemsRatio(ctx context.Context, o options, bin, backend string) (*ItemsEntry, error) {
	sys, err := startSystem(ctx, o, bin, backend, false)
	if err != nil {
		return nil, err
	}
	defer sys.close()
	client := loadgen.NewClient(sys.URL(stack.Person), sys.URL(stack.Score), 64)
	e := &ItemsEntry{Backend: backend}
	base := cpfBase()
	small, big, err := alternate(func(side, turn int) (*loadgen.WorkloadResult, error) {
		items := []int{5, 5000}[side]
		cfg := loadgen.WorkloadConfig{Name: fmt.Sprintf("person with %d items %s", items, backend), Persons: 1, Writes: 2000,
			Clients: o.concurrency, Items: items, CPFBase: base + int64(turn)}
		r, err := loadgen.RunWorkload(ctx, cfg, client)
		if r != nil {
			e.Runs = append(e.Runs, r)
		}
		return r, err
	})
	if err != nil {
		return e, err
	}
	if b := median(big); b > 0 {
		e.Ratio = median(small) / b
	}
	logf("items ratio on %s: a person with 5 items takes %.2f× the writes/s of one with 5,000 (medians of %d turns)", backend, e.Ratio, backendRounds)
	return e, nil
}

// backendsRatio runs workload name on a file-journal system and on a
// PostgreSQL one, both started at once, backendRounds turns each,
// alternating which goes first: a comparison that the machine's drift
// between two separate runs does not decide.
func backendsRatio(ctx context.Context, o options, bin, name string) (*BackendsEntry, error) {
	wl, ok := workloads[name]
	if !ok {
		return nil, fmt.Errorf("unknown workload %q (spread, hot)", name)
	}
	clients := map[string]*loadgen.Client{}
	for _, backend := range []string{"file", "postgresql"} {
		sys, err := startSystem(ctx, o, bin, backend, false)
		if err != nil {
			return nil, err
		}
		defer sys.close()
		clients[backend] = loadgen.NewClient(sys.URL(stack.Person), sys.URL(stack.Score), 64)
	}
	e := &BackendsEntry{Workload: name, Exact: true}
	base := cpfBase()
	var err error
	e.File, e.PostgreSQL, err = alternate(func(side, turn int) (*loadgen.WorkloadResult, error) {
		backend := []string{"file", "postgresql"}[side]
		cfg := loadgen.WorkloadConfig{Name: fmt.Sprintf("%s %s turn %d", name, backend, turn/2+1), Persons: wl.persons, Writes: wl.writes,
			Clients: o.concurrency, CPFBase: base + int64(turn)*1000}
		r, err := loadgen.RunWorkload(ctx, cfg, clients[backend])
		if r != nil {
			e.Exact = e.Exact && r.Exact
		}
		return r, err
	})
	if err != nil {
		return e, err
	}
	if f := median(e.File); f > 0 {
		e.Ratio = median(e.PostgreSQL) / f
	}
	logf("%s: PostgreSQL ÷ file writes/s, medians of %d turns: %.2f", name, backendRounds, e.Ratio)
	return e, nil
}

// alternate runs two sides backendRounds turns each, alternating which goes
// first, and returns each side's writes/s in turn order; run gets the side
// (0 or 1) and the number of runs before this one.
func alternate(run func(side, turn int) (*loadgen.WorkloadResult, error)) (a, b []float64, err error) {
	turn := 0
	for round := range backendRounds {
		for i := range 2 {
			side := i ^ round%2
			r, err := run(side, turn)
			turn++
			if err != nil {
				return a, b, err
			}
			printWorkload(r)
			if side == 0 {
				a = append(a, r.Throughput)
			} else {
				b = append(b, r.Throughput)
			}
		}
	}
	return a, b, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, " / ")
}
