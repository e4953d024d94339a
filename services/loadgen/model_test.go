package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPersonScoreIsTheOriginalRule(t *testing.T) {
	// The original README's flow: income 1000, asset 100000, debt 1000 → 4970.
	p := &Person{Live: true, Items: map[string]Item{
		"a": {Kind: "income", Cents: 1000_00},
		"b": {Kind: "asset", Cents: 100000_00},
		"c": {Kind: "debt", Cents: 1000_00},
	}}
	if got := p.Score(); got != 4970 {
		t.Fatalf("score = %d, want 4970", got)
	}
	p.Live = false
	if p.Score() != 0 {
		t.Error("a deleted person scores 0")
	}
}

func TestAppliedFollowsTheWrites(t *testing.T) {
	p := &Person{CPF: 1, Items: map[string]Item{}}
	p.Applied(OpCreate, 1, "", Item{}, "")
	p.Applied(OpIncome, 2, "i1", Item{Kind: "income", Cents: 10000}, "")
	p.Applied(OpDebt, 3, "d1", Item{Kind: "debt", Cents: 4000}, "")
	if p.Score() != 2-2 || p.Version != 3 || !p.Live {
		t.Fatalf("after three writes: %+v score %d", p, p.Score())
	}
	p.Applied(OpDeleteItem, 4, "", Item{}, "d1")
	if p.Score() != 2 {
		t.Errorf("after deleting the debt: score %d, want 2", p.Score())
	}
	p.Applied(OpUpdate, 5, "", Item{}, "")
	p.Applied(OpDeletePerson, 6, "", Item{}, "")
	if p.Live || len(p.Items) != 0 || p.Version != 6 {
		t.Errorf("after delete: %+v", p)
	}
	// Created again: the version history continues, the items start empty.
	p.Applied(OpCreate, 7, "", Item{}, "")
	if !p.Live || p.Score() != 0 || p.Version != 7 {
		t.Errorf("after re-create: %+v", p)
	}
	// An older version never lowers the known one.
	p.Applied(OpUpdate, 2, "", Item{}, "")
	if p.Version != 7 {
		t.Errorf("version went back to %d", p.Version)
	}
}

func TestModelHandsEachPersonToOneWorker(t *testing.T) {
	m := NewModel(1000)
	rng := rand.New(rand.NewPCG(1, 2))
	// Nobody exists: any op becomes a create of a new cpf.
	op, p := m.Acquire(OpIncome, rng)
	if op != OpCreate || p.CPF != 1000 {
		t.Fatalf("first acquire = %v %d", op, p.CPF)
	}
	p.Applied(OpCreate, 1, "", Item{}, "")
	// While p is held, an item op cannot get it and creates another person.
	op2, q := m.Acquire(OpIncome, rng)
	if op2 != OpCreate || q.CPF == p.CPF {
		t.Fatalf("second acquire = %v %d while %d is held", op2, q.CPF, p.CPF)
	}
	m.Release(q) // its create failed: forgotten
	m.Release(p)
	// delete_item on a person without items becomes an income.
	op3, r := m.Acquire(OpDeleteItem, rng)
	if op3 != OpIncome || r.CPF != p.CPF {
		t.Fatalf("third acquire = %v %d", op3, r.CPF)
	}
	m.Release(r)
	if n := len(m.Persons()); n != 1 {
		t.Fatalf("model holds %d persons, want 1", n)
	}
	// A person whose write had an unknown outcome is never handed out again.
	_, s := m.Acquire(OpUpdate, rng)
	s.Unknown = true
	m.Release(s)
	if op, p := m.Acquire(OpUpdate, rng); op != OpCreate || p.CPF == s.CPF {
		t.Fatalf("acquired the unknown person again: %v %d", op, p.CPF)
	}
}

func TestDeletedPersonsAreCreatedAgain(t *testing.T) {
	m := NewModel(1)
	rng := rand.New(rand.NewPCG(3, 4))
	_, p := m.Acquire(OpCreate, rng)
	p.Applied(OpCreate, 1, "", Item{}, "")
	p.Applied(OpDeletePerson, 2, "", Item{}, "")
	m.Release(p)
	again := false
	for range 100 {
		_, q := m.Acquire(OpCreate, rng)
		if q.CPF == p.CPF {
			again = true
			break
		}
		m.Release(q)
	}
	if !again {
		t.Error("a deleted cpf was never created again")
	}
}

func TestMixParseAndPick(t *testing.T) {
	m, err := ParseMix("create=1, income=3")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var n [numOps]int
	for range 40000 {
		n[m.Pick(rng)]++
	}
	if n[OpAsset] != 0 || n[OpCreate] < 9000 || n[OpCreate] > 11000 || n[OpIncome] < 29000 {
		t.Errorf("picks = %v", n)
	}
	if _, err := ParseMix("bogus=1"); err == nil {
		t.Error("unknown op accepted")
	}
	if _, err := ParseMix("create=0"); err == nil {
		t.Error("all-zero mix accepted")
	}
	if _, err := ParseMix("create=-1,income=1"); err == nil {
		t.Error("negative weight accepted")
	}
	back, err := ParseMix(DefaultMix.String())
	if err != nil || back != DefaultMix {
		t.Errorf("DefaultMix does not round-trip: %v %v", back, err)
	}
}

func TestFormatCents(t *testing.T) {
	for cents, want := range map[int64]string{100: "1.00", 123456: "1234.56", 5: "0.05", 10_000_000: "100000.00"} {
		if got := FormatCents(cents); got != want {
			t.Errorf("FormatCents(%d) = %s, want %s", cents, got, want)
		}
	}
}

func TestMaxPersonsKeepsThePopulation(t *testing.T) {
	m := NewModel(1)
	m.MaxPersons = 3
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		op, p := m.Acquire(OpCreate, rng)
		switch op {
		case OpCreate:
			p.Applied(OpCreate, p.Version+1, "", Item{}, "")
		case OpIncome:
			p.Applied(OpIncome, p.Version+1, "x", Item{Kind: "income", Cents: 5000}, "")
		}
		if rng.IntN(3) == 0 {
			p.Applied(OpDeletePerson, p.Version+1, "", Item{}, "")
		}
		m.Release(p)
	}
	if n := m.Len(); n != 3 {
		t.Fatalf("%d persons created, want the cap of 3", n)
	}
}

func TestAppliedAnyway(t *testing.T) {
	cases := []struct {
		op   Op
		view PersonView
		want bool
	}{
		{OpCreate, PersonView{Found: true, Version: 1}, true},
		{OpCreate, PersonView{}, false},
		{OpDeletePerson, PersonView{}, true},
		{OpDeletePerson, PersonView{Found: true, Version: 4}, false},
		{OpIncome, PersonView{Found: true, Version: 5}, true},
		{OpIncome, PersonView{Found: true, Version: 4}, false},
	}
	for _, c := range cases {
		p := &Person{Version: 4, Failed: true, FailedOp: c.op}
		if got := p.AppliedAnyway(c.view); got != c.want {
			t.Errorf("%v with %+v: %v, want %v", c.op, c.view, got, c.want)
		}
	}
}

func TestAcquireWaitsAtTheCap(t *testing.T) {
	m := NewModel(1)
	m.MaxPersons = 1
	rng := rand.New(rand.NewPCG(9, 9))
	_, p := m.Acquire(OpCreate, rng)
	p.Applied(OpCreate, 1, "", Item{}, "")
	got := make(chan int64)
	go func() {
		_, q := m.Acquire(OpIncome, rand.New(rand.NewPCG(1, 1)))
		got <- q.CPF
	}()
	select {
	case cpf := <-got:
		t.Fatalf("acquired %d while the only person was held", cpf)
	case <-time.After(50 * time.Millisecond):
	}
	m.Release(p)
	if cpf := <-got; cpf != p.CPF {
		t.Fatalf("acquired %d, want %d", cpf, p.CPF)
	}
	if m.Len() != 1 {
		t.Fatalf("%d persons, want 1", m.Len())
	}
}
