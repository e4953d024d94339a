package stack_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/personscore/stack"
)

func payload(t *testing.T, name string) []byte {
	t.Helper()
	wd, _ := os.Getwd()
	root, err := stack.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "payloads", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url string, body []byte) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// scoreWithin polls score until it reports want or the deadline passes.
func scoreWithin(t *testing.T, s *stack.Stack, cpf string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL(stack.Score) + "/" + cpf + "/score")
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, raw)
			var body struct{ Score *float64 }
			if resp.StatusCode == 200 && json.Unmarshal(raw, &body) == nil && body.Score != nil && *body.Score == want {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("score of %s did not reach %v within %s; last answer: %s", cpf, want, within, last)
}

// The original README's flow, against the real binaries: four writes, then 4970.
func TestOriginalFlow(t *testing.T) {
	s := stack.StartForTest(t)
	person := s.URL(stack.Person)
	if code, body := post(t, person+"/person", payload(t, "new_person.json")); code != 201 || body["message"] != "created" {
		t.Fatalf("POST /person = %d %v, want 201 created", code, body)
	}
	for _, kind := range []string{"income", "asset", "debt"} {
		if code, body := post(t, person+"/person/11111/"+kind, payload(t, "new_"+kind+".json")); code != 201 {
			t.Fatalf("POST /person/11111/%s = %d %v, want 201", kind, code, body)
		}
	}
	scoreWithin(t, s, "11111", 4970, time.Second)

	// The same cpf again is a conflict, as in the original.
	if code, _ := post(t, person+"/person", payload(t, "new_person.json")); code != http.StatusConflict {
		t.Fatalf("duplicate POST /person = %d, want 409", code)
	}
}

// Killing score leaves person serving; a restarted score catches up.
func TestScoreKilledPersonKeepsServingAndScoreCatchesUp(t *testing.T) {
	s := stack.StartForTest(t)
	person := s.URL(stack.Person)
	if code, _ := post(t, person+"/person", payload(t, "new_person.json")); code != 201 {
		t.Fatalf("POST /person = %d", code)
	}
	scoreWithin(t, s, "11111", 0, 2*time.Second)

	if err := s.Kill(stack.Score, syscall.SIGKILL, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"income", "asset", "debt"} {
		if code, body := post(t, person+"/person/11111/"+kind, payload(t, "new_"+kind+".json")); code != 201 {
			t.Fatalf("with score down, POST %s = %d %v, want 201", kind, code, body)
		}
	}
	if err := s.Start(t.Context(), stack.Score); err != nil {
		t.Fatal(err)
	}
	scoreWithin(t, s, "11111", 4970, 5*time.Second)
}
