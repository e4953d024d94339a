package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Exchange is the topic exchange person publishes to.
const Exchange = "event_dispatcher"

// Event is a person event in the wire contract (CloudEvents 1.0, structured
// JSON mode, with the per-cpf version extension), built by the test itself so
// that the suite checks the contract rather than trusting the library.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	Version         int64           `json:"version"`
}

// NewID is a random event id.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newEvent(typ string, cpf, version int64, data any) Event {
	raw, _ := json.Marshal(data)
	return Event{SpecVersion: "1.0", ID: NewID(), Source: "/person", Type: typ, Subject: strconv.FormatInt(cpf, 10),
		Time: time.Now().UTC().Truncate(time.Millisecond), DataContentType: "application/json", Data: raw, Version: version}
}

// PersonCreated is person.created of cpf at version.
func PersonCreated(cpf, version int64) Event {
	return newEvent("person.created", cpf, version, map[string]any{
		"cpf": cpf, "name": fmt.Sprintf("injected %d", cpf), "address": "", "date_of_birth": "1990-01-01"})
}

// ItemCreated is <kind>.created of an item worth value whole units.
func ItemCreated(cpf, version int64, kind, id string, value int64) Event {
	return newEvent(kind+".created", cpf, version, map[string]any{
		"cpf": cpf, "id": id, "kind": kind, "type": "injected", "value": value, "value_cents": value * 100})
}

// ItemDeleted is <kind>.deleted of an item.
func ItemDeleted(cpf, version int64, kind, id string) Event {
	return newEvent(kind+".deleted", cpf, version, map[string]any{"cpf": cpf, "id": id, "kind": kind})
}

// Message is one raw AMQP message to publish.
type Message struct {
	Key  string // routing key
	Body []byte
	// Type and ID go to the AMQP type and message_id properties.
	Type, ID string
}

// EventMessage wraps an event as the publisher would send it.
func EventMessage(ev Event) Message {
	body, _ := json.Marshal(ev)
	return Message{Key: ev.Type, Body: body, Type: ev.Type, ID: ev.ID}
}

// Publish sends messages to the exchange with publisher confirms, pipelined,
// and returns once the broker confirmed every one (not mandatory: an
// unroutable message is dropped by the broker, like a key nobody binds).
func Publish(ctx context.Context, amqpURL string, msgs []Message) error {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	const window = 512
	pending := make([]*amqp.DeferredConfirmation, 0, window)
	flush := func() error {
		for _, dc := range pending {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("publish nacked by the broker")
			}
		}
		pending = pending[:0]
		return nil
	}
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, Exchange, m.Key, false, false, amqp.Publishing{
			ContentType: "application/cloudevents+json", DeliveryMode: amqp.Persistent,
			Type: m.Type, MessageId: m.ID, Body: m.Body, Timestamp: time.Now(),
		})
		if err != nil {
			return err
		}
		pending = append(pending, dc)
		if len(pending) == window {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
