package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/personscore/stack/measure"
)

// Client talks to person and score over HTTP.
type Client struct {
	PersonURL string
	ScoreURL  string
	writes    *http.Client
	reads     *http.Client
}

// NewClient keeps enough idle connections for conns concurrent requests on each side.
func NewClient(personURL, scoreURL string, conns int) *Client {
	tr := func() *http.Transport {
		return &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	return &Client{
		PersonURL: personURL, ScoreURL: scoreURL,
		writes: &http.Client{Transport: tr(), Timeout: 30 * time.Second},
		reads:  &http.Client{Transport: tr(), Timeout: 60 * time.Second},
	}
}

// Outcome classifies a write's answer.
type Outcome int

const (
	Done      Outcome = iota // 2xx: written
	Refused                  // 429, or 503 "broker unavailable": refused up front, nothing written
	Ambiguous                // no answer, a store 503 or an unexpected status: the model cannot tell
)

// Write is one write's result.
type Write struct {
	Op      Op
	Outcome Outcome
	Status  int
	Version int64
	Latency time.Duration
	At      time.Time // when the answer was read
	Err     error
}

// Do sends op for p, updating p on success. The caller holds p (Model.Acquire).
func (c *Client) Do(ctx context.Context, op Op, p *Person, rng *rand.Rand) Write {
	cpf := strconv.FormatInt(p.CPF, 10)
	var method, path string
	var body any
	var item Item
	var itemID string
	switch op {
	case OpCreate:
		method, path = http.MethodPost, "/person"
		body = map[string]any{"cpf": p.CPF, "name": "load " + cpf, "address": "rua " + cpf, "date_of_birth": "1980-01-02"}
	case OpUpdate:
		method, path = http.MethodPut, "/person/"+cpf
		body = map[string]any{"name": fmt.Sprintf("load %s v%d", cpf, p.Version+1), "address": "avenida " + cpf, "date_of_birth": "1981-02-03"}
	case OpIncome, OpAsset, OpDebt:
		item = Item{Kind: op.Kind(), Cents: 100 + rng.Int64N(10_000_000)}
		method, path = http.MethodPost, "/person/"+cpf+"/"+item.Kind
		b := map[string]any{"value": json.RawMessage(FormatCents(item.Cents))}
		if op != OpDebt {
			b["type"] = map[string]string{"income": "salary", "asset": "apartment"}[item.Kind]
		}
		body = b
	case OpDeleteItem:
		ids := p.ItemIDs()
		itemID = ids[rng.IntN(len(ids))]
		method, path = http.MethodDelete, "/person/"+cpf+"/"+p.Items[itemID].Kind+"/"+itemID
	case OpDeletePerson:
		method, path = http.MethodDelete, "/person/"+cpf
	}
	a := measure.Call(ctx, c.writes, method, c.PersonURL+path, body)
	w := Write{Op: op, Status: a.Status, Latency: a.Latency, At: a.At}
	raw := a.Body
	switch {
	case a.Err != nil:
		w.Outcome, w.Err = Ambiguous, a.Err
	case a.Status == http.StatusTooManyRequests,
		a.Status == http.StatusServiceUnavailable && bytes.Contains(raw, []byte("broker unavailable")):
		// Refused before anything was tried: nothing was written.
		w.Outcome, w.Err = Refused, fmt.Errorf("%s %s: %d %s", method, path, a.Status, bytes.TrimSpace(raw))
	case a.Status == http.StatusServiceUnavailable:
		// The store failed or timed out. The API says "nothing was written",
		// but a store call that timed out may still be applied later, so the
		// tool treats the outcome as unknown; Check finds out what happened.
		w.Outcome, w.Err = Ambiguous, fmt.Errorf("%s %s: %d %s", method, path, a.Status, bytes.TrimSpace(raw))
		p.Failed, p.FailedOp = true, op
	case a.Status/100 != 2:
		w.Outcome, w.Err = Ambiguous, fmt.Errorf("%s %s: unexpected %d %s", method, path, a.Status, bytes.TrimSpace(raw))
	default:
		var out struct {
			Version int64  `json:"version"`
			ID      string `json:"id"`
		}
		if len(raw) > 0 {
			_ = json.Unmarshal(raw, &out)
		}
		if out.Version == 0 {
			out.Version, _ = strconv.ParseInt(a.Header.Get("X-Version"), 10, 64)
		}
		if out.Version <= 0 || (op.Kind() != "" && out.ID == "") {
			w.Outcome, w.Err = Ambiguous, fmt.Errorf("%s %s: %d without version or id: %s", method, path, a.Status, raw)
			break
		}
		w.Outcome, w.Version = Done, out.Version
		p.Applied(op, out.Version, out.ID, item, itemID)
	}
	return w
}

// ScoreAnswer is what score said about a cpf once it had applied a version.
type ScoreAnswer struct {
	Found   bool // 200 (false: 404, nobody live)
	Score   int64
	Version int64
	At      time.Time
}

// ErrStale: score did not reach the version within ctx.
var ErrStale = errors.New("score did not reach the version in time")

// WaitScore asks score for cpf's score once it has applied version, asking
// again while score answers stale (its own wait is bounded by MIN_VERSION_WAIT).
func (c *Client) WaitScore(ctx context.Context, cpf, version int64) (ScoreAnswer, error) {
	url := c.ScoreURL + "/" + strconv.FormatInt(cpf, 10) + "/score?min_version=" + strconv.FormatInt(version, 10)
	for {
		a := measure.Call(ctx, c.reads, http.MethodGet, url, nil)
		switch {
		case a.Err != nil:
			if ctx.Err() != nil {
				return ScoreAnswer{}, fmt.Errorf("%w: %v", ErrStale, ctx.Err())
			}
			// A transient failure: pause briefly and ask again.
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return ScoreAnswer{}, fmt.Errorf("%w: %v", ErrStale, a.Err)
			}
		case a.Header.Get("X-Stale") == "true":
			if ctx.Err() != nil {
				return ScoreAnswer{}, ErrStale
			}
			continue
		case a.Status == http.StatusOK:
			var out struct {
				Score   int64 `json:"score"`
				Version int64 `json:"version"`
			}
			if err := json.Unmarshal(a.Body, &out); err != nil {
				return ScoreAnswer{}, fmt.Errorf("score answer: %w: %s", err, a.Body)
			}
			return ScoreAnswer{Found: true, Score: out.Score, Version: out.Version, At: a.At}, nil
		case a.Status == http.StatusNotFound:
			return ScoreAnswer{Found: false, At: a.At}, nil
		case a.Status == http.StatusServiceUnavailable:
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return ScoreAnswer{}, fmt.Errorf("%w: %v", ErrStale, ctx.Err())
			}
		default:
			return ScoreAnswer{}, fmt.Errorf("score answered %d: %s", a.Status, a.Body)
		}
	}
}

// PersonView is what person shows about a cpf.
type PersonView struct {
	Found    bool // 200 (false: 404)
	Version  int64
	HasScore bool // a score came back through score.changed
	Score    int64
}

// Person reads GET /person/{cpf}.
func (c *Client) Person(ctx context.Context, cpf int64) (PersonView, error) {
	a := measure.Call(ctx, c.reads, http.MethodGet, c.PersonURL+"/person/"+strconv.FormatInt(cpf, 10), nil)
	if a.Err != nil {
		return PersonView{}, a.Err
	}
	switch a.Status {
	case http.StatusNotFound:
		return PersonView{}, nil
	case http.StatusOK:
		var out struct {
			Version int64 `json:"version"`
			Score   *struct {
				Value int64 `json:"value"`
			} `json:"score"`
		}
		if err := json.Unmarshal(a.Body, &out); err != nil {
			return PersonView{}, err
		}
		v := PersonView{Found: true, Version: out.Version}
		if out.Score != nil {
			v.HasScore, v.Score = true, out.Score.Value
		}
		return v, nil
	}
	return PersonView{}, fmt.Errorf("person answered %d: %s", a.Status, a.Body)
}
