package servicetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/personscore/eventbus/service"
)

// Conventions fails unless an answer follows package service's conventions:
// a request id, no 5xx but 503, and a complete problem+json for every error.
func Conventions(status int, header http.Header, body []byte) error {
	var errs []error
	if header.Get(service.RequestIDHeader) == "" {
		errs = append(errs, fmt.Errorf("no %s header", service.RequestIDHeader))
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		errs = append(errs, fmt.Errorf("status %d, body %s", status, body))
	}
	if status < 400 {
		return errors.Join(errs...)
	}
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		errs = append(errs, fmt.Errorf("%d with Content-Type %q, want application/problem+json", status, ct))
	}
	var p service.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status != status || p.Title == "" || p.Type == "" || p.Message == "" {
		errs = append(errs, fmt.Errorf("%d with problem %+v (%v)", status, p, err))
	}
	return errors.Join(errs...)
}
