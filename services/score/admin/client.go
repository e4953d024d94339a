package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/personscore/score"
)

// Client calls the admin API.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:9081
	Token   string
	HTTP    *http.Client // default: 30s timeout
}

// ErrRunning: Start found a rebuild in progress (returned with it).
var ErrRunning = score.ErrRebuildRunning

func (c *Client) do(ctx context.Context, method string) (score.Rebuild, int, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+Path, nil)
	if err != nil {
		return score.Rebuild{}, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return score.Rebuild{}, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return score.Rebuild{}, resp.StatusCode, err
	}
	var out struct {
		score.Rebuild
		Detail  string         `json:"detail"`
		Running *score.Rebuild `json:"rebuild"`
	}
	_ = json.Unmarshal(body, &out)
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted:
		return out.Rebuild, resp.StatusCode, nil
	case resp.StatusCode == http.StatusConflict && out.Running != nil:
		return *out.Running, resp.StatusCode, ErrRunning
	default:
		detail := out.Detail
		if detail == "" {
			detail = strings.TrimSpace(string(bytes.TrimSpace(body)))
		}
		return score.Rebuild{}, resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, Path, resp.Status, detail)
	}
}

// Start asks for a rebuild. When one is running already it returns that one
// and ErrRunning.
func (c *Client) Start(ctx context.Context) (score.Rebuild, error) {
	rb, _, err := c.do(ctx, http.MethodPost)
	return rb, err
}

// Status returns the current or last rebuild.
func (c *Client) Status(ctx context.Context) (score.Rebuild, error) {
	rb, _, err := c.do(ctx, http.MethodGet)
	return rb, err
}

// Follow polls the rebuild id every interval, calling progress with each
// state, until it is done (nil) or failed (an error), or ctx ends.
func (c *Client) Follow(ctx context.Context, id string, interval time.Duration, progress func(score.Rebuild)) (score.Rebuild, error) {
	if interval <= 0 {
		interval = time.Second
	}
	for {
		rb, err := c.Status(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return rb, ctx.Err()
		case err != nil:
			// A replica restarting or the store hiccuping: keep following.
			if progress != nil {
				progress(score.Rebuild{ID: id, State: "unknown", Error: err.Error()})
			}
		case rb.ID != id:
			return rb, fmt.Errorf("rebuild %s was replaced by rebuild %s", id, rb.ID)
		default:
			if progress != nil {
				progress(rb)
			}
			switch rb.State {
			case score.RebuildDone:
				return rb, nil
			case score.RebuildFailed:
				return rb, errors.New("rebuild failed: " + rb.Error)
			}
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return rb, ctx.Err()
		}
	}
}
