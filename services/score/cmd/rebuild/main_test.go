package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/personscore/score"
	"github.com/personscore/score/admin"
)

// stepper is a rebuild that advances one state per status read.
type stepper struct {
	mu    sync.Mutex
	rb    *score.Rebuild
	steps []string
}

func (s *stepper) StartRebuild(context.Context) (score.Rebuild, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rb != nil && s.rb.Running() {
		return *s.rb, score.ErrRebuildRunning
	}
	s.rb = &score.Rebuild{ID: "r9", From: "scores", Target: "scores_r9", State: score.RebuildSnapshotting, Expected: -1, StartedAt: time.Now()}
	return *s.rb, nil
}

func (s *stepper) RebuildStatus(context.Context) (score.Rebuild, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.steps) > 0 {
		s.rb.State, s.steps = s.steps[0], s.steps[1:]
		s.rb.Expected, s.rb.Snapshotted = 2, min(s.rb.Snapshotted+1, 2)
		if s.rb.State == score.RebuildDone {
			now := s.rb.StartedAt.Add(1500 * time.Millisecond)
			s.rb.FinishedAt, s.rb.Active = &now, s.rb.Target
		}
		if s.rb.State == score.RebuildFailed {
			s.rb.Error = "did not catch up"
		}
	}
	return *s.rb, nil
}

func start(t *testing.T, s *stepper) string {
	h, err := admin.NewHandler(s, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func TestRunFollowsTheRebuildToTheEnd(t *testing.T) {
	url := start(t, &stepper{steps: []string{score.RebuildSnapshotting, score.RebuildCatchingUp, score.RebuildCatchingUp, score.RebuildDone}})
	var out bytes.Buffer
	err := run(context.Background(), []string{"-url", url, "-interval", "10ms"}, env(map[string]string{"ADMIN_TOKEN": "tok"}), &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"rebuild r9 started: scores -> scores_r9", "catching up: 2/2", "done: the read model is now scores_r9"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunFailsLoudly(t *testing.T) {
	url := start(t, &stepper{steps: []string{score.RebuildCatchingUp, score.RebuildFailed}})
	var out bytes.Buffer
	err := run(context.Background(), []string{"-url", url, "-interval", "10ms"}, env(map[string]string{"ADMIN_TOKEN": "tok"}), &out)
	if err == nil || !strings.Contains(err.Error(), "did not catch up") {
		t.Fatalf("run = %v", err)
	}
	if err := run(context.Background(), []string{"-url", url}, env(nil), &out); err == nil || !strings.Contains(err.Error(), "ADMIN_TOKEN") {
		t.Fatalf("without a token: %v", err)
	}
	if err := run(context.Background(), []string{"-url", url}, env(map[string]string{"ADMIN_TOKEN": "nope"}), &out); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("with a wrong token: %v", err)
	}
}

func TestRunFollowsARunningRebuild(t *testing.T) {
	s := &stepper{}
	url := start(t, s)
	if _, err := s.StartRebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.steps = []string{score.RebuildDone}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-url", url, "-interval", "10ms"}, env(map[string]string{"ADMIN_TOKEN": "tok"}), &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "already running") {
		t.Fatalf("output:\n%s", out.String())
	}
}
