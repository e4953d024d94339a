package scoretest

import (
	"context"
	"errors"
	"testing"

	"github.com/personscore/score"
)

// RebuildStatuser is a store that reports its rebuild (mongodb.Store).
type RebuildStatuser interface {
	RebuildStatus(ctx context.Context) (score.Rebuild, error)
}

// Active is the collection serving s's read model now, as its rebuild status
// reports it (with or without a rebuild).
func Active(t testing.TB, s RebuildStatuser) string {
	t.Helper()
	r, err := s.RebuildStatus(context.Background())
	if err != nil && !errors.Is(err, score.ErrNoRebuild) {
		t.Fatalf("rebuild status: %v", err)
	}
	return r.Active
}
