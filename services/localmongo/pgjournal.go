package localmongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// pgJournal keeps the engine's journal in a PostgreSQL table. Records are
// queued in the order of the changes (under the collection's lock) and one
// writer inserts whatever queued in one statement (group commit); a write
// command is answered once its records are in (flush). Commits do not wait
// for PostgreSQL's WAL flush (synchronous_commit off): an answered write
// survives a crash of localmongo, not one of PostgreSQL's machine, like the
// file journal. After a failed insert every later write fails: the records
// already applied in memory may be lost at the next start.
type pgJournal struct {
	conn *pgx.Conn
	done chan struct{}

	mu       sync.Mutex
	cond     *sync.Cond
	queue    [][]byte
	enqueued uint64 // records queued so far
	written  uint64 // records inserted so far
	err      error  // sticky: the journal failed
	closed   bool
}

const journalTable = "localmongo_journal"

// openPGEngine loads the engine from the journal table of the database at
// pgURL (created if missing) and rewrites the table as a snapshot.
func openPGEngine(ctx context.Context, pgURL string) (*engine, error) {
	cfg, err := pgx.ParseConfig(pgURL)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["synchronous_commit"] = "off"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e := &engine{dbs: map[string]map[string]*collection{}}
	if err := loadPG(ctx, conn, e); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	j := &pgJournal{conn: conn, done: make(chan struct{})}
	j.cond = sync.NewCond(&j.mu)
	go j.run()
	e.j = j
	return e, nil
}

func loadPG(ctx context.Context, conn *pgx.Conn, e *engine) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+journalTable+` (seq bigserial PRIMARY KEY, rec bytea NOT NULL)`); err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT rec FROM `+journalTable+` ORDER BY seq`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			rows.Close()
			return err
		}
		if err := e.applyRaw(raw); err != nil {
			rows.Close()
			return fmt.Errorf("localmongo: journal table: %w", err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var recs [][]any
	if err := e.snapshot(func(rec bson.D) error {
		raw, err := bson.Marshal(rec)
		recs = append(recs, []any{raw})
		return err
	}); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM `+journalTable); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{journalTable}, []string{"rec"}, pgx.CopyFromRows(recs))
		return err
	})
}

// insertTimeout bounds one group insert.
const insertTimeout = 10 * time.Second

func (j *pgJournal) append(rec bson.D) error {
	raw, err := bson.Marshal(rec)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.err != nil:
		return j.err
	case j.closed:
		return errors.New("localmongo: store closed")
	}
	j.queue = append(j.queue, raw)
	j.enqueued++
	j.cond.Broadcast()
	return nil
}

// flush waits until every record queued so far is inserted.
func (j *pgJournal) flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	target := j.enqueued
	for j.written < target && j.err == nil {
		j.cond.Wait()
	}
	return j.err
}

// run inserts the queued records, a batch per statement, in order.
func (j *pgJournal) run() {
	defer close(j.done)
	for {
		j.mu.Lock()
		for len(j.queue) == 0 && !j.closed {
			j.cond.Wait()
		}
		batch := j.queue
		j.queue = nil
		j.mu.Unlock()
		if len(batch) == 0 {
			return // closed and nothing left
		}
		ctx, cancel := context.WithTimeout(context.Background(), insertTimeout)
		_, err := j.conn.Exec(ctx, `INSERT INTO `+journalTable+` (rec) SELECT r FROM unnest($1::bytea[]) WITH ORDINALITY AS u(r, i) ORDER BY i`, batch)
		cancel()
		j.mu.Lock()
		if err != nil && j.err == nil {
			j.err = fmt.Errorf("localmongo: journal insert failed: %w", err)
		}
		j.written += uint64(len(batch))
		j.cond.Broadcast()
		j.mu.Unlock()
	}
}

func (j *pgJournal) close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.cond.Broadcast()
	j.mu.Unlock()
	<-j.done
	return j.conn.Close(context.Background())
}
