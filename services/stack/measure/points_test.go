package measure

import "testing"

func TestPoints(t *testing.T) {
	for _, c := range []struct {
		kind  string
		cents int64
		want  int64
	}{
		{"income", 4999, 0}, {"income", 5000, 1}, {"income", 9999, 1},
		{"asset", 1999, 0}, {"asset", 2000, 1}, {"debt", 3999, -1}, {"debt", 1, 0},
		{"other", 100000, 0},
	} {
		if got := Points(c.kind, c.cents); got != c.want {
			t.Errorf("Points(%s, %d) = %d, want %d", c.kind, c.cents, got, c.want)
		}
	}

}
