package eventbus

import (
	"context"
	"fmt"
)

// DeadLetterCount returns how many messages wait in the service's dead-letter queue.
func DeadLetterCount(ctx context.Context, conn *Conn, service string) (int, error) {
	c, err := conn.await(ctx)
	if err != nil {
		return 0, err
	}
	ch, err := c.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(DeadLetterQueue(service), true, false, false, false, quorumArgs())
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", DeadLetterQueue(service), err)
	}
	return q.Messages, nil
}

// ReplayDeadLetters moves up to limit messages (0: all there are now) from the
// service's dead-letter queue back to its work queue, with a fresh attempt
// count. Each message is acknowledged in the dead-letter queue only after the
// broker confirmed its copy in the work queue, so a crash duplicates at worst.
// progress, if not nil, is called after every moved message.
func ReplayDeadLetters(ctx context.Context, conn *Conn, service string, limit int, progress func(moved int)) (int, error) {
	c, err := conn.await(ctx)
	if err != nil {
		return 0, err
	}
	ch, err := c.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	dlq := DeadLetterQueue(service)
	q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, quorumArgs())
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", dlq, err)
	}
	if limit <= 0 || limit > q.Messages {
		limit = q.Messages // never chase messages that arrive while replaying
	}
	moved := 0
	for moved < limit {
		if err := ctx.Err(); err != nil {
			return moved, err
		}
		d, ok, err := ch.Get(dlq, false)
		if err != nil {
			return moved, fmt.Errorf("get from %s: %w", dlq, err)
		}
		if !ok {
			break
		}
		msg := republish(d, nil)
		for _, h := range []string{HeaderAttempt, HeaderLastError, HeaderFailureReason, HeaderFailedAt} {
			delete(msg.Headers, h)
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", WorkQueue(service), true, false, msg)
		if err != nil {
			_ = d.Nack(false, true)
			return moved, fmt.Errorf("republish: %w", err)
		}
		if acked, err := dc.WaitContext(ctx); err != nil || !acked {
			_ = d.Nack(false, true)
			return moved, fmt.Errorf("%w: replay of %s", ErrNacked, d.MessageId)
		}
		if err := d.Ack(false); err != nil {
			return moved, err
		}
		moved++
		if progress != nil {
			progress(moved)
		}
	}
	return moved, nil
}
