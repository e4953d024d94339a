package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personscore/stack/measure"
)

// RunConfig is one load run.
type RunConfig struct {
	Name string
	// Rate is the target of writes per second (open loop: writes start on a
	// schedule, whether or not earlier ones finished, up to Concurrency in
	// flight). 0 runs closed loop: Concurrency workers write back to back.
	Rate        float64
	Concurrency int
	Duration    time.Duration // stop starting writes after this long
	Count       int           // or after this many writes (0: no limit)
	Mix         Mix
	// LagSample is the fraction of writes whose replication lag is measured
	// (1: all, 0: none); MaxProbes bounds the measurements in flight.
	LagSample    float64
	MaxProbes    int
	ProbeTimeout time.Duration // give up on one lag measurement after this (default 60s)
	Seed         uint64
	// Progress receives a live line every second (nil: quiet).
	Progress io.Writer
}

// RunResult is what a run measured.
type RunResult struct {
	Name        string  `json:"name"`
	TargetRate  float64 `json:"target_rate"` // 0: closed loop
	Concurrency int     `json:"concurrency"`
	// Elapsed runs from the first write to the last answer.
	ElapsedS   float64         `json:"elapsed_s"`
	Writes     int             `json:"writes"` // 2xx
	Errors     int             `json:"errors"` // refused + ambiguous
	Refused    int             `json:"refused"`
	Ambiguous  int             `json:"ambiguous"`
	ByOp       map[string]int  `json:"by_op"`
	Throughput float64         `json:"throughput_per_s"` // 2xx writes per second
	Latency    measure.Summary `json:"write_latency"`
	// StartDelay is how late writes started against the schedule (open loop):
	// a growing delay means the system (or the tool) could not keep the rate.
	StartDelay measure.Summary `json:"start_delay"`
	// Lag is from a write's 2xx to score answering its version (min_version read).
	Lag         measure.Summary `json:"lag"`
	LagSkipped  int             `json:"lag_skipped"`   // not measured: too many in flight
	LagTimedOut int             `json:"lag_timed_out"` // gave up after ProbeTimeout
	// LagFirstThirdP50/LastThird: a lag that grows through the run means
	// replication is falling behind, so the rate is not sustainable.
	LagFirstThirdP50MS float64          `json:"lag_first_third_p50_ms"`
	LagLastThirdP50MS  float64          `json:"lag_last_third_p50_ms"`
	Timeline           []measure.Second `json:"timeline"`
	// TimelineStepS is the length of a Timeline bucket in seconds (0: 1).
	TimelineStepS float64  `json:"timeline_step_s,omitempty"`
	ErrorSamples  []string `json:"error_samples,omitempty"`
}

// Run drives writes as cfg says, measuring each, and returns when every
// started write answered and every lag measurement ended.
func Run(ctx context.Context, cfg RunConfig, model *Model, c *Client) *RunResult {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.MaxProbes <= 0 {
		cfg.MaxProbes = 4096
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 60 * time.Second
	}
	r := &runner{cfg: cfg, model: model, c: c, start: time.Now(), byOp: map[string]int{}}
	r.run(ctx)
	return r.result()
}

type runner struct {
	cfg   RunConfig
	model *Model
	c     *Client
	start time.Time

	mu        sync.Mutex
	samples   []measure.Sample
	delays    []time.Duration
	byOp      map[string]int
	refused   int
	ambiguous int
	errs      []string
	recentLag []time.Duration // for the progress line
	lastAt    time.Time

	started    atomic.Int64
	probing    atomic.Int64
	skipped    atomic.Int64
	timedOut   atomic.Int64
	probes     sync.WaitGroup
	progressWG sync.WaitGroup
}

func (r *runner) run(ctx context.Context) {
	stop := make(chan struct{})
	if r.cfg.Progress != nil {
		r.progressWG.Add(1)
		go r.progress(stop)
	}
	deadline := r.start.Add(r.cfg.Duration)
	more := func() bool {
		if ctx.Err() != nil || (r.cfg.Duration > 0 && !time.Now().Before(deadline)) {
			return false
		}
		if r.cfg.Count > 0 && r.started.Add(1) > int64(r.cfg.Count) {
			return false
		}
		return true
	}
	var workers sync.WaitGroup
	if r.cfg.Rate <= 0 {
		for w := range r.cfg.Concurrency {
			workers.Add(1)
			go func() {
				defer workers.Done()
				rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(w)))
				for more() {
					r.write(rng, time.Time{})
				}
			}()
		}
	} else {
		jobs := make(chan time.Time, r.cfg.Concurrency)
		for w := range r.cfg.Concurrency {
			workers.Add(1)
			go func() {
				defer workers.Done()
				rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(w)))
				for due := range jobs {
					r.write(rng, due)
				}
			}()
		}
		interval := time.Duration(float64(time.Second) / r.cfg.Rate)
		for i := 0; ; i++ {
			due := r.start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
			if !more() {
				break
			}
			jobs <- due
		}
		close(jobs)
	}
	workers.Wait()
	r.probes.Wait()
	close(stop)
	r.progressWG.Wait()
}

func (r *runner) write(rng *rand.Rand, due time.Time) {
	op, p := r.model.Acquire(r.cfg.Mix.Pick(rng), rng)
	begin := time.Now()
	w := r.c.Do(context.Background(), op, p, rng)
	if w.Outcome == Ambiguous {
		p.Unknown = true
	}
	cpf := p.CPF
	r.model.Release(p)

	s := measure.Sample{At: w.At.Sub(r.start), Latency: w.Latency, Lag: -1, OK: w.Outcome == Done}
	r.mu.Lock()
	idx := len(r.samples)
	r.samples = append(r.samples, s)
	if !due.IsZero() {
		r.delays = append(r.delays, max(begin.Sub(due), 0))
	}
	if w.At.After(r.lastAt) {
		r.lastAt = w.At
	}
	switch w.Outcome {
	case Done:
		r.byOp[op.String()]++
	case Refused:
		r.refused++
	case Ambiguous:
		r.ambiguous++
	}
	if w.Err != nil && len(r.errs) < 10 {
		r.errs = append(r.errs, w.Err.Error())
	}
	r.mu.Unlock()

	if w.Outcome != Done || rng.Float64() >= r.cfg.LagSample {
		return
	}
	if r.probing.Add(1) > int64(r.cfg.MaxProbes) {
		r.probing.Add(-1)
		r.skipped.Add(1)
		return
	}
	r.probes.Add(1)
	go func() {
		defer r.probes.Done()
		defer r.probing.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ProbeTimeout)
		defer cancel()
		ans, err := r.c.WaitScore(ctx, cpf, w.Version)
		if err != nil {
			if errors.Is(err, ErrStale) {
				r.timedOut.Add(1)
			}
			r.mu.Lock()
			if len(r.errs) < 10 {
				r.errs = append(r.errs, fmt.Sprintf("lag of cpf %d v%d: %v", cpf, w.Version, err))
			}
			r.mu.Unlock()
			return
		}
		lag := ans.At.Sub(w.At)
		r.mu.Lock()
		r.samples[idx].Lag = lag
		r.recentLag = append(r.recentLag, lag)
		r.mu.Unlock()
	}()
}

func (r *runner) progress(stop <-chan struct{}) {
	defer r.progressWG.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := 0
	for {
		select {
		case <-stop:
			fmt.Fprintln(r.cfg.Progress)
			return
		case <-t.C:
		}
		r.mu.Lock()
		n := len(r.samples)
		errs := r.refused + r.ambiguous
		lag := measure.Summarize(r.recentLag)
		r.recentLag = r.recentLag[:0]
		r.mu.Unlock()
		fmt.Fprintf(r.cfg.Progress, "\r%-14s %5.0fs  writes %7d  %6d/s  errors %4d  lag p50 %7.1fms p99 %7.1fms  measuring %4d   ",
			r.cfg.Name, time.Since(r.start).Seconds(), n-errs, n-last, errs, lag.P50MS, lag.P99MS, r.probing.Load())
		last = n
	}
}

func (r *runner) result() *RunResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &RunResult{Name: r.cfg.Name, TargetRate: r.cfg.Rate, Concurrency: r.cfg.Concurrency,
		ByOp: r.byOp, Refused: r.refused, Ambiguous: r.ambiguous, Errors: r.refused + r.ambiguous,
		LagSkipped: int(r.skipped.Load()), LagTimedOut: int(r.timedOut.Load()), ErrorSamples: r.errs}
	end := r.lastAt
	if end.IsZero() {
		end = time.Now()
	}
	elapsed := end.Sub(r.start)
	res.ElapsedS = elapsed.Seconds()
	var lat, lag []time.Duration
	for _, s := range r.samples {
		if s.OK {
			res.Writes++
			lat = append(lat, s.Latency)
			if s.Lag >= 0 {
				lag = append(lag, s.Lag)
			}
		}
	}
	if elapsed > 0 {
		res.Throughput = float64(res.Writes) / elapsed.Seconds()
	}
	res.Latency = measure.Summarize(lat)
	res.StartDelay = measure.Summarize(r.delays)
	res.Lag = measure.Summarize(lag)
	res.LagFirstThirdP50MS, res.LagLastThirdP50MS = thirds(r.samples, elapsed)
	res.Timeline = measure.Timeline(r.samples, elapsed)
	return res
}

// thirds is the median lag of the writes answered in the first and in the
// last third of the run.
func thirds(samples []measure.Sample, elapsed time.Duration) (first, last float64) {
	var a, b []time.Duration
	for _, s := range samples {
		if !s.OK || s.Lag < 0 {
			continue
		}
		switch {
		case s.At < elapsed/3:
			a = append(a, s.Lag)
		case s.At >= elapsed*2/3:
			b = append(b, s.Lag)
		}
	}
	return measure.Summarize(a).P50MS, measure.Summarize(b).P50MS
}

// Mismatch is a cpf whose replica disagrees with the model.
type Mismatch struct {
	CPF    int64  `json:"cpf"`
	Where  string `json:"where"` // "score" or "person"
	Want   string `json:"want"`
	Got    string `json:"got"`
	Detail string `json:"detail,omitempty"`
}

// CheckResult is the end-of-run correctness check.
type CheckResult struct {
	Persons int `json:"persons"` // cpfs checked
	Live    int `json:"live"`
	Skipped int `json:"skipped_unknown"` // cpfs with a write of unknown outcome
	// Store503: writes answered 503 "storage unavailable, nothing was
	// written"; Store503Applied of them were applied all the same.
	Store503        int        `json:"store_503"`
	Store503Applied int        `json:"store_503_applied"`
	ScoreOK         int        `json:"score_ok"`
	PersonOK        int        `json:"person_score_ok"` // person shows the same score (score.changed)
	Mismatches      []Mismatch `json:"mismatches,omitempty"`
	MismatchN       int        `json:"mismatch_count"`
	Seconds         float64    `json:"seconds"`
}

// Check compares every cpf's score in score (after it applied the cpf's last
// version) and in person (replicated back, polled for each cpf until it
// agrees or settle passes) with the model.
func Check(ctx context.Context, model *Model, c *Client, workers int, settle time.Duration) CheckResult {
	start := time.Now()
	persons := model.Persons()
	var res CheckResult
	var mu sync.Mutex
	add := func(m Mismatch) {
		mu.Lock()
		res.MismatchN++
		if len(res.Mismatches) < 50 {
			res.Mismatches = append(res.Mismatches, m)
		}
		mu.Unlock()
	}
	jobs := make(chan *Person)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				want := p.Score()
				wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				ans, err := c.WaitScore(wctx, p.CPF, p.Version)
				cancel()
				switch {
				case err != nil:
					add(Mismatch{CPF: p.CPF, Where: "score", Want: fmt.Sprintf("version %d", p.Version), Got: "error", Detail: err.Error()})
					continue
				case ans.Found != p.Live:
					add(Mismatch{CPF: p.CPF, Where: "score", Want: fmt.Sprintf("live=%v", p.Live), Got: fmt.Sprintf("live=%v", ans.Found)})
					continue
				case p.Live && ans.Score != want:
					add(Mismatch{CPF: p.CPF, Where: "score", Want: fmt.Sprint(want), Got: fmt.Sprint(ans.Score),
						Detail: fmt.Sprintf("at version %d (want ≥ %d)", ans.Version, p.Version)})
					continue
				}
				mu.Lock()
				res.ScoreOK++
				mu.Unlock()
				// person's copy of the score arrives asynchronously: poll.
				var got string
				deadline := time.Now().Add(settle)
				for {
					v, err := c.Person(ctx, p.CPF)
					switch {
					case err != nil:
						got = "error: " + err.Error()
					case !p.Live && !v.Found, p.Live && v.Found && v.HasScore && v.Score == want:
						got = ""
					case !v.Found:
						got = "404"
					case !v.HasScore:
						got = "no score yet"
					default:
						got = fmt.Sprint(v.Score)
					}
					if got == "" || time.Now().After(deadline) || ctx.Err() != nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if got != "" {
					add(Mismatch{CPF: p.CPF, Where: "person", Want: fmt.Sprintf("live=%v score=%d", p.Live, want), Got: got})
					continue
				}
				mu.Lock()
				res.PersonOK++
				mu.Unlock()
			}
		}()
	}
	for _, p := range persons {
		if p.Unknown {
			res.Skipped++
			if p.Failed {
				res.Store503++
				if v, err := c.Person(ctx, p.CPF); err == nil && p.AppliedAnyway(v) {
					res.Store503Applied++
				}
			}
			continue
		}
		res.Persons++
		if p.Live {
			res.Live++
		}
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	sort.Slice(res.Mismatches, func(i, j int) bool { return res.Mismatches[i].CPF < res.Mismatches[j].CPF })
	res.Seconds = time.Since(start).Seconds()
	return res
}
