package person

// Event types person publishes, one per change; the routing key is the type.
const (
	PersonCreated  = "person.created"
	PersonUpdated  = "person.updated"
	PersonDeleted  = "person.deleted"
	PersonSnapshot = "person.snapshot"
	// ScoreChanged is consumed: the score service's latest score of a person.
	ScoreChanged = "score.changed"
)

// ItemEventType is "<kind>.created" or "<kind>.deleted".
func ItemEventType(k Kind, created bool) string {
	if created {
		return string(k) + ".created"
	}
	return string(k) + ".deleted"
}

// PersonData is the data of person.created and person.updated.
type PersonData struct {
	CPF CPF `json:"cpf"`
	Details
}

// ItemData is the data of <kind>.created and <kind>.deleted. Value is exact;
// ValueCents is the same amount as an integer for consumers.
type ItemData struct {
	CPF        CPF    `json:"cpf"`
	ID         string `json:"id"`
	Kind       Kind   `json:"kind"`
	Type       string `json:"type,omitempty"`
	Value      Money  `json:"value,omitempty"`
	ValueCents int64  `json:"value_cents,omitempty"`
	// Version is the person version that created the item (snapshots only).
	Version int64 `json:"version,omitempty"`
}

// DeletedData is the data of person.deleted.
type DeletedData struct {
	CPF CPF `json:"cpf"`
}

// SnapshotData is the data of person.snapshot: the whole current state, sent
// when a replica asks for a rebuild. Deleted persons are sent too.
type SnapshotData struct {
	CPF     CPF        `json:"cpf"`
	Deleted bool       `json:"deleted"`
	Person  *Details   `json:"person,omitempty"`
	Items   []ItemData `json:"items"`
}

// ScoreData is the data of score.changed.
type ScoreData struct {
	CPF   CPF   `json:"cpf"`
	Score int64 `json:"score"`
}
