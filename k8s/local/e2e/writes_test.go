package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// writer streams item writes (POST /person/CPF/income) through the ingress and records
// the outcome of each.
type writer struct {
	cpf   int64
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	ok    []string       // ids of 2xx writes
	fails map[string]int // "status" or error -> count
}

// newPerson creates a person with a fresh CPF through the ingress; it is deleted when
// the test ends.
func newPerson(t *testing.T) int64 {
	t.Helper()
	cpf := 900000000 + rand.Int64N(99999999)
	body := fmt.Sprintf(`{"cpf": %d, "name": "e2e", "address": "e2e", "date_of_birth": "2000-01-01T00:00:00Z"}`, cpf)
	code, resp, err := request(http.MethodPost, "http://localhost/person", "application/json", []byte(body))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("create person %d: %d %s %v", cpf, code, resp, err)
	}
	t.Cleanup(func() { request(http.MethodDelete, fmt.Sprintf("http://localhost/person/%d", cpf), "", nil) })
	return cpf
}

// startWriter starts n goroutines writing items one after another.
func startWriter(cpf int64, n int) *writer {
	w := &writer{cpf: cpf, stop: make(chan struct{}), fails: map[string]int{}}
	for i := 0; i < n; i++ {
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				code, body, err := request(http.MethodPost, fmt.Sprintf("http://localhost/person/%d/income", cpf), "application/json", []byte(`{"type": "e2e", "value": 1}`))
				w.mu.Lock()
				var created struct {
					ID string `json:"id"`
				}
				switch {
				case err != nil:
					w.fails[errKind(err)]++
				case code/100 == 2 && json.Unmarshal([]byte(body), &created) == nil && created.ID != "":
					w.ok = append(w.ok, created.ID)
				default:
					w.fails[fmt.Sprint(code)]++
				}
				w.mu.Unlock()
				if err != nil || code/100 != 2 {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	return w
}

func errKind(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

func (w *writer) finish() (ok []string, fails map[string]int) {
	close(w.stop)
	w.done.Wait()
	return w.ok, w.fails
}

func failCount(fails map[string]int) int {
	n := 0
	for _, c := range fails {
		n += c
	}
	return n
}

// checkExactlyOnce waits until score's document of cpf holds exactly the items person
// holds and checks every 2xx write is among them once.
func checkExactlyOnce(t *testing.T, cpf int64, ok []string) {
	t.Helper()
	var personItems, scoreItems []string
	eventually(t, "score's items equal person's", timeoutShort, func() (bool, string) {
		code, body, err := request(http.MethodGet, fmt.Sprintf("http://localhost/person/%d", cpf), "", nil)
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprintf("person: %d %s %v", code, body, err)
		}
		personItems = itemIDs(body)
		code, body, err = request(http.MethodGet, fmt.Sprintf("http://localhost:81/%d", cpf), "", nil)
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprintf("score: %d %s %v", code, body, err)
		}
		scoreItems = itemIDs(body)
		return strings.Join(personItems, ",") == strings.Join(scoreItems, ","), fmt.Sprintf("person has %d items, score %d", len(personItems), len(scoreItems))
	})
	seen := map[string]int{}
	for _, id := range scoreItems {
		seen[id]++
	}
	for _, id := range ok {
		if seen[id] != 1 {
			t.Errorf("2xx write %s is in score %d times", id, seen[id])
		}
	}
	t.Logf("%d acknowledged writes, %d items in person and in score", len(ok), len(scoreItems))
}

// itemIDs collects the item ids of a document: person's lists "incomes", "assets" and
// "debts" of {"id": ...}, or score's "items" map keyed by id.
func itemIDs(body string) []string {
	var doc struct {
		Items   map[string]json.RawMessage `json:"items"`
		Incomes []struct{ ID string }      `json:"incomes"`
		Assets  []struct{ ID string }      `json:"assets"`
		Debts   []struct{ ID string }      `json:"debts"`
	}
	if json.Unmarshal([]byte(body), &doc) != nil {
		return nil
	}
	var ids []string
	for id := range doc.Items {
		ids = append(ids, id)
	}
	for _, list := range [][]struct{ ID string }{doc.Incomes, doc.Assets, doc.Debts} {
		for _, it := range list {
			ids = append(ids, it.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// TestPodDeletionDuringWrites deletes a score pod and a person pod while writes stream
// in; every acknowledged write ends up in score exactly once.
func TestPodDeletionDuringWrites(t *testing.T) {
	cpf := newPerson(t)
	w := startWriter(cpf, 2)
	time.Sleep(5 * time.Second)
	for _, app := range []string{"score", "person"} {
		pod := strings.Fields(kubectl(t, "-n", namespace, "get", "pod", "-l", appSelector(app), "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}"))
		if len(pod) == 0 {
			t.Fatalf("no running %s pod", app)
		}
		kubectl(t, "-n", namespace, "delete", "pod", pod[0], "--wait=false")
		t.Logf("deleted %s pod %s", app, pod[0])
		time.Sleep(3 * time.Second)
		kubectl(t, "-n", namespace, "rollout", "status", "deployment/"+app, "--timeout=5m")
		kubectl(t, "-n", namespace, "wait", "pod", "-l", appSelector(app), "--for=condition=Ready", "--timeout=5m")
	}
	time.Sleep(5 * time.Second)
	ok, fails := w.finish()
	t.Logf("writes: %d acknowledged, failed: %v", len(ok), fails)
	if len(ok) == 0 {
		t.Fatal("no write was acknowledged")
	}
	checkExactlyOnce(t, cpf, ok)
}
