package stack

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os/exec"
)

// NewVhost creates a fresh RabbitMQ virtual host (with rabbitmqctl) so a test
// gets its own exchange and queues on the shared broker, and returns its AMQP
// URL based on baseURL plus a function that deletes it.
func NewVhost(baseURL, prefix string) (string, func(), error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	if out, err := exec.Command("rabbitmqctl", "-q", "add_vhost", name).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("rabbitmqctl add_vhost: %v: %s", err, out)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", nil, err
	}
	user := "guest"
	if u.User != nil {
		user = u.User.Username()
	}
	if out, err := exec.Command("rabbitmqctl", "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("rabbitmqctl set_permissions: %v: %s", err, out)
	}
	u.Path = "/" + name
	cleanup := func() { _ = exec.Command("rabbitmqctl", "-q", "delete_vhost", name).Run() }
	return u.String(), cleanup, nil
}
