package eventbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrNoQueue: the queue a dead-letter operation needs does not exist on the
// broker (the service never started a consumer there, or the name is wrong).
var ErrNoQueue = errors.New("eventbus: no such queue")

// replayBatch is how many dead letters are moved per pipelined round.
const replayBatch = 128

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
	q, err := inspect(ch, DeadLetterQueue(service))
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}

// inspect returns the state of an existing queue; a missing one is ErrNoQueue.
func inspect(ch *amqp.Channel, name string) (amqp.Queue, error) {
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound {
		return q, fmt.Errorf("%w: %s", ErrNoQueue, name)
	}
	if err != nil {
		return q, fmt.Errorf("inspect %s: %w", name, err)
	}
	return q, nil
}

// DeadLetter describes one message waiting in a dead-letter queue.
type DeadLetter struct {
	MessageID  string
	Type       string
	RoutingKey string // the key the event was first published with
	Reason     string // why it was dead-lettered
	Attempts   int    // handler attempts made (0 if the broker dead-lettered it)
	FailedAt   string
	Body       []byte
}

// PeekDeadLetters returns up to limit messages from the head of the
// service's dead-letter queue without removing them.
func PeekDeadLetters(ctx context.Context, conn *Conn, service string, limit int) ([]DeadLetter, error) {
	c, err := conn.await(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := c.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close() // returns every message taken to the queue
	dlq := DeadLetterQueue(service)
	q, err := inspect(ch, dlq)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > q.Messages {
		limit = q.Messages
	}
	var out []DeadLetter
	var last amqp.Delivery
	for len(out) < limit {
		if err := ctx.Err(); err != nil {
			break
		}
		d, ok, err := ch.Get(dlq, false)
		if err != nil {
			return out, fmt.Errorf("get from %s: %w", dlq, err)
		}
		if !ok {
			break
		}
		last = d
		out = append(out, describe(d))
	}
	if len(out) == 0 {
		return out, ctx.Err()
	}
	if err := last.Nack(true, true); err != nil {
		return out, fmt.Errorf("return peeked messages to %s: %w", dlq, err)
	}
	// The broker requeues asynchronously; wait (briefly) until the queue
	// shows them again, so a count right after a peek is not misleading.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if again, err := inspect(ch, dlq); err != nil || again.Messages >= q.Messages {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out, ctx.Err()
}

func describe(d amqp.Delivery) DeadLetter {
	dl := DeadLetter{MessageID: d.MessageId, Type: d.Type, RoutingKey: originalRoutingKey(d),
		Attempts: attemptOf(d), Body: d.Body}
	if k, ok := d.Headers[HeaderRoutingKey].(string); ok {
		dl.RoutingKey = k
	}
	dl.Reason, _ = d.Headers[HeaderFailureReason].(string)
	if dl.Reason == "" {
		// The broker dead-lettered it (delivery limit): its own bookkeeping says why.
		if r, ok := d.Headers["x-first-death-reason"].(string); ok {
			dl.Reason = "broker: " + r
		}
	}
	dl.FailedAt, _ = d.Headers[HeaderFailedAt].(string)
	return dl
}

// ReplayDeadLetters moves up to limit messages (0: all there are now) from the
// service's dead-letter queue back to its work queue, with a fresh attempt
// count. Messages are moved in pipelined rounds; each is acknowledged in the
// dead-letter queue only after the broker confirmed its copy in the work
// queue, so a failure or a crash duplicates at worst. progress, if not nil, is
// called after every round with the total moved so far.
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
	dlq, work := DeadLetterQueue(service), WorkQueue(service)
	if _, err := inspect(ch, work); err != nil {
		return 0, err
	}
	q, err := inspect(ch, dlq)
	if err != nil {
		return 0, err
	}
	if limit <= 0 || limit > q.Messages {
		limit = q.Messages // never chase messages that arrive while replaying
	}
	if limit == 0 {
		return 0, nil
	}
	if err := ch.Qos(replayBatch, 0, false); err != nil {
		return 0, err
	}
	pub := newPublisher(conn, PublisherConfig{Window: replayBatch, Metrics: NewMetrics(nil), Channels: 1}, false)
	defer pub.Close()
	if err := pub.WaitReady(ctx); err != nil {
		return 0, err
	}

	moved := 0
	for moved < limit {
		if err := ctx.Err(); err != nil {
			return moved, err
		}
		var batch []amqp.Delivery
		var msgs []outgoing
		for len(batch) < min(replayBatch, limit-moved) {
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
			batch = append(batch, d)
			msgs = append(msgs, outgoing{key: work, msg: msg})
		}
		if len(batch) == 0 {
			break
		}
		if err := pub.send(ctx, "", msgs); err != nil {
			// Some copies may have been confirmed: they are duplicated, never lost.
			_ = batch[len(batch)-1].Nack(true, true)
			return moved, fmt.Errorf("move to %s: %w", work, err)
		}
		if err := batch[len(batch)-1].Ack(true); err != nil {
			return moved, fmt.Errorf("acknowledge in %s: %w", dlq, err)
		}
		moved += len(batch)
		if progress != nil {
			progress(moved)
		}
	}
	return moved, nil
}
