package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/personscore/person/httpapi"
)

func TestOpenAPIDocumentIsValid31(t *testing.T) {
	doc := spec(t).Doc // loads and validates, or fails
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	// Every operation documents its problem responses as problem+json.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s %s: no operationId or summary", method, path)
			}
			for code, resp := range op.Responses.Map() {
				if code[0] < '4' || resp.Value == nil {
					continue
				}
				if resp.Value.Content.Get("application/problem+json") == nil {
					t.Errorf("%s %s %s: not application/problem+json", method, path, code)
				}
			}
		}
	}
}

// Every route the router serves is in the document, and every operation of
// the document is served.
func TestRoutesMatchDocument(t *testing.T) {
	s := newServer(t)
	for _, m := range spec(t).RouteMismatches(s.router.Routes()) {
		t.Error(m)
	}
	if n := len(s.router.Routes()); n < 11 {
		t.Errorf("only %d routes: %v", n, s.router.Routes())
	}
}

func TestServesItsDocument(t *testing.T) {
	s := newServer(t)
	r := s.do(t, "GET", "/openapi.json", "").expect(t, http.StatusOK)
	if !bytes.Equal(r.body, httpapi.OpenAPI) || !strings.HasPrefix(r.Header().Get("Content-Type"), "application/json") {
		t.Errorf("GET /openapi.json: %s, %d bytes", r.Header().Get("Content-Type"), len(r.body))
	}
	if !json.Valid(r.body) {
		t.Error("not JSON")
	}
}

// The conformance check is not vacuous: responses and requests that stray
// from the document are caught.
func TestConformanceCheckCatchesMismatches(t *testing.T) {
	newSpec := func(method, path, body string) *http.Request {
		return httptest.NewRequest(method, path, strings.NewReader(body))
	}
	h := func(kv ...string) http.Header {
		hd := http.Header{"X-Request-Id": {"r1"}}
		for i := 0; i+1 < len(kv); i += 2 {
			hd.Set(kv[i], kv[i+1])
		}
		return hd
	}
	const person = `{"cpf": 1, "name": "a", "date_of_birth": "2000-01-01"}`
	cases := []struct {
		name    string
		req     *http.Request
		reqBody string
		status  int
		header  http.Header
		body    string
	}{
		{"201 without version", newSpec("POST", "/person", person), person, 201,
			h("Content-Type", "application/json", "Location", "/person/1"), `{"message": "created", "cpf": 1}`},
		{"201 with a wrong message", newSpec("POST", "/person", person), person, 201,
			h("Content-Type", "application/json", "Location", "/person/1"), `{"message": "ok", "cpf": 1, "version": 1}`},
		{"201 without Location", newSpec("POST", "/person", person), person, 201,
			h("Content-Type", "application/json"), `{"message": "created", "cpf": 1, "version": 1}`},
		{"201 without request id", newSpec("POST", "/person", person), person, 201,
			http.Header{"Content-Type": {"application/json"}, "Location": {"/person/1"}}, `{"message": "created", "cpf": 1, "version": 1}`},
		{"undocumented 500", newSpec("POST", "/person", person), person, 500,
			h("Content-Type", "application/problem+json"), `{"type": "about:blank", "title": "x", "status": 500, "message": "x"}`},
		{"422 as plain JSON", newSpec("POST", "/person", `{}`), `{}`, 422,
			h("Content-Type", "application/json"), `{"type": "about:blank", "title": "x", "status": 422, "message": "x"}`},
		{"problem without title", newSpec("POST", "/person", `{}`), `{}`, 422,
			h("Content-Type", "application/problem+json"), `{"type": "about:blank", "status": 422, "message": "x"}`},
		{"score of the wrong type", newSpec("GET", "/person/1", ""), "", 200, h("Content-Type", "application/json"),
			`{"cpf": 1, "name": "a", "address": "", "date_of_birth": "2000-01-01", "version": 1, "score": 5, "incomes": [], "assets": [], "debts": []}`},
		{"item value of the wrong type", newSpec("GET", "/person/1", ""), "", 200, h("Content-Type", "application/json"),
			`{"cpf": 1, "name": "a", "address": "", "date_of_birth": "2000-01-01", "version": 1, "score": null, "incomes": [{"id": "x", "kind": "income", "value": "1", "version": 2, "created_at": "2026-01-01T00:00:00Z"}], "assets": [], "debts": []}`},
		{"204 with a bad X-Version", newSpec("DELETE", "/person/1", ""), "", 204, h("X-Version", "two"), ""},
		{"accepted request the document rejects", newSpec("POST", "/person/1/debt", `{"value": -1}`), `{"value": -1}`, 201,
			h("Content-Type", "application/json", "Location", "/person/1/debt/x"), `{"message": "created", "cpf": 1, "id": "x", "version": 2}`},
		{"404 for a route that exists, as JSON", newSpec("GET", "/nothing", ""), "", 404, h("Content-Type", "application/json"), `{}`},
		{"200 for an undocumented route", newSpec("GET", "/nothing", ""), "", 200, h("Content-Type", "application/json"), `{}`},
	}
	for _, c := range cases {
		if c.req.Body != nil && c.reqBody != "" {
			c.req.Header.Set("Content-Type", "application/json")
		}
		err := spec(t).Check(c.req, c.reqBody, c.status, c.header, []byte(c.body))
		if err == nil {
			t.Errorf("%s: not caught", c.name)
			continue
		}
		t.Logf("%s: caught: %.200v", c.name, err)
	}
	// And a conforming response passes.
	ok := newSpec("POST", "/person", person)
	ok.Header.Set("Content-Type", "application/json")
	if err := spec(t).Check(ok, person, 201, h("Content-Type", "application/json", "Location", "/person/1"),
		[]byte(`{"message": "created", "cpf": 1, "version": 1}`)); err != nil {
		t.Errorf("a conforming response was rejected: %v", err)
	}
}
