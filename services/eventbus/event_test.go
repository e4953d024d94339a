package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel/trace"
)

func spanContext(t *testing.T) context.Context {
	t.Helper()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithSpanContext(context.Background(), sc)
}

// Our JSON is a valid CloudEvents 1.0 structured-mode event according to the
// reference SDK, with every attribute where the spec puts it.
func TestEventIsValidCloudEvent(t *testing.T) {
	ev, err := NewEvent(spanContext(t), "/person", "income.created", "12345678909", 7, map[string]any{"value": 1500})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var ce cloudevents.Event
	if err := json.Unmarshal(body, &ce); err != nil {
		t.Fatalf("CloudEvents SDK rejects our JSON: %v\n%s", err, body)
	}
	if err := ce.Validate(); err != nil {
		t.Fatalf("not a valid CloudEvent: %v\n%s", err, body)
	}
	checks := map[string][2]string{
		"specversion":     {ce.SpecVersion(), "1.0"},
		"id":              {ce.ID(), ev.ID},
		"source":          {ce.Source(), "/person"},
		"type":            {ce.Type(), "income.created"},
		"subject":         {ce.Subject(), "12345678909"},
		"datacontenttype": {ce.DataContentType(), "application/json"},
		"traceparent":     {stringExt(ce, "traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	for attr, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", attr, c[0], c[1])
		}
	}
	if !ce.Time().Equal(ev.Time) {
		t.Errorf("time = %v, want %v", ce.Time(), ev.Time)
	}
	if v, ok := ce.Extensions()["version"]; !ok || !numberIs(v, 7) {
		t.Errorf("version extension = %#v, want 7", ce.Extensions()["version"])
	}
	var data map[string]int
	if err := ce.DataAs(&data); err != nil || data["value"] != 1500 {
		t.Errorf("data = %v (%v), want value 1500", data, err)
	}
	if ContentType != "application/cloudevents+json" {
		t.Errorf("ContentType = %q", ContentType)
	}
}

func stringExt(ce cloudevents.Event, name string) string {
	s, _ := ce.Extensions()[name].(string)
	return s
}

func numberIs(v any, want int64) bool {
	switch n := v.(type) {
	case int32:
		return int64(n) == want
	case int64:
		return n == want
	case float64:
		return n == float64(want)
	case string:
		return n == "7"
	}
	return false
}

// An event written by another CloudEvents producer parses, and ours survives
// a round trip through the SDK.
func TestParseEventFromSDK(t *testing.T) {
	ce := cloudevents.New()
	ce.SetID("abc-1")
	ce.SetSource("/other")
	ce.SetType("person.created")
	ce.SetSubject("42")
	ce.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC))
	ce.SetExtension("version", 3)
	if err := ce.SetData("application/json", map[string]string{"name": "Ana"}); err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ce)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParseEvent(body)
	if err != nil {
		t.Fatalf("ParseEvent(%s): %v", body, err)
	}
	if ev.ID != "abc-1" || ev.Type != "person.created" || ev.Subject != "42" || ev.Version != 3 || !ev.Time.Equal(ce.Time()) {
		t.Errorf("parsed %+v", ev)
	}
	var data map[string]string
	if err := ev.DecodeData(&data); err != nil || data["name"] != "Ana" {
		t.Errorf("data %v %v", data, err)
	}
}

func TestParseEventRejectsMalformed(t *testing.T) {
	valid := `"specversion":"1.0","id":"1","source":"/s","type":"t.x","subject":"9","version":1`
	cases := map[string]struct{ body, want string }{
		"not json":          {`{"id":`, "unexpected end"},
		"not an object":     {`[1,2]`, "cannot unmarshal"},
		"missing id":        {`{"specversion":"1.0","source":"/s","type":"t.x","subject":"9"}`, "missing id"},
		"missing type":      {`{"specversion":"1.0","id":"1","source":"/s","subject":"9"}`, "missing type"},
		"missing source":    {`{"specversion":"1.0","id":"1","type":"t.x","subject":"9"}`, "missing source"},
		"missing subject":   {`{"specversion":"1.0","id":"1","source":"/s","type":"t.x"}`, "missing subject"},
		"wrong specversion": {`{"specversion":"0.3","id":"1","source":"/s","type":"t.x","subject":"9"}`, "specversion"},
		"negative version":  {`{"specversion":"1.0","id":"1","source":"/s","type":"t.x","subject":"9","version":-1}`, "negative version"},
		"bad time":          {`{` + valid + `,"time":"yesterday"}`, "cannot parse"},
		"version as string": {`{"specversion":"1.0","id":"1","source":"/s","type":"t.x","subject":"9","version":"1"}`, "cannot unmarshal"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseEvent([]byte(c.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := ParseEvent([]byte(`{` + valid + `}`)); err != nil {
		t.Errorf("valid event rejected: %v", err)
	}
}

// The outbox stores events as BSON; what the sweep reads back must be the
// very event the relay would have published.
func TestEventBSONRoundTrip(t *testing.T) {
	ev, err := NewEvent(spanContext(t), "/score", "score.changed", "42", 9, map[string]int{"score": 700})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var back Event
	if err := bson.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(ev)
	b, _ := json.Marshal(back)
	if string(a) != string(b) {
		t.Errorf("BSON round trip changed the event:\n%s\n%s", a, b)
	}
}

func TestDecodeDataMalformed(t *testing.T) {
	ev := Event{Type: "t", Data: json.RawMessage(`"text"`)}
	var v struct{ N int }
	if err := ev.DecodeData(&v); !errors.Is(err, ErrMalformed) {
		t.Errorf("err = %v, want ErrMalformed", err)
	}
}

func TestPublishRefusesInvalidEvent(t *testing.T) {
	p := &Publisher{}
	err := p.Publish(context.Background(), Event{SpecVersion: "1.0", Source: "/s", Type: "t", Subject: "1"})
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("err = %v, want ErrMalformed", err)
	}
}

func TestSplitURLs(t *testing.T) {
	got := SplitURLs(" amqp://a:5672/ ,, amqps://b:5671/ ")
	if len(got) != 2 || got[0] != "amqp://a:5672/" || got[1] != "amqps://b:5671/" {
		t.Errorf("SplitURLs = %q", got)
	}
	if r := redact("amqp://guest:secret@host:5672/"); strings.Contains(r, "secret") {
		t.Errorf("redact leaks the password: %s", r)
	}
}
