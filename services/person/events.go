package person

import (
	"encoding/json"
	"slices"

	"github.com/personscore/contract"
)

// The events person publishes, and score.changed which it consumes, are
// defined in the contract package; these build their payloads from the
// domain's types.

// ItemEventType is "<kind>.created" or "<kind>.deleted".
func ItemEventType(k Kind, created bool) string { return contract.ItemEventType(string(k), created) }

// PersonData is the data of person.created and person.updated.
func PersonData(cpf CPF, d Details) contract.PersonData {
	return contract.PersonData{CPF: int64(cpf), PersonDetails: d}
}

// DeletedData is the data of person.deleted.
func DeletedData(cpf CPF) contract.DeletedData { return contract.DeletedData{CPF: int64(cpf)} }

// ItemCreatedData is the data of <kind>.created for it.
func ItemCreatedData(cpf CPF, it Item) contract.ItemData {
	return contract.ItemData{CPF: int64(cpf), ID: it.ID, Kind: string(it.Kind), Type: it.Type,
		Value: json.Number(it.Value.String()), ValueCents: int64(it.Value)}
}

// ItemDeletedData is the data of <kind>.deleted for item id.
func ItemDeletedData(cpf CPF, kind Kind, id string) contract.ItemData {
	return contract.ItemData{CPF: int64(cpf), ID: id, Kind: string(kind)}
}

// SnapshotData is the data of person.snapshot: the whole state of a person,
// its items in the order they were created. A deleted person has no details
// and no items.
func SnapshotData(cpf CPF, deleted bool, d Details, items map[string]Item) contract.SnapshotData {
	data := contract.SnapshotData{CPF: int64(cpf), Deleted: deleted, Items: []contract.ItemData{}}
	if deleted {
		return data
	}
	data.Person = &d
	for _, it := range items {
		item := ItemCreatedData(cpf, it)
		item.Version = it.Version
		data.Items = append(data.Items, item)
	}
	slices.SortFunc(data.Items, func(a, b contract.ItemData) int { return int(a.Version - b.Version) })
	return data
}
