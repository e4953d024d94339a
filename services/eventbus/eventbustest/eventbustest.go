// Package eventbustest holds what the integration tests of eventbus services
// share: the address of the real broker and unique names, so that suites can
// run side by side on one broker and one store. Tests that need the broker
// fail when it is unreachable; they never skip.
package eventbustest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
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
