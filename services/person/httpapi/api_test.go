package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/person"
	"github.com/personscore/person/httpapi"
	"github.com/personscore/person/mongodb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The original README's payloads, verbatim.
const (
	origPerson = `{"cpf": 11111, "name": "abc", "address": "abc", "date_of_birth": "2019-06-15T19:23:55-03:00"}`
	origIncome = `{"type": "renting", "value": 1000}`
	origAsset  = `{"type": "apartment", "value": 100000}`
	origDebt   = `{"value": 1000}`
)

func (s *server) outbox(t *testing.T, cpf person.CPF) []eventbus.Event {
	t.Helper()
	var d struct {
		Outbox []eventbus.Event `bson:"outbox"`
	}
	err := mongodb.PersonsCollection(s.env.DB).FindOne(context.Background(), bson.D{{Key: "_id", Value: cpf}},
		options.FindOne().SetProjection(bson.D{{Key: outbox.Field, Value: 1}})).Decode(&d)
	if err != nil {
		t.Fatalf("outbox of %s: %v", cpf, err)
	}
	return d.Outbox
}

func types(evs []eventbus.Event) []string {
	var ts []string
	for _, ev := range evs {
		ts = append(ts, fmt.Sprintf("%s@%d", ev.Type, ev.Version))
	}
	return ts
}

func num(t *testing.T, m map[string]any, key string) string {
	t.Helper()
	n, ok := m[key].(json.Number)
	if !ok {
		t.Fatalf("%s = %#v, want a number in %v", key, m[key], m)
	}
	return n.String()
}

// 201: the original's four calls work unchanged, each answering the version
// (and the item id), and each storing its event in the outbox.
func TestOriginalCallsCreate(t *testing.T) {
	s := newServer(t)
	r := s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	m := r.json(t)
	if m["message"] != "created" || num(t, m, "cpf") != "11111" || num(t, m, "version") != "1" {
		t.Errorf("POST /person: %s", r.body)
	}
	if loc := r.Header().Get("Location"); loc != "/person/11111" {
		t.Errorf("Location %q", loc)
	}
	var ids []string
	for i, c := range []struct{ path, body string }{
		{"/person/11111/income", origIncome}, {"/person/11111/asset", origAsset}, {"/person/11111/debt", origDebt},
	} {
		r := s.do(t, "POST", c.path, c.body).expect(t, http.StatusCreated)
		m := r.json(t)
		id, _ := m["id"].(string)
		if m["message"] != "created" || id == "" || num(t, m, "version") != fmt.Sprint(i+2) {
			t.Errorf("POST %s: %s", c.path, r.body)
		}
		if loc := r.Header().Get("Location"); loc != c.path+"/"+id {
			t.Errorf("Location %q", loc)
		}
		ids = append(ids, id)
	}

	// 200: the record's state, items by kind, values exact.
	r = s.do(t, "GET", "/person/11111", "").expect(t, http.StatusOK)
	var got struct {
		CPF         int64  `json:"cpf"`
		Name        string `json:"name"`
		Address     string `json:"address"`
		DateOfBirth string `json:"date_of_birth"`
		Version     int64  `json:"version"`
		Score       *struct{ Value int64 }
		Incomes     []map[string]any `json:"incomes"`
		Assets      []map[string]any `json:"assets"`
		Debts       []map[string]any `json:"debts"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.CPF != 11111 || got.Name != "abc" || got.Address != "abc" || got.DateOfBirth != "2019-06-15T19:23:55-03:00" ||
		got.Version != 4 || got.Score != nil || len(got.Incomes) != 1 || len(got.Assets) != 1 || len(got.Debts) != 1 {
		t.Fatalf("GET: %s", r.body)
	}
	if got.Incomes[0]["id"] != ids[0] || got.Assets[0]["id"] != ids[1] || got.Debts[0]["id"] != ids[2] {
		t.Errorf("item ids %v, want %v", r.body, ids)
	}
	if !strings.Contains(string(r.body), `"value":100000,`) || !strings.Contains(string(r.body), `"type":"renting","value":1000,`) {
		t.Errorf("values not written exactly: %s", r.body)
	}

	// The score replicated back shows up.
	if err := s.env.Store.SetScore(context.Background(), 11111, 4970, 4, time.Now()); err != nil {
		t.Fatal(err)
	}
	if m := s.do(t, "GET", "/person/11111", "").expect(t, http.StatusOK).json(t); num(t, m["score"].(map[string]any), "value") != "4970" {
		t.Errorf("score %v", m["score"])
	}

	want := []string{"person.created@1", "income.created@2", "asset.created@3", "debt.created@4"}
	if got := types(s.outbox(t, 11111)); !slices.Equal(got, want) {
		t.Errorf("outbox %v, want %v", got, want)
	}
}

// 200 and 204: update, item deletion, person deletion; every change its own
// event and version; a deleted cpf can be created again with higher versions.
func TestUpdateAndDelete(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", `{"cpf": "22222", "name": "a", "date_of_birth": "2000-01-01"}`).expect(t, http.StatusCreated)
	id := s.do(t, "POST", "/person/22222/asset", origAsset).expect(t, http.StatusCreated).json(t)["id"].(string)

	m := s.do(t, "PUT", "/person/22222", `{"name": " b ", "address": "street 1", "date_of_birth": "1999-12-31T23:59:59Z", "cpf": 5}`).
		expect(t, http.StatusOK).json(t)
	if m["message"] != "updated" || num(t, m, "version") != "3" || num(t, m, "cpf") != "22222" {
		t.Errorf("PUT: %v", m)
	}
	m = s.do(t, "GET", "/person/22222", "").expect(t, http.StatusOK).json(t)
	if m["name"] != "b" || m["address"] != "street 1" || m["date_of_birth"] != "1999-12-31T23:59:59Z" {
		t.Errorf("after PUT: %v", m)
	}

	r := s.do(t, "DELETE", "/person/22222/asset/"+id, "").expect(t, http.StatusNoContent)
	if r.Header().Get("X-Version") != "4" || len(r.body) != 0 {
		t.Errorf("DELETE item: X-Version %q, body %q", r.Header().Get("X-Version"), r.body)
	}
	s.do(t, "DELETE", "/person/22222/asset/"+id, "").expect(t, http.StatusNotFound)
	s.do(t, "POST", "/person/22222/income", origIncome).expect(t, http.StatusCreated)

	r = s.do(t, "DELETE", "/person/22222", "").expect(t, http.StatusNoContent)
	if r.Header().Get("X-Version") != "6" {
		t.Errorf("DELETE person: X-Version %q", r.Header().Get("X-Version"))
	}
	s.do(t, "GET", "/person/22222", "").expect(t, http.StatusNotFound)
	s.do(t, "DELETE", "/person/22222", "").expect(t, http.StatusNotFound)
	s.do(t, "PUT", "/person/22222", `{"name": "a", "date_of_birth": "2000-01-01"}`).expect(t, http.StatusNotFound)
	s.do(t, "POST", "/person/22222/debt", origDebt).expect(t, http.StatusNotFound)

	m = s.do(t, "POST", "/person", `{"cpf": 22222, "name": "c", "date_of_birth": "2000-01-01"}`).expect(t, http.StatusCreated).json(t)
	if num(t, m, "version") != "7" {
		t.Errorf("re-created at version %s, want 7", num(t, m, "version"))
	}
	m = s.do(t, "GET", "/person/22222", "").expect(t, http.StatusOK).json(t)
	if len(m["incomes"].([]any))+len(m["assets"].([]any))+len(m["debts"].([]any)) != 0 || m["name"] != "c" {
		t.Errorf("re-created person: %v", m)
	}
	want := []string{"person.created@1", "asset.created@2", "person.updated@3", "asset.deleted@4", "income.created@5",
		"person.deleted@6", "person.created@7"}
	if got := types(s.outbox(t, 22222)); !slices.Equal(got, want) {
		t.Errorf("outbox %v, want %v", got, want)
	}
}

// Unknown fields are accepted and ignored, as the original did.
func TestUnknownFieldsAreIgnored(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", `{"cpf": 3, "name": "a", "date_of_birth": "2000-01-01", "nickname": "z", "tags": [1, {"a": null}]}`).
		expect(t, http.StatusCreated)
	s.do(t, "POST", "/person/3/debt", `{"value": 10.5, "currency": "BRL"}`).expect(t, http.StatusCreated)
	s.do(t, "PUT", "/person/3", `{"name": "b", "date_of_birth": "2000-01-01", "version": 99}`).expect(t, http.StatusOK)
	m := s.do(t, "GET", "/person/3", "").expect(t, http.StatusOK).json(t)
	if _, leaked := m["nickname"]; leaked || num(t, m["debts"].([]any)[0].(map[string]any), "value") != "10.5" {
		t.Errorf("GET: %v", m)
	}
}

// 400: empty or malformed bodies, on every route that takes one.
func TestMalformedBodyIs400(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	for _, path := range []string{"POST /person", "PUT /person/11111", "POST /person/11111/income", "POST /person/11111/asset", "POST /person/11111/debt"} {
		method, url, _ := strings.Cut(path, " ")
		for _, body := range []string{"", "  \n", "null", "[]", `[{"value": 1}]`, "42", `"x"`, "{", `{"value": 1,}`, `{"value": 1}}`,
			`{"value": 1} {"value": 2}`, `{value: 1}`, "\xff\xfe", `{"value": 01}`} {
			r := s.do(t, method, url, body).expect(t, http.StatusBadRequest)
			if p := r.problem(t); p.Detail == "" || len(p.Errors) != 0 {
				t.Errorf("%s %q: problem %+v", path, body, p)
			}
		}
	}
	if got := types(s.outbox(t, 11111)); len(got) != 1 {
		t.Errorf("a 400 wrote events: %v", got)
	}
}

// 413: a body over 1 MiB, whatever it holds; exactly 1 MiB is still read.
func TestBodyOver1MiBIs413(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	pad := func(body string, size int) string { return body + strings.Repeat(" ", size-len(body)) }
	for _, path := range []string{"POST /person", "PUT /person/11111", "POST /person/11111/income", "POST /person/11111/asset", "POST /person/11111/debt"} {
		method, url, _ := strings.Cut(path, " ")
		s.do(t, method, url, pad(`{"cpf": 5, "name": "x", "type": "x", "value": 1, "date_of_birth": "2000-01-01"}`, httpapi.MaxBody+1)).
			expect(t, http.StatusRequestEntityTooLarge)
		s.do(t, method, url, strings.Repeat("x", 3*httpapi.MaxBody)).expect(t, http.StatusRequestEntityTooLarge)
	}
	s.do(t, "POST", "/person/11111/debt", pad(`{"value": 1}`, httpapi.MaxBody)).expect(t, http.StatusCreated)
	s.do(t, "POST", "/person", pad(`{"cpf": 6, "name": "x", "date_of_birth": "2000-01-01"}`, httpapi.MaxBody)).expect(t, http.StatusCreated)
	if got := types(s.outbox(t, 11111)); len(got) != 2 {
		t.Errorf("a 413 wrote events: %v", got)
	}
}

// 422: every validation failure lists the invalid fields.
func TestValidationIs422WithFields(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	future := time.Now().AddDate(0, 0, 2).Format(time.DateOnly)
	cases := []struct {
		method, path, body string
		fields             []string
	}{
		{"POST", "/person", `{}`, []string{"cpf", "name", "date_of_birth"}},
		{"POST", "/person", `{"name": "abc", "date_of_birth": "2019-06-15"}`, []string{"cpf"}},
		{"POST", "/person", `{"cpf": "abc", "name": "abc", "date_of_birth": "2019-06-15"}`, []string{"cpf"}},
		{"POST", "/person", `{"cpf": -1, "name": "abc", "date_of_birth": "2019-06-15"}`, []string{"cpf"}},
		{"POST", "/person", `{"cpf": 1.5, "name": "abc", "date_of_birth": "2019-06-15"}`, []string{"cpf"}},
		{"POST", "/person", `{"cpf": 1, "name": "", "date_of_birth": "2019-06-15"}`, []string{"name"}},
		{"POST", "/person", `{"cpf": 1, "name": ["abc"], "date_of_birth": "2019-06-15"}`, []string{"name"}},
		{"POST", "/person", `{"cpf": 1, "name": "abc", "date_of_birth": "yesterday"}`, []string{"date_of_birth"}},
		{"POST", "/person", `{"cpf": 1, "name": "abc", "date_of_birth": "` + future + `"}`, []string{"date_of_birth"}},
		{"PUT", "/person/11111", `{"name": "  ", "address": 7}`, []string{"name", "address", "date_of_birth"}},
		{"POST", "/person/11111/income", `{"value": 1000}`, []string{"type"}},
		{"POST", "/person/11111/income", `{"type": "renting", "value": 0}`, []string{"value"}},
		{"POST", "/person/11111/asset", `{"type": "apartment", "value": -100000}`, []string{"value"}},
		{"POST", "/person/11111/asset", `{"type": "apartment", "value": "100000"}`, []string{"value"}},
		{"POST", "/person/11111/debt", `{"value": 0.001}`, []string{"value"}},
		{"POST", "/person/11111/debt", `{"value": 1000000000000.01}`, []string{"value"}},
		{"POST", "/person/11111/debt", `{"value": 1e400}`, []string{"value"}},
		{"POST", "/person/11111/debt", `{"value": null}`, []string{"value"}},
		{"POST", "/person/11111/debt", `{}`, []string{"value"}},
		// Validation comes before the lookup: an invalid body for an unknown cpf is 422.
		{"POST", "/person/99999/debt", `{"value": 0}`, []string{"value"}},
	}
	for _, c := range cases {
		p := s.do(t, c.method, c.path, c.body).expect(t, http.StatusUnprocessableEntity).problem(t)
		var fields []string
		for _, f := range p.Errors {
			fields = append(fields, f.Field)
			if f.Reason == "" {
				t.Errorf("%s %s: field %s without a reason", c.method, c.path, f.Field)
			}
		}
		if !slices.Equal(fields, c.fields) {
			t.Errorf("%s %s %s: fields %v, want %v", c.method, c.path, c.body, fields, c.fields)
		}
	}
	if got := types(s.outbox(t, 11111)); len(got) != 1 {
		t.Errorf("a 422 wrote events: %v", got)
	}
}

// 404: unknown or impossible cpf, unknown item, wrong kind, unknown path.
func TestUnknownIs404(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	inc := s.do(t, "POST", "/person/11111/income", origIncome).expect(t, http.StatusCreated).json(t)["id"].(string)
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/person/99999", ""},
		{"GET", "/person/abc", ""},
		{"GET", "/person/0", ""},
		{"GET", "/person/-1", ""},
		{"GET", "/person/1234567890123456789", ""},
		{"PUT", "/person/99999", `{"name": "x", "date_of_birth": "2000-01-01"}`},
		{"DELETE", "/person/99999", ""},
		{"POST", "/person/99999/income", origIncome},
		{"POST", "/person/99999/asset", origAsset},
		{"POST", "/person/99999/debt", origDebt},
		{"POST", "/person/abc/debt", origDebt},
		{"DELETE", "/person/11111/income/no-such-id", ""},
		{"DELETE", "/person/11111/asset/" + inc, ""}, // the id of an income, deleted as an asset
		{"DELETE", "/person/11111/debt/" + inc, ""},
		{"DELETE", "/person/11111/score/" + inc, ""}, // no such kind
		{"DELETE", "/person/11111/incomes/" + inc, ""},
		{"DELETE", "/person/99999/income/" + inc, ""},
		{"GET", "/nothing", ""},
		{"GET", "/person/11111/income/x/y", ""},
		{"POST", "/person/11111/score", origDebt},
	} {
		s.do(t, c.method, c.path, c.body).expect(t, http.StatusNotFound)
	}
	// The income is still there.
	s.do(t, "DELETE", "/person/11111/income/"+inc, "").expect(t, http.StatusNoContent)
}

// 409: a live cpf, however it is written.
func TestDuplicateIs409(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusConflict)
	s.do(t, "POST", "/person", `{"cpf": "011111", "name": "x", "date_of_birth": "2000-01-01"}`).expect(t, http.StatusConflict)
	if got := types(s.outbox(t, 11111)); len(got) != 1 {
		t.Errorf("a 409 wrote events: %v", got)
	}
	// Many racing creates of one cpf: exactly one wins.
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- s.do(t, "POST", "/person", `{"cpf": 5, "name": "x", "date_of_birth": "2000-01-01"}`).Code
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusCreated] != 1 || count[http.StatusConflict] != 7 {
		t.Errorf("racing creates: %v, want one 201 and seven 409", count)
	}
}

// 405: a known path with another method, as problem+json with Allow.
func TestWrongMethodIs405(t *testing.T) {
	s := newServer(t)
	for _, c := range []struct{ method, path, allow string }{
		{"PATCH", "/person/11111", "GET, PUT, DELETE"},
		{"GET", "/person", "POST"},
		{"PUT", "/person", "POST"},
		{"GET", "/person/11111/income", "POST"},
		{"DELETE", "/person/11111/debt", "POST"},
		{"POST", "/person/11111/income/abc", "DELETE"},
		{"POST", "/healthz", "GET"},
		{"DELETE", "/openapi.json", "GET"},
	} {
		r := s.do(t, c.method, c.path, "").expect(t, http.StatusMethodNotAllowed)
		allow := strings.Split(r.Header().Get("Allow"), ", ")
		want := strings.Split(c.allow, ", ")
		slices.Sort(allow)
		slices.Sort(want)
		if !slices.Equal(allow, want) {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, r.Header().Get("Allow"), c.allow)
		}
	}
}

// 503 (MongoDB down): every route answers 503 (with Retry-After, or Write-Outcome: unknown), and nothing
// was written: once MongoDB is back the person and its outbox are unchanged.
func TestMongoDownIs503AndWritesNothing(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	inc := s.do(t, "POST", "/person/11111/income", origIncome).expect(t, http.StatusCreated).json(t)["id"].(string)
	before := s.do(t, "GET", "/person/11111", "").expect(t, http.StatusOK).body

	s.env.Proxy.Cut()
	reqs := []struct{ method, path, body string }{
		{"POST", "/person", `{"cpf": 22222, "name": "x", "date_of_birth": "2000-01-01"}`},
		{"GET", "/person/11111", ""},
		{"PUT", "/person/11111", `{"name": "changed", "date_of_birth": "2000-01-01"}`},
		{"POST", "/person/11111/income", origIncome},
		{"POST", "/person/11111/asset", origAsset},
		{"POST", "/person/11111/debt", origDebt},
		{"DELETE", "/person/11111/income/" + inc, ""},
		{"DELETE", "/person/11111", ""},
		{"GET", "/readyz", ""},
	}
	var wg sync.WaitGroup
	for _, c := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.do(t, c.method, c.path, c.body).expect(t, http.StatusServiceUnavailable)
			// A write sent on a connection the cut closed cannot tell whether
			// it reached MongoDB: it says so instead of inviting a retry.
			// Either way nothing may be written (checked below).
			unknown := r.Header().Get("Write-Outcome") == "unknown"
			if unknown && (c.method == "GET" || r.Header().Get("Retry-After") != "") {
				t.Errorf("%s %s: Write-Outcome unknown with Retry-After %q", c.method, c.path, r.Header().Get("Retry-After"))
			}
			if c.path != "/readyz" && !unknown && r.Header().Get("Retry-After") == "" {
				t.Errorf("%s %s: 503 without Retry-After", c.method, c.path)
			}
		}()
	}
	wg.Wait()
	s.do(t, "GET", "/healthz", "").expect(t, http.StatusOK) // alive all the same

	s.env.Proxy.Restore()
	s.do(t, "GET", "/readyz", "").expect(t, http.StatusOK)
	after := s.do(t, "GET", "/person/11111", "").expect(t, http.StatusOK).body
	if string(before) != string(after) {
		t.Errorf("state changed during the outage:\nbefore %s\nafter  %s", before, after)
	}
	s.do(t, "GET", "/person/22222", "").expect(t, http.StatusNotFound)
	if got, want := types(s.outbox(t, 11111)), []string{"person.created@1", "income.created@2"}; !slices.Equal(got, want) {
		t.Errorf("outbox %v, want %v", got, want)
	}
}

// A POST whose store write reached MongoDB only after its answer was lost
// (connection cut after sending; the command held back until then) is never
// answered with a plain 503 that invites a retry which would store the income
// twice: 201 when person settles it (it sends the command again), 503 with
// Write-Outcome: unknown and no Retry-After when that copy is lost too.
func TestLateWriteIsNotAnsweredAsRefused(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	for i, c := range []struct {
		held   int // the command, and maybe its copy
		status int
	}{{1, http.StatusCreated}, {2, http.StatusServiceUnavailable}} {
		held, release := s.env.Proxy.Hold(c.held, "update", true)
		r := s.do(t, "POST", "/person/11111/income", origIncome)
		<-held
		if err := release(); err != nil {
			t.Fatal(err)
		}
		unknown := r.Header().Get("Write-Outcome") == "unknown" && r.Header().Get("Retry-After") == ""
		if r.Code != c.status || (c.status == http.StatusServiceUnavailable && !unknown) {
			t.Errorf("POST income sent, answer lost, applied late (%d held): %d %s (Write-Outcome %q, Retry-After %q); want %d",
				c.held, r.Code, r.body, r.Header().Get("Write-Outcome"), r.Header().Get("Retry-After"), c.status)
		}
		got := s.do(t, "GET", "/person/11111", "").expect(t, http.StatusOK).json(t)
		if incomes := got["incomes"].([]any); len(incomes) != i+1 || fmt.Sprint(got["version"]) != fmt.Sprint(i+2) {
			t.Errorf("after late write %d: version %v, incomes %v; want %d and %d", i+1, got["version"], incomes, i+2, i+1)
		}
	}
}

// The broker down is no reason to refuse writes: they are accepted (their
// events wait in the outbox) and /readyz stays 200, saying so. Once the
// backlog is at its bound, every write is refused with 503 problem+json and
// Retry-After before anything is written, reads still work, and /readyz
// (still 200) says why; under the bound again, writes are accepted.
func TestBacklogFullIs503AndWritesNothing(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	s.brokerDown.Store(true)
	inc := s.do(t, "POST", "/person/11111/income", origIncome).expect(t, http.StatusCreated).json(t)["id"].(string)
	m := s.do(t, "GET", "/readyz", "").expect(t, http.StatusOK).json(t)
	if m["broker"] != "unreachable" || !strings.HasPrefix(m["writes"].(string), "accepted") {
		t.Errorf("readyz with the broker down: %v", m)
	}

	s.pending.Store(testMaxPending)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/person", `{"cpf": 22222, "name": "x", "date_of_birth": "2000-01-01"}`},
		{"PUT", "/person/11111", `{"name": "changed", "date_of_birth": "2000-01-01"}`},
		{"POST", "/person/11111/income", origIncome},
		{"POST", "/person/11111/asset", origAsset},
		{"POST", "/person/11111/debt", origDebt},
		{"DELETE", "/person/11111/income/" + inc, ""},
		{"DELETE", "/person/11111", ""},
	} {
		r := s.do(t, c.method, c.path, c.body).expect(t, http.StatusServiceUnavailable)
		detail := r.problem(t).Detail
		if r.Header().Get("Retry-After") != "5" || !strings.Contains(detail, "outbox backlog full") || !strings.Contains(detail, "nothing was written") {
			t.Errorf("%s %s: Retry-After %q, %s", c.method, c.path, r.Header().Get("Retry-After"), r.body)
		}
	}
	m = s.do(t, "GET", "/readyz", "").expect(t, http.StatusOK).json(t)
	if !strings.HasPrefix(m["writes"].(string), "refused: outbox backlog full") {
		t.Errorf("readyz with the backlog full: %v", m)
	}
	m = s.do(t, "GET", "/person/11111", "").expect(t, http.StatusOK).json(t)
	if num(t, m, "version") != "2" || m["name"] != "abc" {
		t.Errorf("after refused writes: %v", m)
	}
	s.do(t, "GET", "/person/22222", "").expect(t, http.StatusNotFound)
	if got := types(s.outbox(t, 11111)); len(got) != 2 {
		t.Errorf("refused writes left events: %v", got)
	}
	s.pending.Store(testMaxPending - 1)
	s.do(t, "POST", "/person/11111/debt", origDebt).expect(t, http.StatusCreated)
	s.brokerDown.Store(false)
	s.pending.Store(0)
	m = s.do(t, "GET", "/readyz", "").expect(t, http.StatusOK).json(t)
	if m["broker"] != "connected" || m["writes"] != "accepted" {
		t.Errorf("readyz after the outage: %v", m)
	}
}

// Many clients writing to one person at once all succeed, with distinct,
// gap-free versions.
func TestConcurrentClientsOnePerson(t *testing.T) {
	s := newServer(t)
	s.do(t, "POST", "/person", origPerson).expect(t, http.StatusCreated)
	const clients, each = 12, 4
	var wg sync.WaitGroup
	versions := make(chan string, clients*each)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kinds := []string{"income", "asset", "debt"}
			for i := range each {
				k := kinds[(c+i)%3]
				body := fmt.Sprintf(`{"type": "t%d", "value": %d.%02d}`, c, i+1, c)
				r := s.do(t, "POST", "/person/11111/"+k, body)
				if r.Code != http.StatusCreated {
					t.Errorf("client %d write %d: %d %s", c, i, r.Code, r.body)
					continue
				}
				versions <- num(t, r.json(t), "version")
			}
		}()
	}
	wg.Wait()
	close(versions)
	seen := map[string]bool{}
	for v := range versions {
		if seen[v] {
			t.Errorf("version %s answered twice", v)
		}
		seen[v] = true
	}
	for v := 2; v <= 1+clients*each; v++ {
		if !seen[fmt.Sprint(v)] {
			t.Errorf("no write answered version %d", v)
		}
	}
	if n := len(s.outbox(t, 11111)); n != 1+clients*each {
		t.Errorf("%d events in the outbox, want %d", n, 1+clients*each)
	}
}
