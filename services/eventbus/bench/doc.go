// Package bench compares the throughput of the eventbus library with raw
// amqp091-go (the limit) and with watermill-amqp (the peer) on the same
// broker in the same run. It holds only benchmarks: see docs/BENCHMARKS.md.
package bench
