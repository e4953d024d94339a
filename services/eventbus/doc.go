// Package eventbus is the one messaging runtime every service uses: it publishes
// CloudEvents to a RabbitMQ topic exchange with publisher confirms and consumes them
// with retries through delay queues, dead letters and replay. Its outbox subpackage
// makes a MongoDB state change and its events one atomic single-document write.
//
// Delivery is at least once; consumers make it effectively once by applying each
// (subject, version) pair at most once (see VersionLog).
//
// A minimal subscriber:
//
//	conn := eventbus.Open(eventbus.ConnConfig{URLs: []string{"amqp://guest:guest@localhost:5672/"}})
//	defer conn.Close()
//	c := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: "audit"})
//	c.Handle("person.created", func(ctx context.Context, ev eventbus.Event) error {
//		log.Printf("person %s created", ev.Subject)
//		return nil
//	})
//	err := c.Run(ctx) // until ctx is cancelled, then drains in-flight work
package eventbus
