package loadgen

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/personscore/stack/measure"
)

// HopConfig is a reference measurement of the broker alone: Messages small
// persistent messages published on a Rate schedule, each with its own
// confirm, to a quorum queue (as the services' queues are declared) on the
// vhost of URL, and consumed with manual acks. No store, no services.
type HopConfig struct {
	URL      string
	Rate     float64
	Messages int
	Prefetch int // default 256, score's default prefetch
}

// HopResult is what a hop run measured: from the publish call to the
// delivery, and from the publish call to its confirm.
type HopResult struct {
	Rate       float64         `json:"rate"`
	Messages   int             `json:"messages"`
	Throughput float64         `json:"throughput_per_s"`
	Delivered  measure.Summary `json:"publish_to_delivery"`
	Confirmed  measure.Summary `json:"publish_to_confirm"`
	// ConfirmedAndDelivered is publish → delivery, or → confirm if that
	// came later (a relay that waits for confirms sees this one).
	ConfirmedAndDelivered measure.Summary `json:"publish_to_confirmed_and_delivered"`
}

// RunHop measures one broker hop at a fixed rate.
func RunHop(ctx context.Context, cfg HopConfig) (*HopResult, error) {
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 256
	}
	conn, err := amqp.Dial(cfg.URL)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	pub, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	sub, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	queue := "hop-reference"
	if _, err := pub.QueueDeclare(queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		return nil, err
	}
	defer func() { _, _ = pub.QueueDelete(queue, false, false, false) }()
	if err := pub.Confirm(false); err != nil {
		return nil, err
	}
	if err := sub.Qos(cfg.Prefetch, 0, false); err != nil {
		return nil, err
	}
	deliveries, err := sub.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, err
	}

	sent := make([]time.Time, cfg.Messages)
	confirmed := make([]time.Time, cfg.Messages)
	delivered := make([]time.Time, cfg.Messages)
	var mu sync.Mutex
	got := make(chan error, 1)
	go func() {
		n := 0
		for d := range deliveries {
			at := time.Now()
			i, err := strconv.Atoi(d.MessageId)
			if err != nil || i < 0 || i >= cfg.Messages {
				got <- fmt.Errorf("hop: unexpected message %q", d.MessageId)
				return
			}
			_ = d.Ack(false)
			mu.Lock()
			if delivered[i].IsZero() {
				delivered[i] = at
				n++
			}
			mu.Unlock()
			if n == cfg.Messages {
				got <- nil
				return
			}
		}
		got <- fmt.Errorf("hop: deliveries ended")
	}()

	var confirms sync.WaitGroup
	var failed error
	body := []byte(`{"reference":"broker hop"}`)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	for i := 0; i < cfg.Messages && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		at := time.Now()
		dc, err := pub.PublishWithDeferredConfirm("", queue, true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: strconv.Itoa(i), Body: body})
		if err != nil {
			return nil, err
		}
		mu.Lock()
		sent[i] = at
		mu.Unlock()
		confirms.Add(1)
		go func() {
			defer confirms.Done()
			ok, err := dc.WaitContext(ctx)
			mu.Lock()
			defer mu.Unlock()
			confirmed[i] = time.Now()
			if (err != nil || !ok) && failed == nil {
				failed = fmt.Errorf("hop: message %d not confirmed (%v)", i, err)
			}
		}()
	}
	confirms.Wait()
	select {
	case err := <-got:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("hop: not every message delivered within a minute")
	}
	if failed != nil {
		return nil, failed
	}
	mu.Lock()
	defer mu.Unlock()
	var del, conf, both []time.Duration
	last := start
	for i := range cfg.Messages {
		del = append(del, delivered[i].Sub(sent[i]))
		conf = append(conf, confirmed[i].Sub(sent[i]))
		end := delivered[i]
		if confirmed[i].After(end) {
			end = confirmed[i]
		}
		both = append(both, end.Sub(sent[i]))
		if delivered[i].After(last) {
			last = delivered[i]
		}
	}
	res := &HopResult{Rate: cfg.Rate, Messages: cfg.Messages, Delivered: measure.Summarize(del),
		Confirmed: measure.Summarize(conf), ConfirmedAndDelivered: measure.Summarize(both)}
	if el := last.Sub(start).Seconds(); el > 0 {
		res.Throughput = float64(cfg.Messages) / el
	}
	return res, nil
}
