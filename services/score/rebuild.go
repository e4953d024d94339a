package score

import (
	"errors"
	"time"
)

// States of a rebuild.
const (
	// RebuildSnapshotting: the request is sent; person has not said how many
	// snapshots it published yet.
	RebuildSnapshotting = "snapshotting"
	// RebuildCatchingUp: person has published its snapshots; the fresh
	// collection is waiting for all of them and for the live events.
	RebuildCatchingUp = "catching_up"
	// RebuildDone: the fresh collection is the read model now.
	RebuildDone = "done"
	// RebuildFailed: given up; the read model did not change.
	RebuildFailed = "failed"
)

// Rebuild is the state of one rebuild of the read model.
type Rebuild struct {
	ID string `json:"id" bson:"id"`
	// From is the collection being replaced, Target the fresh one.
	From   string `json:"from" bson:"from"`
	Target string `json:"target" bson:"target"`
	State  string `json:"state" bson:"state"`
	// Expected is the number of snapshots person published (-1 until known).
	Expected int64 `json:"expected" bson:"expected"`
	// Snapshotted is how many documents of Target are built from a snapshot
	// (reported, not stored).
	Snapshotted int64      `json:"snapshotted" bson:"-"`
	StartedAt   time.Time  `json:"started_at" bson:"started_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty" bson:"finished_at,omitempty"`
	Error       string     `json:"error,omitempty" bson:"error,omitempty"`
	// Active is the collection serving reads now (reported, not stored).
	Active string `json:"active" bson:"-"`
}

// Running reports whether the rebuild is still in progress.
func (r *Rebuild) Running() bool {
	return r != nil && (r.State == RebuildSnapshotting || r.State == RebuildCatchingUp)
}

var (
	// ErrRebuildRunning: a rebuild is in progress already.
	ErrRebuildRunning = errors.New("a rebuild is already running")
	// ErrNoRebuild: no rebuild was ever started.
	ErrNoRebuild = errors.New("no rebuild has been started")
)
