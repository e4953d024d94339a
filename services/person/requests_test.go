package person

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// fieldsOf returns the invalid field names of err, or nil.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var v *ValidationError
	if !errors.As(err, &v) {
		return nil
	}
	var names []string
	for _, f := range v.Fields {
		names = append(names, f.Field)
	}
	return names
}

func isMalformed(err error) bool {
	var m *MalformedError
	return errors.As(err, &m)
}

func TestParseNewPerson(t *testing.T) {
	p, err := ParseNewPerson([]byte(`{"cpf": 11111, "name": "abc", "address": "abc", "date_of_birth": "2019-06-15T19:23:55-03:00"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := NewPerson{CPF: 11111, Details: Details{Name: "abc", Address: "abc", DateOfBirth: "2019-06-15T19:23:55-03:00"}}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}

	ok := []struct {
		body string
		cpf  CPF
	}{
		{`{"cpf": "11111", "name": "abc", "date_of_birth": "2019-06-15"}`, 11111},               // cpf as digits, no address
		{`{"cpf": 1, "name": " x ", "date_of_birth": "1990-01-01T00:00:00Z", "extra": [1]}`, 1}, // unknown fields ignored
		{`{"cpf": "000123", "name": "x", "date_of_birth": "1990-01-01", "address": null}`, 123},
		{`{"cpf": 999999999999999999, "name": "x", "date_of_birth": "1990-01-01"}`, 999999999999999999},
		{" \n{\"cpf\": 7, \"name\": \"x\", \"date_of_birth\": \"1990-01-01\"}\n ", 7},
		{`{"cpf": 7, "cpf": 8, "name": "x", "date_of_birth": "1990-01-01"}`, 8}, // the last duplicate wins
	}
	for _, c := range ok {
		p, err := ParseNewPerson([]byte(c.body))
		if err != nil || p.CPF != c.cpf {
			t.Errorf("ParseNewPerson(%s) = %+v, %v; want cpf %d", c.body, p, err, c.cpf)
		}
	}
	if p, _ := ParseNewPerson([]byte(`{"cpf": 1, "name": " x ", "date_of_birth": "1990-01-01"}`)); p.Name != "x" {
		t.Errorf("name not trimmed: %q", p.Name)
	}

	future := time.Now().AddDate(1, 0, 0).Format(time.DateOnly)
	invalid := []struct {
		body   string
		fields []string
	}{
		{`{}`, []string{"cpf", "name", "date_of_birth"}},
		{`{"cpf": null, "name": null, "date_of_birth": null}`, []string{"cpf", "name", "date_of_birth"}},
		{`{"cpf": 0, "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": -5, "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": 1.5, "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": 1e3, "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": 1234567890123456789, "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": "12a", "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": "", "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": true, "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": [1], "name": "x", "date_of_birth": "1990-01-01"}`, []string{"cpf"}},
		{`{"cpf": 1, "name": "", "date_of_birth": "1990-01-01"}`, []string{"name"}},
		{`{"cpf": 1, "name": "   ", "date_of_birth": "1990-01-01"}`, []string{"name"}},
		{`{"cpf": 1, "name": 5, "date_of_birth": "1990-01-01"}`, []string{"name"}},
		{`{"cpf": 1, "name": "` + strings.Repeat("n", 201) + `", "date_of_birth": "1990-01-01"}`, []string{"name"}},
		{`{"cpf": 1, "name": "x", "address": 5, "date_of_birth": "1990-01-01"}`, []string{"address"}},
		{`{"cpf": 1, "name": "x", "address": "` + strings.Repeat("a", 501) + `", "date_of_birth": "1990-01-01"}`, []string{"address"}},
		{`{"cpf": 1, "name": "x", "date_of_birth": "15/06/2019"}`, []string{"date_of_birth"}},
		{`{"cpf": 1, "name": "x", "date_of_birth": "2019-02-30"}`, []string{"date_of_birth"}},
		{`{"cpf": 1, "name": "x", "date_of_birth": "` + future + `"}`, []string{"date_of_birth"}},
		{`{"cpf": 1, "name": "x", "date_of_birth": "1200-01-01"}`, []string{"date_of_birth"}},
		{`{"cpf": 1, "name": "x", "date_of_birth": 20190615}`, []string{"date_of_birth"}},
		{`{"cpf": 1, "name": "x", "date_of_birth": ""}`, []string{"date_of_birth"}},
	}
	for _, c := range invalid {
		_, err := ParseNewPerson([]byte(c.body))
		if got := fieldsOf(t, err); !slices.Equal(got, c.fields) {
			t.Errorf("ParseNewPerson(%.80s): invalid fields %v (%v), want %v", c.body, got, err, c.fields)
		}
	}

	malformed := []string{"", "   ", "\n", "null", "[]", `[{"cpf": 1}]`, `"x"`, "1", "true", "{", `{"cpf": 1,}`, `{"cpf": 1}}`,
		`{"cpf": 1} {"cpf": 2}`, `{"cpf": 1} x`, `{'cpf': 1}`, `{cpf: 1}`, "\x00", `{"cpf": 01}`, `{"cpf": NaN}`}
	for _, body := range malformed {
		if _, err := ParseNewPerson([]byte(body)); !isMalformed(err) {
			t.Errorf("ParseNewPerson(%q) = %v, want a MalformedError", body, err)
		}
	}
}

func TestParseDetails(t *testing.T) {
	d, err := ParseDetails([]byte(`{"name": "abc", "address": "abc", "date_of_birth": "2019-06-15", "cpf": "ignored"}`))
	if err != nil || d != (Details{Name: "abc", Address: "abc", DateOfBirth: "2019-06-15"}) {
		t.Errorf("ParseDetails = %+v, %v", d, err)
	}
	_, err = ParseDetails([]byte(`{"address": 1}`))
	if got := fieldsOf(t, err); !slices.Equal(got, []string{"name", "address", "date_of_birth"}) {
		t.Errorf("invalid fields %v", got)
	}
	if _, err := ParseDetails([]byte(`[]`)); !isMalformed(err) {
		t.Errorf("ParseDetails([]) = %v", err)
	}
}

func TestParseNewItem(t *testing.T) {
	cases := []struct {
		kind   Kind
		body   string
		want   NewItem
		fields []string // nil: valid
	}{
		{Income, `{"type": "renting", "value": 1000}`, NewItem{"renting", 100000}, nil},
		{Asset, `{"type": "apartment", "value": 100000}`, NewItem{"apartment", 10000000}, nil},
		{Debt, `{"value": 1000}`, NewItem{"", 100000}, nil},
		{Debt, `{"value": 0.01, "type": "loan"}`, NewItem{"loan", 1}, nil},
		{Income, `{"type": "x", "value": 1e12, "unknown": {"a": 1}}`, NewItem{"x", MaxMoney}, nil},
		{Income, `{"type": "x", "value": 1.10}`, NewItem{"x", 110}, nil},
		{Income, `{"value": 1000}`, NewItem{}, []string{"type"}},
		{Asset, `{"type": "", "value": 1000}`, NewItem{}, []string{"type"}},
		{Income, `{"type": 3, "value": 1000}`, NewItem{}, []string{"type"}},
		{Debt, `{"type": 3, "value": 1000}`, NewItem{}, []string{"type"}},
		{Debt, `{}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": null}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": 0}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": -1000}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": 0.001}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": 1.005}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": 1000000000000.01}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": 1e13}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": 1e400}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": "1000"}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": true}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": [1]}`, NewItem{}, []string{"value"}},
		{Debt, `{"value": {"amount": 1}}`, NewItem{}, []string{"value"}},
		{Income, `{"type": "", "value": -1}`, NewItem{}, []string{"type", "value"}},
	}
	for _, c := range cases {
		got, err := ParseNewItem(c.kind, []byte(c.body))
		if c.fields == nil {
			if err != nil || got != c.want {
				t.Errorf("ParseNewItem(%s, %s) = %+v, %v; want %+v", c.kind, c.body, got, err, c.want)
			}
			continue
		}
		if f := fieldsOf(t, err); !slices.Equal(f, c.fields) {
			t.Errorf("ParseNewItem(%s, %s): invalid fields %v (%v), want %v", c.kind, c.body, f, err, c.fields)
		}
	}
	for _, body := range []string{"", "{", "[]", "null", `{"value": 1}x`} {
		if _, err := ParseNewItem(Debt, []byte(body)); !isMalformed(err) {
			t.Errorf("ParseNewItem(%q) = %v, want a MalformedError", body, err)
		}
	}
}

func TestParseCPFAndKind(t *testing.T) {
	for s, want := range map[string]CPF{"1": 1, "11111": 11111, "007": 7, "999999999999999999": 999999999999999999} {
		if got, err := ParseCPF(s); err != nil || got != want {
			t.Errorf("ParseCPF(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "0", "000", "-1", "+1", "1.0", "1e3", "abc", " 1", "1234567890123456789", "١"} {
		if got, err := ParseCPF(s); err == nil {
			t.Errorf("ParseCPF(%q) = %d, want an error", s, got)
		}
	}
	for _, s := range []string{"income", "asset", "debt"} {
		if k, ok := ParseKind(s); !ok || string(k) != s {
			t.Errorf("ParseKind(%q) = %q, %v", s, k, ok)
		}
	}
	for _, s := range []string{"", "Income", "incomes", "person", "score"} {
		if _, ok := ParseKind(s); ok {
			t.Errorf("ParseKind(%q) accepted", s)
		}
	}
}

// Lengths are counted in characters, as the OpenAPI document's maxLength.
func TestLengthsCountCharacters(t *testing.T) {
	name := strings.Repeat("é", 200) // 400 bytes
	if _, err := ParseDetails([]byte(`{"name": "` + name + `", "date_of_birth": "2000-01-01"}`)); err != nil {
		t.Errorf("200 characters: %v", err)
	}
	if _, err := ParseDetails([]byte(`{"name": "` + name + `é", "date_of_birth": "2000-01-01"}`)); err == nil {
		t.Error("201 characters accepted")
	}
}
