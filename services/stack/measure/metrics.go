package measure

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// get fetches a /metrics page (or any page that must answer 200).
func get(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// eachSample calls f with every sample of a Prometheus text page.
func eachSample(r io.Reader, f func(name string, labels map[string]string, value float64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		var labels map[string]string
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = parseLabels(rest[1:end]), rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := parseFloat(fields[0]); err == nil {
			f(name, labels, v)
		}
	}
	return sc.Err()
}

// matches reports whether labels include every label of match.
func matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Scrape sums the samples of metric on the /metrics page at url whose labels
// include every label of match (e.g. {"queue": "score"}).
func Scrape(ctx context.Context, url, metric string, match map[string]string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	body, err := get(ctx, url)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return Sum(body, metric, match)
}

// Sum is Scrape on the text of a /metrics page.
func Sum(r io.Reader, metric string, match map[string]string) (float64, error) {
	sum := 0.0
	err := eachSample(r, func(name string, labels map[string]string, v float64) {
		if name == metric && matches(labels, match) {
			sum += v
		}
	})
	return sum, err
}

// ScrapeHistogram reads a Prometheus histogram from a /metrics page and sums
// its buckets over every series whose labels include all of match.
func ScrapeHistogram(ctx context.Context, url, name string, match map[string]string) ([]Bucket, error) {
	body, err := get(ctx, url)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return ParseHistogram(body, name, match)
}

// ParseHistogram is ScrapeHistogram on the text of a /metrics page.
func ParseHistogram(r io.Reader, name string, match map[string]string) ([]Bucket, error) {
	sums := map[float64]float64{}
	err := eachSample(r, func(n string, labels map[string]string, v float64) {
		if n != name+"_bucket" || !matches(labels, match) {
			return
		}
		if le, err := parseFloat(labels["le"]); err == nil {
			sums[le] += v
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]Bucket, 0, len(sums))
	for le, c := range sums {
		out = append(out, Bucket{LE: le, Count: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LE < out[j].LE })
	return out, nil
}

func parseFloat(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// parseLabels reads a="x",b="y" (values without escaped quotes, as here).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.Index(s, "=\"")
		if eq < 0 {
			break
		}
		key := strings.TrimLeft(s[:eq], ", ")
		rest := s[eq+2:]
		q := strings.Index(rest, "\"")
		if q < 0 {
			break
		}
		out[key] = rest[:q]
		s = rest[q+1:]
	}
	return out
}

// MetricLag summarizes the delta of a lag histogram over a run, in ms.
type MetricLag struct {
	Count float64 `json:"count"`
	P50MS float64 `json:"p50_ms"`
	P95MS float64 `json:"p95_ms"`
	P99MS float64 `json:"p99_ms"`
}

// LagFromBuckets estimates the percentiles of a histogram in seconds.
func LagFromBuckets(b []Bucket) MetricLag {
	if len(b) == 0 {
		return MetricLag{}
	}
	q := func(x float64) float64 {
		v := HistogramQuantile(x, b)
		if math.IsNaN(v) {
			return 0
		}
		return v * 1000
	}
	return MetricLag{Count: b[len(b)-1].Count, P50MS: q(.5), P95MS: q(.95), P99MS: q(.99)}
}

// ParseSums sums, for each name, the values of every series of that metric
// (counter or gauge) on a /metrics page.
func ParseSums(r io.Reader, names ...string) (map[string]float64, error) {
	out := make(map[string]float64, len(names))
	err := eachSample(r, func(name string, _ map[string]string, v float64) {
		if slices.Contains(names, name) {
			out[name] += v
		}
	})
	return out, err
}

// Quiesce waits until the services behind urls are idle: no event consumed,
// published or retried and nothing pending in an outbox for quiet, or until
// limit passes. It returns how long it waited.
func Quiesce(ctx context.Context, urls []string, quiet, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	names := []string{"eventbus_consumed_total", "eventbus_published_total", "eventbus_retried_total", "eventbus_outbox_pending"}
	last, since := -1.0, time.Now()
	for {
		total, pending := 0.0, 0.0
		for _, u := range urls {
			body, err := get(ctx, u+"/metrics")
			if err != nil {
				return time.Since(start), err
			}
			sums, err := ParseSums(body, names...)
			body.Close()
			if err != nil {
				return time.Since(start), err
			}
			for _, n := range names[:3] {
				total += sums[n]
			}
			pending += sums["eventbus_outbox_pending"]
		}
		if total != last || pending > 0 {
			last, since = total, time.Now()
		}
		if time.Since(since) >= quiet {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return time.Since(start), fmt.Errorf("still busy after %s", limit)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
