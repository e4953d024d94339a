package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Scrape sums the samples of metric in a Prometheus text page whose labels
// include every label of match (e.g. {"queue": "score"}).
func Scrape(ctx context.Context, url, metric string, match map[string]string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // a longer metric name
		}
		if !labelsMatch(labels, match) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

func labelsMatch(labels string, match map[string]string) bool {
	for k, v := range match {
		if !strings.Contains(labels, k+`="`+v+`"`) {
			return false
		}
	}
	return true
}

// Tally follows a counter of a process that may restart (its counter then
// starts from zero again) and adds up what every incarnation counted. Call
// Poll right before killing the process so little is missed.
type Tally struct {
	url    func() string
	metric string
	match  map[string]string

	mu         sync.Mutex
	base, last float64
	samples    []sample
	stop       chan struct{}
	done       chan struct{}
	once       sync.Once
}

// NewTally starts polling every 200ms.
func NewTally(url func() string, metric string, match map[string]string) *Tally {
	t := &Tally{url: url, metric: metric, match: match, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				t.Poll()
			}
		}
	}()
	return t
}

// Poll reads the counter now.
func (t *Tally) Poll() {
	v, err := Scrape(context.Background(), t.url(), t.metric, t.match)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v < t.last {
		t.base += t.last // the process restarted
	}
	t.last = v
	t.samples = append(t.samples, sample{at: time.Now(), total: t.base + t.last})
}

type sample struct {
	at    time.Time
	total float64
}

// LongestFlat is the longest stretch between from and to during which the
// counter did not move (e.g. a consumer making no progress).
func (t *Tally) LongestFlat(from, to time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var longest time.Duration
	var since time.Time
	var last float64 = -1
	for _, s := range t.samples {
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		if last < 0 || s.total != last {
			since, last = s.at, s.total
			continue
		}
		longest = max(longest, s.at.Sub(since))
	}
	return longest
}

// Total is the sum over every incarnation seen.
func (t *Tally) Total() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.base + t.last
}

// Stop ends the polling after a last Poll.
func (t *Tally) Stop() float64 {
	t.once.Do(func() {
		close(t.stop)
		<-t.done
		t.Poll()
	})
	return t.Total()
}

// QueueDepth is the number of ready messages in a queue (passive declare).
func QueueDepth(amqpURL, queue string) (int, error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}

// PeakRSS is a process's peak resident set size (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) {
	return procStatus(pid, "VmHWM:")
}

// RSS is a process's current resident set size (VmRSS) in bytes.
func RSS(pid int) (int64, error) {
	return procStatus(pid, "VmRSS:")
}

func procStatus(pid int, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line[len(field):])
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
