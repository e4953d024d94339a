package person

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// NewPerson is a validated POST /person body.
type NewPerson struct {
	CPF CPF
	Details
}

// NewItem is a validated income, asset or debt body.
type NewItem struct {
	Type  string
	Value Money
}

// fields decodes a body that must be exactly one JSON object (surrounding
// white space aside). Unknown fields are kept out of the way by the callers,
// which look only at the fields they know.
func fields(body []byte) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &MalformedError{Reason: "empty body"}
	}
	if !json.Valid(body) {
		return nil, &MalformedError{Reason: "not valid JSON"}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, &MalformedError{Reason: "want a JSON object"}
	}
	return m, nil
}

type checker struct {
	m    map[string]json.RawMessage
	errs []FieldError
}

func (c *checker) fail(field, reason string) { c.errs = append(c.errs, FieldError{field, reason}) }

func (c *checker) present(field string, required bool) (json.RawMessage, bool) {
	raw, ok := c.m[field]
	if !ok || string(raw) == "null" {
		if required {
			c.fail(field, "is required")
		}
		return nil, false
	}
	return raw, true
}

func (c *checker) str(field string, required bool, maxLen int) string {
	raw, ok := c.present(field, required)
	if !ok {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		c.fail(field, "must be a string")
		return ""
	}
	s = strings.TrimSpace(s)
	switch {
	case required && s == "":
		c.fail(field, "must not be empty")
	case utf8.RuneCountInString(s) > maxLen: // characters, as the OpenAPI maxLength counts
		c.fail(field, "is too long")
		return "" // one error per field: later checks of this field do not run
	}
	return s
}

func (c *checker) cpf(field string) CPF {
	raw, ok := c.present(field, true)
	if !ok {
		return 0
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			c.fail(field, "must be an integer or a string of digits")
			return 0
		}
	}
	v, err := ParseCPF(text)
	if err != nil {
		c.fail(field, err.Error())
	}
	return v
}

func (c *checker) date(field string) string {
	s := c.str(field, true, 64)
	if s == "" {
		return ""
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.After(time.Now()) || t.Year() < 1850 {
				c.fail(field, "must be a past date")
				return ""
			}
			return s
		}
	}
	c.fail(field, "must be an RFC 3339 date-time or a YYYY-MM-DD date")
	return ""
}

func (c *checker) money(field string) Money {
	raw, ok := c.present(field, true)
	if !ok {
		return 0
	}
	if raw[0] == '"' || raw[0] == '{' || raw[0] == '[' || raw[0] == 't' || raw[0] == 'f' {
		c.fail(field, "must be a number")
		return 0
	}
	v, err := ParseMoney(string(raw))
	if err != nil {
		c.fail(field, err.Error())
	}
	return v
}

func (c *checker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return &ValidationError{Fields: c.errs}
}

// ParseNewPerson validates a POST /person body.
func ParseNewPerson(body []byte) (NewPerson, error) {
	m, err := fields(body)
	if err != nil {
		return NewPerson{}, err
	}
	c := &checker{m: m}
	p := NewPerson{CPF: c.cpf("cpf"), Details: parseDetails(c)}
	return p, c.err()
}

// ParseDetails validates a PUT /person/{cpf} body.
func ParseDetails(body []byte) (Details, error) {
	m, err := fields(body)
	if err != nil {
		return Details{}, err
	}
	c := &checker{m: m}
	d := parseDetails(c)
	return d, c.err()
}

func parseDetails(c *checker) Details {
	return Details{Name: c.str("name", true, 200), Address: c.str("address", false, 500), DateOfBirth: c.date("date_of_birth")}
}

// ParseNewItem validates an income, asset or debt body; debts have no type.
func ParseNewItem(kind Kind, body []byte) (NewItem, error) {
	m, err := fields(body)
	if err != nil {
		return NewItem{}, err
	}
	c := &checker{m: m}
	var it NewItem
	if kind != Debt {
		it.Type = c.str("type", true, 100)
	} else {
		it.Type = c.str("type", false, 100)
	}
	it.Value = c.money("value")
	return it, c.err()
}
