package measure

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Summary describes a set of durations, in milliseconds for JSON readers.
type Summary struct {
	Count  int     `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P95MS  float64 `json:"p95_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// Percentile is the nearest-rank percentile (0 < p ≤ 100) of sorted values:
// the smallest value with at least p% of the values at or below it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// MS is d in milliseconds.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summarize sorts a copy of ds and describes it.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Summary{
		Count:  len(s),
		MeanMS: MS(sum / time.Duration(len(s))),
		P50MS:  MS(Percentile(s, 50)),
		P95MS:  MS(Percentile(s, 95)),
		P99MS:  MS(Percentile(s, 99)),
		MaxMS:  MS(s[len(s)-1]),
	}
}

// Bucket is one cumulative bucket of a Prometheus histogram.
type Bucket struct {
	LE    float64 // upper bound; +Inf for the last
	Count float64 // observations ≤ LE
}

// HistogramQuantile estimates the q-quantile (0..1) of a cumulative histogram
// the way Prometheus' histogram_quantile does: linear interpolation inside the
// bucket that holds the rank; the highest finite bound when it falls in +Inf.
// NaN when the histogram is empty.
func HistogramQuantile(q float64, buckets []Bucket) float64 {
	if len(buckets) == 0 {
		return math.NaN()
	}
	b := slices.Clone(buckets)
	sort.Slice(b, func(i, j int) bool { return b[i].LE < b[j].LE })
	total := b[len(b)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	i := sort.Search(len(b), func(i int) bool { return b[i].Count >= rank })
	if i >= len(b) {
		i = len(b) - 1
	}
	if math.IsInf(b[i].LE, 1) {
		if i == 0 {
			return math.NaN()
		}
		return b[i-1].LE
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = b[i-1].LE, b[i-1].Count
	}
	inBucket := b[i].Count - below
	if inBucket <= 0 {
		return b[i].LE
	}
	return lower + (b[i].LE-lower)*(rank-below)/inBucket
}

// SubBuckets is after − before, bucket by bucket (both from the same series).
func SubBuckets(after, before []Bucket) []Bucket {
	prev := map[float64]float64{}
	for _, b := range before {
		prev[b.LE] = b.Count
	}
	out := make([]Bucket, len(after))
	for i, b := range after {
		out[i] = Bucket{LE: b.LE, Count: b.Count - prev[b.LE]}
	}
	return out
}

// Second is one second of a run: what completed in it.
type Second struct {
	T        int     `json:"t"`      // seconds since the start
	Writes   int     `json:"writes"` // 2xx writes completed
	Errors   int     `json:"errors"`
	LatP50MS float64 `json:"latency_p50_ms"`
	LatP99MS float64 `json:"latency_p99_ms"`
	// Lag of the writes whose 2xx came in this second.
	LagP50MS float64 `json:"lag_p50_ms"`
	LagP99MS float64 `json:"lag_p99_ms"`
	LagMaxMS float64 `json:"lag_max_ms"`
}

// Sample is one write as the tool saw it.
type Sample struct {
	At      time.Duration // 2xx (or error) time since the start of the run
	Latency time.Duration
	Lag     time.Duration // -1: not measured
	OK      bool
}

// Timeline groups samples into seconds.
func Timeline(samples []Sample, length time.Duration) []Second {
	return TimelineStep(samples, length, time.Second)
}

// TimelineStep groups samples into buckets of step (T counts buckets, Writes
// and Errors are per bucket).
func TimelineStep(samples []Sample, length, step time.Duration) []Second {
	n := max(int(math.Ceil(float64(length)/float64(step))), 1)
	lat := make([][]time.Duration, n)
	lag := make([][]time.Duration, n)
	secs := make([]Second, n)
	for i := range secs {
		secs[i].T = i
	}
	for _, s := range samples {
		i := min(max(int(s.At/step), 0), n-1)
		if !s.OK {
			secs[i].Errors++
			continue
		}
		secs[i].Writes++
		lat[i] = append(lat[i], s.Latency)
		if s.Lag >= 0 {
			lag[i] = append(lag[i], s.Lag)
		}
	}
	for i := range secs {
		l := Summarize(lat[i])
		secs[i].LatP50MS, secs[i].LatP99MS = l.P50MS, l.P99MS
		g := Summarize(lag[i])
		secs[i].LagP50MS, secs[i].LagP99MS, secs[i].LagMaxMS = g.P50MS, g.P99MS, g.MaxMS
	}
	return secs
}
