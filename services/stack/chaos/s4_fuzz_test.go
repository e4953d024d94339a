//go:build chaos

package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/personscore/stack"
	"github.com/personscore/stack/chaos"
)

// fuzzer builds random requests against every route of both services.
type fuzzer struct {
	r      *mrand.Rand
	person string
	score  string
}

func (f *fuzzer) pick(opts ...string) string { return opts[f.r.IntN(len(opts))] }

func (f *fuzzer) cpf() string {
	return f.pick("11111", "11112", "11113", strconv.FormatInt(1+f.r.Int64N(1_000_000), 10), "0", "-1", "abc",
		"99999999999999999999", "9223372036854775807", "9223372036854775808", "1e3", "%00", "%2e%2e", "%2F",
		"١٢٣", "00011111", strings.Repeat("9", 300), "11111.0", "+11111", "0x2B67", " 1", "", "null")
}

func (f *fuzzer) kind() string {
	return f.pick("income", "asset", "debt", "score", "person", "INCOME", "incomes", "", "..", "%")
}

func (f *fuzzer) id() string {
	return f.pick("0192f3c4-8d1e-7cc1-9a3b-1f2e3d4c5b6a", "x", "", "'; drop", strings.Repeat("a", 2000), "%ff%fe", "..%2f..")
}

func (f *fuzzer) scalar() any {
	switch f.r.IntN(14) {
	case 0:
		return nil
	case 1:
		return f.r.IntN(2) == 0
	case 2:
		return f.r.Int64()
	case 3:
		return -f.r.Int64N(1000)
	case 4:
		return f.r.Float64() * 1e6
	case 5:
		return rawJSON("1e400")
	case 6:
		return rawJSON("0.001")
	case 7:
		return strings.Repeat("é", f.r.IntN(400))
	case 8:
		return "2019-06-15T19:23:55-03:00"
	case 9:
		return "\u0000\ufffd\U0001F600"
	case 10:
		return []any{1, "a", nil}
	case 11:
		return map[string]any{"nested": map[string]any{"x": 1}}
	case 12:
		return rawJSON("123456789012345678901234567890")
	default:
		return f.r.IntN(100_000)
	}
}

// rawJSON is a JSON literal written as is.
type rawJSON string

func (j rawJSON) MarshalJSON() ([]byte, error) { return []byte(j), nil }

func (f *fuzzer) object() map[string]any {
	fields := []string{"cpf", "name", "address", "date_of_birth", "type", "value", "extra", ""}
	m := map[string]any{}
	for range f.r.IntN(6) {
		m[f.pick(fields...)] = f.scalar()
	}
	if f.r.IntN(3) == 0 { // mostly valid
		m = map[string]any{"cpf": f.r.Int64N(20) + 11111, "name": "fuzz", "address": "x", "date_of_birth": "1990-01-01",
			"type": "salary", "value": f.r.Int64N(10_000) + 1}
		delete(m, f.pick("cpf", "name", "date_of_birth", "type", "value", "none"))
	}
	return m
}

func (f *fuzzer) body() []byte {
	switch f.r.IntN(12) {
	case 0:
		return nil
	case 1:
		b := make([]byte, f.r.IntN(2048))
		for i := range b {
			b[i] = byte(f.r.IntN(256))
		}
		return b
	case 2:
		raw := mustJSON(f.object())
		return raw[:f.r.IntN(len(raw)+1)] // truncated
	case 3:
		return bytes.Repeat([]byte("["), 100_000) // deep nesting
	case 4:
		return append(append([]byte(`{"name": "`), bytes.Repeat([]byte("a"), 2<<20)...), `"}`...) // over 1 MiB
	case 5:
		return []byte(`{"cpf": 1, "cpf": 2, "name": "dup", "date_of_birth": "1990-01-01"}`)
	case 6:
		return []byte("{\"name\": \"\xff\xfe\", \"date_of_birth\": \"1990-01-01\", \"cpf\": 5}")
	case 7:
		return []byte(`{"value": 1000} {"value": 2000}`)
	case 8:
		return []byte(`null`)
	default:
		return mustJSON(f.object())
	}
}

func mustJSON(v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"unencodable": true}`)
	}
	return raw
}

func (f *fuzzer) request(ctx context.Context) (*http.Request, string) {
	method := f.pick("GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND")
	var path string
	base := f.person
	if f.r.IntN(2) == 0 {
		base = f.score
		switch f.r.IntN(6) {
		case 0, 1:
			path = "/" + f.cpf() + "/score"
		case 2:
			path = "/" + f.cpf()
		case 3:
			path = "/" + f.cpf() + "/score?min_version=" + f.pick("0", "1", "-1", "abc", "", "1.5", "0x10", "9223372036854775807", "99999999999999999999", strconv.Itoa(f.r.IntN(20)))
		case 4:
			path = f.pick("/openapi.json", "/healthz", "/readyz", "/metrics", "/", "//", "/a/b/c")
		default:
			path = "/" + f.cpf() + "/" + f.kind() + "/" + f.id()
		}
	} else {
		switch f.r.IntN(7) {
		case 0:
			path = "/person"
		case 1, 2:
			path = "/person/" + f.cpf()
		case 3, 4:
			path = "/person/" + f.cpf() + "/" + f.kind()
		case 5:
			path = "/person/" + f.cpf() + "/" + f.kind() + "/" + f.id()
		default:
			path = f.pick("/openapi.json", "/healthz", "/readyz", "/metrics", "/", "/person/", "/person//income", "/PERSON/11111")
		}
	}
	body := f.body()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	}
	if f.r.IntN(4) > 0 {
		req.Header.Set("Content-Type", f.pick("application/json", "application/json; charset=utf-8", "text/plain",
			"application/cloudevents+json", "multipart/form-data; boundary=x", "", "application/x-www-form-urlencoded", "*/*"))
	}
	if f.r.IntN(4) == 0 {
		req.Header.Set("X-Request-Id", f.pick("", "abc", strings.Repeat("r", 5000)))
	}
	if f.r.IntN(6) == 0 {
		req.Header.Set("Accept-Encoding", "gzip")
		req.Header.Set("Traceparent", f.pick("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "garbage", "00-00000000000000000000000000000000-0000000000000000-00"))
	}
	desc := fmt.Sprintf("%s %s (%d-byte body %q)", method, path, len(body), truncate(body, 80))
	return req, desc
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// rawRequests are hostile requests a Go client cannot send: broken request
// lines, huge headers, lying lengths, bad chunking. want5xx is the one 5xx
// that is the right answer (505 to an unknown HTTP version).
var rawRequests = []struct {
	raw     string
	want5xx string
}{
	{raw: "FOO\r\n\r\n"},
	{raw: "GET /person/11111 HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Big: "+strings.Repeat("a", 8000)+"\r\n", 200) + "\r\n"},
	{raw: "POST /person HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"cpf\": 1"},
	{raw: "POST /person HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"},
	{raw: "POST /person HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"},
	{raw: "POST /person HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{raw: "GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n"},
	{raw: "GET /person/11111 HTTP/9.9\r\nHost: x\r\n\r\n", want5xx: "505"},
	{raw: "GET /11111/score?min_version=%zz HTTP/1.1\r\nHost: x\r\n\r\n"},
	{raw: "DELETE /person/11111/income/%ff HTTP/1.1\r\nHost: x\r\n\r\n"},
	{raw: "GET //score/ HTTP/1.1\r\nHost: x\r\n\r\n"},
}

// Scenario 8: a bounded random HTTP fuzzer hits every route of both services
// with random methods, paths, query strings, bodies and headers, plus raw
// malformed requests. Nothing answers 5xx, nothing panics, both processes stay
// up (same pids) and healthy.
func TestHTTPFuzz(t *testing.T) {
	h := newHarness(t, setup{})
	for _, cpf := range []int64{11111, 11112, 11113} {
		p := h.client.Ledger.Person(cpf)
		if h.client.Create(t.Context(), p) != chaos.Accepted {
			t.Fatal("seeding a person failed")
		}
		h.client.AddItem(t.Context(), p, "income", 1000)
	}
	pids := map[string]int{stack.Person: h.s.PID(stack.Person), stack.Score: h.s.PID(stack.Score)}
	dur := envDuration("CHAOS_FUZZ_TIME", 15*time.Second)
	client := &http.Client{Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var mu sync.Mutex
	status := map[int]int{}
	var failures []string
	nonProblem := 0
	schemeRelative := map[string]bool{} // redirects to a protocol-relative Location
	requests := 0
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &fuzzer{r: mrand.New(mrand.NewPCG(uint64(k), uint64(time.Now().UnixNano()))), person: h.s.URL(stack.Person), score: h.s.URL(stack.Score)}
			for time.Now().Before(end) && t.Context().Err() == nil {
				req, desc := f.request(t.Context())
				resp, err := client.Do(req)
				mu.Lock()
				requests++
				mu.Unlock()
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: no answer: %v", desc, err))
					mu.Unlock()
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				status[resp.StatusCode]++
				if resp.StatusCode >= 500 {
					failures = append(failures, fmt.Sprintf("%s -> %d %s", desc, resp.StatusCode, truncate(raw, 300)))
				}
				if resp.StatusCode >= 400 && req.Method != http.MethodHead && resp.Header.Get("Content-Type") != "application/problem+json" {
					nonProblem++
				}
				if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && strings.HasPrefix(loc, "//") {
					schemeRelative[desc[:strings.Index(desc, " (")]+" -> "+loc] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rawStatus := map[string]int{}
	for _, addr := range []string{h.s.URL(stack.Person), h.s.URL(stack.Score)} {
		for _, rr := range rawRequests {
			code := rawExchange(t, strings.TrimPrefix(addr, "http://"), rr.raw)
			rawStatus[code]++
			if strings.HasPrefix(code, "5") && code != rr.want5xx {
				failures = append(failures, fmt.Sprintf("raw %q -> %s", truncate([]byte(rr.raw), 80), code))
			}
		}
	}
	for _, f := range failures[:min(len(failures), 30)] {
		t.Errorf("fuzz: %s", f)
	}
	for name, pid := range pids {
		if got := h.s.PID(name); got != pid {
			t.Errorf("%s was restarted or died (pid %d, now %d)", name, pid, got)
		}
		if code, err := chaos.Get(t.Context(), h.s.URL(name)+"/healthz"); err != nil || code != 200 {
			t.Errorf("%s /healthz = %d %v after fuzzing", name, code, err)
		}
	}
	if logs := h.s.Logs(); strings.Contains(logs, "panic") {
		i := strings.Index(logs, "panic")
		t.Errorf("a process logged a panic: %s", logs[max(0, i-200):min(len(logs), i+800)])
	}
	var codes []string
	for c, n := range status {
		codes = append(codes, fmt.Sprintf("%d×%d", c, n))
	}
	sort.Strings(codes)
	if nonProblem > 0 {
		t.Errorf("%d error answers were not application/problem+json", nonProblem)
	}
	var redirects []string
	for r := range schemeRelative {
		redirects = append(redirects, r)
	}
	sort.Strings(redirects)
	t.Logf("%d requests in %s: %s; raw: %v; %d error answers not problem+json; redirects to a protocol-relative Location: %v", requests, dur, strings.Join(codes, " "), rawStatus, nonProblem, redirects)
	r := chaos.Result{Scenario: 8, Test: t.Name(), Attempted: int64(requests),
		Note: fmt.Sprintf("%d random requests in %s over every route of both services + %d raw malformed ones; answers %s; 5xx: %d; error answers without problem+json: %d; redirects to a protocol-relative Location: %d",
			requests, dur, len(rawRequests)*2, strings.Join(codes, " "), len(failures), nonProblem, len(redirects))}
	for c, n := range status {
		if c < 300 {
			r.Accepted += int64(n)
		} else {
			r.Refused += int64(n)
		}
	}
	h.finish(&r, -1)
}

// rawExchange sends raw bytes and returns the status code of the answer
// ("closed" when the server just closed the connection).
func rawExchange(t *testing.T, addr, raw string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Errorf("dial %s: %v", addr, err)
		return "dial-error"
	}
	defer c.Close()
	// No half-close: the server would take it for a client that went away
	// and cancel the request. A request promising more body than it sends
	// gets no answer until the deadline.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte(raw))
	line, err := bufio.NewReader(c).ReadString('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "no-answer"
	}
	if err != nil {
		return "closed"
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return "garbage"
	}
	return f[1]
}
