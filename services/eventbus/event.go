package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
)

// ContentType is the CloudEvents 1.0 JSON structured-mode media type.
const ContentType = "application/cloudevents+json"

// Event is a CloudEvents 1.0 envelope in structured JSON mode. Version (the
// aggregate's version after the change) and TraceParent (W3C trace context) are
// CloudEvents extension attributes.
type Event struct {
	SpecVersion     string          `json:"specversion" bson:"specversion"`
	ID              string          `json:"id" bson:"id"`
	Source          string          `json:"source" bson:"source"`
	Type            string          `json:"type" bson:"type"`
	Subject         string          `json:"subject" bson:"subject"`
	Time            time.Time       `json:"time" bson:"time"`
	DataContentType string          `json:"datacontenttype,omitempty" bson:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty" bson:"data,omitempty"`
	Version         int64           `json:"version" bson:"version"`
	TraceParent     string          `json:"traceparent,omitempty" bson:"traceparent,omitempty"`
	TraceState      string          `json:"tracestate,omitempty" bson:"tracestate,omitempty"`
}

// NewEvent builds an event for one change of the aggregate identified by subject.
// The trace context of ctx, if any, travels with the event.
func NewEvent(ctx context.Context, source, typ, subject string, version int64, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("eventbus: encode %s data: %w", typ, err)
	}
	ev := Event{
		SpecVersion: "1.0",
		ID:          uuid.NewString(),
		Source:      source,
		Type:        typ,
		Subject:     subject,
		// Millisecond precision: what MongoDB stores, so an event reads the same
		// whether the relay or the sweep publishes it.
		Time:            time.Now().UTC().Truncate(time.Millisecond),
		DataContentType: "application/json",
		Data:            raw,
		Version:         version,
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	ev.TraceParent, ev.TraceState = carrier["traceparent"], carrier["tracestate"]
	return ev, nil
}

// ErrMalformed marks a message that can never be handled: it goes to the
// dead-letter queue at once instead of being retried.
var ErrMalformed = errors.New("malformed event")

// ParseEvent decodes and validates a structured-mode CloudEvent.
func ParseEvent(body []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Validate checks the attributes every consumer relies on.
func (ev Event) Validate() error {
	switch {
	case ev.SpecVersion != "1.0":
		return fmt.Errorf("%w: specversion %q, want 1.0", ErrMalformed, ev.SpecVersion)
	case ev.ID == "":
		return fmt.Errorf("%w: missing id", ErrMalformed)
	case ev.Type == "":
		return fmt.Errorf("%w: missing type", ErrMalformed)
	case ev.Source == "":
		return fmt.Errorf("%w: missing source", ErrMalformed)
	case ev.Subject == "":
		return fmt.Errorf("%w: missing subject", ErrMalformed)
	case ev.Version < 0:
		return fmt.Errorf("%w: negative version", ErrMalformed)
	}
	return nil
}

// DecodeData unmarshals the event's data into v; a failure is ErrMalformed.
func (ev Event) DecodeData(v any) error {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrMalformed, ev.Type, err)
	}
	return nil
}

// traceContext returns ctx carrying the event's remote span context.
func (ev Event) traceContext(ctx context.Context) context.Context {
	if ev.TraceParent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": ev.TraceParent, "tracestate": ev.TraceState})
}
