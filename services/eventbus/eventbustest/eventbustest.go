// Package eventbustest holds what the integration tests of eventbus services
// share: the address of the real broker, unique names and the deletion of what
// a test declared, so that suites can run side by side on one broker and one
// store. Tests that need the broker
// fail when it is unreachable; they never skip.
package eventbustest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BrokerURL is the broker the tests use: AMQP_URL, or the local RabbitMQ.
func BrokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// Unique returns prefix-<10 random hex digits>, for exchanges, queues and
// databases a test must not share with another.
func Unique(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// DeleteDeclared deletes queues and then exchange (unless it is "") on the
// broker at BrokerURL: the cleanup of a test that declared them. A name that
// is not there counts as deleted; any other failure fails the test, and the
// other names are still deleted.
func DeleteDeclared(t testing.TB, exchange string, queues ...string) {
	t.Helper()
	conn, err := amqp.Dial(BrokerURL())
	if err != nil {
		t.Errorf("cleanup: RabbitMQ unreachable at %s: %v", BrokerURL(), err)
		return
	}
	defer conn.Close()
	var ch *amqp.Channel
	// open returns a usable channel: the broker closes one whose command failed.
	open := func() bool {
		if ch != nil && !ch.IsClosed() {
			return true
		}
		if ch, err = conn.Channel(); err != nil {
			t.Errorf("cleanup: open a channel: %v", err)
			return false
		}
		return true
	}
	for _, q := range queues {
		if !open() {
			return
		}
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Errorf("cleanup: delete queue %s: %v", q, err)
		}
	}
	if exchange != "" && open() {
		if err := ch.ExchangeDelete(exchange, false, false); err != nil {
			t.Errorf("cleanup: delete exchange %s: %v", exchange, err)
		}
	}
}

// Eventually polls cond every 20 ms until it holds, and fails the test if it
// does not within the given time.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
