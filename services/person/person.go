// Package person holds the person service's domain: people, their incomes,
// assets and debts, the validation of what clients send, and the events that
// describe every change. It knows nothing of HTTP, MongoDB or RabbitMQ.
package person

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/personscore/contract"
)

// CPF identifies a person (the aggregate key). Clients send it as a JSON
// integer, as the original system did, or as a string of digits.
type CPF int64

func (c CPF) String() string { return strconv.FormatInt(int64(c), 10) }

// ParseCPF accepts 1 to 18 decimal digits, not all zero.
func ParseCPF(s string) (CPF, error) {
	n, err := contract.ParseCPF(s)
	return CPF(n), err
}

// Kind is the kind of a financial item of a person.
type Kind string

const (
	Income Kind = contract.Income
	Asset  Kind = contract.Asset
	Debt   Kind = contract.Debt
)

// ParseKind accepts income, asset or debt.
func ParseKind(s string) (Kind, bool) {
	switch k := Kind(s); k {
	case Income, Asset, Debt:
		return k, true
	}
	return "", false
}

// Details are the fields of a person a client may set.
type Details = contract.PersonDetails

// Item is an income, asset or debt of a person.
type Item struct {
	ID        string    `json:"id" bson:"id"`
	Kind      Kind      `json:"kind" bson:"kind"`
	Type      string    `json:"type,omitempty" bson:"type,omitempty"`
	Value     Money     `json:"value" bson:"value"`
	Version   int64     `json:"version" bson:"version"`
	CreatedAt time.Time `json:"created_at" bson:"created_at"`
}

// Score is the latest credit score the score service replicated back.
type Score struct {
	Value     int64     `json:"value" bson:"value"`
	Version   int64     `json:"version" bson:"version"`
	UpdatedAt time.Time `json:"updated_at" bson:"updated_at"`
}

// Person is the aggregate: its details, its items and its version, which grows
// by one with every change.
type Person struct {
	CPF     CPF `json:"cpf"`
	Details `json:",inline"`
	Items   map[string]Item `json:"-"`
	Version int64           `json:"version"`
	Score   *Score          `json:"score,omitempty"`
}

// Errors of the domain; the HTTP edge maps them to status codes.
var (
	ErrNotFound    = errors.New("person not found")
	ErrExists      = errors.New("a person with this cpf already exists")
	ErrItemMissing = errors.New("item not found")
	// ErrUnavailable: the store or broker cannot be used now; nothing was written.
	ErrUnavailable = errors.New("service temporarily unavailable")
	// ErrOutcomeUnknown: a write was sent to the store but neither its
	// success nor its failure could be confirmed; it may have been applied.
	ErrOutcomeUnknown = errors.New("the store did not confirm the write; it may have been applied")
)

// ValidationError lists the invalid fields of a request.
type ValidationError struct{ Fields []FieldError }

// FieldError is one invalid field and why.
type FieldError struct{ Field, Reason string }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = fmt.Sprintf("%s: %s", f.Field, f.Reason)
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// MalformedError is a body that is not a JSON object at all.
type MalformedError struct{ Reason string }

func (e *MalformedError) Error() string { return "malformed request body: " + e.Reason }
