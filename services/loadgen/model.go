// Package loadgen drives writes through person's HTTP API, measures the write
// latency and the end-to-end replication lag to score (from a write's 2xx to
// the moment score has applied it), checks at the end that every cpf's score is
// what a local model of the same writes says, and benchmarks the embedded
// store. cmd/loadgen is the command; docs/BENCHMARKS.md has the numbers.
package loadgen

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/personscore/stack/measure"
)

// Op is one kind of write the tool sends.
type Op int

// The writes, in the order of the -mix flag.
const (
	OpCreate       Op = iota // POST /person (a new cpf, or a deleted one again)
	OpIncome                 // POST /person/{cpf}/income
	OpAsset                  // POST /person/{cpf}/asset
	OpDebt                   // POST /person/{cpf}/debt
	OpUpdate                 // PUT /person/{cpf}
	OpDeleteItem             // DELETE /person/{cpf}/{kind}/{id}
	OpDeletePerson           // DELETE /person/{cpf}
	numOps
)

var opNames = [numOps]string{"create", "income", "asset", "debt", "update", "delete_item", "delete_person"}

func (o Op) String() string {
	if o < 0 || o >= numOps {
		return "op" + strconv.Itoa(int(o))
	}
	return opNames[o]
}

// Kind is the item kind an op adds, "" for the others.
func (o Op) Kind() string {
	switch o {
	case OpIncome:
		return "income"
	case OpAsset:
		return "asset"
	case OpDebt:
		return "debt"
	}
	return ""
}

// Mix weighs the ops; Pick draws one in proportion to its weight.
type Mix [numOps]float64

// DefaultMix mostly adds items (what moves a score), with enough creates for
// small documents (about five items per person) and some updates and deletes.
var DefaultMix = Mix{OpCreate: 20, OpIncome: 20, OpAsset: 15, OpDebt: 15, OpUpdate: 10, OpDeleteItem: 12, OpDeletePerson: 8}

// ParseMix reads "create=20,income=20,..."; ops left out weigh 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	total := 0.0
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return m, fmt.Errorf("mix: %q is not op=weight", part)
		}
		op := Op(-1)
		for i, n := range opNames {
			if n == strings.TrimSpace(name) {
				op = Op(i)
			}
		}
		if op < 0 {
			return m, fmt.Errorf("mix: unknown op %q (want one of %s)", name, strings.Join(opNames[:], ", "))
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || w < 0 {
			return m, fmt.Errorf("mix: weight of %s must be a non-negative number", name)
		}
		m[op] = w
		total += w
	}
	if total <= 0 {
		return m, fmt.Errorf("mix: at least one weight must be positive")
	}
	return m, nil
}

func (m Mix) String() string {
	parts := make([]string, 0, numOps)
	for i, w := range m {
		parts = append(parts, fmt.Sprintf("%s=%g", Op(i), w))
	}
	return strings.Join(parts, ",")
}

// Pick draws an op.
func (m Mix) Pick(rng *rand.Rand) Op {
	total := 0.0
	for _, w := range m {
		total += w
	}
	x := rng.Float64() * total
	for i, w := range m {
		if x < w {
			return Op(i)
		}
		x -= w
	}
	return OpCreate
}

// Item is an income, asset or debt the tool created.
type Item struct {
	Kind  string
	Cents int64
}

// Person is the tool's own model of one cpf.
type Person struct {
	CPF     int64
	Live    bool
	Items   map[string]Item // by id
	Version int64           // highest version a 2xx returned
	// Unknown: a write's outcome is unknown (timeout, broken connection), so
	// the person is left alone and not checked.
	Unknown bool
	// Failed: the unknown write was answered 503 by a failing store (op
	// FailedOp); Check finds out whether it was applied anyway.
	Failed   bool
	FailedOp Op
}

// AppliedAnyway tells, from what person shows now, whether the failed write
// (the person's last) was applied: a create makes it found, a delete makes it
// gone, any other write raises the version above the last one known.
func (p *Person) AppliedAnyway(v PersonView) bool {
	switch p.FailedOp {
	case OpCreate:
		return v.Found
	case OpDeletePerson:
		return !v.Found
	}
	return v.Found && v.Version > p.Version
}

// Score is what score must answer for the person: the sum of the points of
// its items (0 and 404 when it is not live).
func (p *Person) Score() int64 {
	if !p.Live {
		return 0
	}
	var s int64
	for _, it := range p.Items {
		s += measure.Points(it.Kind, it.Cents)
	}
	return s
}

// ItemIDs returns the ids of the person's items, sorted (for reproducible picks).
func (p *Person) ItemIDs() []string {
	ids := make([]string, 0, len(p.Items))
	for id := range p.Items {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Model is the tool's view of every cpf it wrote. A cpf is handed to one
// worker at a time (Acquire/Release), so the tool never races itself on a
// person and the model is exact.
type Model struct {
	// MaxPersons caps the cpfs ever created (0: no cap). Deleted persons stay
	// in both stores as tombstones, so the cap keeps the collections' size,
	// and with it the embedded store's cost per operation, steady.
	MaxPersons int

	mu      sync.Mutex
	persons map[int64]*Person
	live    idset // idle and live
	dead    idset // idle and deleted (can be created again)
	next    int64 // next new cpf
	busy    int   // persons held by writers
	idle    *sync.Cond
}

// NewModel starts new cpfs at base.
func NewModel(base int64) *Model {
	return &Model{persons: map[int64]*Person{}, next: base}
}

// Acquire chooses a cpf for op and takes it; it may change the op when no cpf
// fits (an item op with nobody live becomes a create, a delete_item on a person
// without items becomes an income). At MaxPersons it waits for a person to be
// released rather than create more. Release must follow.
func (m *Model) Acquire(op Op, rng *rand.Rand) (Op, *Person) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idle == nil {
		m.idle = sync.NewCond(&m.mu)
	}
	for {
		full := m.MaxPersons > 0 && len(m.persons) >= m.MaxPersons
		// At the cap with every usable person held by a writer: wait for one
		// (unless nobody is held, e.g. all are of unknown state).
		if !full || m.live.len()+m.dead.len() > 0 || m.busy == 0 {
			break
		}
		m.idle.Wait()
	}
	m.busy++
	full := m.MaxPersons > 0 && len(m.persons) >= m.MaxPersons
	if op == OpCreate && full && m.dead.len() == 0 && m.live.len() > 0 {
		op = OpIncome
	}
	if op != OpCreate && m.live.len() == 0 {
		op = OpCreate
	}
	if op == OpCreate {
		if m.dead.len() > 0 && (full || rng.IntN(4) == 0) {
			cpf := m.dead.take(rng)
			return op, m.persons[cpf]
		}
		p := &Person{CPF: m.next, Items: map[string]Item{}}
		m.next++
		m.persons[p.CPF] = p
		return op, p
	}
	p := m.persons[m.live.take(rng)]
	if op == OpDeleteItem && len(p.Items) == 0 {
		op = OpIncome
	}
	return op, p
}

// Release gives the person back after its write.
func (m *Model) Release(p *Person) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy--
	if m.idle != nil {
		m.idle.Broadcast()
	}
	switch {
	case p.Unknown:
	case p.Live:
		m.live.add(p.CPF)
	case p.Version > 0:
		m.dead.add(p.CPF)
	default:
		// never created (the create failed cleanly): forget it
		delete(m.persons, p.CPF)
	}
}

// Len is the number of cpfs created (live, deleted or unknown).
func (m *Model) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.persons)
}

// Persons returns every cpf written, in cpf order. Call it when no worker runs.
func (m *Model) Persons() []*Person {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Person, 0, len(m.persons))
	for _, p := range m.persons {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CPF < out[j].CPF })
	return out
}

// idset is a set of cpfs with O(1) add and random removal.
type idset struct {
	ids []int64
}

func (s *idset) len() int      { return len(s.ids) }
func (s *idset) add(cpf int64) { s.ids = append(s.ids, cpf) }

func (s *idset) take(rng *rand.Rand) int64 {
	i := rng.IntN(len(s.ids))
	cpf := s.ids[i]
	last := len(s.ids) - 1
	s.ids[i] = s.ids[last]
	s.ids = s.ids[:last]
	return cpf
}

// Applied records the effect of a successful write on the model.
func (p *Person) Applied(op Op, version int64, itemID string, item Item, deletedItem string) {
	if version > p.Version {
		p.Version = version
	}
	switch op {
	case OpCreate:
		p.Live = true
		p.Items = map[string]Item{}
	case OpIncome, OpAsset, OpDebt:
		p.Items[itemID] = item
	case OpDeleteItem:
		delete(p.Items, deletedItem)
	case OpDeletePerson:
		p.Live = false
		p.Items = map[string]Item{}
	}
}

// FormatCents writes cents as the JSON number person expects: 1234.5 → "1234.50".
func FormatCents(cents int64) string {
	return fmt.Sprintf("%d.%02d", cents/100, cents%100)
}
