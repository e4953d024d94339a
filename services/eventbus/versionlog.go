package eventbus

import "slices"

// VersionLog records which versions of one aggregate a consumer has applied, so
// that a duplicate is recognised and an out-of-order arrival is still applied.
// Versions 1..Applied are all applied; Ahead holds applied versions above a gap.
// It is stored inside the consumer's own document, updated in the same write as
// the state it protects.
type VersionLog struct {
	Applied int64   `json:"applied" bson:"applied"`
	Ahead   []int64 `json:"ahead,omitempty" bson:"ahead,omitempty"`
}

// Has reports whether version v was applied already.
func (l VersionLog) Has(v int64) bool {
	if v <= l.Applied {
		return true
	}
	_, found := slices.BinarySearch(l.Ahead, v)
	return found
}

// Add records v as applied and reports whether it was new.
func (l *VersionLog) Add(v int64) bool {
	if l.Has(v) {
		return false
	}
	i, _ := slices.BinarySearch(l.Ahead, v)
	l.Ahead = slices.Insert(l.Ahead, i, v)
	l.compact()
	return true
}

// AdvanceTo records every version up to v as applied (a snapshot covers them).
func (l *VersionLog) AdvanceTo(v int64) {
	if v > l.Applied {
		l.Applied = v
	}
	l.compact()
}

// Max is the highest applied version.
func (l VersionLog) Max() int64 {
	if n := len(l.Ahead); n > 0 {
		return l.Ahead[n-1]
	}
	return l.Applied
}

func (l *VersionLog) compact() {
	i := 0
	for ; i < len(l.Ahead); i++ {
		switch v := l.Ahead[i]; {
		case v <= l.Applied:
		case v == l.Applied+1:
			l.Applied = v
		default:
			l.Ahead = l.Ahead[i:]
			return
		}
	}
	l.Ahead = nil
}

// IDLog remembers the ids of the latest events applied to one aggregate, for
// events that carry no usable version (Version 0, or several events sharing a
// version). Like VersionLog it lives in the consumer's own document and is
// updated in the same write as the state it protects. It keeps the newest
// limit ids; a duplicate of an event older than that is not recognised, so
// size limit above the number of events an aggregate receives while a
// message can still be redelivered.
type IDLog struct {
	IDs []string `json:"ids,omitempty" bson:"ids,omitempty"`
}

// Has reports whether the event with this id was applied already.
func (l IDLog) Has(id string) bool { return slices.Contains(l.IDs, id) }

// Add records id as applied, forgetting the oldest ids beyond limit, and
// reports whether it was new.
func (l *IDLog) Add(id string, limit int) bool {
	if l.Has(id) {
		return false
	}
	l.IDs = append(l.IDs, id)
	if limit > 0 && len(l.IDs) > limit {
		l.IDs = slices.Delete(l.IDs, 0, len(l.IDs)-limit)
	}
	return true
}
