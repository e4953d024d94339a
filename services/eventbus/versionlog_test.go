package eventbus

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestVersionLog(t *testing.T) {
	cases := []struct {
		name        string
		add         []int64
		wantNew     []bool
		wantApplied int64
		wantAhead   []int64
	}{
		{"in order", []int64{1, 2, 3}, []bool{true, true, true}, 3, nil},
		{"duplicates", []int64{1, 1, 2, 2, 1}, []bool{true, false, true, false, false}, 2, nil},
		{"gap then fill", []int64{1, 3, 4, 2}, []bool{true, true, true, true}, 4, nil},
		{"gap stays", []int64{2, 5, 3}, []bool{true, true, true}, 0, []int64{2, 3, 5}},
		{"duplicate above gap", []int64{3, 3}, []bool{true, false}, 0, []int64{3}},
		{"version zero is always applied", []int64{0}, []bool{false}, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var l VersionLog
			for i, v := range c.add {
				if got := l.Add(v); got != c.wantNew[i] {
					t.Errorf("Add(%d) #%d = %v, want %v", v, i, got, c.wantNew[i])
				}
				if !l.Has(v) {
					t.Errorf("Has(%d) false right after Add", v)
				}
			}
			if l.Applied != c.wantApplied || !slices.Equal(l.Ahead, c.wantAhead) {
				t.Errorf("log = %+v, want applied %d ahead %v", l, c.wantApplied, c.wantAhead)
			}
		})
	}
}

func TestVersionLogAdvanceAndMax(t *testing.T) {
	l := VersionLog{}
	l.Add(7)
	l.Add(9)
	if l.Max() != 9 || l.Has(5) {
		t.Fatalf("log %+v", l)
	}
	l.AdvanceTo(7) // a snapshot of version 7 covers 1..7
	if l.Applied != 7 || !slices.Equal(l.Ahead, []int64{9}) || !l.Has(5) || l.Has(8) {
		t.Errorf("after AdvanceTo(7): %+v", l)
	}
	l.Add(8)
	if l.Applied != 9 || l.Ahead != nil || l.Max() != 9 {
		t.Errorf("after Add(8): %+v", l)
	}
	l.AdvanceTo(3) // never goes back
	if l.Applied != 9 {
		t.Errorf("AdvanceTo went back: %+v", l)
	}
}

// Whatever order and however many duplicates arrive, every version is
// applied exactly once and the log ends compact.
func TestVersionLogAnyOrder(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, seed))
		var arrivals []int64
		for v := int64(1); v <= 40; v++ {
			for range 1 + r.IntN(3) {
				arrivals = append(arrivals, v)
			}
		}
		r.Shuffle(len(arrivals), func(i, j int) { arrivals[i], arrivals[j] = arrivals[j], arrivals[i] })
		var l VersionLog
		applied := map[int64]int{}
		for _, v := range arrivals {
			if l.Add(v) {
				applied[v]++
			}
		}
		for v := int64(1); v <= 40; v++ {
			if applied[v] != 1 {
				t.Fatalf("seed %d: version %d applied %d times", seed, v, applied[v])
			}
		}
		if l.Applied != 40 || len(l.Ahead) != 0 {
			t.Fatalf("seed %d: log not compact: %+v", seed, l)
		}
	}
}

func TestIDLog(t *testing.T) {
	var l IDLog
	for _, id := range []string{"a", "b", "c"} {
		if !l.Add(id, 3) {
			t.Fatalf("Add(%s) not new", id)
		}
	}
	if l.Add("b", 3) {
		t.Error("duplicate b accepted")
	}
	if !l.Add("d", 3) || l.Has("a") || !slices.Equal(l.IDs, []string{"b", "c", "d"}) {
		t.Errorf("bounded log = %v", l.IDs)
	}
	if !l.Add("a", 0) || len(l.IDs) != 4 {
		t.Errorf("unbounded add: %v", l.IDs)
	}
}
