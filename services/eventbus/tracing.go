package eventbus

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// W3C trace context travels twice: inside the event (the CloudEvents
// distributed-tracing extension, so it survives the outbox) and as AMQP
// headers, where tools that know nothing of CloudEvents find it.
const (
	headerTraceParent = "traceparent"
	headerTraceState  = "tracestate"
)

// propagator always speaks W3C trace context, plus whatever the process
// registered globally (baggage, for instance).
func propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, otel.GetTextMapPropagator())
}

// traceHeaders returns the AMQP headers carrying the trace context of ev, or
// of ctx when the event has none; nil when there is nothing to carry.
func traceHeaders(ctx context.Context, ev Event) amqp.Table {
	if ev.TraceParent != "" {
		h := amqp.Table{headerTraceParent: ev.TraceParent}
		if ev.TraceState != "" {
			h[headerTraceState] = ev.TraceState
		}
		return h
	}
	h := amqp.Table{}
	propagator().Inject(ctx, tableCarrier(h))
	if len(h) == 0 {
		return nil
	}
	return h
}

// deliveryTraceContext returns ctx carrying the remote span context found in
// the delivery's headers, or else in the event itself.
func deliveryTraceContext(ctx context.Context, headers amqp.Table, ev Event) context.Context {
	if _, ok := headers[headerTraceParent]; ok {
		return propagator().Extract(ctx, tableCarrier(headers))
	}
	return ev.traceContext(ctx)
}

// tableCarrier lets OpenTelemetry propagators read and write AMQP headers.
type tableCarrier amqp.Table

func (t tableCarrier) Get(key string) string {
	if v, ok := t[key].(string); ok {
		return v
	}
	return ""
}
func (t tableCarrier) Set(key, value string) { t[key] = value }
func (t tableCarrier) Keys() []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	return keys
}
