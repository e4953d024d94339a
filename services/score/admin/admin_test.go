package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/personscore/score"
	"github.com/personscore/score/admin"
)

// fake is a rebuild that advances one state per status read.
type fake struct {
	mu       sync.Mutex
	current  *score.Rebuild
	startErr error
	steps    []string
}

func (f *fake) StartRebuild(context.Context) (score.Rebuild, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return score.Rebuild{}, f.startErr
	}
	if f.current.Running() {
		return *f.current, score.ErrRebuildRunning
	}
	f.current = &score.Rebuild{ID: "r1", From: "scores", Target: "scores_r1", State: score.RebuildSnapshotting, Expected: -1,
		StartedAt: time.Now().UTC()}
	return *f.current, nil
}

func (f *fake) RebuildStatus(context.Context) (score.Rebuild, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current == nil {
		return score.Rebuild{}, score.ErrNoRebuild
	}
	if len(f.steps) > 0 {
		f.current.State, f.steps = f.steps[0], f.steps[1:]
		f.current.Expected, f.current.Snapshotted = 3, f.current.Snapshotted+1
		if !f.current.Running() {
			now := time.Now().UTC()
			f.current.FinishedAt = &now
			f.current.Active = f.current.Target
			if f.current.State == score.RebuildFailed {
				f.current.Error, f.current.Active = "person never answered", f.current.From
			}
		}
	}
	return *f.current, nil
}

func serve(t *testing.T, r admin.Rebuilder) *httptest.Server {
	t.Helper()
	h, err := admin.NewHandler(r, "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, srv *httptest.Server, method, auth string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+admin.Path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

func TestNewHandlerRefusesAnEmptyToken(t *testing.T) {
	if _, err := admin.NewHandler(&fake{}, "", nil); err == nil {
		t.Fatal("an empty token was accepted")
	}
}

func TestAuthentication(t *testing.T) {
	srv := serve(t, &fake{})
	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Basic czNjcmV0", "bearer s3cret", "Bearer s3cretX"} {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			resp, body := call(t, srv, m, auth)
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || body["status"] != 401.0 {
				t.Fatalf("%s with %q: %d %v", m, auth, resp.StatusCode, body)
			}
		}
	}
	if resp, _ := call(t, srv, http.MethodGet, "Bearer s3cret"); resp.StatusCode == 401 {
		t.Fatal("the right token was refused")
	}
}

func TestRebuildEndpoints(t *testing.T) {
	f := &fake{}
	srv := serve(t, f)
	const auth = "Bearer s3cret"
	if resp, body := call(t, srv, http.MethodGet, auth); resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status before any rebuild: %d %v", resp.StatusCode, body)
	}
	resp, body := call(t, srv, http.MethodPost, auth)
	if resp.StatusCode != 202 || body["id"] != "r1" || body["state"] != score.RebuildSnapshotting || resp.Header.Get("Location") != admin.Path {
		t.Fatalf("start: %d %v", resp.StatusCode, body)
	}
	resp, body = call(t, srv, http.MethodPost, auth)
	if rb, _ := body["rebuild"].(map[string]any); resp.StatusCode != 409 || rb["id"] != "r1" {
		t.Fatalf("second start: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, srv, http.MethodGet, auth); resp.StatusCode != 200 || body["id"] != "r1" {
		t.Fatalf("status: %d %v", resp.StatusCode, body)
	}
	if resp, _ := call(t, srv, http.MethodDelete, auth); resp.StatusCode != 405 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}

	down := serve(t, &fake{startErr: errors.New("broker down")})
	if resp, body := call(t, down, http.MethodPost, auth); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("start with the broker down: %d %v", resp.StatusCode, body)
	}
}

func TestClientFollow(t *testing.T) {
	f := &fake{steps: []string{score.RebuildSnapshotting, score.RebuildCatchingUp, score.RebuildCatchingUp, score.RebuildDone}}
	srv := serve(t, f)
	c := &admin.Client{BaseURL: srv.URL, Token: "s3cret"}
	ctx := context.Background()
	rb, err := c.Start(ctx)
	if err != nil || rb.ID != "r1" {
		t.Fatalf("Start = %+v, %v", rb, err)
	}
	if again, err := c.Start(ctx); !errors.Is(err, admin.ErrRunning) || again.ID != "r1" {
		t.Fatalf("second Start = %+v, %v", again, err)
	}
	var seen []string
	done, err := c.Follow(ctx, rb.ID, 10*time.Millisecond, func(r score.Rebuild) { seen = append(seen, r.State) })
	if err != nil || done.State != score.RebuildDone || len(seen) != 4 {
		t.Fatalf("Follow = %+v, %v; saw %v", done, err, seen)
	}

	failing := &fake{steps: []string{score.RebuildCatchingUp, score.RebuildFailed}}
	c = &admin.Client{BaseURL: serve(t, failing).URL, Token: "s3cret"}
	rb, _ = c.Start(ctx)
	if _, err := c.Follow(ctx, rb.ID, 10*time.Millisecond, nil); err == nil {
		t.Fatal("a failed rebuild was reported as success")
	}
	bad := &admin.Client{BaseURL: srv.URL, Token: "wrong"}
	if _, err := bad.Status(ctx); err == nil {
		t.Fatal("a wrong token was not reported")
	}
}
