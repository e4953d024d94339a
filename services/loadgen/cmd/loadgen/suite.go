package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/personscore/loadgen"
	"github.com/personscore/stack"
	"github.com/personscore/stack/measure"
)

// Step is one measured run with what the services and the store said about it.
type Step struct {
	*loadgen.RunResult
	// Lag as the services' own histogram eventbus_lag_seconds saw it (event
	// time, set by person just before its store write, to handled), for every
	// event of the run: score.queue (person → score) and person.queue
	// (score.changed back to person). Estimated from histogram buckets.
	MetricLagScore  measure.MetricLag `json:"metric_lag_score"`
	MetricLagPerson measure.MetricLag `json:"metric_lag_person"`
	// DocWritesPerWrite: document writes in the store per 2xx write, by
	// database (postgresql backend: counted by PostgreSQL).
	DocWritesPerWrite map[string]float64       `json:"doc_writes_per_write,omitempty"`
	Resources         map[string]measure.Usage `json:"resources,omitempty"`
	Persons           int                      `json:"persons"` // cpfs created so far
	// DrainS is how long the services took to go idle after the last write.
	DrainS    float64 `json:"drain_s"`
	Sustained bool    `json:"sustained"`
	Why       string  `json:"why_not_sustained,omitempty"`
}

func scrape(ctx context.Context, base, queue string) []measure.Bucket {
	b, err := measure.ScrapeHistogram(ctx, base+"/metrics", "eventbus_lag_seconds", map[string]string{"queue": queue})
	if err != nil {
		logf("scrape %s: %v", base, err)
	}
	return b
}

// measureStep runs cfg and adds the services' lag histograms, the store's
// document writes and (with a system) the processes' resources.
func measureStep(ctx context.Context, sys *system, client *loadgen.Client, model *loadgen.Model, cfg loadgen.RunConfig) *Step {
	services := []string{client.PersonURL, client.ScoreURL}
	if _, err := measure.Quiesce(ctx, services, 3*time.Second, 3*time.Minute); err != nil {
		logf("before %s: %v", cfg.Name, err)
	}
	beforeScore := scrape(ctx, client.ScoreURL, "score")
	beforePerson := scrape(ctx, client.PersonURL, "person")
	var pgBefore map[string]int64
	if sys != nil && sys.pgURL != "" {
		pgBefore, _ = loadgen.PGWrites(ctx, sys.pgURL)
	}
	var sampler *measure.Sampler
	if sys != nil {
		sampler = measure.StartSampler(sys.pids(), 250*time.Millisecond)
	}
	res := loadgen.Run(ctx, cfg, model, client)
	step := &Step{RunResult: res}
	// Let everything the writes caused finish (outbox clean-up, score.changed
	// back to person) so that it counts for this step.
	waited, err := measure.Quiesce(ctx, services, 3*time.Second, 3*time.Minute)
	if err != nil {
		logf("after %s: %v", cfg.Name, err)
	}
	step.DrainS = waited.Seconds()
	if sampler != nil {
		step.Resources = sampler.Stop()
		perWrite(step)
	}
	step.MetricLagScore = measure.LagFromBuckets(measure.SubBuckets(scrape(ctx, client.ScoreURL, "score"), beforeScore))
	step.MetricLagPerson = measure.LagFromBuckets(measure.SubBuckets(scrape(ctx, client.PersonURL, "person"), beforePerson))
	if pgBefore != nil && res.Writes > 0 {
		// An idle PostgreSQL backend reports its statistics within 10 s.
		time.Sleep(11 * time.Second)
		after, err := loadgen.PGWrites(ctx, sys.pgURL)
		if err != nil {
			logf("PostgreSQL statistics: %v", err)
		} else {
			step.DocWritesPerWrite = map[string]float64{}
			total := 0.0
			for schema, n := range after {
				d := float64(n-pgBefore[schema]) / float64(res.Writes)
				if d > 0 {
					step.DocWritesPerWrite[schema] = d
					total += d
				}
			}
			step.DocWritesPerWrite["total"] = total
		}
	}
	return step
}

func perWrite(s *Step) {
	for n, u := range s.Resources {
		if s.Writes > 0 {
			u.CPUPerWriteMS = u.CPUSec * 1000 / float64(s.Writes)
		}
		s.Resources[n] = u
	}
}

func printStep(s *Step) {
	logf("%-16s target %-8s %6.1f writes/s  %d writes  %d errors  latency p50 %.1fms p99 %.1fms  lag p50 %.1fms p95 %.1fms p99 %.1fms max %.0fms (metric p50 %.1fms p99 %.1fms)  docs/write %v",
		s.Name, rateName(s.TargetRate), s.Throughput, s.Writes, s.Errors, s.Latency.P50MS, s.Latency.P99MS,
		s.Lag.P50MS, s.Lag.P95MS, s.Lag.P99MS, s.Lag.MaxMS, s.MetricLagScore.P50MS, s.MetricLagScore.P99MS, fmtDocs(s.DocWritesPerWrite))
	if len(s.ErrorSamples) > 0 {
		logf("  first errors: %s", strings.Join(s.ErrorSamples[:min(3, len(s.ErrorSamples))], " | "))
	}
}

func fmtDocs(m map[string]float64) string {
	if m == nil {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.2f", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func rateName(r float64) string {
	if r <= 0 {
		return "closed"
	}
	return fmt.Sprintf("%.0f/s", r)
}

func printCheck(c loadgen.CheckResult) {
	logf("check: %d cpfs (%d live, %d skipped: unknown outcome): score ok %d, person ok %d, mismatches %d (%.1fs); answered 503 by the store %d, of which applied anyway %d",
		c.Persons, c.Live, c.Skipped, c.ScoreOK, c.PersonOK, c.MismatchN, c.Seconds, c.Store503, c.Store503Applied)
	for _, m := range c.Mismatches[:min(5, len(c.Mismatches))] {
		logf("  cpf %d %s: want %s got %s %s", m.CPF, m.Where, m.Want, m.Got, m.Detail)
	}
}

func storeBench(ctx context.Context, o options) ([]loadgen.StoreResult, error) {
	var all []loadgen.StoreResult
	for _, pg := range []string{"", o.pgURL} {
		res, err := loadgen.BenchStore(ctx, loadgen.StoreConfig{PostgreSQLURL: pg, Duration: o.storeDuration})
		if err != nil {
			return all, err
		}
		for _, r := range res {
			logf("store %-10s %-10s docs %5d  _id %-6s %7.0f/s  (n=%d, p50 %.2fms p99 %.2fms)", r.Backend, r.Op, r.Docs, r.IDType, r.PerS, r.N, r.Latency.P50MS, r.Latency.P99MS)
		}
		all = append(all, res...)
	}
	return all, nil
}

// Machine describes where the numbers come from.
type Machine struct {
	CPUs       int      `json:"cpus"`
	CPUModel   string   `json:"cpu_model"`
	MemGB      float64  `json:"mem_gb"`
	Kernel     string   `json:"kernel"`
	Go         string   `json:"go"`
	RabbitMQ   string   `json:"rabbitmq"`
	PostgreSQL string   `json:"postgresql"`
	LoadAvg    []string `json:"load_average"` // /proc/loadavg at each phase
	Started    string   `json:"started"`
}

func machine(ctx context.Context, pgURL string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Started: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		m.MemGB = kb / (1 << 20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "version").Output(); err == nil {
		m.RabbitMQ = strings.TrimSpace(string(out))
	}
	if c, err := pgx.Connect(ctx, pgURL); err == nil {
		_ = c.QueryRow(ctx, "SHOW server_version").Scan(&m.PostgreSQL)
		c.Close(ctx)
	}
	m.LoadAvg = append(m.LoadAvg, loadAvg("start"))
	return m
}

func loadAvg(phase string) string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return phase + ": " + strings.Join(f[:3], " ")
	}
	return phase + ": ?"
}

// SystemResult is the whole benchmark of the system on one store backend.
type SystemResult struct {
	Backend         string                       `json:"backend"`
	IdleRSS         map[string]measure.Proc      `json:"idle"`
	Startup         map[string][]loadgen.Startup `json:"startup,omitempty"`
	Steps           []*Step                      `json:"steps"`
	SaturationRate  float64                      `json:"saturation_rate"`
	MaxSustained    float64                      `json:"max_sustained_rate"`
	MaxSustainedRun string                       `json:"max_sustained_run"`
	OverloadedAt    string                       `json:"overloaded_at,omitempty"` // the sweep stopped after this step
	Half            *Step                        `json:"half_rate"`
	IdleAfter       map[string]measure.Proc      `json:"idle_after"`
	Check           loadgen.CheckResult          `json:"check"`
}

// Suite is everything the suite measured.
type Suite struct {
	Machine Machine                `json:"machine"`
	Store   []loadgen.StoreResult  `json:"store"`
	Sizes   map[string]Size        `json:"sizes"`
	Systems []*SystemResult        `json:"systems"`
	Profile map[string]ProfileInfo `json:"profile,omitempty"`
	Mix     string                 `json:"mix"`
	Step    string                 `json:"step"`
}

// Size is a binary's size.
type Size struct {
	BuildMB    float64 `json:"build_mb"`    // as `make build` builds it (CGO_ENABLED=0)
	StrippedMB float64 `json:"stripped_mb"` // -ldflags='-s -w': a scratch image's lower bound
	// ImageMB is the image tarball k8s/test/cmd/build-image writes (the
	// compressed layers, config and manifest); 0 when it could not be built.
	ImageMB float64 `json:"image_mb,omitempty"`
}

// imageSizes builds person's and score's images with the project's
// daemonless image builder, when the repository has it.
func imageSizes(ctx context.Context, sizes map[string]Size) {
	wd, _ := os.Getwd()
	root, err := stack.RepoRoot(wd)
	if err != nil {
		return
	}
	if _, err := os.Stat(filepath.Join(root, "k8s", "test", "cmd", "build-image")); err != nil {
		logf("no k8s/test/cmd/build-image: image sizes not measured")
		return
	}
	dir, err := os.MkdirTemp("", "loadgen-images-")
	if err != nil {
		return
	}
	defer os.RemoveAll(dir)
	for _, svc := range []string{stack.Person, stack.Score} {
		out := filepath.Join(dir, svc+".tar")
		cmd := exec.CommandContext(ctx, "go", "run", "./k8s/test/cmd/build-image", "-root", root, "-service", svc,
			"-tag", "personscore/"+svc+":bench", "-out", out)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			logf("image of %s: %v: %s", svc, err, b)
			continue
		}
		sz := sizes[svc]
		sz.ImageMB = loadgen.FileSize(out)
		sizes[svc] = sz
		logf("image of %s: %.1f MB", svc, sz.ImageMB)
	}
}

// ProfileInfo names a CPU profile and its top entries.
type ProfileInfo struct {
	File    string  `json:"file"`
	Seconds float64 `json:"seconds"`
	CPUSec  float64 `json:"cpu_s"`
	TopFlat string  `json:"top_flat"`
	TopCum  string  `json:"top_cum"`
}

func runSuite(ctx context.Context, o options) error {
	suite := &Suite{Machine: machine(ctx, o.pgURL), Sizes: map[string]Size{}, Mix: o.mix.String(), Step: o.step.String()}
	save := func() error { return writeJSON(o.out, "suite.json", suite) }

	logf("store benchmark (%s per operation and backend)", o.storeDuration)
	var err error
	if suite.Store, err = storeBench(ctx, o); err != nil {
		return err
	}
	suite.Machine.LoadAvg = append(suite.Machine.LoadAvg, loadAvg("after store"))
	_ = save()

	bin, cleanup, err := binaries(ctx, o, loadgen.BuildOptions{})
	if err != nil {
		return err
	}
	defer cleanup()
	stripped, cleanStripped, err := binaries(ctx, o, loadgen.BuildOptions{Stripped: true})
	if err != nil {
		return err
	}
	for _, n := range []string{stack.Mongo, stack.Person, stack.Score} {
		suite.Sizes[n] = Size{BuildMB: loadgen.FileSize(filepath.Join(bin, n)), StrippedMB: loadgen.FileSize(filepath.Join(stripped, n))}
	}
	cleanStripped()
	imageSizes(ctx, suite.Sizes)
	_ = save()

	for _, backend := range []string{"file", "postgresql"} {
		if ctx.Err() != nil {
			return errInterrupted
		}
		r, err := sweep(ctx, o, bin, backend)
		if r != nil {
			suite.Systems = append(suite.Systems, r)
		}
		suite.Machine.LoadAvg = append(suite.Machine.LoadAvg, loadAvg("after "+backend))
		_ = save()
		if err != nil {
			return err
		}
		plots(o, r)
	}

	if o.profile && ctx.Err() == nil {
		p, err := profileRun(ctx, o)
		if err != nil {
			logf("profile: %v", err)
		}
		suite.Profile = p
		suite.Machine.LoadAvg = append(suite.Machine.LoadAvg, loadAvg("after profile"))
	}
	if err := save(); err != nil {
		return err
	}
	if o.out != "" {
		return os.WriteFile(filepath.Join(o.out, "summary.md"), []byte(summary(suite)), 0o644)
	}
	fmt.Print(summary(suite))
	return nil
}

func plots(o options, r *SystemResult) {
	if o.out == "" || r == nil {
		return
	}
	var pts []loadgen.CurvePoint
	for _, s := range r.Steps {
		if s.TargetRate > 0 {
			pts = append(pts, loadgen.CurvePoint{Throughput: s.Throughput, P50: s.Lag.P50MS, P95: s.Lag.P95MS, P99: s.Lag.P99MS, Sustained: s.Sustained})
		}
	}
	if err := loadgen.PlotCurve(fmt.Sprintf("Replication lag vs write rate (%s store, 2 cores)", r.Backend), pts,
		filepath.Join(o.out, "lag-vs-rate-"+r.Backend+".png")); err != nil {
		logf("plot: %v", err)
	}
	for _, s := range r.Steps {
		if s.Name == "saturation, lag read after every write" {
			if err := loadgen.PlotTimeline(s.RunResult, filepath.Join(o.out, "timeline-saturation-"+r.Backend+".png")); err != nil {
				logf("plot: %v", err)
			}
		}
	}
	if r.Half != nil {
		if err := loadgen.PlotTimeline(r.Half.RunResult, filepath.Join(o.out, "timeline-half-"+r.Backend+".png")); err != nil {
			logf("plot: %v", err)
		}
	}
}

// sustained judges a rate step: the system kept the rate with (almost) no
// errors and replication kept up — the lag stayed bounded and did not build up
// through the step. (It is not a latency goal; those are reported apart.)
func sustained(s *Step) (bool, string) {
	switch {
	case s.Throughput < 0.95*s.TargetRate:
		return false, fmt.Sprintf("achieved %.1f/s of %.1f/s", s.Throughput, s.TargetRate)
	case s.Errors*100 > s.Writes:
		return false, fmt.Sprintf("%d errors", s.Errors)
	case s.LagTimedOut > 0:
		return false, fmt.Sprintf("%d lag measurements timed out", s.LagTimedOut)
	case s.Lag.P99MS > 5000:
		return false, fmt.Sprintf("lag p99 %.1f s", s.Lag.P99MS/1000)
	case s.LagLastThirdP50MS > 2*s.LagFirstThirdP50MS+100:
		return false, fmt.Sprintf("lag grew from p50 %.0f ms to %.0f ms", s.LagFirstThirdP50MS, s.LagLastThirdP50MS)
	}
	return true, ""
}

func sweep(ctx context.Context, o options, bin, backend string) (*SystemResult, error) {
	logf("system on %s: starting", backend)
	sys, err := startSystem(ctx, o, bin, backend, false)
	if err != nil {
		return nil, err
	}
	defer sys.close()
	r := &SystemResult{Backend: backend}
	time.Sleep(3 * time.Second)
	r.IdleRSS = readProcs(sys.pids())
	logf("idle RSS: %s", fmtProcs(r.IdleRSS))
	r.Startup = startupTimes(ctx, o, sys, bin, 5)

	client := loadgen.NewClient(sys.URL(stack.Person), sys.URL(stack.Score), 4*o.concurrency)
	model := loadgen.NewModel(cpfBase())
	model.MaxPersons = o.persons
	base := loadgen.RunConfig{Concurrency: o.concurrency, Mix: o.mix, LagSample: o.lagSample, Seed: o.seed, Progress: o.progress}
	creates := loadgen.Mix{loadgen.OpCreate: 1}
	type stepOpt func(*loadgen.RunConfig)
	runStep := func(name string, rate float64, d time.Duration, conc int, opts ...stepOpt) *Step {
		cfg := base
		cfg.Name, cfg.Rate, cfg.Duration, cfg.Concurrency = name, rate, d, conc
		cfg.Seed = base.Seed + uint64(len(r.Steps)) + 1
		for _, opt := range opts {
			opt(&cfg)
		}
		s := measureStep(ctx, sys, client, model, cfg)
		s.Persons = model.Len()
		if rate > 0 {
			s.Sustained, s.Why = sustained(s)
		}
		printStep(s)
		return s
	}
	noProbes := func(c *loadgen.RunConfig) { c.LagSample = 0 }
	preload := func(n int) *Step {
		return runStep(fmt.Sprintf("create %d persons", n), 0, 0, 8, noProbes, func(c *loadgen.RunConfig) {
			c.Mix, c.Count = creates, n
		})
	}

	// Saturation is measured without lag reads: a min_version read costs
	// score a store read per wake-up, which at saturation is a large part of
	// the store's work (the run with a lag read after every write shows it).
	// The rate steps then measure the lag of a sample of the writes
	// (-suite-lag-sample) plus, from the services' histogram, of all of them.
	sampled := func(c *loadgen.RunConfig) { c.LagSample = o.suiteLagSample }
	r.Steps = append(r.Steps, preload(o.persons))
	r.Steps = append(r.Steps, runStep("warm-up", 0, 5*time.Second, 4, sampled))
	sat := runStep("saturation", 0, o.step, o.concurrency, noProbes)
	r.Steps = append(r.Steps, sat)
	r.Steps = append(r.Steps, runStep("saturation, lag read after every write", 0, o.step, o.concurrency))
	r.SaturationRate = sat.Throughput
	for _, f := range []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.1} {
		if ctx.Err() != nil {
			return r, errInterrupted
		}
		rate := f * r.SaturationRate
		s := runStep(fmt.Sprintf("rate %.0f%%", f*100), rate, o.step, 4*o.concurrency, sampled)
		r.Steps = append(r.Steps, s)
		if s.Sustained && s.Throughput > r.MaxSustained {
			r.MaxSustained, r.MaxSustainedRun = s.Throughput, s.Name
		}
		// Far past what it sustains (a fifth of the rate lost, or one write in
		// twenty failing): higher rates would only time out, and take minutes
		// to drain.
		if s.Throughput < 0.8*s.TargetRate || s.Errors*20 > s.Writes+s.Errors {
			logf("overloaded at %s: the higher rates are skipped", s.Name)
			r.OverloadedAt = s.Name
			break
		}
	}
	if r.MaxSustained > 0 && ctx.Err() == nil {
		r.Half = runStep("half of max", r.MaxSustained/2, 2*o.step, 4*o.concurrency, sampled)
	}
	time.Sleep(3 * time.Second)
	r.IdleAfter = readProcs(sys.pids())
	logf("idle RSS after load: %s", fmtProcs(r.IdleAfter))
	// The same saturation with five times the persons: the embedded store's
	// cost per operation grows with the collection.
	if o.grow > o.persons && ctx.Err() == nil {
		model.MaxPersons = o.grow
		r.Steps = append(r.Steps, preload(o.grow-model.Len()))
		r.Steps = append(r.Steps, runStep(fmt.Sprintf("saturation, %d persons", model.Len()), 0, o.step, o.concurrency, noProbes))
	}
	if _, err := measure.Quiesce(ctx, []string{client.PersonURL, client.ScoreURL}, 3*time.Second, 5*time.Minute); err != nil {
		logf("before the check: %v", err)
	}
	r.Check = loadgen.Check(ctx, model, client, 16, time.Minute)
	printCheck(r.Check)
	return r, nil
}

func fmtProcs(m map[string]measure.Proc) string {
	var parts []string
	for _, n := range []string{stack.Mongo, stack.Person, stack.Score} {
		if p, ok := m[n]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f MB (peak %.1f)", n, p.RSSMB, p.HWMMB))
		}
	}
	return strings.Join(parts, ", ")
}

// startupTimes starts extra person, score and localmongo processes beside the
// running system, n times each, and times process start → ready.
func startupTimes(ctx context.Context, o options, sys *system, bin string, n int) map[string][]loadgen.Startup {
	out := map[string][]loadgen.Startup{}
	amqp := sys.vhost
	for range n {
		for _, name := range []string{stack.Person, stack.Score, stack.Mongo} {
			addr, err := freeAddr()
			if err != nil {
				continue
			}
			var env []string
			var ready func(context.Context) bool
			var dir string
			switch name {
			case stack.Mongo:
				dir, _ = os.MkdirTemp("", "loadgen-startup-")
				env = []string{"LOCALMONGO_ADDR=" + addr, "LOCALMONGO_DIR=" + dir, "LOCALMONGO_POSTGRESQL_URL="}
				if sys.backend == "postgresql" {
					env[2] = "LOCALMONGO_POSTGRESQL_URL=" + sys.pgURL
				}
				ready = loadgen.MongoReady(addr)
			default:
				env = []string{"AMQP_URL=" + amqp, "MONGO_URI=" + sys.MongoURI(), "HTTP_ADDR=" + addr, "MIN_VERSION_WAIT=10s"}
				ready = loadgen.HTTPReady("http://" + addr + "/readyz")
			}
			st, err := loadgen.TimeStartup(filepath.Join(bin, name), env, ready, 30*time.Second)
			if dir != "" {
				os.RemoveAll(dir)
			}
			if err != nil {
				logf("start-up of %s: %v", name, err)
				continue
			}
			out[name] = append(out[name], st)
		}
	}
	for name, sts := range out {
		var parts []string
		for _, s := range sts {
			parts = append(parts, fmt.Sprintf("%.0fms", s.ReadyMS))
		}
		logf("start-up of %s to ready: %s", name, strings.Join(parts, " "))
	}
	return out
}

// profileRun profiles the three processes (pprof overlay build) during a
// closed-loop saturation run on SQLite.
func profileRun(ctx context.Context, o options) (map[string]ProfileInfo, error) {
	bin, cleanup, err := binaries(ctx, o, loadgen.BuildOptions{PProf: true})
	if err != nil {
		return nil, err
	}
	defer cleanup()
	sys, err := startSystem(ctx, o, bin, "file", true)
	if err != nil {
		return nil, err
	}
	defer sys.close()
	client := loadgen.NewClient(sys.URL(stack.Person), sys.URL(stack.Score), o.concurrency)
	model := loadgen.NewModel(cpfBase())
	model.MaxPersons = o.persons
	// The same population as the sweep, a warm-up, then profile a saturation run.
	loadgen.Run(ctx, loadgen.RunConfig{Name: "create persons", Concurrency: 8, Count: o.persons, Mix: loadgen.Mix{loadgen.OpCreate: 1}, Seed: o.seed}, model, client)
	loadgen.Run(ctx, loadgen.RunConfig{Name: "warm-up", Concurrency: 4, Duration: 5 * time.Second, Mix: o.mix, Seed: o.seed + 1}, model, client)
	length := o.step
	dir := filepath.Join(o.out, "profiles")
	if o.out == "" {
		dir, _ = os.MkdirTemp("", "loadgen-profiles-")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := map[string]ProfileInfo{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Idle first, so the profiles hold the run and nothing before it.
	if _, err := measure.Quiesce(ctx, []string{client.PersonURL, client.ScoreURL}, 3*time.Second, 3*time.Minute); err != nil {
		logf("before the profiled run: %v", err)
	}
	before := readProcs(sys.pids())
	for name, addr := range sys.pprof {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Second)
			file := filepath.Join(dir, "cpu-"+name+".pprof")
			if err := loadgen.CaptureCPUProfile(ctx, addr, length, file); err != nil {
				logf("profile %s: %v", name, err)
				return
			}
			mu.Lock()
			out[name] = ProfileInfo{File: file, Seconds: length.Seconds()}
			mu.Unlock()
		}()
	}
	cfg := loadgen.RunConfig{Name: "profiled saturation", Concurrency: o.concurrency, Duration: length + 2*time.Second,
		Mix: o.mix, Seed: o.seed + 99, Progress: o.progress}
	res := loadgen.Run(ctx, cfg, model, client)
	step := &Step{RunResult: res}
	printStep(step)
	wg.Wait()
	after := readProcs(sys.pids())
	for name, info := range out {
		info.CPUSec = after[name].CPUSec - before[name].CPUSec
		if info.TopFlat, err = loadgen.PProfTop(ctx, filepath.Join(bin, name), info.File, false, 25); err != nil {
			logf("pprof %s: %v", name, err)
		}
		info.TopCum, _ = loadgen.PProfTop(ctx, filepath.Join(bin, name), info.File, true, 40)
		_ = os.WriteFile(strings.TrimSuffix(info.File, ".pprof")+".txt", []byte(info.TopFlat+"\n\n"+info.TopCum), 0o644)
		out[name] = info
	}
	_ = writeJSON(dir, "profiled-run.json", step)
	return out, nil
}

// summary renders the suite as Markdown tables for docs/BENCHMARKS.md.
func summary(s *Suite) string {
	var b bytes.Buffer
	m := s.Machine
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %.0f GB, Linux %s, %s, RabbitMQ %s, PostgreSQL %s; load average %s.\n\n",
		m.CPUs, m.CPUModel, m.MemGB, m.Kernel, m.Go, m.RabbitMQ, m.PostgreSQL, strings.Join(m.LoadAvg, "; "))
	fmt.Fprintf(&b, "| store backend | operation | documents in collection | _id | per second | p50 ms | p99 ms |\n|---|---|---:|---|---:|---:|---:|\n")
	for _, r := range s.Store {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %.0f | %.2f | %.2f |\n", r.Backend, r.Op, r.Docs, r.IDType, r.PerS, r.Latency.P50MS, r.Latency.P99MS)
	}
	for _, r := range s.Systems {
		fmt.Fprintf(&b, "\n### %s: saturation %.1f/s, max sustained %.1f/s (%s)\n\n", r.Backend, r.SaturationRate, r.MaxSustained, r.MaxSustainedRun)
		fmt.Fprintf(&b, "| run | persons | target/s | achieved/s | errors | write p50/p99 ms | lag p50 | p95 | p99 | max ms | metric lag p50/p99 ms | back to person p50/p99 ms | docs/write | sustained |\n|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|---|---|\n")
		steps := append([]*Step{}, r.Steps...)
		if r.Half != nil {
			steps = append(steps, r.Half)
		}
		for _, st := range steps {
			sus := "—"
			if st.TargetRate > 0 {
				sus = "yes"
				if !st.Sustained {
					sus = "no: " + st.Why
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %.1f | %d | %.1f / %.1f | %.1f | %.1f | %.1f | %.0f | %.1f / %.1f | %.1f / %.1f | %s | %s |\n",
				st.Name, st.Persons, rateName(st.TargetRate), st.Throughput, st.Errors, st.Latency.P50MS, st.Latency.P99MS,
				st.Lag.P50MS, st.Lag.P95MS, st.Lag.P99MS, st.Lag.MaxMS, st.MetricLagScore.P50MS, st.MetricLagScore.P99MS,
				st.MetricLagPerson.P50MS, st.MetricLagPerson.P99MS, fmtDocs(st.DocWritesPerWrite), sus)
		}
		fmt.Fprintf(&b, "\n| process | idle RSS MB | RSS MB after load | max RSS at saturation | peak (VmHWM) | CPU ms per write at saturation | start-up ms (median of 5, max) |\n|---|---:|---:|---:|---:|---:|---|\n")
		var sat *Step
		for _, st := range r.Steps {
			if st.Name == "saturation" {
				sat = st
			}
		}
		for _, n := range []string{stack.Mongo, stack.Person, stack.Score, "rabbitmq"} {
			idle, after := r.IdleRSS[n], r.IdleAfter[n]
			var u measure.Usage
			if sat != nil {
				u = sat.Resources[n]
			}
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %s |\n", n, idle.RSSMB, after.RSSMB, u.MaxRSSMB, after.HWMMB, u.CPUPerWriteMS, startupText(r.Startup[n]))
		}
		c := r.Check
		fmt.Fprintf(&b, "\nCheck: %d cpfs (%d live), score equal %d, person's copy equal %d, mismatches %d, skipped (unknown outcome) %d; writes answered 503 by a failing store %d, applied anyway %d.\n",
			c.Persons, c.Live, c.ScoreOK, c.PersonOK, c.MismatchN, c.Skipped, c.Store503, c.Store503Applied)
	}
	fmt.Fprintf(&b, "\n| binary | `make build` MB | stripped (-s -w) MB | image tarball MB |\n|---|---:|---:|---:|\n")
	for _, n := range []string{stack.Mongo, stack.Person, stack.Score} {
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f |\n", n, s.Sizes[n].BuildMB, s.Sizes[n].StrippedMB, s.Sizes[n].ImageMB)
	}
	for _, n := range []string{stack.Person, stack.Score, stack.Mongo} {
		if p, ok := s.Profile[n]; ok {
			fmt.Fprintf(&b, "\n#### CPU profile of %s at saturation (%.0f s, %.1f CPU s)\n\n```\n%s\n```\n", n, p.Seconds, p.CPUSec, firstLines(p.TopFlat, 22))
		}
	}
	return b.String()
}

func startupText(sts []loadgen.Startup) string {
	if len(sts) == 0 {
		return "—"
	}
	v := make([]float64, len(sts))
	for i, s := range sts {
		v[i] = s.ReadyMS
	}
	sort.Float64s(v)
	return fmt.Sprintf("%.0f (max %.0f)", v[len(v)/2], v[len(v)-1])
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
