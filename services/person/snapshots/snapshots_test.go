package snapshots_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/person/snapshots"
)

type fakeStore struct {
	n     int
	err   error
	calls int
}

func (f *fakeStore) PublishSnapshots(ctx context.Context, progress func(int)) (int, error) {
	f.calls++
	for i := 1; i <= f.n; i++ {
		progress(i)
	}
	return f.n, f.err
}

type fakePub struct {
	events []eventbus.Event
	err    error
}

func (f *fakePub) Publish(ctx context.Context, events ...eventbus.Event) error {
	if f.err != nil {
		return f.err
	}
	f.events = append(f.events, events...)
	return nil
}

func request(t *testing.T, data any) eventbus.Event {
	t.Helper()
	ev, err := eventbus.NewEvent(context.Background(), "/score", contract.SnapshotRequested, "r1", 1, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestHandlerPublishesSnapshotsThenCompletion(t *testing.T) {
	store, pub := &fakeStore{n: 3}, &fakePub{}
	h := snapshots.Handler(store, pub, nil)
	if err := h(context.Background(), request(t, contract.SnapshotRequest{RebuildID: "r1"})); err != nil {
		t.Fatal(err)
	}
	if store.calls != 1 || len(pub.events) != 1 {
		t.Fatalf("PublishSnapshots calls %d, published %d events; want 1 and 1", store.calls, len(pub.events))
	}
	ev := pub.events[0]
	var c contract.SnapshotCompletion
	if err := json.Unmarshal(ev.Data, &c); err != nil {
		t.Fatal(err)
	}
	if ev.Type != contract.SnapshotCompleted || ev.Source != "/person" || ev.Subject != "r1" || c != (contract.SnapshotCompletion{RebuildID: "r1", Count: 3}) {
		t.Fatalf("completion event %s %s %s %+v", ev.Type, ev.Source, ev.Subject, c)
	}
	if err := ev.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerFailures(t *testing.T) {
	boom := errors.New("boom")
	t.Run("no rebuild id is malformed", func(t *testing.T) {
		store := &fakeStore{}
		err := snapshots.Handler(store, &fakePub{}, nil)(context.Background(), request(t, map[string]string{}))
		if !errors.Is(err, eventbus.ErrMalformed) || store.calls != 0 {
			t.Fatalf("err %v, calls %d", err, store.calls)
		}
	})
	t.Run("store failure is retried, nothing completed", func(t *testing.T) {
		pub := &fakePub{}
		err := snapshots.Handler(&fakeStore{n: 2, err: boom}, pub, nil)(context.Background(), request(t, contract.SnapshotRequest{RebuildID: "r1"}))
		if !errors.Is(err, boom) || errors.Is(err, eventbus.ErrMalformed) || len(pub.events) != 0 {
			t.Fatalf("err %v, published %d", err, len(pub.events))
		}
	})
	t.Run("publish failure is retried", func(t *testing.T) {
		err := snapshots.Handler(&fakeStore{n: 2}, &fakePub{err: boom}, nil)(context.Background(), request(t, contract.SnapshotRequest{RebuildID: "r1"}))
		if !errors.Is(err, boom) {
			t.Fatalf("err %v", err)
		}
	})
}
