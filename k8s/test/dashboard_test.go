package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Metrics the event library and the HTTP layer export (the dashboard's contract).
var dashboardMetrics = []string{
	"eventbus_published_total", "eventbus_confirmed_total", "eventbus_returned_total",
	"eventbus_consumed_total", "eventbus_retried_total", "eventbus_dead_lettered_total",
	"eventbus_handler_seconds_bucket", "eventbus_outbox_pending",
	"eventbus_outbox_oldest_pending_seconds", "eventbus_outbox_drained_total", "eventbus_lag_seconds_bucket",
	"http_requests_total", "http_request_duration_seconds_bucket",
}

// The dashboard as the library chart holds it (a raw string in common.dashboard.json).
func TestDashboardFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "charts", "common", "templates", "_dashboard.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\\{\\{ `(.*)` \\}\\}").FindSubmatch(b)
	if m == nil {
		t.Fatal("charts/common/templates/_dashboard.tpl holds no raw-string dashboard")
	}
	for _, c := range charts {
		checkDashboard(t, c, []byte(strings.ReplaceAll(string(m[1]), "__SERVICE__", c)))
	}
}

func checkDashboard(t *testing.T, svc string, b []byte) {
	t.Helper()
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s dashboard: invalid JSON: %v", svc, err)
	}
	if d.UID != "personscore-"+svc || !strings.Contains(d.Title, svc) {
		t.Errorf("%s dashboard: uid %q / title %q must name the service", svc, d.UID, d.Title)
	}
	var exprs strings.Builder
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("%s dashboard: panel %q has no query", svc, p.Title)
		}
		for _, tg := range p.Targets {
			exprs.WriteString(tg.Expr + "\n")
		}
	}
	for _, m := range dashboardMetrics {
		if !strings.Contains(exprs.String(), m) {
			t.Errorf("%s dashboard: no panel queries %s", svc, m)
		}
	}
	for _, label := range []string{"method", "route", "code"} {
		if !strings.Contains(exprs.String(), label) {
			t.Errorf("%s dashboard: HTTP panels should use label %s", svc, label)
		}
	}
}
