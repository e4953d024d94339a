package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personscore/stack/measure"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// WorkloadConfig is one of the fixed workloads of issue 14: Persons persons
// are created first (not measured), then Writes item writes go to them in
// turn (person i%Persons gets write i), cycling through the seed's income,
// asset and debt, from Clients concurrent clients.
type WorkloadConfig struct {
	Name    string
	Persons int
	Writes  int
	Clients int
	// Rate 0 is closed loop (Clients writers back to back, no lag reads: only
	// the catch-up after the last write is measured). Rate > 0 starts writes
	// on schedule, and measures every write's replication lag.
	Rate    float64
	CPFBase int64
	// Items preloads each person with this many items before the run (not measured).
	Items int
	// StoreURI, if set, is the embedded store's: its command counts are read
	// after the setup and once score caught up (StoreCommandsPerWrite).
	StoreURI string
}

// WorkloadResult is what one workload run measured.
type WorkloadResult struct {
	Name       string          `json:"name"`
	Persons    int             `json:"persons"`
	Clients    int             `json:"clients"`
	TargetRate float64         `json:"target_rate"`
	Writes     int             `json:"writes"` // 2xx
	Errors     int             `json:"errors"`
	ElapsedS   float64         `json:"elapsed_s"` // first write sent to last 2xx
	Throughput float64         `json:"throughput_per_s"`
	Latency    measure.Summary `json:"write_latency"`
	Lag        measure.Summary `json:"lag"` // open loop only
	// CatchUpMS runs from the last write's 2xx until score showed every write
	// of every person (0: already there at the last 2xx).
	CatchUpMS float64 `json:"catch_up_ms"`
	// Exact: every person's versions were distinct, its items in person and
	// its score in score are exactly what the writes made.
	Exact        bool             `json:"exact"`
	Mismatches   []string         `json:"mismatches,omitempty"`
	ErrorSamples []string         `json:"error_samples,omitempty"`
	Timeline     []measure.Second `json:"timeline"`
	// TimelineStepS is the length of a Timeline bucket in seconds.
	TimelineStepS float64 `json:"timeline_step_s"`
	// StoreCommandsPerWrite: store commands per 2xx write, by database
	// (from the store's `top`, engine only), from the first write until score caught up.
	StoreCommandsPerWrite map[string]float64 `json:"store_commands_per_write,omitempty"`
}

// timelineStep is the bucket of a workload's timeline: a run of 600 writes
// at full rate lasts well under a second.
const timelineStep = 100 * time.Millisecond

// seedItems are the original's payloads: income 1000 → 20, asset 100000 → 5000, debt 1000 → −50.
var seedItems = []struct {
	kind  string
	body  string
	cents int64
}{
	{"income", `{"type":"renting","value":1000}`, 100_000},
	{"asset", `{"type":"apartment","value":100000}`, 10_000_000},
	{"debt", `{"value":1000}`, 100_000},
}

type wlPerson struct {
	cpf      int64
	mu       sync.Mutex
	versions []int64
	items    int
	score    int64
}

// RunWorkload creates the persons, runs the writes and waits until score has
// caught up, then checks every person.
func RunWorkload(ctx context.Context, cfg WorkloadConfig, c *Client) (*WorkloadResult, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 16
	}
	persons := make([]*wlPerson, cfg.Persons)
	for i := range persons {
		persons[i] = &wlPerson{cpf: cfg.CPFBase + int64(i)}
	}
	// Setup, concurrently: create, then preload items.
	if err := parallel(ctx, cfg.Clients, len(persons), func(i int) error {
		p := persons[i]
		body := fmt.Sprintf(`{"cpf":%d,"name":"bench %d","address":"rua %d","date_of_birth":"1980-01-02"}`, p.cpf, p.cpf, p.cpf)
		if _, err := c.post(ctx, "/person", body); err != nil {
			return err
		}
		p.versions = append(p.versions, 1)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("create persons: %w", err)
	}
	if cfg.Items > 0 {
		n := cfg.Items * len(persons)
		if err := parallel(ctx, cfg.Clients, n, func(i int) error {
			_, err := c.addItem(ctx, persons[i%len(persons)], i)
			return err
		}); err != nil {
			return nil, fmt.Errorf("preload items: %w", err)
		}
	}

	// Score catches up with the setup before anything is measured.
	if _, mism := catchUp(ctx, c, persons, cfg.Clients); len(mism) > 0 {
		return nil, fmt.Errorf("after the setup: %s", mism[0])
	}
	res := &WorkloadResult{Name: cfg.Name, Persons: cfg.Persons, Clients: cfg.Clients, TargetRate: cfg.Rate}
	var topBefore map[string]int64
	if cfg.StoreURI != "" {
		var err error
		if topBefore, err = StoreTop(ctx, cfg.StoreURI); err != nil {
			return nil, fmt.Errorf("store top: %w", err)
		}
	}
	var (
		mu      sync.Mutex
		samples []measure.Sample
		lags    []time.Duration
		lastAt  time.Time
		errs    []string
		probes  sync.WaitGroup
	)
	start := time.Now()
	record := func(s measure.Sample, err error) {
		mu.Lock()
		defer mu.Unlock()
		samples = append(samples, s)
		if err != nil && len(errs) < 10 {
			errs = append(errs, err.Error())
		}
	}
	write := func(i int) {
		p := persons[i%len(persons)]
		begin := time.Now()
		v, err := c.addItem(ctx, p, cfg.Items*len(persons)+i)
		at := time.Now()
		s := measure.Sample{At: at.Sub(start), Latency: at.Sub(begin), Lag: -1, OK: err == nil}
		mu.Lock()
		if err == nil && at.After(lastAt) {
			lastAt = at
		}
		idx := len(samples)
		mu.Unlock()
		record(s, err)
		if err != nil || cfg.Rate <= 0 {
			return
		}
		probes.Add(1)
		go func() {
			defer probes.Done()
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			ans, err := c.WaitScore(pctx, p.cpf, v)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("lag of %d v%d: %v", p.cpf, v, err))
				return
			}
			samples[idx].Lag = ans.At.Sub(at)
			lags = append(lags, ans.At.Sub(at))
		}()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	if cfg.Rate <= 0 {
		for range cfg.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < cfg.Writes && ctx.Err() == nil; i = int(next.Add(1) - 1) {
					write(i)
				}
			}()
		}
	} else {
		slots := make(chan struct{}, cfg.Clients)
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		for i := 0; i < cfg.Writes && ctx.Err() == nil; i++ {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				write(i)
			}()
		}
	}
	wg.Wait()
	catchUp, mism := catchUp(ctx, c, persons, cfg.Clients)
	probes.Wait()
	if topBefore != nil {
		// Outboxes are cleared once the broker confirmed, and score.changed
		// reaches person: wait for that too.
		time.Sleep(2 * time.Second)
		if after, err := StoreTop(ctx, cfg.StoreURI); err == nil {
			res.StoreCommandsPerWrite = PerWrite(topBefore, after, cfg.Writes)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	for _, s := range samples {
		if s.OK {
			res.Writes++
			lat = append(lat, s.Latency)
		} else {
			res.Errors++
		}
	}
	elapsed := lastAt.Sub(start)
	res.ElapsedS = elapsed.Seconds()
	if elapsed > 0 {
		res.Throughput = float64(res.Writes) / elapsed.Seconds()
	}
	res.Latency, res.Lag = measure.Summarize(lat), measure.Summarize(lags)
	if !lastAt.IsZero() {
		res.CatchUpMS = max(measure.MS(catchUp.Sub(lastAt)), 0)
	}
	res.Mismatches = append(mism, checkPersons(ctx, c, persons)...)
	res.Exact = len(res.Mismatches) == 0 && res.Errors == 0
	res.ErrorSamples = errs
	res.Timeline = measure.TimelineStep(samples, elapsed, timelineStep)
	res.TimelineStepS = timelineStep.Seconds()
	return res, nil
}

// catchUp waits, for every person, until score has applied its last version,
// and returns when the last of them got there; it checks each score.
func catchUp(ctx context.Context, c *Client, persons []*wlPerson, clients int) (time.Time, []string) {
	var mu sync.Mutex
	var last time.Time
	var mism []string
	_ = parallel(ctx, max(clients, 32), len(persons), func(i int) error {
		p := persons[i]
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		ans, err := c.WaitScore(wctx, p.cpf, slices.Max(p.versions))
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			mism = append(mism, fmt.Sprintf("cpf %d: %v", p.cpf, err))
		case !ans.Found || ans.Score != p.score:
			mism = append(mism, fmt.Sprintf("cpf %d: score %d (found %v), want %d", p.cpf, ans.Score, ans.Found, p.score))
		}
		if ans.At.After(last) {
			last = ans.At
		}
		return nil
	})
	return last, mism
}

// checkPersons reads every person back: versions distinct and 1..n, items as written.
func checkPersons(ctx context.Context, c *Client, persons []*wlPerson) []string {
	var out []string
	for _, p := range persons {
		vs := slices.Clone(p.versions)
		slices.Sort(vs)
		for i, v := range vs {
			if v != int64(i+1) {
				out = append(out, fmt.Sprintf("cpf %d: versions answered are not 1..%d (at %d: %d)", p.cpf, len(vs), i, v))
				break
			}
		}
		n, err := c.itemCount(ctx, p.cpf)
		if err != nil {
			out = append(out, fmt.Sprintf("cpf %d: %v", p.cpf, err))
		} else if n != p.items {
			out = append(out, fmt.Sprintf("cpf %d: person shows %d items, want %d", p.cpf, n, p.items))
		}
		if len(out) > 20 {
			break
		}
	}
	return out
}

// parallel runs f(0..n-1) on at most workers goroutines; the first error stops it.
func parallel(ctx context.Context, workers, n int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// addItem posts the i-th seed item to p and records it.
func (c *Client) addItem(ctx context.Context, p *wlPerson, i int) (int64, error) {
	it := seedItems[i%len(seedItems)]
	v, err := c.post(ctx, "/person/"+strconv.FormatInt(p.cpf, 10)+"/"+it.kind, it.body)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	p.versions = append(p.versions, v)
	p.items++
	p.score += measure.Points(it.kind, it.cents)
	p.mu.Unlock()
	return v, nil
}

// post sends a JSON body and returns the version of a 2xx answer.
func (c *Client) post(ctx context.Context, path, body string) (int64, error) {
	a := measure.Call(ctx, c.writes, http.MethodPost, c.PersonURL+path, json.RawMessage(body))
	raw := a.Body
	if a.Err != nil {
		return 0, a.Err
	}
	if a.Status/100 != 2 {
		return 0, fmt.Errorf("POST %s: %d %s", path, a.Status, bytes.TrimSpace(raw))
	}
	var out struct {
		Version int64 `json:"version"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Version <= 0 {
		return 0, fmt.Errorf("POST %s: %d without a version: %s", path, a.Status, raw)
	}
	return out.Version, nil
}

// itemCount reads GET /person/{cpf} and counts its items.
func (c *Client) itemCount(ctx context.Context, cpf int64) (int, error) {
	a := measure.Call(ctx, c.reads, http.MethodGet, c.PersonURL+"/person/"+strconv.FormatInt(cpf, 10), nil)
	raw := a.Body
	if a.Err != nil {
		return 0, a.Err
	}
	if a.Status != http.StatusOK {
		return 0, fmt.Errorf("GET person: %d %s", a.Status, raw)
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, err
	}
	n := 0
	for _, k := range []string{"incomes", "assets", "debts", "items"} {
		var list []json.RawMessage
		if json.Unmarshal(out[k], &list) == nil {
			n += len(list)
		}
	}
	return n, nil
}

// StoreTop reads the store's per-namespace command counts (the `top` command):
// per database, and per "<namespace> <kind>".
func StoreTop(ctx context.Context, uri string) (map[string]int64, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Disconnect(context.WithoutCancel(ctx)) }()
	var out struct {
		Totals bson.Raw `bson:"totals"`
	}
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "top", Value: 1}}).Decode(&out); err != nil {
		return nil, err
	}
	elems, err := out.Totals.Elements()
	if err != nil {
		return nil, err
	}
	sums := map[string]int64{}
	for _, e := range elems {
		doc, ok := e.Value().DocumentOK()
		if !ok {
			continue
		}
		n, _ := doc.Lookup("total", "count").AsInt64OK()
		db, _, _ := strings.Cut(e.Key(), ".")
		sums[db] += n
		for _, kind := range []string{"queries", "getmore", "insert", "update", "remove", "commands"} {
			if k, _ := doc.Lookup(kind, "count").AsInt64OK(); k > 0 {
				sums[e.Key()+" "+kind] = k
			}
		}
	}
	return sums, nil
}

// PerWrite is (after − before) / writes, per database.
func PerWrite(before, after map[string]int64, writes int) map[string]float64 {
	out := map[string]float64{}
	if writes <= 0 {
		return out
	}
	for db, n := range after {
		out[db] = float64(n-before[db]) / float64(writes)
	}
	return out
}
