package eventbus

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the library's Prometheus instruments. One set is shared by all
// publishers, consumers and outboxes of a process.
type Metrics struct {
	Published      *prometheus.CounterVec
	Confirmed      *prometheus.CounterVec
	Returned       *prometheus.CounterVec
	Consumed       *prometheus.CounterVec
	Retried        *prometheus.CounterVec
	DeadLettered   *prometheus.CounterVec
	HandlerSeconds *prometheus.HistogramVec
	Lag            *prometheus.HistogramVec
	OutboxPending  *prometheus.GaugeVec
	OutboxOldest   *prometheus.GaugeVec
	OutboxDrained  *prometheus.CounterVec
}

// NewMetrics creates the instruments and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	lagBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		Published:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventbus_published_total", Help: "Events sent to the broker."}, []string{"type"}),
		Confirmed:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventbus_confirmed_total", Help: "Publishes the broker confirmed (ack)."}, []string{"type"}),
		Returned:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventbus_returned_total", Help: "Publishes the broker returned as unroutable."}, []string{"type"}),
		Consumed:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventbus_consumed_total", Help: "Events handled successfully."}, []string{"queue", "type"}),
		Retried:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventbus_retried_total", Help: "Events sent to a delay queue after a failure."}, []string{"queue", "type"}),
		DeadLettered:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventbus_dead_lettered_total", Help: "Events moved to the dead-letter queue."}, []string{"queue", "reason"}),
		HandlerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "eventbus_handler_seconds", Help: "Handler run time.", Buckets: prometheus.DefBuckets}, []string{"queue", "type"}),
		Lag:            prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "eventbus_lag_seconds", Help: "End-to-end lag from event time to handled.", Buckets: lagBuckets}, []string{"queue", "type"}),
		OutboxPending:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "eventbus_outbox_pending", Help: "Events in the outbox not yet confirmed by the broker, as this process counts them (its own writes, and what its sweeps found due)."}, []string{"collection"}),
		OutboxOldest:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "eventbus_outbox_oldest_pending_seconds", Help: "Age of the oldest pending outbox event (0 when none)."}, []string{"collection"}),
		OutboxDrained:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventbus_outbox_drained_total", Help: "Backlog events published late: left in their documents by a failed publish, a full relay or a crash, then published by the sweep or ahead of a newer event of their document. Its rate is the drain rate."}, []string{"collection"}),
	}
	if reg != nil {
		reg.MustRegister(m.Published, m.Confirmed, m.Returned, m.Consumed, m.Retried, m.DeadLettered,
			m.HandlerSeconds, m.Lag, m.OutboxPending, m.OutboxOldest, m.OutboxDrained)
	}
	return m
}

var (
	defaultMetricsOnce sync.Once
	defaultMetrics     *Metrics
)

// DefaultMetrics returns the process-wide set registered with prometheus.DefaultRegisterer.
func DefaultMetrics() *Metrics {
	defaultMetricsOnce.Do(func() { defaultMetrics = NewMetrics(prometheus.DefaultRegisterer) })
	return defaultMetrics
}
