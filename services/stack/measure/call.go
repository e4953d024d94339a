package measure

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// Answer is what one HTTP call to a service returned.
type Answer struct {
	Status int
	Body   []byte
	Header http.Header
	// Err: no answer, or its body could not be read.
	Err     error
	Latency time.Duration
	// At is when the answer was read.
	At time.Time
}

// Call sends body as JSON (nil: no body) and reads the whole answer.
func Call(ctx context.Context, c *http.Client, method, url string, body any) Answer {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return Answer{Err: err, At: time.Now()}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return Answer{Err: err, At: time.Now()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		at := time.Now()
		return Answer{Err: err, Latency: at.Sub(start), At: at}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	at := time.Now()
	return Answer{Status: resp.StatusCode, Body: raw, Header: resp.Header, Err: err, Latency: at.Sub(start), At: at}
}
