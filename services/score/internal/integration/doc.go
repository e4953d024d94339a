// Package integration holds score's end-to-end tests against the real broker
// and the embedded MongoDB: several replicas consuming one queue, and a full
// rebuild through the admin API with person played by a test double that
// speaks person's side of the event contract.
package integration
