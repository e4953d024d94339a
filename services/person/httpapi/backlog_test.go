package httpapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/personscore/person/httpapi"
)

// The bound refuses at the count or at the age of the oldest event, whichever
// comes first, and a zero bound does not bound.
func TestBacklogBoundCheck(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name       string
		pending    int
		oldest     time.Time
		maxPending int
		maxAge     time.Duration
		refused    string // "" when admitted, else a piece of the reason
	}{
		{"empty", 0, time.Time{}, 10, time.Minute, ""},
		{"under both", 9, now.Add(-50 * time.Second), 10, time.Minute, ""},
		{"at the count", 10, now.Add(-time.Second), 10, time.Minute, "outbox backlog full: 10 events"},
		{"at the age", 1, now.Add(-61 * time.Second), 10, time.Minute, "outbox backlog too old"},
		{"no count bound", 1_000_000, now, 0, time.Minute, ""},
		{"no age bound", 1, now.Add(-24 * time.Hour), 10, 0, ""},
	} {
		b := httpapi.BacklogBound{MaxPending: c.maxPending, MaxAge: c.maxAge,
			Backlog: func() (int, time.Time) { return c.pending, c.oldest }}
		err := b.Check(context.Background())
		var full *httpapi.BacklogFullError
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.refused != "" && (!errors.As(err, &full) || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%s: %v, want a BacklogFullError saying %q", c.name, err, c.refused)
		}
	}
}
