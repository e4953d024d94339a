package eventbus_test

import (
	"context"
	"errors"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Helpers that keep the examples short and let them run beside other suites
// on a shared broker: unique names, and deletion of what an example declared.

// cleanup deletes the queues of services and the exchange.
func cleanup(exchange string, services ...string) {
	conn, err := amqp.Dial(eventbustest.BrokerURL())
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, s := range services {
		for _, q := range []string{eventbus.WorkQueue(s), eventbus.DeadLetterQueue(s), s + ".retry.500ms", s + ".retry.2s", s + ".retry.8s", s + ".retry.32s"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	}
	_ = ch.ExchangeDelete(exchange, false, false)
}

// waitReady waits until the consumer has declared its queue and bindings.
func waitReady(c *eventbus.Consumer) {
	for deadline := time.Now().Add(10 * time.Second); !c.Ready() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// deadLetter runs a consumer of service whose handler always fails, without
// retries, until n events sit in its dead-letter queue.
func deadLetter(conn *eventbus.Conn, exchange, service string, n int) {
	c := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: service, Exchange: exchange, RetryDelays: []time.Duration{}})
	c.Handle("invoice.issued", func(context.Context, eventbus.Event) error { return errors.New("tax service down") })
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	waitReady(c)
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: exchange})
	defer pub.Close()
	_ = pub.WaitReady(ctx)
	for i := range n {
		ev, _ := eventbus.NewEvent(ctx, "/billing", "invoice.issued", "42", int64(i+1), nil)
		_ = pub.Publish(ctx, ev)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got, _ := eventbus.DeadLetterCount(ctx, conn, service); got == n {
			break
		}
	}
	stop()
	<-done
}
