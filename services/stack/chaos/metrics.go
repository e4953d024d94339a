package chaos

import (
	"context"
	"sync"
	"time"

	"github.com/personscore/stack/measure"
	amqp "github.com/rabbitmq/amqp091-go"
)

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
	stop       func()
	once       sync.Once
}

// NewTally starts polling every 200ms.
func NewTally(url func() string, metric string, match map[string]string) *Tally {
	t := &Tally{url: url, metric: metric, match: match}
	t.stop = measure.Every(200*time.Millisecond, t.Poll)
	return t
}

// Poll reads the counter now.
func (t *Tally) Poll() {
	v, err := measure.Scrape(context.Background(), t.url(), t.metric, t.match)
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
	t.once.Do(t.stop)
	return t.Total()
}

// QueueDepth is the number of ready messages in a queue (passive declare).
// An answer of 0 messages and 0 consumers may be the broker's placeholder
// for a quorum queue whose leader did not answer in time (see QueueStat), so
// such an answer is asked again a few times before it is believed.
func QueueDepth(amqpURL, queue string) (int, error) {
	var n, consumers int
	var err error
	for range 5 {
		if n, consumers, err = QueueStat(amqpURL, queue); err != nil || n > 0 || consumers > 0 {
			return n, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n, err
}

// QueueStat is the number of ready messages in a queue and of its consumers
// (passive declare). For a quorum queue the broker asks the queue's leader
// and, when the leader does not answer within 250 ms (a busy broker on a
// loaded machine), it answers 0 messages and 0 consumers whatever the queue
// holds (rabbit_quorum_queue:stat/2). So 0 messages is only known to be true
// when the answer also counts a consumer the queue is known to have.
func QueueStat(amqpURL, queue string) (messages, consumers int, err error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, 0, err
	}
	return q.Messages, q.Consumers, nil
}
