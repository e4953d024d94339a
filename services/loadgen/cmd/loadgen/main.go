// Command loadgen drives writes through person's HTTP API and measures the
// write latency and the end-to-end replication lag to score, then checks that
// every cpf's score equals what it computed locally.
//
//	loadgen -start-stack -duration 30s -out out        # one closed-loop run on a fresh stack
//	loadgen -person http://127.0.0.1:8080 -score http://127.0.0.1:8081 -rate 100 -duration 1m
//	loadgen -store-bench -out out                      # the embedded store's sequential rates
//	loadgen -suite -out docs/bench                     # everything docs/BENCHMARKS.md reports
//
// A live progress line is printed when stdout is a terminal (not with -quiet
// or CI=true). Results go to -out as JSON and PNG plots.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/personscore/loadgen"
	"github.com/personscore/stack"
	"github.com/personscore/stack/measure"
)

type options struct {
	personURL, scoreURL string
	startStack          bool
	backend             string
	pgURL               string
	amqpURL             string
	binDir              string

	rate           float64
	concurrency    int
	duration       time.Duration
	count          int
	mix            loadgen.Mix
	lagSample      float64
	suiteLagSample float64
	check          bool

	storeBench    bool
	hopBench      bool
	storeDuration time.Duration
	suite         bool
	step          time.Duration
	persons       int
	grow          int
	profile       bool

	bench      bool
	keep       bool
	itemsRatio bool
	lagRate    float64
	backends   string
	workloads  string

	out      string
	quiet    bool
	progress io.Writer
	seed     uint64
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	o, err := parseOptions(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if !o.quiet && os.Getenv("CI") != "true" && isTerminal(os.Stdout) {
		o.progress = os.Stdout
	}
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch {
	case o.bench:
		return runBench(ctx, o)
	case o.suite:
		return runSuite(ctx, o)
	case o.profile:
		p, err := profileRun(ctx, o)
		if err != nil {
			return err
		}
		for _, n := range []string{stack.Person, stack.Score, stack.Mongo} {
			if info, ok := p[n]; ok {
				fmt.Printf("\n== %s (%.0f s, %.1f CPU s)\n%s\n", n, info.Seconds, info.CPUSec, firstLines(info.TopCum, 30))
			}
		}
		return writeJSON(o.out, "profile.json", p)
	case o.hopBench:
		return hopBench(ctx, o)
	case o.storeBench:
		res, err := storeBench(ctx, o)
		if err != nil {
			return err
		}
		return writeJSON(o.out, "store.json", res)
	default:
		return runOnce(ctx, o)
	}
}

// parseOptions reads the command line; a seed of 0 becomes a random one.
func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	mix := fs.String("mix", loadgen.DefaultMix.String(), "weights of the writes: "+loadgen.DefaultMix.String())
	fs.StringVar(&o.personURL, "person", "http://127.0.0.1:8080", "person's base URL (without -start-stack)")
	fs.StringVar(&o.scoreURL, "score", "http://127.0.0.1:8081", "score's base URL (without -start-stack)")
	fs.BoolVar(&o.startStack, "start-stack", false, "build and start localmongo, person and score on free ports, in a fresh RabbitMQ vhost and store")
	fs.StringVar(&o.backend, "backend", "file", "embedded store journal with -start-stack: file or postgresql")
	fs.StringVar(&o.pgURL, "pg", envOr("LOADGEN_POSTGRESQL_URL", "postgres://root@127.0.0.1:5432/test"), "PostgreSQL server for the postgresql backend (a fresh database is created beside this one and dropped)")
	fs.StringVar(&o.amqpURL, "amqp", envOr("AMQP_URL", "amqp://guest:guest@localhost:5672/"), "RabbitMQ (a fresh vhost is created on it with -start-stack)")
	fs.StringVar(&o.binDir, "bin", "", "folder with prebuilt localmongo, person and score (default: build them)")
	fs.Float64Var(&o.rate, "rate", 0, "target writes per second (0: closed loop, -concurrency writers back to back)")
	fs.IntVar(&o.concurrency, "concurrency", 8, "writes in flight at most")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long to write")
	fs.IntVar(&o.count, "count", 0, "stop after this many writes (0: only -duration)")
	fs.Float64Var(&o.lagSample, "lag-sample", 1, "fraction of writes whose replication lag is measured")
	fs.Float64Var(&o.suiteLagSample, "suite-lag-sample", 0.5, "with -suite: fraction of writes whose lag is measured in the rate steps")
	fs.BoolVar(&o.check, "check", true, "check every cpf's score at the end")
	fs.BoolVar(&o.storeBench, "store-bench", false, "measure the embedded store's sequential rates (SQLite and PostgreSQL) and exit")
	fs.BoolVar(&o.hopBench, "hop-bench", false, "measure the broker alone (publish with confirm to a quorum queue, consume) at -lag-rate, -count messages (default 600), in a fresh vhost, and exit")
	fs.DurationVar(&o.storeDuration, "store-duration", 8*time.Second, "length of each store-bench operation")
	fs.BoolVar(&o.suite, "suite", false, "run every benchmark of docs/BENCHMARKS.md (store, rate sweep on both backends, resources, start-up, sizes, profiles)")
	fs.DurationVar(&o.step, "step", 30*time.Second, "length of each step of the rate sweep (-suite)")
	fs.IntVar(&o.persons, "persons", 100, "cap on the persons created (deleted ones are created again); -suite creates them all first")
	fs.IntVar(&o.grow, "grow", 500, "with -suite: then grow to this many persons and measure saturation again (0: skip)")
	fs.BoolVar(&o.profile, "profile", false, "CPU-profile person, score and localmongo during a saturation run (alone, or at the end of -suite)")
	fs.BoolVar(&o.bench, "bench", false, "run issue 14's workloads (-workloads) on fresh systems (-backends): full rate with -concurrency clients, then half that rate with every write's lag")
	fs.BoolVar(&o.itemsRatio, "items-ratio", true, "with -bench: also compare writes to a person with 5 items and one with 5,000")
	fs.BoolVar(&o.keep, "keep", false, "keep each started system's folder (store data, stack.log)")
	fs.Float64Var(&o.lagRate, "lag-rate", 200, "with -bench: rate of the lag run (default 200/s, half of issue 14's 400 writes/s; 0: half the rate the full run reached)")
	fs.StringVar(&o.backends, "backends", "file,postgresql", "with -bench: store journals (file, postgresql)")
	fs.StringVar(&o.workloads, "workloads", "spread,hot", "with -bench: spread (200 persons × 3 items) and hot (1 person × 600 items)")
	fs.StringVar(&o.out, "out", "", "folder for the JSON results and PNG plots (default: none)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed (0: random)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}

	m, err := loadgen.ParseMix(*mix)
	if err != nil {
		return o, fmt.Errorf("-mix: %w", err)
	}
	o.mix = m
	if o.seed == 0 {
		o.seed = rand.Uint64()
	}
	return o, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func writeJSON(dir, name string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if dir == "" {
		_, err = os.Stdout.Write(append(raw, '\n'))
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), append(raw, '\n'), 0o644)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// system is a stack started for a benchmark, with what it needs cleaned up.
type system struct {
	*stack.Stack
	backend string
	vhost   string // AMQP URL of the fresh vhost
	pgURL   string // the fresh database (postgresql backend)
	pprof   map[string]string
	logFile string
	cleanup []func()
}

func (s *system) close() {
	if s.Stack != nil {
		if err := s.Stop(20 * time.Second); err != nil {
			logf("stopping the stack: %v", err)
		}
	}
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
}

func (s *system) pids() map[string]int {
	out := map[string]int{}
	for _, n := range []string{stack.Mongo, stack.Person, stack.Score} {
		if pid := s.PID(n); pid > 0 {
			out[n] = pid
		}
	}
	if pid := measure.FindProcess("beam.smp"); pid > 0 {
		out["rabbitmq"] = pid
	}
	return out
}

// startSystem starts localmongo, person and score from binDir on free ports,
// in a fresh vhost and a fresh store. pprof adds pprof listeners (the binaries
// must carry the overlay).
func startSystem(ctx context.Context, o options, binDir, backend string, pprof bool) (*system, error) {
	sys := &system{backend: backend}
	ok := false
	defer func() {
		if !ok {
			sys.close()
		}
	}()
	if err := stack.CheckBroker(o.amqpURL, 3*time.Second); err != nil {
		return nil, err
	}
	vhost, drop, err := stack.NewVhost(o.amqpURL, "loadgen")
	if err != nil {
		return nil, err
	}
	sys.cleanup = append(sys.cleanup, drop)
	sys.vhost = vhost
	dir, err := os.MkdirTemp("", "loadgen-stack-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		logf("keeping %s", dir)
	} else {
		sys.cleanup = append(sys.cleanup, func() { os.RemoveAll(dir) })
	}
	logf("stack output: %s", filepath.Join(dir, "stack.log"))
	logFile, err := os.Create(filepath.Join(dir, "stack.log"))
	if err != nil {
		return nil, err
	}
	sys.logFile = logFile.Name()
	sys.cleanup = append(sys.cleanup, func() { logFile.Close() })

	addrs := make([]string, 6)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	env := []string{"MIN_VERSION_WAIT=10s"}
	// localmongo's own settings; empty values override any inherited ones
	// (an empty LOCALMONGO_POSTGRESQL_URL is the file journal).
	mongoEnv := []string{"LOCALMONGO_POSTGRESQL_URL=", "PPROF_ADDR_LOCALMONGO="}
	if backend == "postgresql" {
		u, drop, err := loadgen.FreshPostgreSQL(ctx, o.pgURL, "loadgen")
		if err != nil {
			return nil, err
		}
		sys.cleanup = append(sys.cleanup, drop)
		sys.pgURL = u
		mongoEnv = append(mongoEnv, "LOCALMONGO_POSTGRESQL_URL="+u)
	}
	if pprof {
		sys.pprof = map[string]string{stack.Mongo: addrs[3], stack.Person: addrs[4], stack.Score: addrs[5]}
		mongoEnv = append(mongoEnv, "PPROF_ADDR_LOCALMONGO="+addrs[3])
		env = append(env, "PPROF_ADDR_PERSON="+addrs[4], "PPROF_ADDR_SCORE="+addrs[5])
	}
	cfg := stack.Config{BinDir: binDir, DataDir: filepath.Join(dir, "mongo"), AMQPURL: vhost,
		MongoAddr: addrs[0], PersonAddr: addrs[1], ScoreAddr: addrs[2], Env: env, Output: logFile,
		ServiceEnv: map[string][]string{stack.Mongo: mongoEnv}}
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, sys.logFile)
	}
	sys.Stack = s
	ok = true
	return sys, nil
}

// binaries returns a folder with the three binaries: -bin, or a fresh build.
func binaries(ctx context.Context, o options, build loadgen.BuildOptions) (string, func(), error) {
	if o.binDir != "" && !build.PProf && !build.Stripped {
		abs, err := filepath.Abs(o.binDir)
		return abs, func() {}, err
	}
	wd, _ := os.Getwd()
	root, err := stack.RepoRoot(wd)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "loadgen-bin-")
	if err != nil {
		return "", nil, err
	}
	logf("building localmongo, person and score (pprof=%v, stripped=%v)…", build.PProf, build.Stripped)
	if err := loadgen.BuildBinaries(ctx, root, dir, build); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

func runOnce(ctx context.Context, o options) error {
	client := loadgen.NewClient(o.personURL, o.scoreURL, o.concurrency)
	var sys *system
	if o.startStack {
		bin, cleanup, err := binaries(ctx, o, loadgen.BuildOptions{})
		if err != nil {
			return err
		}
		defer cleanup()
		sys, err = startSystem(ctx, o, bin, o.backend, false)
		if err != nil {
			return err
		}
		defer sys.close()
		client = loadgen.NewClient(sys.URL(stack.Person), sys.URL(stack.Score), o.concurrency)
	}
	model := loadgen.NewModel(cpfBase())
	model.MaxPersons = o.persons
	cfg := loadgen.RunConfig{Name: "run", Rate: o.rate, Concurrency: o.concurrency, Duration: o.duration, Count: o.count,
		Mix: o.mix, LagSample: o.lagSample, Seed: o.seed, Progress: o.progress}
	var sampler *measure.Sampler
	out := map[string]any{}
	if sys != nil {
		idle := readProcs(sys.pids())
		out["idle"] = idle
		sampler = measure.StartSampler(sys.pids(), 250*time.Millisecond)
	}
	step := measureStep(ctx, sys, client, model, cfg)
	if sampler != nil {
		step.Resources = sampler.Stop()
		perWrite(step)
	}
	out["run"] = step
	printStep(step)
	if o.check {
		if _, err := measure.Quiesce(ctx, []string{client.PersonURL, client.ScoreURL}, 3*time.Second, 5*time.Minute); err != nil {
			logf("before the check: %v", err)
		}
		chk := loadgen.Check(ctx, model, client, 16, 30*time.Second)
		out["check"] = chk
		printCheck(chk)
		if chk.MismatchN > 0 {
			defer func() { os.Exit(2) }()
		}
	}
	if o.out != "" {
		if err := loadgen.PlotTimeline(step.RunResult, filepath.Join(o.out, "run.png")); err != nil {
			logf("plot: %v", err)
		}
	}
	return writeJSON(o.out, "run.json", out)
}

func cpfBase() int64 {
	// Eleven digits, random: a rerun against the same store does not collide.
	return 10_000_000_000 + rand.Int64N(80_000_000_000)/1_000_000*1_000_000
}

func readProcs(pids map[string]int) map[string]measure.Proc {
	out := map[string]measure.Proc{}
	for n, pid := range pids {
		if p, err := measure.ReadProc(pid); err == nil {
			out[n] = p
		}
	}
	return out
}

// hopBench measures the bare broker hop at -lag-rate in a fresh vhost.
func hopBench(ctx context.Context, o options) error {
	vhost, drop, err := stack.NewVhost(o.amqpURL, "loadgen-hop")
	if err != nil {
		return err
	}
	defer drop()
	n := o.count
	if n <= 0 {
		n = 600
	}
	h, err := loadgen.RunHop(ctx, loadgen.HopConfig{URL: vhost, Rate: o.lagRate, Messages: n})
	if err != nil {
		return err
	}
	printHop(h)
	return writeJSON(o.out, "hop.json", map[string]any{"hop": h, "load_avg": loadAvg("after")})
}

var errInterrupted = errors.New("interrupted")
