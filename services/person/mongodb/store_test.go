package mongodb_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/person"
	"github.com/personscore/person/internal/persontest"
	"github.com/personscore/person/mongodb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// withPerson is a fresh store holding person cpf (version 1).
func withPerson(t *testing.T, cpf person.CPF) (*persontest.Env, context.Context) {
	t.Helper()
	env, c := persontest.New(t), ctx(t)
	if _, err := env.Store.Create(c, newPerson(cpf)); err != nil {
		t.Fatal(err)
	}
	return env, c
}

func newPerson(cpf person.CPF) person.NewPerson {
	return person.NewPerson{CPF: cpf, Details: person.Details{Name: "abc", Address: "abc", DateOfBirth: "2019-06-15T19:23:55-03:00"}}
}

// pending reads the events still in a person's outbox.
func pending(t *testing.T, env *persontest.Env, cpf person.CPF) []eventbus.Event {
	t.Helper()
	var d struct {
		Outbox []eventbus.Event `bson:"outbox"`
	}
	err := mongodb.PersonsCollection(env.DB).FindOne(ctx(t), bson.D{{Key: "_id", Value: cpf}},
		options.FindOne().SetProjection(bson.D{{Key: outbox.Field, Value: 1}})).Decode(&d)
	if err != nil {
		t.Fatalf("read outbox of %s: %v", cpf, err)
	}
	return d.Outbox
}

// checkOneEventPerVersion fails unless events hold exactly one event for each
// version from..to of cpf, and no other.
func checkOneEventPerVersion(t *testing.T, events []eventbus.Event, cpf person.CPF, from, to int64) {
	t.Helper()
	seen := map[int64]int{}
	ids := map[string]bool{}
	for _, ev := range events {
		if ev.Subject != cpf.String() {
			t.Errorf("event %s has subject %q, want %s", ev.ID, ev.Subject, cpf)
		}
		if ids[ev.ID] {
			t.Errorf("event %s (version %d) appears twice", ev.ID, ev.Version)
		}
		ids[ev.ID] = true
		seen[ev.Version]++
	}
	for v := from; v <= to; v++ {
		if seen[v] != 1 {
			t.Errorf("version %d: %d events, want exactly 1", v, seen[v])
		}
		delete(seen, v)
	}
	for v, n := range seen {
		t.Errorf("unexpected version %d (%d events)", v, n)
	}
}

// hammer adds goroutines×perG items to one person concurrently through stores
// (round robin) while the outbox relays, and checks that every write succeeded
// with its own version and that exactly one event per version was published.
func hammer(t *testing.T, env *persontest.Env, stores []*mongodb.Store, goroutines, perG int) {
	const cpf person.CPF = 11111
	c := ctx(t)
	if v, err := env.Store.Create(c, newPerson(cpf)); err != nil || v != 1 {
		t.Fatalf("Create = %d, %v; want 1, nil", v, err)
	}
	stop := env.RunOutbox(t)
	kinds := []person.Kind{person.Income, person.Asset, person.Debt}
	var mu sync.Mutex
	versions := map[int64]person.Item{}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*perG)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stores[g%len(stores)]
			for i := range perG {
				k := kinds[(g+i)%len(kinds)]
				it, err := st.AddItem(c, cpf, k, person.NewItem{Type: "t", Value: person.Money(100*(g+1) + i)})
				if err != nil {
					errs <- fmt.Errorf("goroutine %d write %d: %w", g, i, err)
					continue
				}
				mu.Lock()
				if prev, dup := versions[it.Version]; dup {
					errs <- fmt.Errorf("version %d returned twice (items %s and %s)", it.Version, prev.ID, it.ID)
				}
				versions[it.Version] = it
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	last := int64(1 + goroutines*perG)
	for v := int64(2); v <= last; v++ {
		if _, ok := versions[v]; !ok {
			t.Errorf("no write got version %d", v)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	p, items, err := env.Store.Get(c, cpf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != last || len(items) != goroutines*perG {
		t.Fatalf("person at version %d with %d items, want %d with %d", p.Version, len(items), last, goroutines*perG)
	}
	for _, it := range items {
		if want := versions[it.Version]; want.ID != it.ID || want.Value != it.Value || want.Kind != it.Kind {
			t.Errorf("stored item %+v, the write of version %d returned %+v", it, it.Version, want)
		}
	}

	// The relay drains the outbox; then each version was published exactly once.
	for deadline := time.Now().Add(2 * time.Minute); len(pending(t, env, cpf)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay left %d events in the outbox", len(pending(t, env, cpf)))
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("outbox flush: %v", err)
	}
	evs := env.Recorder.Events()
	checkOneEventPerVersion(t, evs, cpf, 1, last)
	for _, ev := range evs {
		if ev.Version == 1 {
			continue
		}
		var d contract.ItemData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("event data %s: %v", ev.Data, err)
		}
		want := versions[ev.Version]
		if ev.Type != person.ItemEventType(want.Kind, true) || d.ID != want.ID || d.Value.String() != want.Value.String() || d.ValueCents != int64(want.Value) {
			t.Errorf("event of version %d is %s %+v, want %s of item %+v", ev.Version, ev.Type, d, person.ItemEventType(want.Kind, true), want)
		}
	}
}

// 16×25 = 400 concurrent writes to one person (AddItem batches the ones that
// queue up, see batch.go); -hammer sets another number per goroutine.
var perGoroutine = flag.Int("hammer", 25, "writes per goroutine in the concurrency tests")

// One replica, many clients: writes to one person take turns, none fails.
func TestConcurrentWritesOneStore(t *testing.T) {
	env := persontest.New(t, persontest.Options{SweepInterval: time.Hour}) // relay only: no sweep racing it
	hammer(t, env, []*mongodb.Store{env.Store}, 16, *perGoroutine)
}

// Several replicas on one database: the compare-and-swap on the version makes
// them retry, and still no write is lost, duplicated or refused.
func TestConcurrentWritesManyReplicas(t *testing.T) {
	env := persontest.New(t, persontest.Options{SweepInterval: time.Hour})
	stores := []*mongodb.Store{env.Store}
	for range 3 {
		stores = append(stores, mongodb.New(env.DB, env.Outbox))
	}
	hammer(t, env, stores, 8, max(*perGoroutine/2, 1))
}

func TestDeleteAndRecreateKeepVersionsIncreasing(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	const cpf person.CPF = 22222
	mustVersion := func(what string, got int64, err error, want int64) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s = %d, %v; want %d, nil", what, got, err, want)
		}
	}
	v, err := env.Store.Create(c, newPerson(cpf))
	mustVersion("Create", v, err, 1)
	it, err := env.Store.AddItem(c, cpf, person.Income, person.NewItem{Type: "renting", Value: 100000})
	mustVersion("AddItem", it.Version, err, 2)
	v, err = env.Store.Delete(c, cpf)
	mustVersion("Delete", v, err, 3)

	if _, _, err := env.Store.Get(c, cpf); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	if _, err := env.Store.AddItem(c, cpf, person.Debt, person.NewItem{Value: 1}); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("AddItem after delete: %v, want ErrNotFound", err)
	}
	if _, err := env.Store.Update(c, cpf, person.Details{Name: "x", DateOfBirth: "2000-01-01"}); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("Update after delete: %v, want ErrNotFound", err)
	}
	if _, err := env.Store.Delete(c, cpf); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := env.Store.DeleteItem(c, cpf, person.Income, it.ID); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("DeleteItem after delete: %v, want ErrNotFound", err)
	}
	if err := env.Store.SetScore(c, cpf, 5, 1, time.Now()); err != nil {
		t.Fatal(err)
	}

	again := newPerson(cpf)
	again.Name = "again"
	v, err = env.Store.Create(c, again)
	mustVersion("Create again", v, err, 4)
	p, items, err := env.Store.Get(c, cpf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 4 || p.Name != "again" || len(items) != 0 || p.Score != nil {
		t.Errorf("recreated person = %+v with %d items, want version 4, name again, no items, no score", p, len(items))
	}
	if _, err := env.Store.Create(c, again); !errors.Is(err, person.ErrExists) {
		t.Errorf("Create of a live cpf: %v, want ErrExists", err)
	}

	evs := pending(t, env, cpf)
	checkOneEventPerVersion(t, evs, cpf, 1, 4)
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	want := []string{contract.PersonCreated, "income.created", contract.PersonDeleted, contract.PersonCreated}
	if !slices.Equal(types, want) {
		t.Errorf("event types %v, want %v", types, want)
	}
}

func TestCreateRaceOneWinner(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	const cpf person.CPF = 33333
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, exists := 0, 0
	stores := []*mongodb.Store{env.Store, mongodb.New(env.DB, env.Outbox)}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := stores[i%2].Create(c, newPerson(cpf))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, person.ErrExists):
				exists++
			default:
				t.Errorf("Create: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || exists != 7 {
		t.Errorf("%d creates won and %d got ErrExists, want 1 and 7", won, exists)
	}
	checkOneEventPerVersion(t, pending(t, env, cpf), cpf, 1, 1)
}

func TestUpdateAndDeleteItem(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	const cpf person.CPF = 44444
	if _, err := env.Store.Update(c, cpf, person.Details{Name: "x", DateOfBirth: "2000-01-01"}); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("Update of an unknown cpf: %v, want ErrNotFound", err)
	}
	if _, err := env.Store.AddItem(c, cpf, person.Income, person.NewItem{Type: "x", Value: 1}); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("AddItem to an unknown cpf: %v, want ErrNotFound", err)
	}
	if _, err := env.Store.Create(c, newPerson(cpf)); err != nil {
		t.Fatal(err)
	}
	det := person.Details{Name: "new name", Address: "", DateOfBirth: "1990-01-31"}
	if v, err := env.Store.Update(c, cpf, det); err != nil || v != 2 {
		t.Fatalf("Update = %d, %v", v, err)
	}
	a, _ := env.Store.AddItem(c, cpf, person.Asset, person.NewItem{Type: "apartment", Value: 10})
	d, _ := env.Store.AddItem(c, cpf, person.Debt, person.NewItem{Value: 20})
	if a.Version != 3 || d.Version != 4 {
		t.Fatalf("item versions %d, %d; want 3, 4", a.Version, d.Version)
	}
	if _, err := env.Store.DeleteItem(c, cpf, person.Debt, a.ID); !errors.Is(err, person.ErrItemMissing) {
		t.Errorf("DeleteItem with the wrong kind: %v, want ErrItemMissing", err)
	}
	if _, err := env.Store.DeleteItem(c, cpf, person.Asset, "no-such-id"); !errors.Is(err, person.ErrItemMissing) {
		t.Errorf("DeleteItem of an unknown id: %v, want ErrItemMissing", err)
	}
	if v, err := env.Store.DeleteItem(c, cpf, person.Asset, a.ID); err != nil || v != 5 {
		t.Fatalf("DeleteItem = %d, %v; want 5", v, err)
	}
	if _, err := env.Store.DeleteItem(c, cpf, person.Asset, a.ID); !errors.Is(err, person.ErrItemMissing) {
		t.Errorf("second DeleteItem: %v, want ErrItemMissing", err)
	}
	p, items, err := env.Store.Get(c, cpf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Details != det || p.Version != 5 || len(items) != 1 || items[0].ID != d.ID {
		t.Errorf("Get = %+v, %+v", p, items)
	}
	evs := pending(t, env, cpf)
	checkOneEventPerVersion(t, evs, cpf, 1, 5)
	var pd contract.PersonData
	if err := json.Unmarshal(evs[1].Data, &pd); err != nil || evs[1].Type != contract.PersonUpdated || pd.PersonDetails != det || pd.CPF != int64(cpf) {
		t.Errorf("update event %s %s", evs[1].Type, evs[1].Data)
	}
	var del contract.ItemData
	if err := json.Unmarshal(evs[4].Data, &del); err != nil || evs[4].Type != "asset.deleted" || del.ID != a.ID || del.Kind != string(person.Asset) {
		t.Errorf("item deletion event %s %s", evs[4].Type, evs[4].Data)
	}
}

// Amounts reach the event exactly: 0.1 and 0.2 are 10 and 20 cents, never
// 0.30000000000000004 of anything.
func TestMoneyIsExactInStoreAndEvents(t *testing.T) {
	const cpf person.CPF = 55555
	env, c := withPerson(t, cpf)
	for _, text := range []string{"0.1", "0.2", "1000000000000", "999999999999.99"} {
		in, err := person.ParseNewItem(person.Income, []byte(`{"type":"x","value":`+text+`}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Store.AddItem(c, cpf, person.Income, in); err != nil {
			t.Fatal(err)
		}
	}
	_, items, err := env.Store.Get(c, cpf)
	if err != nil {
		t.Fatal(err)
	}
	var got []person.Money
	for _, it := range items {
		got = append(got, it.Value)
	}
	if want := []person.Money{10, 20, 100_000_000_000_000, 99_999_999_999_999}; !slices.Equal(got, want) {
		t.Errorf("stored cents %v, want %v", got, want)
	}
	evs := pending(t, env, cpf)
	var texts []string
	for _, ev := range evs[1:] {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(ev.Data, &raw); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(raw["value"])+"/"+string(raw["value_cents"]))
	}
	if want := []string{"0.1/10", "0.2/20", "1000000000000/100000000000000", "999999999999.99/99999999999999"}; !slices.Equal(texts, want) {
		t.Errorf("event values %v, want %v", texts, want)
	}
}

func TestSetScoreLastWriterWinsByVersion(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	const cpf person.CPF = 66666
	score := func() *person.Score {
		t.Helper()
		p, _, err := env.Store.Get(c, cpf)
		if err != nil {
			t.Fatal(err)
		}
		return p.Score
	}
	// A score for an unknown person changes nothing and is not an error.
	if err := env.Store.SetScore(c, cpf, 1, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.Create(c, newPerson(cpf)); err != nil {
		t.Fatal(err)
	}
	if s := score(); s != nil {
		t.Fatalf("score of a new person = %+v, want none", s)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	steps := []struct {
		value, version, wantValue, wantVersion int64
	}{
		{4970, 5, 4970, 5},
		{1, 3, 4970, 5},  // older: ignored
		{2, 5, 4970, 5},  // repeated: ignored
		{-50, 7, -50, 7}, // newer: applied, negative scores too
	}
	for _, s := range steps {
		if err := env.Store.SetScore(c, cpf, s.value, s.version, at); err != nil {
			t.Fatal(err)
		}
		got := score()
		if got == nil || got.Value != s.wantValue || got.Version != s.wantVersion {
			t.Fatalf("after SetScore(%d, v%d): %+v, want %d at v%d", s.value, s.version, got, s.wantValue, s.wantVersion)
		}
	}
	if got := score(); !got.UpdatedAt.Equal(at) {
		t.Errorf("updated_at %v, want %v", got.UpdatedAt, at)
	}

	// Concurrent, shuffled deliveries end on the highest version.
	order := make(chan int, 50)
	for _, i := range rand.Perm(50) {
		order <- i
	}
	close(order)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range order {
				if err := env.Store.SetScore(c, cpf, int64(1000+i), int64(100+i), at); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got := score(); got.Value != 1049 || got.Version != 149 {
		t.Errorf("after shuffled scores: %+v, want 1049 at v149", got)
	}

	// A deleted person has no score; the version history of scores survives a
	// re-create, so a late, older score.changed cannot resurrect an old score.
	if _, err := env.Store.Delete(c, cpf); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.SetScore(c, cpf, 9, 150, at); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.Create(c, newPerson(cpf)); err != nil {
		t.Fatal(err)
	}
	if s := score(); s != nil {
		t.Fatalf("score of a re-created person = %+v, want none", s)
	}
	if err := env.Store.SetScore(c, cpf, 8, 148, at); err != nil {
		t.Fatal(err)
	}
	if s := score(); s != nil {
		t.Fatalf("an older score was applied to the re-created person: %+v", s)
	}
	if err := env.Store.SetScore(c, cpf, 0, 151, at); err != nil {
		t.Fatal(err)
	}
	if s := score(); s == nil || s.Value != 0 || s.Version != 151 {
		t.Fatalf("score after re-create = %+v, want 0 at v151", s)
	}
	// Scores are not changes of the person: no version, no event.
	p, _, _ := env.Store.Get(c, cpf)
	if p.Version != 3 {
		t.Errorf("person version %d after scores, want 3", p.Version)
	}
	checkOneEventPerVersion(t, pending(t, env, cpf), cpf, 1, 3)
}

// With MongoDB unreachable every operation is ErrUnavailable and nothing is
// written; once it is back, the state is exactly as before.
func TestMongoDownIsUnavailableAndWritesNothing(t *testing.T) {
	const cpf person.CPF = 77777
	env, c := withPerson(t, cpf)
	it, err := env.Store.AddItem(c, cpf, person.Income, person.NewItem{Type: "x", Value: 100})
	if err != nil {
		t.Fatal(err)
	}
	env.Proxy.Cut()
	ops := map[string]func() error{
		"Create": func() error { _, err := env.Store.Create(c, newPerson(cpf+1)); return err },
		"Update": func() error {
			_, err := env.Store.Update(c, cpf, person.Details{Name: "n", DateOfBirth: "2000-01-01"})
			return err
		},
		"Delete":     func() error { _, err := env.Store.Delete(c, cpf); return err },
		"AddItem":    func() error { _, err := env.Store.AddItem(c, cpf, person.Debt, person.NewItem{Value: 5}); return err },
		"DeleteItem": func() error { _, err := env.Store.DeleteItem(c, cpf, person.Income, it.ID); return err },
		"Get":        func() error { _, _, err := env.Store.Get(c, cpf); return err },
		"SetScore":   func() error { return env.Store.SetScore(c, cpf, 1, 1, time.Now()) },
		"Ping":       func() error { return env.Store.Ping(c) },
	}
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := op()
			if name == "Ping" {
				if err == nil {
					t.Errorf("Ping succeeded with MongoDB unreachable")
				}
				return
			}
			// A write on a connection the cut closed may have been sent:
			// its outcome is then unknown unless it is read back.
			unknownOK := name != "Get" && name != "SetScore"
			if !errors.Is(err, person.ErrUnavailable) && !(unknownOK && errors.Is(err, person.ErrOutcomeUnknown)) {
				t.Errorf("%s with MongoDB unreachable: %v, want ErrUnavailable", name, err)
			}
		}()
	}
	wg.Wait()
	env.Proxy.Restore()
	p, items, err := env.Store.Get(c, cpf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 2 || len(items) != 1 || p.Score != nil {
		t.Errorf("after the outage: version %d, %d items, score %v; want 2, 1, none", p.Version, len(items), p.Score)
	}
	if _, _, err := env.Store.Get(c, cpf+1); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("the person created during the outage exists: %v", err)
	}
	checkOneEventPerVersion(t, pending(t, env, cpf), cpf, 1, 2)
}

// A write whose command fails after it may have reached the store is settled
// before it is answered: the proxy breaks the connection of one write,
// dropping the command or its answer, so the driver cannot tell whether it was
// applied. Person sends it again: applied once, success. A store that cannot
// be reached for that is ErrOutcomeUnknown. (ErrUnavailable is for commands
// the driver never sent: TestMongoDownIsUnavailableAndWritesNothing.)
func TestFailedWriteIsResolvedBeforeAnswering(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	const cpf person.CPF = 78787
	var broken atomic.Int32
	breakNext := func(applied bool, then func()) {
		env.Proxy.FailNextWrite(applied, func() {
			broken.Add(1)
			if then != nil {
				then()
			}
		})
	}
	breakNext(true, nil)
	if v, err := env.Store.Create(c, newPerson(cpf)); err != nil || v != 1 {
		t.Fatalf("create with its answer lost: version %d, %v; want 1, nil", v, err)
	}
	breakNext(true, nil)
	it, err := env.Store.AddItem(c, cpf, person.Income, person.NewItem{Type: "x", Value: 100})
	if err != nil || it.Version != 2 {
		t.Fatalf("add with its answer lost: %+v, %v; want version 2", it, err)
	}
	breakNext(false, nil)
	if it, err := env.Store.AddItem(c, cpf, person.Debt, person.NewItem{Value: 5}); err != nil || it.Version != 3 {
		t.Fatalf("add dropped on its way: %+v, %v; want version 3", it, err)
	}
	breakNext(false, nil)
	if v, err := env.Store.Create(c, newPerson(cpf+1)); err != nil || v != 1 {
		t.Fatalf("create dropped on its way: version %d, %v; want 1, nil", v, err)
	}
	breakNext(true, env.Proxy.Cut)
	if _, err := env.Store.AddItem(c, cpf, person.Asset, person.NewItem{Value: 40}); !errors.Is(err, person.ErrOutcomeUnknown) {
		t.Fatalf("add applied, then the store unreachable: %v, want ErrOutcomeUnknown", err)
	}
	env.Proxy.Restore()
	if n := broken.Load(); n != 5 {
		t.Errorf("%d write commands broken by the proxy, want 5", n)
	}

	p, items, err := env.Store.Get(c, cpf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 4 || len(items) != 3 {
		t.Errorf("version %d with %d items, want 4 and 3 (income, debt and asset)", p.Version, len(items))
	}
	checkOneEventPerVersion(t, pending(t, env, cpf), cpf, 1, 4)
	checkOneEventPerVersion(t, pending(t, env, cpf+1), cpf+1, 1, 1)
}

// A write command that reaches MongoDB only after person stopped waiting for
// its answer (the connection was cut after it was sent, or the write's
// deadline passed while it was in flight: a loaded server) may be applied
// after any read person makes, so a read showing it missing proves nothing.
// Person must never answer such a write as refused (ErrUnavailable, a plain
// 503): the client would retry it and the item would be stored twice.
func TestWriteArrivingAfterItsAnswerWasLost(t *testing.T) {
	const cpf person.CPF = 79797
	env, c := withPerson(t, cpf)
	// late runs write while the proxy holds back its (first) command, then
	// lets that reach MongoDB.
	late := func(name, command string, cut bool, write func() error) {
		t.Helper()
		held, release := env.Proxy.Hold(1, command, cut)
		err := write()
		select {
		case <-held:
		default:
			t.Fatalf("%s: no command held", name)
		}
		if err := release(); err != nil {
			t.Fatalf("%s: sending the held command: %v", name, err)
		}
		if err != nil {
			t.Errorf("%s sent, answer lost, applied late: %v; want it applied (once) and answered so", name, err)
		}
	}
	var it person.Item
	late("AddItem", "update", true, func() (err error) {
		it, err = env.Store.AddItem(c, cpf, person.Income, person.NewItem{Type: "late", Value: 100})
		return err
	})
	late("three AddItems of one batch", "update", true, func() error {
		errs := make(chan error, 3)
		for _, k := range []person.Kind{person.Income, person.Asset, person.Debt} {
			go func() {
				_, err := env.Store.AddItem(c, cpf, k, person.NewItem{Type: "batch", Value: 7})
				errs <- err
			}()
		}
		return errors.Join(<-errs, <-errs, <-errs)
	})
	late("Update", "update", true, func() error {
		_, err := env.Store.Update(c, cpf, person.Details{Name: "late", Address: "x", DateOfBirth: "2000-01-01"})
		return err
	})
	late("DeleteItem", "update", true, func() error { _, err := env.Store.DeleteItem(c, cpf, person.Income, it.ID); return err })
	late("AddItem past its deadline", "update", false, func() error {
		_, err := env.Store.AddItem(c, cpf, person.Debt, person.NewItem{Type: "deadline", Value: 3})
		return err
	})
	late("Create", "insert", true, func() error {
		_, err := env.Store.Create(c, newPerson(cpf+1))
		return err
	})
	late("Delete", "update", true, func() error { _, err := env.Store.Delete(c, cpf+1); return err })

	// When the write cannot be settled either (the command sent again is
	// lost too), its answer is ErrOutcomeUnknown (503 with Write-Outcome:
	// unknown), never ErrUnavailable.
	held, release := env.Proxy.Hold(2, "update", true)
	if _, err := env.Store.AddItem(c, cpf, person.Income, person.NewItem{Type: "unsettled", Value: 9}); !errors.Is(err, person.ErrOutcomeUnknown) {
		t.Errorf("AddItem whose command and its copy were both lost: %v, want ErrOutcomeUnknown", err)
	}
	<-held
	if err := release(); err != nil {
		t.Fatal(err)
	}

	p, items, err := env.Store.Get(c, cpf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 9 || len(items) != 5 || p.Name != "late" {
		t.Errorf("version %d, %d items, name %q; want 9, 5 (the batch's, the deadline's, the unsettled one), late", p.Version, len(items), p.Name)
	}
	checkOneEventPerVersion(t, pending(t, env, cpf), cpf, 1, 9)
	if _, _, err := env.Store.Get(c, cpf+1); !errors.Is(err, person.ErrNotFound) {
		t.Errorf("person %s after its late create and delete: %v, want not found", cpf+1, err)
	}
	checkOneEventPerVersion(t, pending(t, env, cpf+1), cpf+1, 1, 2)
}

// A request's deadline also bounds its wait for its turn on a busy person.
func TestWaitForTurnHonoursDeadline(t *testing.T) {
	const cpf person.CPF = 88888
	env, c := withPerson(t, cpf)
	short, cancel := context.WithTimeout(c, time.Nanosecond)
	defer cancel()
	<-short.Done()
	if _, err := env.Store.AddItem(short, cpf, person.Debt, person.NewItem{Value: 1}); !errors.Is(err, person.ErrUnavailable) {
		t.Errorf("AddItem with an expired context: %v, want ErrUnavailable", err)
	}
	checkOneEventPerVersion(t, pending(t, env, cpf), cpf, 1, 1)
}

func TestPublishSnapshots(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	for _, cpf := range []person.CPF{3, 1, 2} {
		if _, err := env.Store.Create(c, newPerson(cpf)); err != nil {
			t.Fatal(err)
		}
	}
	inc, _ := env.Store.AddItem(c, 1, person.Income, person.NewItem{Type: "renting", Value: 100000})
	debt, _ := env.Store.AddItem(c, 1, person.Debt, person.NewItem{Value: 1000})
	if _, err := env.Store.Delete(c, 2); err != nil {
		t.Fatal(err)
	}
	var progress []int
	n, err := env.Store.PublishSnapshots(c, func(n int) { progress = append(progress, n) })
	if err != nil || n != 3 || !slices.Equal(progress, []int{1, 2, 3}) {
		t.Fatalf("PublishSnapshots = %d, %v (progress %v); want 3", n, err, progress)
	}
	snap := func(cpf person.CPF) (eventbus.Event, contract.SnapshotData) {
		evs := pending(t, env, cpf)
		last := evs[len(evs)-1]
		var d contract.SnapshotData
		if err := json.Unmarshal(last.Data, &d); err != nil || last.Type != contract.PersonSnapshot {
			t.Fatalf("last event of %s: %s %s", cpf, last.Type, last.Data)
		}
		return last, d
	}
	ev, d := snap(1)
	if ev.Version != 3 || d.Deleted || d.Person == nil || d.Person.Name != "abc" || len(d.Items) != 2 ||
		d.Items[0].ID != inc.ID || d.Items[1].ID != debt.ID || d.Items[0].Value != "1000" || d.Items[1].Version != 3 {
		t.Errorf("snapshot of 1: v%d %+v", ev.Version, d)
	}
	ev, d = snap(2)
	if ev.Version != 2 || !d.Deleted || d.Person != nil || len(d.Items) != 0 {
		t.Errorf("snapshot of deleted 2: v%d %+v", ev.Version, d)
	}
	// A snapshot is not a change: the person's version stays.
	if p, _, _ := env.Store.Get(c, 1); p.Version != 3 {
		t.Errorf("version after snapshot %d, want 3", p.Version)
	}
}

// While the broker refuses publishes the events wait in the person's outbox;
// once it is back they are all published, each once, in version order.
func TestEventsWaitInOutboxWhileBrokerIsDown(t *testing.T) {
	env := persontest.New(t)
	c := ctx(t)
	const cpf person.CPF = 99999
	env.Recorder.Fail(errors.New("broker down"))
	stop := env.RunOutbox(t)
	if _, err := env.Store.Create(c, newPerson(cpf)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []person.Kind{person.Income, person.Asset, person.Debt} {
		if _, err := env.Store.AddItem(c, cpf, k, person.NewItem{Type: "t", Value: 1}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the relay tries, and fails
	checkOneEventPerVersion(t, pending(t, env, cpf), cpf, 1, 4)
	if n := len(env.Recorder.Events()); n != 0 {
		t.Fatalf("%d events published while the broker was down", n)
	}
	env.Recorder.Fail(nil)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	evs := env.Recorder.Events()
	checkOneEventPerVersion(t, evs, cpf, 1, 4)
	if !slices.IsSortedFunc(evs, func(a, b eventbus.Event) int { return int(a.Version - b.Version) }) {
		t.Errorf("republished out of order: %v", evs)
	}
	if left := pending(t, env, cpf); len(left) != 0 {
		t.Errorf("%d events left after the flush", len(left))
	}
}
