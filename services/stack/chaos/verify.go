package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/personscore/stack/measure"
)

// Verified is what Verify found.
type Verified struct {
	Persons int
	// Applied is how many writes person applied (the sum of the final versions:
	// every accepted write, plus those with no answer that turned out applied).
	Applied int64
	// Replicated is how many of them score reflects (the sum of score's
	// versions of the cpfs that match exactly).
	Replicated int64
	// UnknownApplied: writes with no answer that person did apply.
	UnknownApplied int
	// Took is how long it took until every cpf matched.
	Took time.Duration
}

type personView struct {
	Version int64      `json:"version"`
	Incomes []itemView `json:"incomes"`
	Assets  []itemView `json:"assets"`
	Debts   []itemView `json:"debts"`
}

type itemView struct {
	ID      string      `json:"id"`
	Kind    string      `json:"kind"`
	Type    string      `json:"type"`
	Value   json.Number `json:"value"`
	Version int64       `json:"version"`
}

// ScoreDoc is score's GET /{cpf} answer.
type ScoreDoc struct {
	CPF     int64 `json:"cpf"`
	Score   int64 `json:"score"`
	Version int64 `json:"version"`
	Items   map[string]struct {
		Kind       string `json:"kind"`
		Type       string `json:"type"`
		ValueCents int64  `json:"value_cents"`
		Points     int64  `json:"points"`
	} `json:"items"`
}

// Expect is the exact state score must reach for one cpf.
type Expect struct {
	CPF     int64
	Live    bool
	Version int64
	Score   int64
	Items   map[string]int64 // item id -> value in cents
}

var verifyHTTP = &http.Client{Timeout: 10 * time.Second}

func getJSON(ctx context.Context, url string, v any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a := measure.Call(ctx, verifyHTTP, http.MethodGet, url, nil)
	if a.Err != nil {
		return a.Status, a.Err
	}
	if a.Status == http.StatusOK && v != nil {
		if err := json.Unmarshal(a.Body, v); err != nil {
			return a.Status, fmt.Errorf("%s: %v: %s", url, err, truncate(string(a.Body), 200))
		}
	}
	return a.Status, nil
}

// Verify checks, for every person of the ledger, that person's state is
// exactly what the ledger allows (every accepted write applied once, every
// refused write absent, versions counting the applied writes) and waits until
// score reflects that state exactly (same items, score by the rule, same
// version). It returns the problems found; none means exact.
func Verify(ctx context.Context, l *Ledger, personURL, scoreURL string, within time.Duration) (Verified, []string) {
	start := time.Now()
	deadline := start.Add(within)
	persons := l.Persons()
	var (
		mu       sync.Mutex
		problems []string
		res      Verified
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, p := range persons {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			exp, unknownApplied, errs := expectFromPerson(ctx, p, personURL, deadline)
			for _, e := range errs {
				fail("cpf %d: %s", p.CPF, e)
			}
			if exp == nil {
				return
			}
			if err := WaitScore(ctx, scoreURL, *exp, deadline); err != nil {
				fail("cpf %d: %v", p.CPF, err)
				return
			}
			mu.Lock()
			res.Persons++
			res.Applied += exp.Version
			res.Replicated += exp.Version
			res.UnknownApplied += unknownApplied
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Took = time.Since(start)
	sort.Strings(problems)
	return res, problems
}

// expectFromPerson reads person's state of p, checks it against the ledger
// and returns what score must show. A nil Expect means nothing to wait for.
func expectFromPerson(ctx context.Context, p *Person, personURL string, deadline time.Time) (*Expect, int, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.created == None {
		return nil, 0, nil
	}
	var view personView
	var code int
	var err error
	for {
		code, err = getJSON(ctx, fmt.Sprintf("%s/person/%d", personURL, p.CPF), &view)
		if err == nil && (code == http.StatusOK || code == http.StatusNotFound) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, 0, []string{fmt.Sprintf("person GET: %d %v", code, err)}
		}
		time.Sleep(200 * time.Millisecond)
	}
	var errs []string
	if p.createPhantom {
		errs = append(errs, "a create answered 503 was applied (a later create got 409)")
	}
	if code == http.StatusNotFound {
		if p.created == Accepted {
			return nil, 0, append(errs, "person answered 404 after an accepted create: write lost")
		}
		for _, it := range p.items {
			if it.Add == Accepted {
				errs = append(errs, fmt.Sprintf("item %s accepted but the person does not exist", it.Tag))
			}
		}
		return &Expect{CPF: p.CPF}, 0, errs
	}

	present := map[string]itemView{}
	for _, list := range [][]itemView{view.Incomes, view.Assets, view.Debts} {
		for _, iv := range list {
			present[iv.Type] = iv
		}
	}
	exp := &Expect{CPF: p.CPF, Live: true, Version: view.Version, Items: map[string]int64{}}
	for tag, iv := range present {
		it := p.byTag[tag]
		if it == nil {
			errs = append(errs, fmt.Sprintf("item %q (%s) present in person but never written by the test", tag, iv.ID))
			continue
		}
		v, perr := strconv.ParseInt(iv.Value.String(), 10, 64)
		if perr != nil || v != it.Value || iv.Kind != it.Kind {
			errs = append(errs, fmt.Sprintf("item %s is %s %s in person, written as %s %d", tag, iv.Kind, iv.Value, it.Kind, it.Value))
		}
		if it.ID != "" && it.ID != iv.ID {
			errs = append(errs, fmt.Sprintf("item %s has id %s in person, %s in the 201 answer", tag, iv.ID, it.ID))
		}
		exp.Items[iv.ID] = it.Value * 100
		exp.Score += measure.Points(it.Kind, it.Value*100)
	}
	applied, unknownApplied := int64(1), 0
	for _, it := range p.items {
		_, here := present[it.Tag]
		if here {
			applied++
		}
		switch it.Add {
		case Accepted:
			switch {
			case it.Del == Accepted && here:
				errs = append(errs, fmt.Sprintf("item %s still present after its delete was accepted (v%d)", it.Tag, it.DelVersion))
			case it.Del == Refused && !here:
				errs = append(errs, fmt.Sprintf("item %s gone although its delete was refused: a refused write left a trace", it.Tag))
			case it.Del == None && !here:
				errs = append(errs, fmt.Sprintf("item %s accepted (v%d) but missing: write lost", it.Tag, it.AddVersion))
			}
			if !here {
				applied += 2 // added, then deleted
				if it.Del == Unknown {
					unknownApplied++
				}
			}
		case Refused:
			if here {
				errs = append(errs, fmt.Sprintf("item %s present although its write was refused: a refused write left a trace", it.Tag))
			}
		case Unknown:
			if here {
				unknownApplied++
			}
		}
	}
	if applied != view.Version {
		errs = append(errs, fmt.Sprintf("person version %d, but %d writes are applied: a write was lost or applied twice", view.Version, applied))
	}
	vs := slices.Clone(p.versions)
	slices.Sort(vs)
	for i, v := range vs {
		if v < 1 || v > view.Version {
			errs = append(errs, fmt.Sprintf("a 2xx answered version %d, outside 1..%d", v, view.Version))
		}
		if i > 0 && vs[i-1] == v {
			errs = append(errs, fmt.Sprintf("two accepted writes answered the same version %d", v))
		}
	}
	return exp, unknownApplied, errs
}

// WaitScore polls score until it shows exactly exp or the deadline passes.
func WaitScore(ctx context.Context, scoreURL string, exp Expect, deadline time.Time) error {
	var last string
	for {
		var doc ScoreDoc
		url := fmt.Sprintf("%s/%d", scoreURL, exp.CPF)
		if exp.Live {
			url += "?min_version=" + strconv.FormatInt(exp.Version, 10)
		}
		code, err := getJSON(ctx, url, &doc)
		switch {
		case err != nil:
			last = err.Error()
		case !exp.Live && code == http.StatusNotFound:
			return nil
		case code != http.StatusOK:
			last = fmt.Sprintf("HTTP %d", code)
		default:
			if d := diff(exp, doc); d == "" {
				return nil
			} else {
				last = d
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("score never matched (want version %d score %d, %d items): %s", exp.Version, exp.Score, len(exp.Items), last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func diff(exp Expect, doc ScoreDoc) string {
	if !exp.Live {
		return fmt.Sprintf("score shows a live person (version %d), want none", doc.Version)
	}
	var out []string
	if doc.Version != exp.Version {
		out = append(out, fmt.Sprintf("version %d", doc.Version))
	}
	if doc.Score != exp.Score {
		out = append(out, fmt.Sprintf("score %d", doc.Score))
	}
	if len(doc.Items) != len(exp.Items) {
		out = append(out, fmt.Sprintf("%d items", len(doc.Items)))
	}
	for id, cents := range exp.Items {
		got, ok := doc.Items[id]
		if !ok {
			out = append(out, "missing item "+id)
			break
		}
		if got.ValueCents != cents {
			out = append(out, fmt.Sprintf("item %s value %d cents", id, got.ValueCents))
			break
		}
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprint(out)
}

// Get fetches url and returns its status code.
func Get(ctx context.Context, url string) (int, error) {
	return getJSON(ctx, url, nil)
}

// GetJSON fetches url, decodes a 200 answer into v and returns the status code.
func GetJSON(ctx context.Context, url string, v any) (int, error) {
	return getJSON(ctx, url, v)
}
