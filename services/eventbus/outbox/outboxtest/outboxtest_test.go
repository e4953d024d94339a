package outboxtest

import (
	"context"
	"errors"
	"testing"

	"github.com/personscore/eventbus"
)

func TestRecorder(t *testing.T) {
	var r Recorder
	ctx := context.Background()
	a, b := eventbus.Event{ID: "a", Type: "x.done"}, eventbus.Event{ID: "b", Type: "y.done"}
	if err := r.Publish(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	down := errors.New("down")
	r.Fail(down)
	if err := r.Publish(ctx, a); !errors.Is(err, down) {
		t.Errorf("Publish while failing: %v", err)
	}
	r.Fail(nil)
	if err := r.Publish(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := r.Events(); len(got) != 3 || got[0].ID != "a" || got[1].ID != "b" || got[2].ID != "a" {
		t.Errorf("Events = %v", got)
	}
	if got := r.Of("x.done"); len(got) != 2 {
		t.Errorf("Of(x.done) = %v", got)
	}
}
