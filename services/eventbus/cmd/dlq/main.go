// Command dlq inspects and replays a service's dead-letter queue.
//
//	dlq count  -service score
//	dlq peek   -service score [-limit 10]
//	dlq replay -service score [-limit N]
//
// The broker is taken from AMQP_URL (a comma-separated list of cluster nodes;
// default amqp://guest:guest@localhost:5672/). replay moves messages back to
// the service's work queue with a fresh retry budget and prints how many moved.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/personscore/eventbus"
)

const defaultURL = "amqp://guest:guest@localhost:5672/"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv("AMQP_URL"), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  dlq count  -service NAME             how many messages wait in NAME.dlq
  dlq peek   -service NAME [-limit N]  show the first N (default 10) without removing them
  dlq replay -service NAME [-limit N]  move N (default: all there are now) back to NAME.queue

environment:
  AMQP_URL   broker URL(s), comma-separated (default `+defaultURL+`)
`)
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, amqpURL string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd := args[0]
	fs := flag.NewFlagSet("dlq "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	service := fs.String("service", "", "the consuming service whose dead-letter queue to use (required)")
	limit := fs.Int("limit", 0, "at most this many messages (replay: 0 means all; peek: 0 means 10)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the broker connection")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	switch {
	case cmd != "count" && cmd != "peek" && cmd != "replay":
		fmt.Fprintf(stderr, "dlq: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	case *service == "":
		fmt.Fprintln(stderr, "dlq: -service is required (e.g. -service score)")
		return 2
	case *limit < 0:
		fmt.Fprintln(stderr, "dlq: -limit must not be negative")
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "dlq: unexpected arguments %v\n", fs.Args())
		return 2
	}
	if amqpURL == "" {
		amqpURL = defaultURL
	}
	urls := eventbus.SplitURLs(amqpURL)
	for _, u := range urls {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "amqp" && p.Scheme != "amqps") {
			fmt.Fprintf(stderr, "dlq: AMQP_URL: %q is not an amqp:// or amqps:// URL\n", redact(u))
			return 2
		}
	}

	conn := eventbus.Open(eventbus.ConnConfig{URLs: urls, Name: "dlq-" + cmd, MaxBackoff: time.Second})
	defer conn.Close()
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	err := conn.WaitConnected(wctx)
	cancel()
	if err != nil {
		reason := conn.LastError()
		if reason == nil {
			reason = err
		}
		fmt.Fprintf(stderr, "dlq: cannot reach RabbitMQ at %s: %v\n", redactAll(urls), reason)
		return 1
	}

	dlq := eventbus.DeadLetterQueue(*service)
	switch cmd {
	case "count":
		n, err := eventbus.DeadLetterCount(ctx, conn, *service)
		if err != nil {
			return fail(stderr, err, *service)
		}
		fmt.Fprintf(stdout, "%s: %d message(s)\n", dlq, n)
	case "peek":
		n := *limit
		if n == 0 {
			n = 10
		}
		letters, err := eventbus.PeekDeadLetters(ctx, conn, *service, n)
		if err != nil {
			return fail(stderr, err, *service)
		}
		for _, d := range letters {
			fmt.Fprintf(stdout, "%s  type=%s  key=%s  attempts=%d  failed_at=%s\n    reason: %s\n",
				d.MessageID, d.Type, d.RoutingKey, d.Attempts, d.FailedAt, d.Reason)
		}
		fmt.Fprintf(stdout, "%s: showed %d message(s)\n", dlq, len(letters))
	case "replay":
		total, err := eventbus.DeadLetterCount(ctx, conn, *service)
		if err != nil {
			return fail(stderr, err, *service)
		}
		if *limit > 0 && *limit < total {
			total = *limit
		}
		fmt.Fprintf(stdout, "replaying %d message(s) from %s to %s\n", total, dlq, eventbus.WorkQueue(*service))
		moved, err := eventbus.ReplayDeadLetters(ctx, conn, *service, *limit, func(moved int) {
			fmt.Fprintf(stdout, "  moved %d/%d\n", moved, total)
		})
		fmt.Fprintf(stdout, "moved %d message(s)\n", moved)
		if err != nil {
			return fail(stderr, err, *service)
		}
	}
	return 0
}

func fail(stderr io.Writer, err error, service string) int {
	if errors.Is(err, eventbus.ErrNoQueue) {
		fmt.Fprintf(stderr, "dlq: %v (has service %q ever consumed on this broker?)\n", err, service)
		return 1
	}
	fmt.Fprintf(stderr, "dlq: %v\n", err)
	return 1
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "invalid-url"
	}
	return u.Redacted()
}

func redactAll(urls []string) string {
	out := ""
	for i, u := range urls {
		if i > 0 {
			out += ","
		}
		out += redact(u)
	}
	return out
}
