package servicetest

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/gin-gonic/gin"
)

const doc = `{
  "openapi": "3.1.0",
  "info": {"title": "t", "version": "1"},
  "paths": {
    "/a/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}}}}}}},
    "/c": {"get": {"responses": {"204": {"description": "none"}}}}
  },
  "components": {"schemas": {"Problem": {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}}}
}`

func TestCheck(t *testing.T) {
	s, err := NewSpec([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	json := http.Header{"Content-Type": {"application/json"}}
	problem := http.Header{"Content-Type": {"application/problem+json"}}
	for _, c := range []struct {
		name   string
		path   string
		status int
		header http.Header
		body   string
		ok     bool
	}{
		{"documented answer", "/a/1", 200, json, `{"n": 1}`, true},
		{"body against the schema", "/a/1", 200, json, `{"n": "x"}`, false},
		{"undocumented status", "/a/1", 201, json, `{"n": 1}`, false},
		{"accepted an invalid request", "/a/x", 200, json, `{"n": 1}`, false},
		{"404 Problem for an undocumented route", "/nothing", 404, problem, `{"title": "no"}`, true},
		{"200 for an undocumented route", "/nothing", 200, json, `{}`, false},
		{"404 as JSON for an undocumented route", "/nothing", 404, json, `{"title": "no"}`, false},
	} {
		req := httptest.NewRequest(http.MethodGet, "http://elsewhere.test"+c.path, nil)
		if err := s.Check(req, "", c.status, c.header, []byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%s: Check = %v", c.name, err)
		}
	}
	if s.Documented(httptest.NewRequest(http.MethodGet, "/a/1", nil)) != nil || s.Documented(httptest.NewRequest(http.MethodGet, "/nothing", nil)) == nil {
		t.Error("Documented does not tell a documented operation from an undocumented one")
	}
}

func TestConventions(t *testing.T) {
	id := http.Header{"X-Request-Id": {"r1"}}
	problem := http.Header{"X-Request-Id": {"r1"}, "Content-Type": {"application/problem+json"}}
	full := `{"type": "about:blank", "title": "Not Found", "status": 404, "message": "no"}`
	for _, c := range []struct {
		name   string
		status int
		header http.Header
		body   string
		ok     bool
	}{
		{"200 with a request id", 200, id, `{}`, true},
		{"no request id", 200, http.Header{}, `{}`, false},
		{"a 500", 500, problem, `{"type": "about:blank", "title": "x", "status": 500, "message": "x"}`, false},
		{"a problem", 404, problem, full, true},
		{"an error as JSON", 404, http.Header{"X-Request-Id": {"r1"}, "Content-Type": {"application/json"}}, full, false},
		{"a problem without message", 404, problem, `{"type": "about:blank", "title": "Not Found", "status": 404}`, false},
	} {
		if err := Conventions(c.status, c.header, []byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%s: Conventions = %v", c.name, err)
		}
	}
}

func TestRouteMismatches(t *testing.T) {
	s, err := NewSpec([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/a/:id", func(*gin.Context) {})
	r.GET("/b", func(*gin.Context) {})
	got := s.RouteMismatches(r.Routes())
	want := []string{"documented but not served: GET /c", "served but not documented: GET /b"}
	if !slices.Equal(got, want) {
		t.Errorf("RouteMismatches = %q, want %q", got, want)
	}
}
