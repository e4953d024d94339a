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
