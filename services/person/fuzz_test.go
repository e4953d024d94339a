package person

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/. Run one target at a time:
//
//	go test -run '^$' -fuzz '^FuzzParseNewPerson$' -fuzztime 10s .

// isObject reports whether body is exactly one JSON object: the bodies every
// parser must accept as JSON (and judge field by field) rather than reject
// as malformed.
func isObject(body []byte) bool {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	return json.Valid(body) && len(trimmed) > 0 && trimmed[0] == '{'
}

// checkErr fails unless err is nil, a MalformedError exactly when body is not
// one JSON object, or a ValidationError naming distinct fields among allowed.
func checkErr(t *testing.T, body []byte, err error, allowed ...string) {
	t.Helper()
	var malformed *MalformedError
	var invalid *ValidationError
	switch {
	case err == nil:
		if !isObject(body) {
			t.Fatalf("accepted a body that is not one JSON object: %q", body)
		}
	case errors.As(err, &malformed):
		if isObject(body) {
			t.Fatalf("rejected a JSON object as malformed (%v): %q", err, body)
		}
	case errors.As(err, &invalid):
		if !isObject(body) {
			t.Fatalf("validated fields of a body that is not one JSON object: %q", body)
		}
		if len(invalid.Fields) == 0 {
			t.Fatalf("ValidationError without fields")
		}
		seen := map[string]bool{}
		for _, f := range invalid.Fields {
			if seen[f.Field] || !strings.Contains(" "+strings.Join(allowed, " ")+" ", " "+f.Field+" ") || f.Reason == "" {
				t.Fatalf("unexpected field error %+v in %v", f, invalid.Fields)
			}
			seen[f.Field] = true
		}
	default:
		t.Fatalf("error of an unexpected kind %T: %v", err, err)
	}
}

func checkDetails(t *testing.T, d Details) {
	t.Helper()
	if d.Name == "" || d.Name != strings.TrimSpace(d.Name) || utf8.RuneCountInString(d.Name) > 200 {
		t.Fatalf("accepted name %q", d.Name)
	}
	if d.Address != strings.TrimSpace(d.Address) || utf8.RuneCountInString(d.Address) > 500 {
		t.Fatalf("accepted address %q", d.Address)
	}
	var when time.Time
	var err error
	if when, err = time.Parse(time.RFC3339Nano, d.DateOfBirth); err != nil {
		if when, err = time.Parse(time.DateOnly, d.DateOfBirth); err != nil {
			t.Fatalf("accepted date_of_birth %q", d.DateOfBirth)
		}
	}
	if when.After(time.Now()) {
		t.Fatalf("accepted a future date_of_birth %q", d.DateOfBirth)
	}
}

func FuzzParseNewPerson(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseNewPerson(body)
		checkErr(t, body, err, "cpf", "name", "address", "date_of_birth")
		if err != nil {
			return
		}
		if p.CPF <= 0 {
			t.Fatalf("accepted cpf %d", p.CPF)
		}
		if back, err := ParseCPF(p.CPF.String()); err != nil || back != p.CPF {
			t.Fatalf("cpf %d does not round-trip: %d, %v", p.CPF, back, err)
		}
		checkDetails(t, p.Details)
		// What was accepted, sent again, is accepted as the same person.
		again, _ := json.Marshal(map[string]any{"cpf": p.CPF, "name": p.Name, "address": p.Address, "date_of_birth": p.DateOfBirth})
		if q, err := ParseNewPerson(again); err != nil || q != p {
			t.Fatalf("re-encoded %s parses to %+v, %v; want %+v", again, q, err, p)
		}
	})
}

func FuzzParseDetails(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseDetails(body)
		checkErr(t, body, err, "name", "address", "date_of_birth")
		if err != nil {
			return
		}
		checkDetails(t, d)
		again, _ := json.Marshal(d)
		if e, err := ParseDetails(again); err != nil || e != d {
			t.Fatalf("re-encoded %s parses to %+v, %v; want %+v", again, e, err, d)
		}
	})
}

var (
	hundred = big.NewRat(100, 1)
	maxRat  = big.NewRat(1_000_000_000_000, 1)
)

// exactCents is the oracle for money: the exact value of a JSON number's text
// in cents, and whether it is acceptable (0 < v <= 1e12, whole cents).
// known is false when math/big refuses the text (exponents past a million).
func exactCents(text string) (cents *big.Rat, acceptable, known bool) {
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		return nil, false, false
	}
	c := new(big.Rat).Mul(r, hundred)
	return c, r.Sign() > 0 && r.Cmp(maxRat) <= 0 && c.IsInt(), true
}

func FuzzParseNewItem(f *testing.F) {
	kinds := []Kind{Income, Asset, Debt}
	f.Fuzz(func(t *testing.T, kindSel uint8, body []byte) {
		kind := kinds[int(kindSel)%len(kinds)]
		it, err := ParseNewItem(kind, body)
		checkErr(t, body, err, "type", "value")

		// The value is judged exactly: compare with arbitrary-precision arithmetic.
		var m map[string]json.RawMessage
		if isObject(body) && json.Unmarshal(body, &m) == nil {
			raw := string(m["value"])
			if raw != "" && raw[0] != '"' && raw[0] != '{' && raw[0] != '[' && raw != "true" && raw != "false" && raw != "null" {
				cents, acceptable, known := exactCents(raw)
				var invalid *ValidationError
				valueRejected := errors.As(err, &invalid) && strings.Contains(invalid.Error(), "value:")
				if known && acceptable == valueRejected {
					t.Fatalf("value %s: rejected=%v, but its exact value is acceptable=%v", raw, valueRejected, acceptable)
				}
				if err == nil && known && cents.Num().Int64() != int64(it.Value) {
					t.Fatalf("value %s parsed to %d cents, exactly it is %s", raw, it.Value, cents.RatString())
				}
			}
		}
		if err != nil {
			return
		}
		if it.Value <= 0 || it.Value > MaxMoney {
			t.Fatalf("accepted value %d cents", it.Value)
		}
		if back, err := ParseMoney(it.Value.String()); err != nil || back != it.Value {
			t.Fatalf("%d cents does not round-trip through %q: %d, %v", it.Value, it.Value.String(), back, err)
		}
		if it.Type != strings.TrimSpace(it.Type) || utf8.RuneCountInString(it.Type) > 100 || (kind != Debt && it.Type == "") {
			t.Fatalf("accepted type %q for %s", it.Type, kind)
		}
		if !utf8.ValidString(it.Type) {
			t.Fatalf("type %q is not valid UTF-8", it.Type)
		}
	})
}
