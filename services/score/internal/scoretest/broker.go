// Package scoretest holds the helpers of score's integration tests: the real
// RabbitMQ (AMQP_URL, default the local broker) with a private exchange and
// private consumer names per test, deleting what the test declared, and an
// embedded MongoDB-wire store. It never skips: an unreachable broker fails the
// test loudly.
package scoretest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// RetryDelays is the short retry schedule the tests' consumers use.
var RetryDelays = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}

// Broker is one test's view of the broker: a private exchange, the consumer
// services to clean up, and one shared connection.
type Broker struct {
	t        testing.TB
	Exchange string
	Conn     *eventbus.Conn
	Log      *zap.Logger

	mu       sync.Mutex
	services []string
}

// New connects (failing the test if the broker is unreachable) and schedules
// the deletion of the exchange and of every consumer's queues.
func New(t testing.TB) *Broker {
	t.Helper()
	raw, err := amqp.Dial(eventbustest.BrokerURL())
	if err != nil {
		t.Fatalf("RabbitMQ unreachable at %s: %v (integration tests need the broker; they never skip)", eventbustest.BrokerURL(), err)
	}
	_ = raw.Close()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	b := &Broker{t: t, Exchange: eventbustest.Unique("score-test"), Log: log}
	b.Conn = eventbus.Open(eventbus.ConnConfig{URLs: []string{eventbustest.BrokerURL()}, Name: eventbustest.Unique("score-test"), Logger: log})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Conn.WaitConnected(ctx); err != nil {
		t.Fatalf("RabbitMQ unreachable at %s: %v", eventbustest.BrokerURL(), err)
	}
	t.Cleanup(b.cleanup)
	return b
}

// Publisher returns a confirming publisher on the test's exchange.
func (b *Broker) Publisher() *eventbus.Publisher {
	b.t.Helper()
	p := eventbus.NewPublisher(b.Conn, eventbus.PublisherConfig{Exchange: b.Exchange, Logger: b.Log,
		Metrics: eventbus.NewMetrics(prometheus.NewRegistry())})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		b.t.Fatalf("publisher not ready: %v", err)
	}
	b.t.Cleanup(func() { _ = p.Close() })
	return p
}

// Consumer returns a consumer of service on the test's exchange (on its own
// connection, as another replica would have); register handlers, then Run it.
func (b *Broker) Consumer(service string, workers int) *eventbus.Consumer {
	b.mu.Lock()
	b.services = append(b.services, service)
	b.mu.Unlock()
	conn := eventbus.Open(eventbus.ConnConfig{URLs: []string{eventbustest.BrokerURL()}, Name: eventbustest.Unique(service), Logger: b.Log})
	b.t.Cleanup(func() { _ = conn.Close() })
	return eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: service, Exchange: b.Exchange, Workers: workers,
		RetryDelays: RetryDelays, ShutdownTimeout: 5 * time.Second, Logger: b.Log,
		Metrics: eventbus.NewMetrics(prometheus.NewRegistry())})
}

// Run runs c until the test ends and waits until it is attached to its queue.
func (b *Broker) Run(c *eventbus.Consumer) {
	b.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			b.t.Errorf("consumer: %v", err)
		}
	}()
	b.t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			b.t.Fatal("consumer did not attach to its queue")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *Broker) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	var queues []string
	for _, s := range b.services {
		queues = append(queues, eventbus.WorkQueue(s), eventbus.DeadLetterQueue(s))
		for _, d := range RetryDelays {
			queues = append(queues, fmt.Sprintf("%s.retry.%s", s, d))
		}
	}
	eventbustest.DeleteDeclared(b.t, b.Exchange, queues...)
}

// DeadLetters counts the messages in service's dead-letter queue.
func (b *Broker) DeadLetters(service string) int {
	b.t.Helper()
	conn, err := amqp.Dial(eventbustest.BrokerURL())
	if err != nil {
		b.t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(eventbus.DeadLetterQueue(service), true, false, false, false,
		amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	if err != nil {
		b.t.Fatal(err)
	}
	return q.Messages
}
