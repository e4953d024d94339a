package measure

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.5, time.Millisecond}} {
		if got := Percentile(ds, c.p); got != c.want {
			t.Errorf("Percentile(1..100ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	one := []time.Duration{7 * time.Millisecond}
	if got := Percentile(one, 99); got != 7*time.Millisecond {
		t.Errorf("Percentile of one value = %v", got)
	}
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	in := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond}
	s := Summarize(in)
	if s.Count != 4 || s.P50MS != 2 || s.MaxMS != 10 || s.MeanMS != 4 || s.P99MS != 10 {
		t.Errorf("Summarize = %+v", s)
	}
	if in[0] != 3*time.Millisecond {
		t.Error("Summarize sorted its input")
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("Summarize(nil) is not zero")
	}
}

func TestHistogramQuantile(t *testing.T) {
	b := []Bucket{{0.001, 10}, {0.005, 60}, {0.01, 90}, {0.05, 100}, {math.Inf(1), 100}}
	cases := []struct{ q, want float64 }{
		{0.05, 0.0005}, // inside the first bucket, from 0
		{0.5, 0.001 + 0.004*40.0/50.0},
		{0.9, 0.01},
		{0.99, 0.01 + 0.04*9.0/10.0},
	}
	for _, c := range cases {
		if got := HistogramQuantile(c.q, b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	// A rank in the +Inf bucket answers the highest finite bound.
	inf := []Bucket{{0.1, 1}, {math.Inf(1), 10}}
	if got := HistogramQuantile(0.99, inf); got != 0.1 {
		t.Errorf("rank in +Inf = %v, want 0.1", got)
	}
	if !math.IsNaN(HistogramQuantile(0.5, []Bucket{{1, 0}, {math.Inf(1), 0}})) {
		t.Error("empty histogram should be NaN")
	}
}

func TestSubBuckets(t *testing.T) {
	before := []Bucket{{0.01, 5}, {math.Inf(1), 7}}
	after := []Bucket{{0.01, 15}, {math.Inf(1), 20}}
	got := SubBuckets(after, before)
	if got[0].Count != 10 || got[1].Count != 13 {
		t.Errorf("SubBuckets = %v", got)
	}
}

func TestParseHistogramSumsMatchingSeries(t *testing.T) {
	page := `# HELP eventbus_lag_seconds End-to-end lag.
# TYPE eventbus_lag_seconds histogram
eventbus_lag_seconds_bucket{queue="score",type="income.created",le="0.005"} 3
eventbus_lag_seconds_bucket{queue="score",type="income.created",le="+Inf"} 4
eventbus_lag_seconds_bucket{queue="score",type="debt.created",le="0.005"} 1
eventbus_lag_seconds_bucket{queue="score",type="debt.created",le="+Inf"} 2
eventbus_lag_seconds_bucket{queue="person",type="score.changed",le="0.005"} 100
eventbus_lag_seconds_bucket{queue="person",type="score.changed",le="+Inf"} 100
eventbus_lag_seconds_sum{queue="score",type="debt.created"} 0.3
`
	b, err := ParseHistogram(strings.NewReader(page), "eventbus_lag_seconds", map[string]string{"queue": "score"})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2 || b[0].LE != 0.005 || b[0].Count != 4 || !math.IsInf(b[1].LE, 1) || b[1].Count != 6 {
		t.Errorf("ParseHistogram = %v", b)
	}
	lag := LagFromBuckets(b)
	if lag.Count != 6 || lag.P50MS <= 0 || lag.P50MS > 5 {
		t.Errorf("LagFromBuckets = %+v", lag)
	}
}

func TestTimelineGroupsBySecond(t *testing.T) {
	samples := []Sample{
		{At: 100 * time.Millisecond, Latency: time.Millisecond, Lag: 2 * time.Millisecond, OK: true},
		{At: 900 * time.Millisecond, Latency: 3 * time.Millisecond, Lag: -1, OK: true},
		{At: 1500 * time.Millisecond, OK: false},
		{At: 2500 * time.Millisecond, Latency: time.Millisecond, Lag: 40 * time.Millisecond, OK: true},
	}
	secs := Timeline(samples, 3*time.Second)
	if len(secs) != 3 {
		t.Fatalf("%d seconds, want 3", len(secs))
	}
	if secs[0].Writes != 2 || secs[0].LagP50MS != 2 || secs[0].LatP99MS != 3 {
		t.Errorf("second 0 = %+v", secs[0])
	}
	if secs[1].Writes != 0 || secs[1].Errors != 1 {
		t.Errorf("second 1 = %+v", secs[1])
	}
	if secs[2].LagMaxMS != 40 {
		t.Errorf("second 2 = %+v", secs[2])
	}
}

func TestParseSums(t *testing.T) {
	page := `# TYPE eventbus_consumed_total counter
eventbus_consumed_total{queue="score",type="income.created"} 10
eventbus_consumed_total{queue="score",type="debt.created"} 5
eventbus_consumed_total_extra 100
eventbus_outbox_pending{collection="persons"} 2
eventbus_published_total 7
`
	got, err := ParseSums(strings.NewReader(page), "eventbus_consumed_total", "eventbus_outbox_pending", "eventbus_published_total", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if got["eventbus_consumed_total"] != 15 || got["eventbus_outbox_pending"] != 2 || got["eventbus_published_total"] != 7 || got["missing"] != 0 {
		t.Errorf("ParseSums = %v", got)
	}
}
