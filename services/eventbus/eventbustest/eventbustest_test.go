package eventbustest

import (
	"errors"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DeleteDeclared removes the queues and the exchange a test declared, and
// names that are not there do not fail it.
func TestDeleteDeclared(t *testing.T) {
	conn, err := amqp.Dial(BrokerURL())
	if err != nil {
		t.Fatalf("RabbitMQ unreachable at %s: %v", BrokerURL(), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	exchange, queue, missing := Unique("eventbustest-x"), Unique("eventbustest-q"), Unique("eventbustest-missing")
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	DeleteDeclared(t, exchange, missing, queue)

	notFound := func(what string, err error) {
		t.Helper()
		var e *amqp.Error
		if !errors.As(err, &e) || e.Code != amqp.NotFound {
			t.Errorf("%s after DeleteDeclared: %v, want not found", what, err)
		}
	}
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	notFound("queue "+queue, err)
	if ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	notFound("exchange "+exchange, ch.ExchangeDeclarePassive(exchange, "topic", true, false, false, false, nil))
}
