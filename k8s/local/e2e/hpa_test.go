package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

type hpaStatus struct {
	Spec struct {
		MinReplicas int `json:"minReplicas"`
		MaxReplicas int `json:"maxReplicas"`
	} `json:"spec"`
	Status struct {
		CurrentReplicas int `json:"currentReplicas"`
		DesiredReplicas int `json:"desiredReplicas"`
		CurrentMetrics  []struct {
			Resource *struct {
				Name    string `json:"name"`
				Current struct {
					AverageUtilization *int `json:"averageUtilization"`
				} `json:"current"`
			} `json:"resource"`
		} `json:"currentMetrics"`
	} `json:"status"`
}

func (h hpaStatus) cpu() (int, bool) {
	for _, m := range h.Status.CurrentMetrics {
		if m.Resource != nil && m.Resource.Name == "cpu" && m.Resource.Current.AverageUtilization != nil {
			return *m.Resource.Current.AverageUtilization, true
		}
	}
	return 0, false
}

// TestHPAScalesScoreOnCPU: score's HPA reads CPU utilisation from metrics-server (its
// target is known, not <unknown>), scales score out under load through the ingress and
// back to its minimum afterwards. The scale-down stabilisation window is shortened for
// the test with a helm upgrade (the chart's 300 s default would make the test wait 5+
// minutes) and restored at the end.
func TestHPAScalesScoreOnCPU(t *testing.T) {
	var h hpaStatus
	eventually(t, "score HPA reports CPU utilisation", timeoutShort, func() (bool, string) {
		getJSON(t, &h, "-n", namespace, "get", "hpa", "score")
		_, ok := h.cpu()
		return ok, kubectl(t, "-n", namespace, "get", "hpa", "score")
	})
	if out := kubectl(t, "-n", namespace, "get", "hpa", "score"); strings.Contains(out, "<unknown>") {
		t.Fatalf("HPA target unknown:\n%s", out)
	}
	window := kubectl(t, "-n", namespace, "get", "hpa", "score", "-o", "jsonpath={.spec.behavior.scaleDown.stabilizationWindowSeconds}")
	helm(t, "upgrade", "score", filepath.Join("charts", "score"), "--reuse-values",
		"--set", "autoscaling.behavior.scaleDown.stabilizationWindowSeconds=20", "--wait", "--timeout", "10m")
	t.Cleanup(func() {
		if _, err := strconv.Atoi(window); err == nil {
			helm(t, "upgrade", "score", filepath.Join("charts", "score"), "--reuse-values",
				"--set", "autoscaling.behavior.scaleDown.stabilizationWindowSeconds="+window, "--wait", "--timeout", "10m")
		}
	})
	getJSON(t, &h, "-n", namespace, "get", "hpa", "score")
	minReplicas := h.Spec.MinReplicas

	// Load: concurrent reads of one score document through port 81.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					request(http.MethodGet, "http://localhost:81/11111/score", "", nil)
				}
			}
		}()
	}
	eventually(t, "score scaled out above its minimum", timeoutLong, func() (bool, string) {
		getJSON(t, &h, "-n", namespace, "get", "hpa", "score")
		cpu, _ := h.cpu()
		return h.Status.DesiredReplicas > minReplicas, fmt.Sprintf("cpu %d%%, replicas %d/%d", cpu, h.Status.CurrentReplicas, h.Status.DesiredReplicas)
	})
	t.Logf("scaled out: %d replicas", h.Status.DesiredReplicas)
	close(stop)
	wg.Wait()
	eventually(t, "score scaled back to its minimum", timeoutLong, func() (bool, string) {
		getJSON(t, &h, "-n", namespace, "get", "hpa", "score")
		cpu, _ := h.cpu()
		return h.Status.DesiredReplicas == minReplicas && h.Status.CurrentReplicas == minReplicas, fmt.Sprintf("cpu %d%%, replicas %d/%d", cpu, h.Status.CurrentReplicas, h.Status.DesiredReplicas)
	})
}
