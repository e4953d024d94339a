package chaos

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Result is one scenario's outcome, logged as one uniform line that
// docs/RELIABILITY.md is built from.
type Result struct {
	Scenario int
	Test     string
	// Attempted, Accepted, Refused, Unknown count the HTTP writes (or, for
	// scenarios that publish straight to the broker, the messages).
	Attempted, Accepted, Refused, Unknown int64
	// Replicated: writes reflected in score, each exactly once (sum of the
	// verified versions, plus injected events).
	Replicated int64
	// Duplicates: deliveries score handled that changed nothing (redeliveries
	// and republished events recognised by their version).
	Duplicates int64
	// DeadLettered: messages in the dead-letter queues at the end.
	DeadLettered int64
	// Recovery: from the fault's end until writes were accepted again (or the
	// scenario's own measure, see Note).
	Recovery time.Duration
	// Converge: from the end of the load until score matched exactly.
	Converge time.Duration
	Elapsed  time.Duration
	Note     string
}

// Line renders the result: CHAOS-RESULT key=value ...
func (r Result) Line() string {
	return fmt.Sprintf("CHAOS-RESULT scenario=%d test=%s attempted=%d accepted=%d refused=%d unknown=%d replicated=%d duplicates=%d dead_lettered=%d recovery=%s converge=%s elapsed=%s note=%q",
		r.Scenario, r.Test, r.Attempted, r.Accepted, r.Refused, r.Unknown, r.Replicated, r.Duplicates, r.DeadLettered,
		round(r.Recovery), round(r.Converge), round(r.Elapsed), r.Note)
}

func round(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

// Record appends the line to $CHAOS_RESULTS when set (a file collecting a
// whole run's results).
func (r Result) Record() error {
	path := os.Getenv("CHAOS_RESULTS")
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(strings.TrimSpace(r.Line()) + "\n")
	return err
}
