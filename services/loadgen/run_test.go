package loadgen

import (
	"testing"
	"time"

	"github.com/personscore/stack/measure"
)

func TestThirds(t *testing.T) {
	var s []measure.Sample
	for i := range 90 {
		lag := time.Millisecond
		if i >= 60 {
			lag = 100 * time.Millisecond
		}
		s = append(s, measure.Sample{At: time.Duration(i) * 100 * time.Millisecond, Lag: lag, OK: true})
	}
	first, last := thirds(s, 9*time.Second)
	if first != 1 || last != 100 {
		t.Errorf("thirds = %v, %v", first, last)
	}
}
