//go:build chaos

package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/personscore/stack"
	"github.com/personscore/stack/chaos"
)

// Private RabbitMQ nodes take long to boot on a busy machine, so TestMain
// starts them in the background (only when a scenario that needs them is
// selected) while the scenarios on the shared broker run.
var (
	solo, cluster       *chaos.Fleet
	soloErr, clusterErr error
	clusterTries        map[string]int // tries of each node's join when the cluster formed
	startTries          map[string]int // starts each private node took
	soloReady           = make(chan struct{})
	clusterReady        = make(chan struct{})
	fleetsDir           string
)

func TestMain(m *testing.M) {
	flag.Parse()
	needSolo, needCluster := selected("TestBrokerDown"), selected("TestClusterFailover") || selected("TestClusterAllDown")
	if needSolo || needCluster {
		var err error
		fleetsDir, err = os.MkdirTemp("", "chaos-rabbit-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	tag := chaos.NewID()[:4]
	if needSolo {
		go func() {
			defer close(soloReady)
			solo, soloErr = chaos.NewFleet(fleetsDir+"/solo", "chaos"+tag+"solo", 1)
			if soloErr == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				var tries map[string]int
				tries, soloErr = solo.StartAll(ctx, fleetLog("private RabbitMQ node"))
				noteStartTries(tries)
			}
		}()
	} else {
		close(soloReady)
	}
	if needCluster {
		go func() {
			defer close(clusterReady)
			cluster, clusterErr = chaos.NewFleet(fleetsDir+"/cluster", "chaos"+tag+"node", 3)
			if clusterErr == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
				defer cancel()
				tries, err := cluster.StartAll(ctx, fleetLog("private RabbitMQ cluster"))
				noteStartTries(tries)
				if clusterErr = err; clusterErr == nil {
					clusterTries, clusterErr = cluster.Cluster(ctx, fleetLog("private RabbitMQ cluster"))
				}
			}
		}()
	} else {
		close(clusterReady)
	}
	code := m.Run()
	<-soloReady
	<-clusterReady
	var wg sync.WaitGroup
	for _, f := range []*chaos.Fleet{solo, cluster} {
		if f != nil {
			wg.Add(1)
			go func() { defer wg.Done(); f.StopAll() }()
		}
	}
	wg.Wait()
	if fleetsDir != "" {
		if code == 0 {
			os.RemoveAll(fleetsDir)
		} else {
			fmt.Fprintf(os.Stderr, "the private RabbitMQ nodes' data and logs are kept in %s\n", fleetsDir)
		}
	}
	os.Exit(code)
}

func fleetLog(prefix string) func(format string, args ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, prefix+": "+format+"\n", args...)
	}
}

var startTriesMu sync.Mutex

func noteStartTries(tries map[string]int) {
	startTriesMu.Lock()
	defer startTriesMu.Unlock()
	if startTries == nil {
		startTries = map[string]int{}
	}
	for name, n := range tries {
		startTries[name] = n
	}
}

// selected reports whether -run selects the top-level test name.
func selected(name string) bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	top := strings.Split(f.Value.String(), "/")[0]
	re, err := regexp.Compile(top)
	return err != nil || re.MatchString(name)
}

// harness is one scenario's running system, workload client and counters.
type harness struct {
	t        *testing.T
	s        *stack.Stack
	amqpURL  string // the vhost, reached directly (not through any proxy)
	client   *chaos.Client
	consumed *chaos.Tally // score's handled deliveries, across restarts
	start    time.Time
}

type setup struct {
	// amqpURL, when set, is a vhost on a private node (else a fresh vhost on the shared broker).
	amqpURL string
	// serviceAMQP, when set, gives per service (stack.Person, stack.Score) the
	// AMQP_URL it gets instead of the vhost's (e.g. through a proxy).
	serviceAMQP func(vhostURL string) map[string]string
	cfg         stack.Config
}

func newHarness(t *testing.T, su setup) *harness {
	t.Helper()
	if su.amqpURL == "" {
		base := os.Getenv("AMQP_URL")
		if base == "" {
			base = "amqp://guest:guest@localhost:5672/"
		}
		if err := stack.CheckBroker(base, 3*time.Second); err != nil {
			t.Fatalf("this suite needs RabbitMQ: %v", err)
		}
		url, drop, err := stack.NewVhost(base, "chaos")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(drop)
		su.amqpURL = url
	}
	cfg := su.cfg
	cfg.AMQPURL = su.amqpURL
	if cfg.ServiceEnv == nil {
		cfg.ServiceEnv = map[string][]string{}
	}
	if storeBackend() == "postgresql" {
		cfg.ServiceEnv[stack.Mongo] = append(cfg.ServiceEnv[stack.Mongo], "LOCALMONGO_POSTGRESQL_URL="+newPostgresDB(t))
	}
	if su.serviceAMQP != nil {
		for name, url := range su.serviceAMQP(su.amqpURL) {
			cfg.ServiceEnv[name] = append(cfg.ServiceEnv[name], "AMQP_URL="+url)
		}
	}
	cfg.Env = append([]string{"LOG_LEVEL=" + envString("CHAOS_LOG_LEVEL", "warn")}, cfg.Env...)
	if dir := os.Getenv("CHAOS_LOG_DIR"); dir != "" {
		f, err := os.Create(filepath.Join(dir, t.Name()+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		cfg.Output = f
	}
	s := stack.StartConfigForTest(t, cfg)
	h := &harness{t: t, s: s, amqpURL: su.amqpURL, client: chaos.NewClient(s.URL(stack.Person)), start: time.Now()}
	h.consumed = chaos.NewTally(func() string { return s.URL(stack.Score) + "/metrics" }, "eventbus_consumed_total", map[string]string{"queue": "score"})
	t.Cleanup(func() { h.consumed.Stop() })
	return h
}

// cpfs returns n distinct cpfs starting at base.
func cpfs(base int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = base + int64(i)
	}
	return out
}

// sleep waits d or until the test's context ends.
func (h *harness) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-h.t.Context().Done():
	}
}

func jitter(min, max time.Duration) time.Duration {
	return min + time.Duration(rand.Int64N(int64(max-min)+1))
}

// verify checks the ledger exactly and fills in the result's counts; it fails
// the test on any problem. injected is the number of distinct events the
// scenario published itself (they count as replicated once verified).
func (h *harness) verify(r *chaos.Result, within time.Duration, injected int64) chaos.Verified {
	h.t.Helper()
	v, problems := chaos.Verify(h.t.Context(), h.client.Ledger, h.s.URL(stack.Person), h.s.URL(stack.Score), within)
	c := h.client.Ledger.Counts()
	r.Attempted, r.Accepted, r.Refused, r.Unknown = c.Attempted+r.Attempted, c.Accepted+r.Accepted, c.Refused+r.Refused, c.Unknown+r.Unknown
	r.Replicated = v.Replicated + injected
	r.Converge = v.Took
	for _, p := range problems[:min(len(problems), 30)] {
		h.t.Errorf("not exact: %s", p)
	}
	if len(problems) > 30 {
		h.t.Errorf("... and %d more problems", len(problems)-30)
	}
	for _, e := range c.ServerErrors {
		h.t.Errorf("server error: %s", e)
	}
	if c.RefusedLatencyMax > 0 {
		r.Note = strings.TrimSpace(fmt.Sprintf("%s; 5xx answered in p50 %s, max %s", r.Note, c.RefusedLatencyP50.Round(time.Millisecond), c.RefusedLatencyMax.Round(time.Millisecond)))
	}
	h.t.Logf("status counts: %v; %d persons, %d writes applied in person (%d with no answer turned out applied)",
		c.Status, v.Persons, v.Applied, v.UnknownApplied)
	return v
}

// finish computes duplicates (deliveries score handled beyond the distinct
// events; distinct < 0: not computed) and dead letters, logs and records the result.
func (h *harness) finish(r *chaos.Result, distinct int64) {
	h.t.Helper()
	consumed := int64(h.consumed.Stop())
	if d := consumed - distinct; d > 0 && distinct >= 0 {
		r.Duplicates = d
	}
	for _, q := range []string{"score.dlq", "person.dlq"} {
		if n, err := chaos.QueueDepth(h.amqpURL, q); err == nil {
			r.DeadLettered += int64(n)
		}
	}
	r.Elapsed = time.Since(h.start)
	r.Note = strings.TrimPrefix(r.Note, "; ")
	h.t.Log(r.Line())
	if err := r.Record(); err != nil {
		h.t.Logf("recording the result: %v", err)
	}
}

// firstAcceptAfter waits until the ledger has an accepted write after t0 and
// returns how long after t0 it came (or the wait bound).
func (h *harness) firstAcceptAfter(t0 time.Time, bound time.Duration) time.Duration {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if last := h.client.Ledger.LastAccepted(); last.After(t0) {
			return time.Since(t0) // polled every 20ms: the first accept came within that
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Errorf("no write was accepted within %s after the fault ended", bound)
	return bound
}

// brokerHostPort is host:port of an AMQP URL.
func brokerHostPort(t *testing.T, amqpURL string) string {
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":5672"
	}
	return host
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func newProxy(t *testing.T, name, upstream string) *chaos.Proxy {
	t.Helper()
	p, err := chaos.NewProxy(name, upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// storeBackend is the embedded store's backend: CHAOS_STORE=sqlite or
// postgresql (default: postgresql when createdb reaches the local server,
// as it is about twice as fast, else sqlite).
func storeBackend() string {
	switch os.Getenv("CHAOS_STORE") {
	case "sqlite":
		return "sqlite"
	case "postgresql":
		return "postgresql"
	}
	pgOnce.Do(func() {
		pgOK = exec.Command("psql", "-h", "127.0.0.1", "-Atc", "select 1", "postgres").Run() == nil
	})
	if pgOK {
		return "postgresql"
	}
	return "sqlite"
}

var (
	pgOnce sync.Once
	pgOK   bool
)

// newPostgresDB creates a fresh database on the local PostgreSQL (dropped at
// the end) and returns its URL.
func newPostgresDB(t *testing.T) string {
	t.Helper()
	name := "chaos_" + chaos.NewID()[:12]
	if out, err := exec.Command("createdb", "-h", "127.0.0.1", name).CombinedOutput(); err != nil {
		t.Fatalf("createdb %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("dropdb", "-h", "127.0.0.1", "--force", name).Run() })
	user := os.Getenv("USER")
	if user == "" {
		user = "root"
	}
	return "postgres://" + user + "@127.0.0.1:5432/" + name
}
