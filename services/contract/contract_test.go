package contract

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// TestPayloadsOnTheWire pins each payload's JSON: what the writing side
// marshals is exactly the document below, and the reading side, unmarshalling
// that document, gets back every field the writer set.
func TestPayloadsOnTheWire(t *testing.T) {
	details := PersonDetails{Name: "Ana", Address: "Rua A, 1", DateOfBirth: "1990-01-02"}
	cases := []struct {
		name string
		data any
		wire string
	}{
		{PersonCreated, PersonData{CPF: 11111, PersonDetails: details},
			`{"cpf":11111,"name":"Ana","address":"Rua A, 1","date_of_birth":"1990-01-02"}`},
		{PersonDeleted, DeletedData{CPF: 11111}, `{"cpf":11111}`},
		{"income.created", ItemData{CPF: 11111, ID: "i1", Kind: Income, Type: "salary", Value: "1000.5", ValueCents: 100050},
			`{"cpf":11111,"id":"i1","kind":"income","type":"salary","value":1000.5,"value_cents":100050}`},
		{"debt.deleted", ItemData{CPF: 11111, ID: "d1", Kind: Debt}, `{"cpf":11111,"id":"d1","kind":"debt"}`},
		{PersonSnapshot, SnapshotData{CPF: 11111, Person: &details, Items: []ItemData{
			{CPF: 11111, ID: "a1", Kind: Asset, Value: "20", ValueCents: 2000, Version: 3}}},
			`{"cpf":11111,"deleted":false,"person":{"name":"Ana","address":"Rua A, 1","date_of_birth":"1990-01-02"},` +
				`"items":[{"cpf":11111,"id":"a1","kind":"asset","value":20,"value_cents":2000,"version":3}]}`},
		{PersonSnapshot + " of a deleted person", SnapshotData{CPF: 11111, Deleted: true, Items: []ItemData{}},
			`{"cpf":11111,"deleted":true,"items":[]}`},
		{ScoreChanged, ScoreChangedData{CPF: 11111, Score: 40, Live: true, Version: 7},
			`{"cpf":11111,"score":40,"live":true,"version":7}`},
		{SnapshotRequested, SnapshotRequest{RebuildID: "r1"}, `{"rebuild_id":"r1"}`},
		{SnapshotCompleted, SnapshotCompletion{RebuildID: "r1", Count: 12}, `{"rebuild_id":"r1","count":12}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := json.Marshal(c.data)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != c.wire {
				t.Errorf("written as\n%s\nwant\n%s", raw, c.wire)
			}
			read := reflect.New(reflect.TypeOf(c.data))
			if err := json.Unmarshal([]byte(c.wire), read.Interface()); err != nil {
				t.Fatal(err)
			}
			if got := read.Elem().Interface(); !reflect.DeepEqual(got, c.data) {
				t.Errorf("read as %+v, want %+v", got, c.data)
			}
		})
	}
}

func TestItemEventTypes(t *testing.T) {
	types := PersonEventTypes()
	for _, k := range ItemKinds {
		for _, created := range []bool{true, false} {
			typ := ItemEventType(k, created)
			if !slices.Contains(types, typ) {
				t.Errorf("PersonEventTypes lacks %s", typ)
			}
			kind, c, ok := ParseItemEventType(typ)
			if !ok || kind != k || c != created {
				t.Errorf("ParseItemEventType(%q) = %q, %v, %v", typ, kind, c, ok)
			}
		}
	}
	for _, typ := range []string{PersonCreated, PersonSnapshot, ScoreChanged, "income.exploded", "salary.created", ""} {
		if _, _, ok := ParseItemEventType(typ); ok {
			t.Errorf("ParseItemEventType(%q) is an item event", typ)
		}
	}
	if len(types) != 4+2*len(ItemKinds) {
		t.Errorf("PersonEventTypes = %v", types)
	}
}

// A cpf is digits only, 1 to 18 of them, not all zero: Subject's output and
// nothing else that strconv would take.
func TestParseCPF(t *testing.T) {
	for s, want := range map[string]int64{"11111": 11111, "00011111": 11111, "999999999999999999": 999999999999999999} {
		if got, err := ParseCPF(s); err != nil || got != want {
			t.Errorf("ParseCPF(%q) = %d, %v; want %d", s, got, err, want)
		}
		if got, _ := ParseCPF(Subject(want)); got != want {
			t.Errorf("ParseCPF(Subject(%d)) = %d", want, got)
		}
	}
	for _, s := range []string{"", "0", "000", "-1", "+11111", " 1", "1 ", "1e3", "0x2B67", "11111.0", "١٢٣", "9223372036854775807"} {
		if got, err := ParseCPF(s); err == nil {
			t.Errorf("ParseCPF(%q) = %d, want an error", s, got)
		}
	}
}
