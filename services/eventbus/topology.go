package eventbus

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DefaultExchange is the topic exchange all events go to (the original system's name).
const DefaultExchange = "event_dispatcher"

// Queue names of one consuming service. Each service owns one work queue, one
// delay queue per retry step and one dead-letter queue.
func WorkQueue(service string) string       { return service + ".queue" }
func DeadLetterQueue(service string) string { return service + ".dlq" }
func delayQueue(service string, d time.Duration) string {
	return fmt.Sprintf("%s.retry.%s", service, d)
}

// declareExchange declares the durable topic exchange; safe to repeat.
func declareExchange(ch *amqp.Channel, exchange string) error {
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	return nil
}

// quorumArgs are the arguments of every queue we declare: replicated quorum
// queues that dead-letter at least once.
func quorumArgs() amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-overflow":             "reject-publish",
		"x-dead-letter-strategy": "at-least-once",
	}
}

// declareConsumerTopology declares, idempotently, the service's work queue bound
// to keys, its delay queues (each dead-letters back into the work queue when its
// TTL expires) and its dead-letter queue. The work queue's delivery limit catches
// a message that crashes its consumer process over and over.
func declareConsumerTopology(ch *amqp.Channel, cfg ConsumerConfig, keys []string) error {
	if err := declareExchange(ch, cfg.Exchange); err != nil {
		return err
	}
	work, dlq := WorkQueue(cfg.Service), DeadLetterQueue(cfg.Service)
	if _, err := ch.QueueDeclare(dlq, true, false, false, false, quorumArgs()); err != nil {
		return fmt.Errorf("declare %s: %w", dlq, err)
	}
	args := quorumArgs()
	args["x-delivery-limit"] = int64(cfg.DeliveryLimit)
	args["x-dead-letter-exchange"] = ""
	args["x-dead-letter-routing-key"] = dlq
	if _, err := ch.QueueDeclare(work, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare %s: %w", work, err)
	}
	for _, key := range keys {
		if err := ch.QueueBind(work, key, cfg.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", work, key, err)
		}
	}
	for _, d := range cfg.RetryDelays {
		args := quorumArgs()
		args["x-message-ttl"] = d.Milliseconds()
		args["x-dead-letter-exchange"] = ""
		args["x-dead-letter-routing-key"] = work
		if _, err := ch.QueueDeclare(delayQueue(cfg.Service, d), true, false, false, false, args); err != nil {
			return fmt.Errorf("declare delay queue %s: %w", delayQueue(cfg.Service, d), err)
		}
	}
	return nil
}
