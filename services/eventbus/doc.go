// Package eventbus is the one messaging runtime every service uses. It
// publishes CloudEvents 1.0 (JSON structured mode) to a RabbitMQ topic
// exchange and consumes them from one quorum queue per service:
//
//   - Conn: one self-healing connection to the nodes of a cluster (amqp:// or
//     amqps://), moving to the next node on failure.
//   - Publisher: publisher confirms over a sliding window, mandatory publishes
//     whose returns are errors (ErrUnroutable), fail-fast while disconnected
//     (ErrNotConnected). Publish waits for the confirms; PublishAsync streams.
//   - Consumer: manual acks, prefetch, N workers that never handle one subject
//     concurrently, retries with exponential backoff through delay queues,
//     dead letters (<service>.dlq) with the reason and attempt count,
//     graceful shutdown, reconnects, the topology declared on every attach;
//     HandleBatch hands the queued events of one subject to one call.
//   - ReplayDeadLetters, DeadLetterCount, PeekDeadLetters (and cmd/dlq):
//     move dead letters back once their cause is fixed.
//   - VersionLog and IDLog: consumers apply every event at most once.
//   - Metrics (Prometheus), zap fields (EventFields) and W3C trace context
//     carried in the event and in the AMQP headers (OpenTelemetry).
//
// The outbox subpackage makes a MongoDB state change and its events one
// atomic single-document write and relays them; the service subpackage holds
// the HTTP and process runtime the services share.
//
// Delivery is at least once; consumers make it effectively once by applying
// each (subject, version) pair at most once (see VersionLog).
//
// A whole subscriber service (examples/audit):
//
//	func main() {
//		cfg, err := service.LoadConfig() // AMQP_URL, EXCHANGE_NAME, ...
//		if err != nil {
//			log.Fatal(err)
//		}
//		ctx, stop := service.SignalContext() // SIGTERM: drain in-flight work, then exit
//		defer stop()
//		conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(cfg.AMQPURL), Name: "audit"})
//		defer conn.Close()
//		consumer := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: "audit", Exchange: cfg.Exchange})
//		consumer.Handle("person.created", func(ctx context.Context, ev eventbus.Event) error {
//			log.Printf("person %s created (version %d)", ev.Subject, ev.Version)
//			return nil // an error retries later; ErrMalformed dead-letters
//		})
//		if err := consumer.Run(ctx); err != nil {
//			log.Fatal(err)
//		}
//	}
package eventbus
