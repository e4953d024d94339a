package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// podNames returns the names of the app's pods that are not terminating.
func podNames(t *testing.T, app string) map[string]bool {
	t.Helper()
	var pods struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
		} `json:"items"`
	}
	getJSON(t, &pods, "-n", namespace, "get", "pod", "-l", appSelector(app))
	names := map[string]bool{}
	for _, p := range pods.Items {
		if p.Metadata.DeletionTimestamp == nil {
			names[p.Metadata.Name] = true
		}
	}
	return names
}

// reader streams GET requests at url and counts failures.
type reader struct {
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	ok    int
	fails map[string]int
}

func startReader(url string) *reader {
	r := &reader{stop: make(chan struct{}), fails: map[string]int{}}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			code, _, err := request(http.MethodGet, url, "", nil)
			r.mu.Lock()
			switch {
			case err != nil:
				r.fails[errKind(err)]++
			case code == http.StatusOK:
				r.ok++
			default:
				r.fails[fmt.Sprint(code)]++
			}
			r.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return r
}

func (r *reader) finish() (int, map[string]int) {
	close(r.stop)
	r.done.Wait()
	return r.ok, r.fails
}

// TestHelmUpgradeRollsWithoutRefusedRequests upgrades each chart with a changed pod
// annotation: every pod is replaced, and requests streaming through the ingress meanwhile
// are all answered (the rollout keeps the PodDisruptionBudget's available pods serving).
func TestHelmUpgradeRollsWithoutRefusedRequests(t *testing.T) {
	for _, app := range []string{"person", "score"} {
		t.Run(app, func(t *testing.T) {
			cpf := newPerson(t)
			before := podNames(t, app)
			w := startWriter(cpf, 1)
			r := startReader(fmt.Sprintf("http://localhost:81/%d/score", cpf))
			helm(t, "upgrade", app, filepath.Join("charts", app), "--reuse-values",
				"--set-string", "podAnnotations.e2e/rollout="+fmt.Sprint(time.Now().UnixNano()), "--wait", "--timeout", "10m")
			kubectl(t, "-n", namespace, "rollout", "status", "deployment/"+app, "--timeout=10m")
			time.Sleep(3 * time.Second)
			ok, fails := w.finish()
			reads, readFails := r.finish()
			t.Logf("during the upgrade: %d writes acknowledged, failed %v; %d reads answered, failed %v", len(ok), fails, reads, readFails)
			after := podNames(t, app)
			for p := range after {
				if before[p] {
					t.Errorf("pod %s survived the upgrade (no rollout)", p)
				}
			}
			if n := failCount(fails) + failCount(readFails); n > 0 {
				t.Errorf("%d requests refused or failed during the rollout of %s", n, app)
			}
			checkExactlyOnce(t, cpf, ok)
		})
	}
}

// TestHelmTest runs both charts' helm tests.
func TestHelmTest(t *testing.T) {
	for _, app := range []string{"person", "score"} {
		// The charts delete a test pod once it succeeded, so there are no logs to fetch:
		// helm exits non-zero unless every test pod succeeded.
		out := helm(t, "test", app, "--timeout", "5m")
		t.Logf("helm test %s:\n%s", app, out)
	}
}

// mongoSecret returns the data of the chart's MongoDB Secret.
func mongoSecret(t *testing.T, app string) map[string]string {
	t.Helper()
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		} `json:"items"`
	}
	getJSON(t, &list, "-n", namespace, "get", "secret", "-l", "app.kubernetes.io/instance="+app)
	for _, s := range list.Items {
		if strings.Contains(s.Metadata.Name, "mongo") {
			return s.Data
		}
	}
	t.Fatalf("no MongoDB secret of release %s", app)
	return nil
}

// TestReinstallKeepsData uninstalls score and installs it again with the same values:
// MongoDB's data volume is kept, so its credentials must survive, and score answers
// for the data written before.
func TestReinstallKeepsData(t *testing.T) {
	cpf := newPerson(t)
	eventually(t, "score knows the new person", timeoutShort, func() (bool, string) {
		code, body, _ := request(http.MethodGet, fmt.Sprintf("http://localhost:81/%d/score", cpf), "", nil)
		return code == http.StatusOK, body
	})
	secretBefore := mongoSecret(t, "score")
	pvcsBefore := kubectl(t, "-n", namespace, "get", "pvc", "-l", "app.kubernetes.io/instance=score", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid} {end}")
	if strings.TrimSpace(pvcsBefore) == "" {
		t.Fatal("score's MongoDB has no PersistentVolumeClaim")
	}
	values := helm(t, "get", "values", "score", "-o", "yaml")
	helm(t, "uninstall", "score", "--wait", "--timeout", "5m")
	// The release's pods (service and MongoDB); helm keeps its last test pod, which is no
	// part of the release's workloads.
	eventually(t, "score's pods gone", timeoutShort, func() (bool, string) {
		out, err := kubectlErr("-n", namespace, "get", "pod", "-l", "app.kubernetes.io/instance=score,app.kubernetes.io/component!=test", "-o", "name")
		return err == nil && strings.TrimSpace(out) == "", out
	})
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	writeFile(t, valuesFile, values)
	helm(t, "install", "score", filepath.Join("charts", "score"), "-f", valuesFile, "--wait", "--timeout", "10m")
	waitRollout(t)
	if after := kubectl(t, "-n", namespace, "get", "pvc", "-l", "app.kubernetes.io/instance=score", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid} {end}"); after != pvcsBefore {
		t.Errorf("MongoDB's volume claims changed across the reinstall: %s, before %s", after, pvcsBefore)
	}
	secretAfter := mongoSecret(t, "score")
	for k, v := range secretBefore {
		if secretAfter[k] != v {
			t.Errorf("MongoDB secret key %s changed across the reinstall", k)
		}
	}
	eventually(t, "score answers for data written before the reinstall", timeoutShort, func() (bool, string) {
		code, body, _ := request(http.MethodGet, fmt.Sprintf("http://localhost:81/%d/score", cpf), "", nil)
		return code == http.StatusOK, body
	})
}
