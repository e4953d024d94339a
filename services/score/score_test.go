package score_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/score"
	"github.com/personscore/score/internal/historytest"
)

func TestPoints(t *testing.T) {
	tests := []struct {
		kind  string
		cents int64
		want  int64
	}{
		{"income", 1000_00, 20}, // the README's example
		{"asset", 100000_00, 5000},
		{"debt", 1000_00, -50},
		{"income", 49_99, 0}, // floor, not round
		{"income", 50_00, 1},
		{"income", 99_99, 1},
		{"asset", 19_99, 0},
		{"asset", 20_00, 1},
		{"debt", 19_99, 0}, // -floor(19.99/20) = 0, not -1
		{"debt", 20_00, -1},
		{"debt", 39_99, -1},
		{"income", 1, 0},
		{"gift", 1000_00, 0}, // anything else
		{"", 1000_00, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.kind, tt.cents), func(t *testing.T) {
			if got := score.Points(tt.kind, tt.cents); got != tt.want {
				t.Fatalf("Points(%q, %d) = %d, want %d", tt.kind, tt.cents, got, tt.want)
			}
		})
	}
}

const cpf = 11111

func event(t *testing.T, typ string, v int64, data any) eventbus.Event {
	t.Helper()
	ev, err := eventbus.NewEvent(context.Background(), "/person", typ, "11111", v, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func created(t *testing.T, v int64, name string) eventbus.Event {
	return event(t, contract.PersonCreated, v, map[string]any{"cpf": cpf, "name": name, "address": "abc", "date_of_birth": "2019-06-15T19:23:55-03:00"})
}

func updated(t *testing.T, v int64, name string) eventbus.Event {
	return event(t, contract.PersonUpdated, v, map[string]any{"cpf": cpf, "name": name, "address": "abc", "date_of_birth": "2019-06-15T19:23:55-03:00"})
}

func deleted(t *testing.T, v int64) eventbus.Event {
	return event(t, contract.PersonDeleted, v, map[string]any{"cpf": cpf})
}

func item(t *testing.T, kind string, v int64, id string, cents int64) eventbus.Event {
	return event(t, kind+".created", v, map[string]any{"cpf": cpf, "id": id, "kind": kind, "value_cents": cents})
}

func itemDeleted(t *testing.T, kind string, v int64, id string) eventbus.Event {
	return event(t, kind+".deleted", v, map[string]any{"cpf": cpf, "id": id, "kind": kind})
}

type snapItem struct {
	id, kind string
	cents, v int64
}

func snapshot(t *testing.T, v int64, name string, items ...snapItem) eventbus.Event {
	data := map[string]any{"cpf": cpf, "deleted": name == ""}
	list := []any{}
	for _, it := range items {
		list = append(list, map[string]any{"cpf": cpf, "id": it.id, "kind": it.kind, "value_cents": it.cents, "version": it.v})
	}
	data["items"] = list
	if name != "" {
		data["person"] = map[string]any{"name": name, "address": "abc", "date_of_birth": "2019-06-15T19:23:55-03:00"}
	}
	return event(t, contract.PersonSnapshot, v, data)
}

func TestApply(t *testing.T) {
	type want struct {
		live    bool
		name    string
		items   []string
		score   int64
		version int64
	}
	tests := []struct {
		name   string
		events func(t *testing.T) []eventbus.Event
		want   want
	}{
		{"README example", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{created(t, 1, "abc"), item(t, "income", 2, "i", 1000_00), item(t, "asset", 3, "a", 100000_00), item(t, "debt", 4, "d", 1000_00)}
		}, want{true, "abc", []string{"a", "d", "i"}, 4970, 4}},
		{"income before its person.created", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{item(t, "income", 2, "i", 1000_00), created(t, 1, "abc")}
		}, want{true, "abc", []string{"i"}, 20, 2}},
		{"duplicate counted once", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{created(t, 1, "abc"), item(t, "income", 2, "i", 1000_00), item(t, "income", 2, "i", 1000_00), created(t, 1, "abc")}
		}, want{true, "abc", []string{"i"}, 20, 2}},
		{"gap: version stays below the missing event", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{created(t, 1, "abc"), item(t, "asset", 3, "a", 100_00)}
		}, want{true, "abc", []string{"a"}, 5, 1}},
		{"item deleted before it was created", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{created(t, 1, "abc"), itemDeleted(t, "income", 3, "i"), item(t, "income", 2, "i", 1000_00)}
		}, want{true, "abc", nil, 0, 3}},
		{"person deleted before the create it deletes", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{deleted(t, 3), item(t, "income", 2, "i", 1000_00), created(t, 1, "abc")}
		}, want{false, "", nil, 0, 3}},
		{"delete and re-create, shuffled", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{item(t, "asset", 5, "a", 100_00), created(t, 4, "again"), item(t, "income", 2, "i", 1000_00), deleted(t, 3), created(t, 1, "abc")}
		}, want{true, "again", []string{"a"}, 5, 5}},
		{"later update wins whatever the order", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{updated(t, 3, "C"), updated(t, 2, "B"), created(t, 1, "A")}
		}, want{true, "C", nil, 0, 3}},
		{"snapshot covers the events below it", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{snapshot(t, 3, "abc", snapItem{"i", "income", 1000_00, 2}), item(t, "income", 2, "i", 1000_00), deleted(t, 3), created(t, 1, "x")}
		}, want{true, "abc", []string{"i"}, 20, 3}},
		{"snapshot keeps later items and drops items deleted later", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{created(t, 1, "abc"), item(t, "debt", 5, "d", 100_00), itemDeleted(t, "income", 4, "i"),
				snapshot(t, 3, "abc", snapItem{"i", "income", 1000_00, 2}, snapItem{"a", "asset", 200_00, 3})}
		}, want{true, "abc", []string{"a", "d"}, 10 - 5, 5}},
		// The bug fixed here: a snapshot older than an already applied
		// person.deleted brought the deleted person's items back, and a later
		// re-create counted them.
		{"snapshot older than an applied delete", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{deleted(t, 3), snapshot(t, 2, "abc", snapItem{"i", "income", 1000_00, 2}), created(t, 4, "again")}
		}, want{true, "again", nil, 0, 4}},
		{"snapshot of a deleted person", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{created(t, 1, "abc"), snapshot(t, 3, "")}
		}, want{false, "", nil, 0, 3}},
		{"snapshot already covered is skipped", func(t *testing.T) []eventbus.Event {
			return []eventbus.Event{created(t, 1, "abc"), item(t, "income", 2, "i", 1000_00), snapshot(t, 1, "old")}
		}, want{true, "abc", []string{"i"}, 20, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := score.NewDocument(cpf)
			for _, ev := range tt.events(t) {
				if _, err := score.Apply(&d, ev); err != nil {
					t.Fatalf("Apply(%s v%d): %v", ev.Type, ev.Version, err)
				}
			}
			got := want{live: d.Live(), score: d.Score, version: d.Version}
			if d.Person != nil {
				got.name = d.Person.Name
			}
			for id := range d.Items {
				got.items = append(got.items, id)
			}
			slices.Sort(got.items)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestApplyReportsChange(t *testing.T) {
	d := score.NewDocument(cpf)
	steps := []struct {
		ev      eventbus.Event
		changed bool
	}{
		{created(t, 1, "abc"), true},
		{created(t, 1, "abc"), false},
		{item(t, "income", 2, "i", 1000_00), true},
		{item(t, "income", 2, "i", 1000_00), false},
		{snapshot(t, 2, "abc"), false},
	}
	for i, s := range steps {
		changed, err := score.Apply(&d, s.ev)
		if err != nil || changed != s.changed {
			t.Fatalf("step %d (%s v%d): changed=%v err=%v, want changed=%v", i, s.ev.Type, s.ev.Version, changed, err, s.changed)
		}
	}
}

func TestApplyRejectsMalformed(t *testing.T) {
	bad := func(ev eventbus.Event, mutate func(*eventbus.Event)) eventbus.Event { mutate(&ev); return ev }
	tests := map[string]eventbus.Event{
		"version 0":          bad(created(t, 1, "abc"), func(e *eventbus.Event) { e.Version = 0 }),
		"unknown type":       bad(created(t, 1, "abc"), func(e *eventbus.Event) { e.Type = "person.renamed" }),
		"item without id":    item(t, "income", 2, "", 100),
		"non-positive value": item(t, "income", 2, "i", 0),
		"data not json":      bad(created(t, 1, "abc"), func(e *eventbus.Event) { e.Data = []byte("{") }),
		"bad snapshot data":  bad(snapshot(t, 2, "abc"), func(e *eventbus.Event) { e.Data = []byte(`{"items": 3}`) }),
	}
	for name, ev := range tests {
		t.Run(name, func(t *testing.T) {
			d := score.NewDocument(cpf)
			before := d
			changed, err := score.Apply(&d, ev)
			if !errors.Is(err, eventbus.ErrMalformed) || changed {
				t.Fatalf("Apply = %v, %v; want ErrMalformed and no change", changed, err)
			}
			if d.Version != before.Version || d.Applied.Max() != 0 {
				t.Fatalf("a malformed event was recorded as applied: %+v", d.Applied)
			}
		})
	}
}

// TestApplyConverges is the property test: for random histories of several
// cpfs, delivering every event in order, shuffled, with duplicates and with
// snapshots of random versions mixed in always yields the document the
// history's final state describes.
func TestApplyConverges(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for round := range 300 {
		h := historytest.Generate(rng, int64(10_000+round), 1+rng.IntN(40))
		want := h.Want(h.Final())
		variants := map[string][]eventbus.Event{
			"in order":                     h.Delivery(rng, false, 0, 0),
			"in order with duplicates":     h.Delivery(rng, false, 0.5, 0),
			"shuffled":                     h.Delivery(rng, true, 0, 0),
			"shuffled with duplicates":     h.Delivery(rng, true, 0.7, 0),
			"shuffled with snapshots":      h.Delivery(rng, true, 0.3, 1+rng.IntN(4)),
			"reversed":                     reversed(h.Events),
			"final snapshot, then history": append([]eventbus.Event{h.Snapshot(h.Final())}, h.Delivery(rng, true, 0.3, 0)...),
		}
		for name, events := range variants {
			d := score.NewDocument(h.CPF)
			for _, ev := range events {
				if _, err := score.Apply(&d, ev); err != nil {
					t.Fatalf("seed %d round %d %s: Apply(%s v%d): %v", seed, round, name, ev.Type, ev.Version, err)
				}
			}
			if got := historytest.Of(d); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d round %d %s:\n got %+v\nwant %+v\nhistory: %s", seed, round, name, got, want, describe(h))
			}
		}
	}
}

// TestApplyRebuildFromSnapshot: a fresh document built from the last
// snapshot alone equals the incrementally built one.
func TestApplyRebuildFromSnapshot(t *testing.T) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), 8))
	for round := range 200 {
		h := historytest.Generate(rng, int64(20_000+round), 1+rng.IntN(30))
		incremental := score.NewDocument(h.CPF)
		for _, ev := range h.Delivery(rng, true, 0.5, 0) {
			if _, err := score.Apply(&incremental, ev); err != nil {
				t.Fatal(err)
			}
		}
		rebuilt := score.NewDocument(h.CPF)
		if _, err := score.Apply(&rebuilt, h.Snapshot(h.Final())); err != nil {
			t.Fatal(err)
		}
		if a, b := historytest.Of(incremental), historytest.Of(rebuilt); !reflect.DeepEqual(a, b) {
			t.Fatalf("round %d: incremental %+v, rebuilt %+v", round, a, b)
		}
	}
}

func reversed(events []eventbus.Event) []eventbus.Event {
	out := make([]eventbus.Event, len(events))
	for i, ev := range events {
		out[len(events)-1-i] = ev
	}
	return out
}

func describe(h *historytest.History) string {
	s := ""
	for _, ev := range h.Events {
		s += fmt.Sprintf("\n  v%d %s %s", ev.Version, ev.Type, ev.Data)
	}
	return s
}
