// Package historytest generates random, valid histories of persons as person
// publishes them (creates, updates, items added and deleted, deletes and
// re-creates, snapshots at any version), for tests of the read model. It plays
// person's side of the event contract; it shares no code with person.
package historytest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/score"
)

// Source is the CloudEvents source the generated events carry (person's).
const Source = "/person"

// Item is an item of the generated person.
type Item struct {
	ID      string
	Kind    string
	Type    string
	Cents   int64
	Version int64
}

// State is a person as person's database holds it after some version.
type State struct {
	Exists  bool // a document exists (created at least once)
	Deleted bool
	Person  score.Person
	Items   map[string]Item
}

// History is the sequence of changes of one cpf: Events[i] has version i+1 and
// States[v] is the state after version v (States[0] is "never created").
type History struct {
	CPF    int64
	Events []eventbus.Event
	States []State
}

// Final is the last version.
func (h *History) Final() int64 { return int64(len(h.Events)) }

// Subject is the cpf as an event subject.
func (h *History) Subject() string { return strconv.FormatInt(h.CPF, 10) }

// Generate builds a history of steps changes for cpf.
func Generate(rng *rand.Rand, cpf int64, steps int) *History {
	h := &History{CPF: cpf, States: []State{{Items: map[string]Item{}}}}
	for range steps {
		h.step(rng)
	}
	return h
}

// Extend appends steps more changes.
func (h *History) Extend(rng *rand.Rand, steps int) {
	for range steps {
		h.step(rng)
	}
}

func (h *History) step(rng *rand.Rand) {
	cur := h.States[len(h.States)-1]
	next := State{Exists: cur.Exists, Deleted: cur.Deleted, Person: cur.Person, Items: maps.Clone(cur.Items)}
	v := int64(len(h.Events)) + 1
	cpf := h.CPF
	var typ string
	var data any
	live := cur.Exists && !cur.Deleted
	r := rng.IntN(100)
	switch {
	case !live:
		typ = contract.PersonCreated
		next.Exists, next.Deleted = true, false
		next.Person = randomPerson(rng, v)
		next.Items = map[string]Item{}
		data = personData(cpf, next.Person)
	case r < 15:
		typ = contract.PersonUpdated
		next.Person = randomPerson(rng, v)
		data = personData(cpf, next.Person)
	case r < 25:
		typ = contract.PersonDeleted
		next.Deleted, next.Person, next.Items = true, score.Person{}, map[string]Item{}
		data = map[string]any{"cpf": cpf}
	case r < 45 && len(cur.Items) > 0:
		ids := slices.Sorted(maps.Keys(cur.Items))
		it := cur.Items[ids[rng.IntN(len(ids))]]
		delete(next.Items, it.ID)
		typ = it.Kind + ".deleted"
		data = map[string]any{"cpf": cpf, "id": it.ID, "kind": it.Kind}
	default:
		kind := contract.ItemKinds[rng.IntN(len(contract.ItemKinds))]
		it := Item{ID: fmt.Sprintf("%d-item-%d", cpf, v), Kind: kind, Cents: 1 + rng.Int64N(20_000_00), Version: v}
		if kind != "debt" {
			it.Type = []string{"salary", "renting", "apartment", "car"}[rng.IntN(4)]
		}
		next.Items[it.ID] = it
		typ = kind + ".created"
		data = itemData(cpf, it, false)
	}
	h.Events = append(h.Events, mustEvent(typ, cpf, v, data))
	h.States = append(h.States, next)
}

func randomPerson(rng *rand.Rand, v int64) score.Person {
	return score.Person{
		Name:        fmt.Sprintf("name %d/%d", v, rng.IntN(1000)),
		Address:     fmt.Sprintf("street %d", rng.IntN(1000)),
		DateOfBirth: fmt.Sprintf("19%02d-0%d-1%d", rng.IntN(100), 1+rng.IntN(9), rng.IntN(10)),
	}
}

func personData(cpf int64, p score.Person) map[string]any {
	return map[string]any{"cpf": cpf, "name": p.Name, "address": p.Address, "date_of_birth": p.DateOfBirth}
}

func itemData(cpf int64, it Item, withVersion bool) map[string]any {
	m := map[string]any{"cpf": cpf, "id": it.ID, "kind": it.Kind, "value": json.Number(fmt.Sprintf("%d.%02d", it.Cents/100, it.Cents%100)),
		"value_cents": it.Cents}
	if it.Type != "" {
		m["type"] = it.Type
	}
	if withVersion {
		m["version"] = it.Version
	}
	return m
}

func mustEvent(typ string, cpf, v int64, data any) eventbus.Event {
	ev, err := eventbus.NewEvent(context.Background(), Source, typ, strconv.FormatInt(cpf, 10), v, data)
	if err != nil {
		panic(err)
	}
	return ev
}

// Snapshot is the person.snapshot person would publish at version v (v ≥ 1).
func (h *History) Snapshot(v int64) eventbus.Event {
	st := h.States[v]
	data := map[string]any{"cpf": h.CPF, "deleted": st.Deleted, "items": []any{}}
	if !st.Deleted {
		p := st.Person
		data["person"] = map[string]any{"name": p.Name, "address": p.Address, "date_of_birth": p.DateOfBirth}
		var items []any
		for _, id := range slices.Sorted(maps.Keys(st.Items)) {
			items = append(items, itemData(h.CPF, st.Items[id], true))
		}
		if items != nil {
			data["items"] = items
		}
	}
	return mustEvent(contract.PersonSnapshot, h.CPF, v, data)
}

// Want is the semantic read model of the cpf after version v, derived from
// the state alone (not from Apply).
func (h *History) Want(v int64) Semantic {
	st := h.States[v]
	s := Semantic{CPF: h.CPF, Version: v, Items: map[string]score.Item{}}
	if st.Exists && !st.Deleted {
		p := st.Person
		s.Live, s.Person = true, &p
		for id, it := range st.Items {
			pts := score.Points(it.Kind, it.Cents)
			s.Items[id] = score.Item{Kind: it.Kind, Type: it.Type, ValueCents: it.Cents, Points: pts, Version: it.Version}
			s.Score += pts
		}
	}
	return s
}

// Semantic is what a client can observe of a document: the bookkeeping that
// makes Apply order-independent (versions of parts, tombstones, revisions,
// timestamps) is left out.
type Semantic struct {
	CPF     int64
	Live    bool
	Person  *score.Person
	Items   map[string]score.Item
	Score   int64
	Version int64
}

// Of returns the semantic part of d.
func Of(d score.Document) Semantic {
	s := Semantic{CPF: d.CPF, Live: d.Live(), Score: d.Score, Version: d.Version, Items: map[string]score.Item{}}
	if d.Person != nil {
		p := *d.Person
		s.Person = &p
	}
	maps.Copy(s.Items, d.Items)
	return s
}

// Delivery returns the events of h with some delivered twice or three times,
// in the given order or shuffled, optionally with snapshots at random versions
// mixed in.
func (h *History) Delivery(rng *rand.Rand, shuffle bool, dupRate float64, snapshots int) []eventbus.Event {
	out := slices.Clone(h.Events)
	for _, ev := range h.Events {
		for rng.Float64() < dupRate {
			out = append(out, ev)
		}
	}
	for range snapshots {
		out = append(out, h.Snapshot(1+rng.Int64N(h.Final())))
	}
	if shuffle {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}

// String shows the person by value, for test failure messages.
func (s Semantic) String() string {
	p := "<none>"
	if s.Person != nil {
		p = fmt.Sprintf("%+v", *s.Person)
	}
	return fmt.Sprintf("{cpf %d live %v version %d score %d person %s items %+v}", s.CPF, s.Live, s.Version, s.Score, p, s.Items)
}
