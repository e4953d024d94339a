// Command audit, the subscriber of the package documentation, logs persons created.
package main

import (
	"context"
	"log"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/service"
)

func main() {
	cfg, err := service.LoadConfig() // AMQP_URL, EXCHANGE_NAME, ...
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := service.SignalContext() // SIGTERM: drain in-flight work, then exit
	defer stop()
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(cfg.AMQPURL), Name: "audit"})
	defer conn.Close()
	consumer := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: "audit", Exchange: cfg.Exchange})
	consumer.Handle("person.created", func(ctx context.Context, ev eventbus.Event) error {
		log.Printf("person %s created (version %d)", ev.Subject, ev.Version)
		return nil // an error retries later; ErrMalformed dead-letters
	})
	if err := consumer.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
