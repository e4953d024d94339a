package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/personscore/stack/measure"
)

// Client makes writes against person and records them in a Ledger.
type Client struct {
	// Person is person's base URL; a func so that it can move (a replica).
	Person func() string
	HTTP   *http.Client
	Ledger *Ledger
}

// NewClient returns a client of the person at personURL with its own ledger.
func NewClient(personURL string) *Client {
	return &Client{
		Person: func() string { return personURL },
		HTTP: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
		}},
		Ledger: NewLedger(),
	}
}

func (c *Client) do(ctx context.Context, method, path string, body any) measure.Answer {
	return measure.Call(ctx, c.HTTP, method, c.Person()+path, body)
}

// outcome classifies an answer and notes it in the ledger.
func (c *Client) outcome(method, path string, a measure.Answer) Outcome {
	switch {
	case a.Err != nil && errors.Is(a.Err, syscall.ECONNREFUSED):
		// Nothing was sent: the process is down. Definitely not applied.
		c.Ledger.note("conn-refused", Refused, a.Latency, "")
		return Refused
	case a.Err != nil:
		c.Ledger.note("conn-error", Unknown, a.Latency, "")
		return Unknown
	case a.Status >= 200 && a.Status < 300:
		c.Ledger.note(strconv.Itoa(a.Status), Accepted, a.Latency, "")
		return Accepted
	case a.Status == http.StatusServiceUnavailable && a.Header.Get("Write-Outcome") == "unknown" && isProblem(a):
		// person could not confirm whether the write was applied.
		c.Ledger.note("503-unknown", Unknown, a.Latency, "")
		return Unknown
	default:
		serverErr := ""
		if a.Status >= 500 && a.Status != http.StatusServiceUnavailable {
			serverErr = fmt.Sprintf("%s %s -> %d %s", method, path, a.Status, truncate(string(a.Body), 300))
		}
		if a.Status == http.StatusServiceUnavailable && !isProblem(a) {
			serverErr = fmt.Sprintf("%s %s -> 503 without problem+json: %q", method, path, truncate(string(a.Body), 300))
		}
		c.Ledger.note(strconv.Itoa(a.Status), Refused, a.Latency, serverErr)
		return Refused
	}
}

func isProblem(a measure.Answer) bool {
	return a.Header.Get("Content-Type") == "application/problem+json"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Create tries to create the person once. A 409 after an earlier attempt with
// no answer means that attempt was applied.
func (c *Client) Create(ctx context.Context, p *Person) Outcome {
	path := "/person"
	a := c.do(ctx, http.MethodPost, path, map[string]any{
		"cpf": p.CPF, "name": fmt.Sprintf("chaos %d", p.CPF), "address": "nowhere", "date_of_birth": "1990-01-01",
	})
	o := c.outcome(http.MethodPost, path, a)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case o == Accepted:
		var r struct{ Version int64 }
		_ = json.Unmarshal(a.Body, &r)
		p.created = Accepted
		p.versions = append(p.versions, r.Version)
	case a.Status == http.StatusConflict:
		if p.created == Refused {
			p.createPhantom = true
		}
		p.created = Accepted
	case o == Unknown:
		p.created = Unknown
	case p.created == None:
		p.created = Refused
	}
	return o
}

// Created reports whether the person is known to exist.
func (p *Person) Created() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.created == Accepted
}

// AddItem adds an income, asset or debt of value whole units, tagged uniquely.
func (c *Client) AddItem(ctx context.Context, p *Person, kind string, value int64) (*Item, Outcome) {
	p.mu.Lock()
	p.seq++
	it := &Item{Tag: fmt.Sprintf("t%d-%d", p.CPF, p.seq), Kind: kind, Value: value}
	p.items = append(p.items, it)
	p.byTag[it.Tag] = it
	p.mu.Unlock()

	path := fmt.Sprintf("/person/%d/%s", p.CPF, kind)
	a := c.do(ctx, http.MethodPost, path, map[string]any{"type": it.Tag, "value": value})
	o := c.outcome(http.MethodPost, path, a)
	p.mu.Lock()
	defer p.mu.Unlock()
	it.Add = o
	if o == Accepted {
		var r struct {
			ID      string
			Version int64
		}
		_ = json.Unmarshal(a.Body, &r)
		it.ID, it.AddVersion = r.ID, r.Version
		p.versions = append(p.versions, r.Version)
	}
	return it, o
}

// DeleteItem deletes an item whose add was accepted.
func (c *Client) DeleteItem(ctx context.Context, p *Person, it *Item) Outcome {
	path := fmt.Sprintf("/person/%d/%s/%s", p.CPF, it.Kind, it.ID)
	a := c.do(ctx, http.MethodDelete, path, nil)
	o := c.outcome(http.MethodDelete, path, a)
	p.mu.Lock()
	defer p.mu.Unlock()
	it.Del = o
	if o == Accepted {
		v, _ := strconv.ParseInt(a.Header.Get("X-Version"), 10, 64)
		it.DelVersion = v
		p.versions = append(p.versions, v)
	}
	return o
}

// deletable picks an accepted, never-deleted item, or nil.
func (p *Person) deletable(r *rand.Rand) *Item {
	p.mu.Lock()
	defer p.mu.Unlock()
	var cands []*Item
	for _, it := range p.items {
		if it.Add == Accepted && !it.delClaimed {
			cands = append(cands, it)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	it := cands[r.IntN(len(cands))]
	it.delClaimed = true // no other writer deletes it too
	return it
}

var kinds = []string{"income", "asset", "debt"}

// Workload keeps writers busy on a set of persons: each writer owns some cpfs
// (so each cpf's writes are sequential) unless Shared, when every writer
// writes to every cpf.
type Workload struct {
	Client  *Client
	CPFs    []int64
	Writers int
	// Pause between two writes of one writer (default 5ms); after a refusal or
	// an error the writer waits 100ms.
	Pause time.Duration
	// DeleteOneIn makes one write in N an item delete (0: never).
	DeleteOneIn int
	// Shared: every writer writes to every cpf (concurrent writers on one cpf).
	Shared bool
	// MaxWrites stops the workload after this many attempts (0: until stopped).
	MaxWrites int64

	mu         sync.Mutex
	violations []string
	done       chan struct{}
}

// Start runs the workload until the returned stop function is called, which
// lets the requests in flight finish (they are not cancelled: an aborted
// request would be an ambiguous write for no reason) and waits for them.
func (w *Workload) Start(ctx context.Context) (stop func()) {
	halt := make(chan struct{})
	if w.Writers <= 0 {
		w.Writers = 8
	}
	if w.Pause <= 0 {
		w.Pause = 5 * time.Millisecond
	}
	var wg sync.WaitGroup
	var attempts sync.Mutex
	var n int64
	for k := range w.Writers {
		var own []*Person
		for i, cpf := range w.CPFs {
			if w.Shared || i%w.Writers == k {
				own = append(own, w.Client.Ledger.Person(cpf))
			}
		}
		if len(own) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(k), uint64(time.Now().UnixNano())))
			last := map[int64]int64{}
			for {
				select {
				case <-halt:
					return
				case <-ctx.Done():
					return
				default:
				}
				if w.MaxWrites > 0 {
					attempts.Lock()
					n++
					over := n > w.MaxWrites
					attempts.Unlock()
					if over {
						return
					}
				}
				p := own[r.IntN(len(own))]
				o, v := w.step(ctx, r, p)
				if o == Accepted && v > 0 {
					if prev := last[p.CPF]; v <= prev {
						w.mu.Lock()
						w.violations = append(w.violations, fmt.Sprintf("writer %d, cpf %d: version %d accepted after %d", k, p.CPF, v, prev))
						w.mu.Unlock()
					}
					last[p.CPF] = v
				}
				pause := w.Pause
				if o != Accepted {
					pause = 100 * time.Millisecond
				}
				select {
				case <-halt:
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	w.done = make(chan struct{})
	go func() { wg.Wait(); close(w.done) }()
	var once sync.Once
	return func() { once.Do(func() { close(halt) }); wg.Wait() }
}

// Done is closed when every writer has stopped (after stop, or MaxWrites).
func (w *Workload) Done() <-chan struct{} { return w.done }

// step makes one write and returns its outcome and, if accepted, the version
// person answered.
func (w *Workload) step(ctx context.Context, r *rand.Rand, p *Person) (Outcome, int64) {
	if !p.Created() {
		o := w.Client.Create(ctx, p)
		if o == Accepted {
			return o, 1
		}
		return o, 0
	}
	if w.DeleteOneIn > 0 && r.IntN(w.DeleteOneIn) == 0 {
		if it := p.deletable(r); it != nil {
			o := w.Client.DeleteItem(ctx, p, it)
			return o, it.DelVersion
		}
	}
	it, o := w.Client.AddItem(ctx, p, kinds[r.IntN(len(kinds))], 1+r.Int64N(100_000))
	return o, it.AddVersion
}

// OrderViolations lists the accepted writes whose version was not above the
// version of the same writer's previous accepted write on that cpf (each
// writer's writes are sequential, so their versions must strictly increase).
func (w *Workload) OrderViolations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}
