package eventbus_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
)

// A complete subscriber service in under 30 lines: connect, say which events
// it handles, run until stopped. Retries through delay queues, dead letters,
// per-subject ordering, reconnects, metrics and trace propagation come with
// the Consumer. In a real service the names are fixed ("audit",
// eventbus.DefaultExchange) and ctx comes from service.SignalContext.
func Example_subscriber() {
	service, exchange := eventbustest.Unique("audit"), eventbustest.Unique("events")
	defer cleanup(exchange, service)

	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(eventbustest.BrokerURL()), Name: service})
	defer conn.Close()
	consumer := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: service, Exchange: exchange})
	handled := make(chan struct{})
	consumer.Handle("person.created", func(ctx context.Context, ev eventbus.Event) error {
		var person struct {
			Name string `json:"name"`
		}
		if err := ev.DecodeData(&person); err != nil {
			return err // malformed: dead-lettered at once, never retried
		}
		fmt.Printf("person %s created: %s (version %d)\n", ev.Subject, person.Name, ev.Version)
		close(handled)
		return nil // acknowledged; any other error is retried later
	})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- consumer.Run(ctx) }() // until ctx ends, then drains in-flight work

	// What another service would do: publish the event.
	waitReady(consumer)
	publishPersonCreated(conn, exchange)

	<-handled
	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// person 12345678909 created: Ana (version 1)
	// stopped: <nil>
}

func publishPersonCreated(conn *eventbus.Conn, exchange string) {
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: exchange})
	defer pub.Close()
	ctx := context.Background()
	_ = pub.WaitReady(ctx)
	ev, _ := eventbus.NewEvent(ctx, "/person", "person.created", "12345678909", 1, map[string]string{"name": "Ana"})
	if err := pub.Publish(ctx, ev); err != nil {
		fmt.Println("publish:", err)
	}
}

// Publishing waits for the broker's confirms; an event no queue is bound for
// comes back as ErrUnroutable instead of vanishing.
func ExamplePublisher_Publish() {
	service, exchange := eventbustest.Unique("score"), eventbustest.Unique("events")
	defer cleanup(exchange, service)
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(eventbustest.BrokerURL())})
	defer conn.Close()

	// A subscriber for income.created, so that type is routable.
	sub := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: service, Exchange: exchange})
	sub.Handle("income.created", func(context.Context, eventbus.Event) error { return nil })
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go sub.Run(ctx)
	waitReady(sub)

	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: exchange})
	defer pub.Close()
	if err := pub.WaitReady(ctx); err != nil {
		fmt.Println(err)
		return
	}
	income, _ := eventbus.NewEvent(ctx, "/person", "income.created", "12345678909", 2, map[string]int64{"value_cents": 350000})
	fmt.Println("income.created:", pub.Publish(ctx, income))

	orphan, _ := eventbus.NewEvent(ctx, "/person", "nobody.listens", "12345678909", 3, nil)
	err := pub.Publish(ctx, orphan)
	fmt.Println("nobody.listens unroutable:", errors.Is(err, eventbus.ErrUnroutable))
	// Output:
	// income.created: <nil>
	// nobody.listens unroutable: true
}

// VersionLog makes a consumer idempotent and tolerant of reordering: keep it
// in the aggregate's document and apply an event only when Add says it is new.
func ExampleVersionLog() {
	var applied eventbus.VersionLog
	for _, version := range []int64{1, 3, 3, 2, 1, 4} { // a duplicate, a late arrival
		if applied.Add(version) {
			fmt.Println("apply version", version)
		} else {
			fmt.Println("skip duplicate", version)
		}
	}
	fmt.Printf("all applied up to %d\n", applied.Applied)
	// Output:
	// apply version 1
	// apply version 3
	// skip duplicate 3
	// apply version 2
	// skip duplicate 1
	// apply version 4
	// all applied up to 4
}

// After fixing what made events fail, move them from the dead-letter queue
// back to the work queue (the dlq command does the same from a shell).
func ExampleReplayDeadLetters() {
	service, exchange := eventbustest.Unique("billing"), eventbustest.Unique("events")
	defer cleanup(exchange, service)
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(eventbustest.BrokerURL())})
	defer conn.Close()
	deadLetter(conn, exchange, service, 3) // three events failed for good

	ctx := context.Background()
	waiting, _ := eventbus.DeadLetterCount(ctx, conn, service)
	fmt.Println("dead letters:", waiting)
	moved, err := eventbus.ReplayDeadLetters(ctx, conn, service, 0, nil)
	fmt.Println("moved back:", moved, err)
	// Output:
	// dead letters: 3
	// moved back: 3 <nil>
}
