package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/eventbus/service/servicetest"
	"github.com/personscore/score/httpapi"
	"github.com/personscore/score/internal/scoretest"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/rebuild"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// env is score's HTTP API on a real store (embedded MongoDB), checked against
// the OpenAPI document.
type env struct {
	t          *testing.T
	disconnect atomic.Bool     // the consumer reports not receiving while set
	events     *rebuild.Router // applies events to store as score's consumer does
	engine     *gin.Engine
	spec       *servicetest.Spec
}

func newEnv(t *testing.T, maxWait time.Duration) *env {
	t.Helper()
	store := mongodb.New(mongodb.Config{DB: scoretest.StartMongo(t).DB})
	engine := service.NewRouter(zap.NewNop(), service.NewHTTPMetrics(prometheus.NewRegistry()),
		func(ctx context.Context) (map[string]any, error) { return nil, store.Ping(ctx) })
	e := &env{t: t, events: rebuild.New(rebuild.Config{Store: store}), engine: engine, spec: loadSpec(t)}
	httpapi.Register(engine, httpapi.Config{Store: store, MaxWait: maxWait, Receiving: func() bool { return !e.disconnect.Load() }})
	return e
}

func loadSpec(t *testing.T) *servicetest.Spec {
	t.Helper()
	spec, err := servicetest.NewSpec(httpapi.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return spec
}

func (e *env) apply(events ...eventbus.Event) {
	e.t.Helper()
	for _, ev := range events {
		if err := e.events.Apply(context.Background(), ev); err != nil {
			e.t.Fatal(err)
		}
	}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

// get serves path and validates the request and the response against the
// OpenAPI document: every answer the API gives must be documented.
func (e *env) get(path string) response {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://score.test"+path, nil)
	rec := httptest.NewRecorder()
	e.engine.ServeHTTP(rec, req)
	raw := rec.Body.Bytes()

	if err := e.spec.Documented(req); err != nil {
		e.t.Fatalf("GET %s is not in the OpenAPI document: %v", path, err)
	}
	if err := e.spec.Check(req, "", rec.Code, rec.Header(), raw); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	if err := servicetest.Conventions(rec.Code, rec.Header(), raw); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	r := response{status: rec.Code, header: rec.Header()}
	if ct := rec.Header().Get("Content-Type"); strings.Contains(ct, "json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("GET %s: %v in %s", path, err, raw)
		}
	}
	return r
}

func event(t *testing.T, typ string, v int64, data any) eventbus.Event {
	t.Helper()
	ev, err := eventbus.NewEvent(context.Background(), "/person", typ, "11111", v, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// readme are the README's four calls as person's events.
func readme(t *testing.T) []eventbus.Event {
	return []eventbus.Event{
		event(t, contract.PersonCreated, 1, map[string]any{"cpf": 11111, "name": "abc", "address": "abc", "date_of_birth": "2019-06-15T19:23:55-03:00"}),
		event(t, "income.created", 2, map[string]any{"cpf": 11111, "id": "i1", "kind": "income", "type": "renting", "value_cents": 1000_00}),
		event(t, "asset.created", 3, map[string]any{"cpf": 11111, "id": "a1", "kind": "asset", "type": "apartment", "value_cents": 100000_00}),
		event(t, "debt.created", 4, map[string]any{"cpf": 11111, "id": "d1", "kind": "debt", "value_cents": 1000_00}),
	}
}

func expectProblem(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" || r.body["message"] == "" {
		t.Fatalf("got %d %s %v, want a %d problem", r.status, r.header.Get("Content-Type"), r.body, status)
	}
}

func TestAPI(t *testing.T) {
	e := newEnv(t, 300*time.Millisecond)
	e.apply(readme(t)...)

	t.Run("score: 200 with the integer sum", func(t *testing.T) {
		r := e.get("/11111/score")
		if r.status != 200 || r.body["score"] != 4970.0 || r.body["cpf"] != 11111.0 || r.body["version"] != 4.0 || r.body["stale"] != false {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		if r.header.Get(httpapi.StaleHeader) != "" {
			t.Fatal("X-Stale set on a plain read")
		}
	})
	t.Run("document: the whole read model", func(t *testing.T) {
		r := e.get("/11111")
		items, _ := r.body["items"].(map[string]any)
		person, _ := r.body["person"].(map[string]any)
		if r.status != 200 || len(items) != 3 || person["name"] != "abc" || r.body["score"] != 4970.0 {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		if d, _ := items["d1"].(map[string]any); d["points"] != -50.0 || d["value_cents"] != 100000.0 || d["kind"] != "debt" {
			t.Fatalf("debt item %v", d)
		}
	})
	t.Run("unknown cpf: 404", func(t *testing.T) {
		expectProblem(t, e.get("/22222/score"), 404)
		expectProblem(t, e.get("/22222"), 404)
	})
	t.Run("not a cpf (digits only, as person's): 404", func(t *testing.T) {
		for _, cpf := range []string{"+11111", "0", "x", "9223372036854775807"} {
			expectProblem(t, e.get("/"+cpf+"/score"), 404)
		}
	})
	t.Run("bad min_version: 400", func(t *testing.T) {
		for _, q := range []string{"x", "-1", "1.5", ""} {
			if q == "" {
				continue
			}
			r := e.get("/11111/score?min_version=" + q)
			expectProblem(t, r, 400)
		}
	})
	t.Run("min_version reached: no wait, not stale", func(t *testing.T) {
		r := e.get("/11111/score?min_version=4")
		if r.status != 200 || r.body["stale"] != false || r.header.Get(httpapi.StaleHeader) != "" {
			t.Fatalf("got %d %v %v", r.status, r.header, r.body)
		}
		if r := e.get("/11111/score?min_version=0"); r.status != 200 || r.body["stale"] != false {
			t.Fatalf("min_version=0: %d %v", r.status, r.body)
		}
		if r := e.get("/33333/score?min_version=0"); r.status != 404 || r.header.Get(httpapi.StaleHeader) != "" {
			t.Fatalf("min_version=0 of an unknown cpf: %d %v", r.status, r.header)
		}
	})
	t.Run("min_version not reached in time: 200, current document, stale", func(t *testing.T) {
		start := time.Now()
		r := e.get("/11111/score?min_version=9")
		elapsed := time.Since(start)
		if r.status != 200 || r.body["stale"] != true || r.header.Get(httpapi.StaleHeader) != "true" || r.body["version"] != 4.0 {
			t.Fatalf("got %d %v %v", r.status, r.header, r.body)
		}
		if elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
			t.Fatalf("answered after %s; the configured bound is 300ms", elapsed)
		}
		r = e.get("/11111?min_version=9")
		if r.status != 200 || r.body["stale"] != true || r.header.Get(httpapi.StaleHeader) != "true" {
			t.Fatalf("document: %d %v %v", r.status, r.header, r.body)
		}
	})
	t.Run("min_version of a cpf not replicated yet: 404 and stale", func(t *testing.T) {
		r := e.get("/44444/score?min_version=1")
		expectProblem(t, r, 404)
		if r.header.Get(httpapi.StaleHeader) != "true" {
			t.Fatalf("headers %v", r.header)
		}
	})
	t.Run("deleted person: 404", func(t *testing.T) {
		e.apply(event(t, contract.PersonDeleted, 5, map[string]any{"cpf": 11111}))
		expectProblem(t, e.get("/11111/score"), 404)
		expectProblem(t, e.get("/11111"), 404)
		r := e.get("/11111/score?min_version=5")
		expectProblem(t, r, 404)
		if r.header.Get(httpapi.StaleHeader) != "" {
			t.Fatal("a reached version is not stale")
		}
	})
	t.Run("operations endpoints", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
			if r := e.get(p); r.status != 200 {
				t.Fatalf("GET %s = %d", p, r.status)
			}
		}
	})
}

// A read with min_version returns as soon as the version is applied, well
// before the bound.
func TestReadYourWrites(t *testing.T) {
	e := newEnv(t, 10*time.Second)
	events := readme(t)
	e.apply(events[0])
	done := make(chan response, 1)
	start := time.Now()
	go func() { done <- e.get("/11111/score?min_version=4") }()
	time.Sleep(150 * time.Millisecond)
	e.apply(events[3], events[1])
	select {
	case r := <-done:
		t.Fatalf("answered before version 4 was complete: %v", r.body)
	case <-time.After(100 * time.Millisecond):
	}
	e.apply(events[2])
	select {
	case r := <-done:
		if r.status != 200 || r.body["score"] != 4970.0 || r.body["stale"] != false {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("took %s", time.Since(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read did not return after the write")
	}
}

// While score is not receiving events (its consumer is disconnected) reads are
// still served, marked stale with the reason; a min_version not reached says
// that instead; once connected again, reads are fresh.
func TestReadsWhileDisconnectedAreMarkedStale(t *testing.T) {
	e := newEnv(t, 200*time.Millisecond)
	events := readme(t)
	e.apply(events...)
	e.disconnect.Store(true)
	for _, path := range []string{"/11111/score", "/11111"} {
		r := e.get(path)
		if r.status != 200 || r.header.Get(httpapi.StaleHeader) != "true" || r.body["stale"] != true ||
			r.body["stale_reason"] != httpapi.StaleDisconnected || r.body["version"] != 4.0 {
			t.Errorf("GET %s while disconnected: %d %v %v", path, r.status, r.header, r.body)
		}
	}
	if r := e.get("/11111/score?min_version=9"); r.body["stale_reason"] != httpapi.StaleMinVersion {
		t.Errorf("min_version not reached while disconnected: %v", r.body)
	}
	e.disconnect.Store(false)
	r := e.get("/11111/score")
	if r.header.Get(httpapi.StaleHeader) != "" || r.body["stale"] != false || r.body["stale_reason"] != nil {
		t.Errorf("connected again: %v %v", r.header, r.body)
	}
}

// Every route the API serves is in the OpenAPI document and every documented
// path is served.
func TestEveryRouteIsDocumented(t *testing.T) {
	spec := loadSpec(t)
	engine := service.NewRouter(zap.NewNop(), service.NewHTTPMetrics(prometheus.NewRegistry()), nil)
	httpapi.Register(engine, httpapi.Config{MaxWait: time.Second})
	for _, m := range spec.RouteMismatches(engine.Routes()) {
		t.Error(m)
	}
	if spec.Doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", spec.Doc.OpenAPI)
	}
}
