package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/eventbus/service/servicetest"
	"github.com/personscore/person/httpapi"
	"github.com/personscore/person/internal/persontest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The OpenAPI document, loaded once; every response of every handler test is
// validated against it.
var (
	specOnce sync.Once
	specDoc  *servicetest.Spec
	specErr  error
)

func spec(tb testing.TB) *servicetest.Spec {
	tb.Helper()
	specOnce.Do(func() { specDoc, specErr = servicetest.NewSpec(httpapi.OpenAPI) })
	if specErr != nil {
		tb.Fatalf("openapi.json: %v", specErr)
	}
	return specDoc
}

// server is person's router on a real store.
type server struct {
	router     *gin.Engine
	env        *persontest.Env
	logs       *observer.ObservedLogs
	brokerDown atomic.Bool  // the bound's BrokerReady reports false while set
	pending    atomic.Int64 // the outbox backlog the bound sees (bound: testMaxPending)
}

// testMaxPending is the test server's backlog bound.
const testMaxPending = 10

type serverOptions struct {
	registry prometheus.Registerer // default: a fresh registry
}

func newServer(tb testing.TB, opts ...serverOptions) *server {
	tb.Helper()
	var o serverOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
	}
	s := &server{env: persontest.New(tb)}
	core, logs := observer.New(zap.DebugLevel)
	s.logs = logs
	log := zap.New(core)
	bound := httpapi.BacklogBound{MaxPending: testMaxPending, MaxAge: time.Hour,
		Backlog: func() (int, time.Time) {
			if n := s.pending.Load(); n > 0 {
				return int(n), time.Now().Add(-time.Minute)
			}
			return 0, time.Time{}
		},
		BrokerReady: func() bool { return !s.brokerDown.Load() }}
	ready := func(ctx context.Context) (map[string]any, error) {
		if err := s.env.Store.Ping(ctx); err != nil {
			return nil, err
		}
		return bound.Status(), nil
	}
	s.router = service.NewRouter(log, service.NewHTTPMetrics(o.registry), ready)
	httpapi.Register(s.router, httpapi.Config{Store: s.env.Store, Logger: log, Timeout: 10 * time.Second, CanWrite: bound.Check})
	spec(tb)
	return s
}

type response struct {
	*httptest.ResponseRecorder
	req  *http.Request
	body []byte
}

// json decodes the response body into a map.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", r.req.Method, r.req.URL, r.body, err)
	}
	return m
}

// problem decodes a problem+json body.
func (r response) problem(t *testing.T) service.Problem {
	t.Helper()
	var p service.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	return p
}

// do serves one request and checks the response against the OpenAPI document
// and the conventions every response follows.
func (s *server) do(t testing.TB, method, path, body string, header ...string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.router.ServeHTTP(rec, req)
	r := response{ResponseRecorder: rec, req: req, body: rec.Body.Bytes()}
	checkConventions(t, r)
	checkAgainstSpec(t, r, body)
	return r
}

// expect fails unless the response has the given status.
func (r response) expect(t testing.TB, status int) response {
	t.Helper()
	if r.Code != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.req.Method, r.req.URL, r.Code, status, r.body)
	}
	return r
}

func checkConventions(t testing.TB, r response) {
	t.Helper()
	if err := servicetest.Conventions(r.Code, r.Header(), r.body); err != nil {
		t.Errorf("%s %s: %v", r.req.Method, r.req.URL, err)
	}
}

// checkAgainstSpec validates the response (status, headers, body) against the
// operation the OpenAPI document has for the request (servicetest.Spec.Check).
func checkAgainstSpec(t testing.TB, r response, body string) {
	t.Helper()
	if err := spec(t).Check(r.req, body, r.Code, r.Header(), r.body); err != nil {
		t.Errorf("%s %s: %v", r.req.Method, r.req.URL, err)
	}
}
