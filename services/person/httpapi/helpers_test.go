package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gin-gonic/gin"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/person/httpapi"
	"github.com/personscore/person/internal/persontest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The OpenAPI document, loaded once; every response of every handler test is
// validated against it.
var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

func spec(tb testing.TB) (*openapi3.T, routers.Router) {
	tb.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromData(httpapi.OpenAPI)
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(loader.Context); specErr != nil {
			return
		}
		specRouter, specErr = gorillamux.NewRouter(specDoc)
	})
	if specErr != nil {
		tb.Fatalf("openapi.json: %v", specErr)
	}
	return specDoc, specRouter
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
	if r.Header().Get(service.RequestIDHeader) == "" {
		t.Errorf("%s %s: no %s header", r.req.Method, r.req.URL, service.RequestIDHeader)
	}
	if r.Code >= 500 && r.Code != http.StatusServiceUnavailable {
		t.Errorf("%s %s: status %d, body %s", r.req.Method, r.req.URL, r.Code, r.body)
	}
	if r.Code < 400 {
		return
	}
	if ct := r.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s %s: %d with Content-Type %q, want application/problem+json", r.req.Method, r.req.URL, r.Code, ct)
	}
	var p service.Problem
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.Code || p.Title == "" || p.Type == "" || p.Message == "" {
		t.Errorf("%s %s: %d with problem %+v (%v)", r.req.Method, r.req.URL, r.Code, p, err)
	}
}

// checkAgainstSpec validates the response (status, headers, body) against the
// operation the OpenAPI document has for the request; 2xx requests must be
// valid requests of the document too. A request the document has no operation
// for must have been answered 404 or 405 with a Problem.
func checkAgainstSpec(t testing.TB, r response, body string) {
	t.Helper()
	if err := specCheck(t, r.req, body, r.Code, r.Header(), r.body); err != nil {
		t.Errorf("%s %s: %v", r.req.Method, r.req.URL, err)
	}
}

func specCheck(t testing.TB, original *http.Request, reqBody string, status int, header http.Header, body []byte) error {
	doc, router := spec(t)
	req := original.Clone(context.Background())
	req.Body = io.NopCloser(strings.NewReader(reqBody))
	route, params, err := router.FindRoute(req)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("answered %d but the document has no such operation (%v)", status, err)
		}
		if ct := header.Get("Content-Type"); ct != "application/problem+json" {
			return fmt.Errorf("%d with Content-Type %q", status, ct)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return err
		}
		if err := doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			return fmt.Errorf("%d body is not a Problem: %w", status, err)
		}
		return nil
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if status < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return fmt.Errorf("accepted (%d) a request the document rejects: %w", status, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("response %d %s does not match the document: %w", status, body, err)
	}
	return nil
}
