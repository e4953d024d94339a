// Package score holds the score service's domain: the credit-score rule and the
// denormalized read model of one person, built from person's events (their
// types and payloads are in the contract package). Apply is a
// pure function that converges to the same document whatever the order of the
// events and however often each is delivered.
package score

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
)

// Points is the original system's rule for one item, on exact cents:
// income floor(value/50), asset floor(value/20), debt -floor(value/20), else 0.
func Points(kind string, cents int64) int64 {
	switch kind {
	case contract.Income:
		return cents / (50 * 100)
	case contract.Asset:
		return cents / (20 * 100)
	case contract.Debt:
		return -(cents / (20 * 100))
	}
	return 0
}

// Person holds the person fields the read model keeps.
type Person = contract.PersonDetails

// Item is an income, asset or debt with its points.
type Item struct {
	Kind       string `json:"kind" bson:"kind"`
	Type       string `json:"type,omitempty" bson:"type,omitempty"`
	ValueCents int64  `json:"value_cents" bson:"value_cents"`
	Points     int64  `json:"points" bson:"points"`
	Version    int64  `json:"version" bson:"version"`
}

// Document is the read model of one cpf. Every part carries the person version
// that produced it, which is what makes Apply order-independent.
type Document struct {
	CPF           int64           `json:"cpf" bson:"_id"`
	Person        *Person         `json:"person" bson:"person"`
	PersonVersion int64           `json:"-" bson:"person_version"`
	Items         map[string]Item `json:"items" bson:"items"`
	// Removed remembers deleted items (id -> version of the delete) until every
	// earlier version is applied, so a create arriving after its delete is ignored.
	Removed        map[string]int64    `json:"-" bson:"removed"`
	DeletedVersion int64               `json:"-" bson:"deleted_version"`
	Applied        eventbus.VersionLog `json:"-" bson:"applied"`
	Score          int64               `json:"score" bson:"score"`
	// Version is the highest person version up to which every event is applied.
	Version int64 `json:"version" bson:"version"`
	// Rev counts this document's changes; it versions score.changed.
	Rev       int64     `json:"-" bson:"rev"`
	UpdatedAt time.Time `json:"updated_at" bson:"updated_at"`
}

// Live reports whether the person exists now (created and not deleted since).
func (d *Document) Live() bool {
	return d.Person != nil && d.PersonVersion > d.DeletedVersion
}

// NewDocument is the empty read model of a cpf.
func NewDocument(cpf int64) Document {
	return Document{CPF: cpf, Items: map[string]Item{}, Removed: map[string]int64{}}
}

// Apply applies ev to d and reports whether d changed. A duplicate (a version
// already applied) changes nothing. An event that cannot be understood is
// ErrMalformed.
func Apply(d *Document, ev eventbus.Event) (bool, error) {
	v := ev.Version
	if v <= 0 {
		return false, fmt.Errorf("%w: version must be positive", eventbus.ErrMalformed)
	}
	if d.Items == nil {
		d.Items = map[string]Item{}
	}
	if d.Removed == nil {
		d.Removed = map[string]int64{}
	}
	if ev.Type == contract.PersonSnapshot {
		if v <= d.Applied.Applied {
			return false, nil
		}
		var s contract.SnapshotData
		if err := ev.DecodeData(&s); err != nil {
			return false, err
		}
		applySnapshot(d, v, s)
		d.Applied.AdvanceTo(v)
		finish(d)
		return true, nil
	}
	if d.Applied.Has(v) {
		return false, nil
	}
	switch ev.Type {
	case contract.PersonCreated, contract.PersonUpdated:
		var p contract.PersonData
		if err := ev.DecodeData(&p); err != nil {
			return false, err
		}
		if v > d.PersonVersion && v > d.DeletedVersion {
			person := p.PersonDetails
			d.Person, d.PersonVersion = &person, v
		}
	case contract.PersonDeleted:
		if v > d.DeletedVersion {
			d.DeletedVersion = v
			if d.PersonVersion < v {
				d.Person = nil
			}
			maps.DeleteFunc(d.Items, func(_ string, it Item) bool { return it.Version < v })
		}
	default:
		kind, created, ok := contract.ParseItemEventType(ev.Type)
		if !ok {
			return false, fmt.Errorf("%w: unknown event type %q", eventbus.ErrMalformed, ev.Type)
		}
		var it contract.ItemData
		if err := ev.DecodeData(&it); err != nil {
			return false, err
		}
		if it.ID == "" {
			return false, fmt.Errorf("%w: %s without item id", eventbus.ErrMalformed, ev.Type)
		}
		switch {
		case v < d.DeletedVersion:
			// The person was deleted after this change: nothing of it remains.
		case created:
			if _, gone := d.Removed[it.ID]; !gone {
				if it.ValueCents <= 0 {
					return false, fmt.Errorf("%w: %s value_cents must be positive", eventbus.ErrMalformed, ev.Type)
				}
				d.Items[it.ID] = Item{Kind: kind, Type: it.Type, ValueCents: it.ValueCents, Points: Points(kind, it.ValueCents), Version: v}
			}
		default:
			delete(d.Items, it.ID)
			d.Removed[it.ID] = v
		}
	}
	d.Applied.Add(v)
	finish(d)
	return true, nil
}

// applySnapshot makes d the state at version v while keeping every part that
// came from a version above v. A snapshot behaves like a write of the whole
// person at version v: it loses against a later create, update or delete that
// is already applied, exactly as those events lose against each other.
func applySnapshot(d *Document, v int64, s contract.SnapshotData) {
	if v >= d.PersonVersion && v >= d.DeletedVersion {
		d.Person, d.PersonVersion = nil, v
		if !s.Deleted && s.Person != nil {
			p := *s.Person
			d.Person = &p
		}
	}
	if s.Deleted && d.DeletedVersion < v {
		d.DeletedVersion = v
	}
	maps.DeleteFunc(d.Items, func(_ string, it Item) bool { return it.Version <= v })
	maps.DeleteFunc(d.Removed, func(_ string, rv int64) bool { return rv <= v })
	if s.Deleted {
		return
	}
	for _, it := range s.Items {
		ver := it.Version
		if ver <= 0 || ver > v {
			ver = v
		}
		if _, gone := d.Removed[it.ID]; gone || it.ValueCents <= 0 || it.ID == "" {
			continue
		}
		if ver < d.DeletedVersion {
			// A person.deleted above v, already applied, removed every item
			// older than itself; the snapshot must not bring them back.
			continue
		}
		d.Items[it.ID] = Item{Kind: it.Kind, Type: it.Type, ValueCents: it.ValueCents, Points: Points(it.Kind, it.ValueCents), Version: ver}
	}
}

// finish recomputes the score and drops bookkeeping no longer needed.
func finish(d *Document) {
	var sum int64
	for _, it := range d.Items {
		sum += it.Points
	}
	if !d.Live() {
		sum = 0
	}
	d.Score = sum
	d.Version = d.Applied.Applied
	maps.DeleteFunc(d.Removed, func(_ string, rv int64) bool { return rv <= d.Applied.Applied })
}

// ErrNotFound: no live person is known for the cpf.
var ErrNotFound = errors.New("no score known for this cpf")
