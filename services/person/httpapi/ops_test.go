package httpapi_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap/zapcore"
)

func TestHealthReadyAndMetrics(t *testing.T) {
	// /metrics serves the default registry: the test gives it a fresh one,
	// so that it can run more than once in a process (-count).
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	oldReg, oldGather := prometheus.DefaultRegisterer, prometheus.DefaultGatherer
	prometheus.DefaultRegisterer, prometheus.DefaultGatherer = reg, reg
	t.Cleanup(func() { prometheus.DefaultRegisterer, prometheus.DefaultGatherer = oldReg, oldGather })
	s := newServer(t, serverOptions{registry: reg})
	s.do(t, "GET", "/healthz", "").expect(t, http.StatusOK)
	s.do(t, "GET", "/readyz", "").expect(t, http.StatusOK)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	s.do(t, "POST", "/person", "{").expect(t, http.StatusBadRequest)
	s.do(t, "GET", "/person/11111", "").expect(t, http.StatusOK)

	s.brokerDown.Store(true) // the store alone decides readiness
	if m := s.do(t, "GET", "/readyz", "").expect(t, http.StatusOK).json(t); m["broker"] != "unreachable" {
		t.Errorf("readyz with the broker down: %v", m)
	}
	s.do(t, "GET", "/healthz", "").expect(t, http.StatusOK)
	s.brokerDown.Store(false)
	s.env.Proxy.Cut()
	if p := s.do(t, "GET", "/readyz", "").expect(t, http.StatusServiceUnavailable).problem(t); p.Detail == "" {
		t.Errorf("readyz with the store down: %+v", p)
	}
	s.do(t, "GET", "/healthz", "").expect(t, http.StatusOK)
	s.env.Proxy.Restore()
	s.do(t, "GET", "/readyz", "").expect(t, http.StatusOK)

	r := s.do(t, "GET", "/metrics", "").expect(t, http.StatusOK)
	text := string(r.body)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`http_requests_total\{code="201",method="POST",route="/person"\} 1`),
		regexp.MustCompile(`http_requests_total\{code="400",method="POST",route="/person"\} 1`),
		regexp.MustCompile(`http_requests_total\{code="200",method="GET",route="/person/:cpf"\} 1`),
		regexp.MustCompile(`http_requests_total\{code="503",method="GET",route="/readyz"\} 1`),
		regexp.MustCompile(`http_request_duration_seconds_bucket\{code="201",method="POST",route="/person",le="[^"]+"\} 1`),
		regexp.MustCompile(`go_goroutines`),
	} {
		if !want.MatchString(text) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Every log line written while serving a request carries the request id the
// response announces; a client's own id is kept (and a silly one replaced).
func TestRequestIDOnEveryLogLineAndResponse(t *testing.T) {
	s := newServer(t)
	tooLong := strings.Repeat("x", 129)
	steps := []struct {
		method, path, body string
		id                 string // sent X-Request-Id
		status             int
		setup, undo        func()
	}{
		{"POST", "/person", origPerson, "", http.StatusCreated, nil, nil},
		{"POST", "/person", origPerson, "client-id-1", http.StatusConflict, nil, nil},
		{"POST", "/person", `{}`, "", http.StatusUnprocessableEntity, nil, nil},
		{"GET", "/person/424242", "", tooLong, http.StatusNotFound, nil, nil},
		{"PATCH", "/person/1", "", "", http.StatusMethodNotAllowed, nil, nil},
		{"POST", "/person/11111/debt", origDebt, "client-id-2", http.StatusServiceUnavailable,
			func() { s.pending.Store(testMaxPending) }, func() { s.pending.Store(0) }},
		{"GET", "/person/11111", "", "", http.StatusServiceUnavailable, s.env.Proxy.Cut, s.env.Proxy.Restore},
		{"GET", "/person/11111", "", "", http.StatusOK, nil, nil},
	}
	for _, st := range steps {
		if st.setup != nil {
			st.setup()
		}
		before := s.logs.Len()
		var hdr []string
		if st.id != "" {
			hdr = []string{"X-Request-Id", st.id}
		}
		r := s.do(t, st.method, st.path, st.body, hdr...).expect(t, st.status)
		if st.undo != nil {
			st.undo()
		}
		id := r.Header().Get("X-Request-Id")
		switch {
		case st.id != "" && st.id != tooLong:
			if id != st.id {
				t.Errorf("%s %s: request id %q, want the client's %q", st.method, st.path, id, st.id)
			}
		default:
			if _, err := uuid.Parse(id); err != nil {
				t.Errorf("%s %s: generated request id %q is not a UUID", st.method, st.path, id)
			}
		}
		entries := s.logs.All()[before:]
		var access bool
		for _, e := range entries {
			if got := e.ContextMap()["request_id"]; got != id {
				t.Errorf("%s %s: log line %q has request_id %v, want %q", st.method, st.path, e.Message, got, id)
			}
			if e.Message == "http request" {
				access = true
				if e.ContextMap()["status"] != int64(st.status) {
					t.Errorf("access log status %v, want %d", e.ContextMap()["status"], st.status)
				}
			}
		}
		if !access {
			t.Errorf("%s %s: no access log line", st.method, st.path)
		}
		if st.status == http.StatusServiceUnavailable {
			var warned bool
			for _, e := range entries {
				warned = warned || e.Level == zapcore.WarnLevel
			}
			if !warned {
				t.Errorf("%s %s: 503 without a warning saying why", st.method, st.path)
			}
		}
	}
}
