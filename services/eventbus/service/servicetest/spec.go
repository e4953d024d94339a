// Package servicetest checks a service's HTTP answers in its tests: against
// the service's OpenAPI document, and against the conventions of package
// service (a request id on every answer, problem+json for every error, no 5xx
// but 503).
package servicetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gin-gonic/gin"
)

// Spec is a service's OpenAPI document, loaded and valid.
type Spec struct {
	Doc    *openapi3.T
	router routers.Router
}

// NewSpec loads an OpenAPI document and fails unless it is valid. Requests
// are matched on method and path: the document's servers are not asked.
func NewSpec(doc []byte) (*Spec, error) {
	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := d.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("not a valid OpenAPI document: %w", err)
	}
	d.Servers = openapi3.Servers{{URL: "/"}}
	r, err := gorillamux.NewRouter(d)
	if err != nil {
		return nil, err
	}
	return &Spec{Doc: d, router: r}, nil
}

// Documented fails unless the document has an operation for req.
func (s *Spec) Documented(req *http.Request) error {
	_, _, err := s.router.FindRoute(req)
	return err
}

// Check validates an answer against the operation the document has for req:
// its status, headers and body must be documented, and a request answered
// below 400 must be a valid request of the document too. A request the
// document has no operation for must have been answered 404 or 405 with a
// Problem.
func (s *Spec) Check(original *http.Request, reqBody string, status int, header http.Header, body []byte) error {
	req := original.Clone(context.Background())
	req.Body = io.NopCloser(strings.NewReader(reqBody))
	route, params, err := s.router.FindRoute(req)
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
		if err := s.Doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			return fmt.Errorf("%d body is not a Problem: %w", status, err)
		}
		return nil
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if status < 400 {
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

var ginParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// RouteMismatches lists the routes served that the document lacks and the
// operations of the document that are not served.
func (s *Spec) RouteMismatches(routes gin.RoutesInfo) []string {
	var served, documented []string
	for _, r := range routes {
		served = append(served, r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}"))
	}
	for path, item := range s.Doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	var out []string
	for _, r := range served {
		if !slices.Contains(documented, r) {
			out = append(out, "served but not documented: "+r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			out = append(out, "documented but not served: "+r)
		}
	}
	slices.Sort(out)
	return out
}
