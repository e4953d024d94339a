package loadgen

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// WaitScore asks again while score answers stale or 503, and reads the score
// once score has the version; a 404 is an answer too.
func TestWaitScore(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/2/score" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path != "/1/score" || r.URL.Query().Get("min_version") != "7" {
			t.Errorf("asked %s", r.URL)
		}
		switch calls.Add(1) {
		case 1:
			w.Header().Set("X-Stale", "true")
			_, _ = w.Write([]byte(`{"score":1,"version":6}`))
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte(`{"score":42,"version":7}`))
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL, srv.URL, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := c.WaitScore(ctx, 1, 7)
	if err != nil || !got.Found || got.Score != 42 || got.Version != 7 || got.At.IsZero() {
		t.Errorf("WaitScore = %+v, %v; want score 42 at version 7", got, err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3 (stale, 503, answer)", n)
	}
	if got, err := c.WaitScore(ctx, 2, 7); err != nil || got.Found {
		t.Errorf("WaitScore of an unknown cpf = %+v, %v; want not found", got, err)
	}
	srv.Close()
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := c.WaitScore(done, 1, 7); !errors.Is(err, ErrStale) {
		t.Errorf("WaitScore with no score and a done context: %v, want ErrStale", err)
	}
}

// Person reads the version and the score person shows, and a 404 as absent.
func TestPersonView(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/person/1":
			_, _ = w.Write([]byte(`{"version":3,"score":{"value":900}}`))
		case "/person/2":
			_, _ = w.Write([]byte(`{"version":1}`))
		case "/person/3":
			http.NotFound(w, r)
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL, srv.URL, 1)
	ctx := context.Background()
	for cpf, want := range map[int64]PersonView{
		1: {Found: true, Version: 3, HasScore: true, Score: 900},
		2: {Found: true, Version: 1},
		3: {},
	} {
		if got, err := c.Person(ctx, cpf); err != nil || got != want {
			t.Errorf("Person(%d) = %+v, %v; want %+v", cpf, got, err, want)
		}
	}
	if _, err := c.Person(ctx, 4); err == nil {
		t.Error("Person with a 418 answer: no error")
	}
}
