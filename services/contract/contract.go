// Package contract is the wire contract between person and score: the types
// of the events they exchange, their subjects and their payloads.
//
//   - person publishes person.created, person.updated, person.deleted and
//     <kind>.created / <kind>.deleted for every change; score applies them.
//   - score publishes score.changed whenever a person's score changes; person
//     keeps the latest one.
//   - the rebuild: score publishes snapshot.requested; person answers with one
//     person.snapshot per person (deleted ones included) and then
//     snapshot.completed with how many snapshots it published.
//
// The routing key of an event is its type. The subject of every event about a
// person is the person's cpf in decimal (Subject); the subject of the
// snapshot conversation is the rebuild id. Both services build and read the
// payloads with the types below, so what one writes is what the other reads.
// The event library (eventbus) carries these payloads as the data of its
// events and knows nothing of them.
package contract

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// Event types.
const (
	PersonCreated  = "person.created"
	PersonUpdated  = "person.updated"
	PersonDeleted  = "person.deleted"
	PersonSnapshot = "person.snapshot"

	ScoreChanged = "score.changed"

	SnapshotRequested = "snapshot.requested"
	SnapshotCompleted = "snapshot.completed"
)

// Kinds of the financial items of a person.
const (
	Income = "income"
	Asset  = "asset"
	Debt   = "debt"
)

// ItemKinds are the kinds of items person publishes as <kind>.created/deleted.
var ItemKinds = []string{Income, Asset, Debt}

// ItemEventType is "<kind>.created" or "<kind>.deleted".
func ItemEventType(kind string, created bool) string {
	if created {
		return kind + ".created"
	}
	return kind + ".deleted"
}

// ParseItemEventType is the inverse of ItemEventType for the known kinds.
func ParseItemEventType(typ string) (kind string, created, ok bool) {
	for _, k := range ItemKinds {
		switch typ {
		case ItemEventType(k, true):
			return k, true, true
		case ItemEventType(k, false):
			return k, false, true
		}
	}
	return "", false, false
}

// PersonEventTypes lists every type person publishes about a person (what
// score applies).
func PersonEventTypes() []string {
	types := []string{PersonCreated, PersonUpdated, PersonDeleted, PersonSnapshot}
	for _, k := range ItemKinds {
		types = append(types, ItemEventType(k, true), ItemEventType(k, false))
	}
	return types
}

// Subject is the subject of an event about the person with this cpf.
func Subject(cpf int64) string { return strconv.FormatInt(cpf, 10) }

// errCPF: the text is not a cpf.
var errCPF = errors.New("must be a positive integer of at most 18 digits")

// ParseCPF reads a cpf as both services write it in their paths and subjects:
// 1 to 18 decimal digits, not all zero, and nothing else.
func ParseCPF(s string) (int64, error) {
	if s == "" || len(s) > 18 || strings.Trim(s, "0123456789") != "" {
		return 0, errCPF
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errCPF
	}
	return n, nil
}

// PersonDetails are the fields of a person. Both services also store them
// under the same names (person.Details and score.Person are this type).
type PersonDetails struct {
	Name        string `json:"name" bson:"name"`
	Address     string `json:"address" bson:"address"`
	DateOfBirth string `json:"date_of_birth" bson:"date_of_birth"`
}

// PersonData is the data of person.created and person.updated.
type PersonData struct {
	CPF int64 `json:"cpf"`
	PersonDetails
}

// DeletedData is the data of person.deleted.
type DeletedData struct {
	CPF int64 `json:"cpf"`
}

// ItemData is the data of <kind>.created and <kind>.deleted, and an item of a
// snapshot. A delete carries only CPF, ID and Kind. Value is the exact amount
// as a decimal number with at most two decimals; ValueCents is the same amount
// in cents, which is what score reads.
type ItemData struct {
	CPF        int64       `json:"cpf"`
	ID         string      `json:"id"`
	Kind       string      `json:"kind"`
	Type       string      `json:"type,omitempty"`
	Value      json.Number `json:"value,omitempty"`
	ValueCents int64       `json:"value_cents,omitempty"`
	// Version is the person version that created the item (snapshots only).
	Version int64 `json:"version,omitempty"`
}

// SnapshotData is the data of person.snapshot: the whole state of a person at
// the event's version. A deleted person has Deleted set and no items.
type SnapshotData struct {
	CPF     int64          `json:"cpf"`
	Deleted bool           `json:"deleted"`
	Person  *PersonDetails `json:"person,omitempty"`
	Items   []ItemData     `json:"items"`
}

// ScoreChangedData is the data of score.changed; the event's version is the
// score document's revision, which grows with every change of it.
type ScoreChangedData struct {
	CPF   int64 `json:"cpf"`
	Score int64 `json:"score"`
	// Live: the person exists (created and not deleted since).
	Live bool `json:"live"`
	// Version is the person version up to which every event is applied.
	Version int64 `json:"version"`
}

// SnapshotRequest is the data of snapshot.requested.
type SnapshotRequest struct {
	RebuildID string `json:"rebuild_id"`
}

// SnapshotCompletion is the data of snapshot.completed.
type SnapshotCompletion struct {
	RebuildID string `json:"rebuild_id"`
	Count     int64  `json:"count"`
}
