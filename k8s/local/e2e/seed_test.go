package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestSeedCurls runs the original README's curls verbatim through the ingress:
// person on port 80 by path, score on port 81.
func TestSeedCurls(t *testing.T) {
	// A person 11111 from an earlier run would add to the score: start from none.
	code, body, err := request(http.MethodDelete, "http://localhost/person/11111", "", nil)
	if err != nil || (code != http.StatusNoContent && code != http.StatusNotFound) {
		t.Fatalf("DELETE /person/11111: %d %s %v", code, body, err)
	}
	eventually(t, "score for 11111 gone", 2*time.Minute, func() (bool, string) {
		code, body, err := request(http.MethodGet, "http://localhost:81/11111/score", "", nil)
		return err == nil && code == http.StatusNotFound, body
	})

	const contentType = "application/json"
	steps := []struct{ url, file string }{
		{"http://localhost/person", "new_person.json"},
		{"http://localhost/person/11111/income", "new_income.json"},
		{"http://localhost/person/11111/asset", "new_asset.json"},
		{"http://localhost/person/11111/debt", "new_debt.json"},
	}
	for _, s := range steps {
		code, body, err := request(http.MethodPost, s.url, contentType, payload(t, s.file))
		if err != nil || code/100 != 2 {
			t.Fatalf("POST %s (%s): %d %s %v", s.url, s.file, code, body, err)
		}
	}
	eventually(t, `GET http://localhost:81/11111/score answers {"score": 4970, ...}`, 2*time.Minute, func() (bool, string) {
		code, body, err := request(http.MethodGet, "http://localhost:81/11111/score", "", nil)
		if err != nil {
			return false, err.Error()
		}
		var got struct {
			CPF   int64  `json:"cpf"`
			Score *int64 `json:"score"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Score == nil {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		return got.CPF == 11111 && *got.Score == 4970, body
	})
}
