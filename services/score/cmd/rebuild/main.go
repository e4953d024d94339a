// Command rebuild rebuilds score's read model from person: it calls score's
// admin endpoint (POST /admin/rebuild), then follows the rebuild, printing its
// progress, until the new read model is live (exit 0) or the rebuild fails
// (exit 1). If a rebuild is already running it follows that one.
//
//	ADMIN_TOKEN=... rebuild [-url http://127.0.0.1:9081] [-timeout 30m]
//
// The token is read from ADMIN_TOKEN (never from a flag, so that it does not
// show in the process list).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/personscore/score"
	"github.com/personscore/score/admin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rebuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(out)
	defURL := getenv("SCORE_ADMIN_URL")
	if defURL == "" {
		defURL = "http://127.0.0.1:9081"
	}
	url := fs.String("url", defURL, "score's admin base URL (env SCORE_ADMIN_URL)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up following after this long")
	interval := fs.Duration("interval", time.Second, "how often to show progress")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := getenv("ADMIN_TOKEN")
	if token == "" {
		return errors.New("ADMIN_TOKEN is not set")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &admin.Client{BaseURL: *url, Token: token}

	rb, err := c.Start(ctx)
	switch {
	case errors.Is(err, admin.ErrRunning):
		fmt.Fprintf(out, "rebuild %s is already running (started %s); following it\n", rb.ID, rb.StartedAt.Format(time.RFC3339))
	case err != nil:
		return err
	default:
		fmt.Fprintf(out, "rebuild %s started: %s -> %s\n", rb.ID, rb.From, rb.Target)
	}
	last := ""
	final, err := c.Follow(ctx, rb.ID, *interval, func(r score.Rebuild) {
		line := progressLine(r)
		if line != last {
			fmt.Fprintln(out, line)
			last = line
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "done: the read model is now %s (%d snapshots) after %s\n", final.Active, final.Snapshotted,
		final.FinishedAt.Sub(final.StartedAt).Round(time.Millisecond))
	return nil
}

func progressLine(r score.Rebuild) string {
	switch r.State {
	case score.RebuildSnapshotting:
		return fmt.Sprintf("waiting for person's snapshots: %d applied so far", r.Snapshotted)
	case score.RebuildCatchingUp:
		pct := 100.0
		if r.Expected > 0 {
			pct = 100 * float64(min(r.Snapshotted, r.Expected)) / float64(r.Expected)
		}
		return fmt.Sprintf("catching up: %d/%d snapshots applied (%.0f%%)", r.Snapshotted, r.Expected, pct)
	case "unknown":
		return "status unavailable, retrying: " + r.Error
	default:
		return r.State
	}
}
