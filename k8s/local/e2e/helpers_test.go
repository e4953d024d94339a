// Package e2e tests both charts on the local node (`make cluster-up`, k8s/local) through
// the ingress on 127.0.0.1:80/81, kubectl and helm, as a user would.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const namespace = "personscore"

var (
	repoRoot   = os.Getenv("REPO_ROOT")
	helmBin    = os.Getenv("HELM")
	kubeconfig = os.Getenv("KUBECONFIG")
)

// TestMain refuses to run without a reachable cluster: nothing is skipped.
func TestMain(m *testing.M) {
	var missing []string
	if repoRoot == "" {
		missing = append(missing, "REPO_ROOT (the repository)")
	}
	if helmBin == "" {
		missing = append(missing, "HELM (path of helm)")
	}
	if kubeconfig == "" {
		missing = append(missing, "KUBECONFIG (the node's admin kubeconfig)")
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: %s not set: run `make test-cluster` (it starts the node with make cluster-up and sets them)\n", strings.Join(missing, ", "))
		os.Exit(1)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "get", "--raw", "/readyz").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the cluster does not answer (%v: %s): run `make cluster-up`\n", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// kubectl runs kubectl against the node and fails the test on error.
func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := kubectlErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func kubectlErr(args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// helm runs helm against the node in the application namespace.
func helm(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(helmBin, append([]string{"--kubeconfig", kubeconfig, "-n", namespace}, args...)...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// getJSON decodes `kubectl get ... -o json`.
func getJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := kubectl(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decode kubectl %v: %v", args, err)
	}
}

var client = &http.Client{Timeout: 15 * time.Second}

// request sends one HTTP request and returns status and body.
func request(method, url, contentType string, body []byte) (int, string, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// eventually polls cond every second until it holds or the deadline passes.
func eventually(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		if state != "" {
			last = state
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(time.Second)
	}
}

func payload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "payloads", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitRollout waits until every Deployment and StatefulSet of the namespace is rolled out.
func waitRollout(t testing.TB) {
	t.Helper()
	for _, kind := range []string{"deployment", "statefulset"} {
		for _, name := range strings.Fields(kubectl(t, "-n", namespace, "get", kind, "-o", "name")) {
			kubectl(t, "-n", namespace, "rollout", "status", name, "--timeout=10m")
		}
	}
}

// Deadlines of polls: generous, the machine is shared.
const (
	timeoutShort = 3 * time.Minute
	timeoutLong  = 10 * time.Minute
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// appSelector selects the service pods of a chart (not its MongoDB).
func appSelector(app string) string {
	return "app.kubernetes.io/name=" + app + ",app.kubernetes.io/component=api"
}
