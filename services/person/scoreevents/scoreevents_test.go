package scoreevents

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/person"
)

type call struct {
	cpf            person.CPF
	value, version int64
	at             time.Time
}

type fakeStore struct {
	calls []call
	err   error
}

func (f *fakeStore) SetScore(_ context.Context, cpf person.CPF, value, version int64, at time.Time) error {
	f.calls = append(f.calls, call{cpf, value, version, at})
	return f.err
}

func event(t *testing.T, subject string, version int64, data any) eventbus.Event {
	t.Helper()
	ev, err := eventbus.NewEvent(context.Background(), "/score", contract.ScoreChanged, subject, version, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestHandlerStoresTheScoreByVersion(t *testing.T) {
	st := &fakeStore{}
	ev := event(t, "11111", 7, map[string]int64{"cpf": 11111, "score": 4970})
	if err := Handler(st)(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if len(st.calls) != 1 || st.calls[0] != (call{11111, 4970, 7, ev.Time}) {
		t.Errorf("SetScore calls %+v", st.calls)
	}
}

func TestHandlerDeadLettersWhatCanNeverApply(t *testing.T) {
	for name, ev := range map[string]eventbus.Event{
		"not JSON":          {Subject: "1", Type: contract.ScoreChanged, Data: []byte("{")},
		"no cpf":            event(t, "1", 1, map[string]int64{"score": 5}),
		"cpf of another":    event(t, "1", 1, map[string]int64{"cpf": 2, "score": 5}),
		"cpf of wrong type": event(t, "1", 1, map[string]string{"cpf": "x"}),
	} {
		st := &fakeStore{}
		err := Handler(st)(context.Background(), ev)
		if !errors.Is(err, eventbus.ErrMalformed) || len(st.calls) != 0 {
			t.Errorf("%s: %v (calls %v), want ErrMalformed and no write", name, err, st.calls)
		}
	}
}

func TestHandlerRetriesStoreFailures(t *testing.T) {
	st := &fakeStore{err: person.ErrUnavailable}
	err := Handler(st)(context.Background(), event(t, "3", 2, map[string]int64{"cpf": 3, "score": -50}))
	if !errors.Is(err, person.ErrUnavailable) || errors.Is(err, eventbus.ErrMalformed) {
		t.Errorf("store failure: %v, want it returned for a retry", err)
	}
}
