// Package chaos is the reliability suite's toolkit: a workload that remembers
// the outcome of every write it makes (the ledger), a verifier that checks
// person and score against it exactly, private RabbitMQ nodes and clusters,
// in-process Toxiproxy proxies, metric tallies and the uniform result line
// docs/RELIABILITY.md is built from. The scenarios themselves are tests behind
// the `chaos` build tag (make chaos).
package chaos

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is what the client learnt of one write.
type Outcome int

const (
	// None: not attempted.
	None Outcome = iota
	// Accepted: a 2xx answer; the write must be reflected exactly once.
	Accepted
	// Refused: a definite error answer (4xx, 503 "nothing was written"); the
	// write must leave no trace.
	Refused
	// Unknown: no answer (connection refused or reset, timeout, the process was
	// killed); the write may or may not have happened, the final state says which.
	Unknown
)

func (o Outcome) String() string {
	return [...]string{"none", "accepted", "refused", "unknown"}[o]
}

// Item is one income, asset or debt the workload tried to add (and maybe delete).
type Item struct {
	Tag        string // its unique "type" value, which identifies it in person's answers
	Kind       string
	Value      int64 // whole units
	Add        Outcome
	AddVersion int64
	ID         string
	Del        Outcome
	DelVersion int64
	delClaimed bool
}

// Person is the ledger of one cpf.
type Person struct {
	CPF int64

	mu      sync.Mutex
	created Outcome
	// createRefusedThen409: a create was refused (503) and a later one said the
	// person exists: the refused write left a trace.
	createPhantom bool
	items         []*Item
	byTag         map[string]*Item
	versions      []int64 // versions of 2xx answers, in the order they arrived
	seq           int
}

// Ledger remembers every write of a run and its outcome.
type Ledger struct {
	mu      sync.Mutex
	persons map[int64]*Person
	order   []int64
	status  map[string]int // "201", "503", "conn-error", ...

	attempted, accepted, refused, unknown atomic.Int64
	serverErrors                          []string // 5xx other than 503
	lastAccepted                          atomic.Int64
	refusedLatency                        []time.Duration
	maxGap                                time.Duration // longest time without an accepted write since ResetGap
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{persons: map[int64]*Person{}, status: map[string]int{}}
}

// Person returns (creating it) the ledger of cpf.
func (l *Ledger) Person(cpf int64) *Person {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.persons[cpf]
	if p == nil {
		p = &Person{CPF: cpf, byTag: map[string]*Item{}}
		l.persons[cpf] = p
		l.order = append(l.order, cpf)
	}
	return p
}

// Persons returns every cpf's ledger in creation order.
func (l *Ledger) Persons() []*Person {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Person, 0, len(l.order))
	for _, cpf := range l.order {
		out = append(out, l.persons[cpf])
	}
	return out
}

// Counts are the write totals of a run.
type Counts struct {
	Attempted, Accepted, Refused, Unknown int64
	Status                                map[string]int
	ServerErrors                          []string
	// RefusedLatencyMax is the slowest refusal (how fast a 503 came).
	RefusedLatencyMax, RefusedLatencyP50 time.Duration
}

// Counts returns the totals so far.
func (l *Ledger) Counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := make(map[string]int, len(l.status))
	for k, v := range l.status {
		st[k] = v
	}
	c := Counts{Attempted: l.attempted.Load(), Accepted: l.accepted.Load(), Refused: l.refused.Load(),
		Unknown: l.unknown.Load(), Status: st, ServerErrors: append([]string(nil), l.serverErrors...)}
	if n := len(l.refusedLatency); n > 0 {
		lat := append([]time.Duration(nil), l.refusedLatency...)
		slices.Sort(lat)
		c.RefusedLatencyMax, c.RefusedLatencyP50 = lat[n-1], lat[n/2]
	}
	return c
}

// ResetGap starts measuring the longest time without an accepted write anew.
func (l *Ledger) ResetGap() {
	l.mu.Lock()
	l.maxGap = 0
	l.mu.Unlock()
}

// MaxGap is the longest time without an accepted write since ResetGap,
// including the time since the last accepted write.
func (l *Ledger) MaxGap() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	gap := l.maxGap
	if last := l.lastAccepted.Load(); last != 0 {
		gap = max(gap, time.Since(time.Unix(0, last)))
	}
	return gap
}

// LastAccepted is when the last 2xx arrived (zero if none).
func (l *Ledger) LastAccepted() time.Time {
	ns := l.lastAccepted.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (l *Ledger) note(key string, o Outcome, latency time.Duration, serverError string) {
	l.attempted.Add(1)
	switch o {
	case Accepted:
		l.accepted.Add(1)
		now := time.Now().UnixNano()
		if prev := l.lastAccepted.Swap(now); prev != 0 {
			l.mu.Lock()
			l.maxGap = max(l.maxGap, time.Duration(now-prev))
			l.mu.Unlock()
		}
	case Refused:
		l.refused.Add(1)
	case Unknown:
		l.unknown.Add(1)
	}
	l.mu.Lock()
	l.status[key]++
	if o == Refused && key >= "500" {
		l.refusedLatency = append(l.refusedLatency, latency)
	}
	if serverError != "" && len(l.serverErrors) < 50 {
		l.serverErrors = append(l.serverErrors, serverError)
	}
	l.mu.Unlock()
}
