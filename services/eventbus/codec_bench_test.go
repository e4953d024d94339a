package eventbus

import (
	"context"
	"encoding/json"

	"strings"
	"testing"
)

func benchEvent(b *testing.B) Event {
	ev, err := NewEvent(context.Background(), "/bench", "bench.event", "subject-1", 1, map[string]string{"blob": strings.Repeat("x", 800)})
	if err != nil {
		b.Fatal(err)
	}
	return ev
}

func BenchmarkEncodeEvent(b *testing.B) {
	ev := benchEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseEvent(b *testing.B) {
	body, _ := json.Marshal(benchEvent(b))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}
