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
// queued in the order of the changes (under the collection's lock), each with
// its sequence number, and writers insert whatever queued in one statement
// each (group commit), on their own connections, so a write that queues
// while an insert is under way goes out at once instead of waiting for it. A
// write command is answered once every record up to its own is in (flush).
// Commits do not wait for PostgreSQL's WAL flush (synchronous_commit off): an
// answered write survives a crash of localmongo, not one of PostgreSQL's
// machine, like the file journal. After a crash the table may hold a later
// batch without an earlier one; those records were never answered, and the
// load stops at the first missing number. After a failed insert every later
// write fails: the records already applied in memory may be lost at the next
// start.
type pgJournal struct {
	conns []*pgx.Conn // one per writer
	wg    sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond
	queue    [][]byte
	base     int64             // sequence number of the first record queued by this process, minus one
	taken    uint64            // records handed to writers so far
	enqueued uint64            // records queued so far
	written  uint64            // records inserted so far without a gap
	ahead    map[uint64]uint64 // inserted batches after a gap: first record -> count
	err      error             // sticky: the journal failed
	closed   bool
}

const journalTable = "localmongo_journal"

// journalWriters is how many inserts may be under way at once.
const journalWriters = 2

// openPGEngine loads the engine from the journal table of the database at
// pgURL (created if missing) and rewrites the table as a snapshot.
func openPGEngine(ctx context.Context, pgURL string) (*engine, error) {
	cfg, err := pgx.ParseConfig(pgURL)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["synchronous_commit"] = "off"
	j := &pgJournal{ahead: map[uint64]uint64{}}
	j.cond = sync.NewCond(&j.mu)
	closeAll := func() {
		for _, c := range j.conns {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}
	for range journalWriters {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			closeAll()
			return nil, err
		}
		j.conns = append(j.conns, conn)
	}
	e := &engine{dbs: map[string]map[string]*collection{}}
	n, err := loadPG(ctx, j.conns[0], e)
	if err != nil {
		closeAll()
		return nil, err
	}
	j.base = n
	for _, conn := range j.conns {
		j.wg.Add(1)
		go j.run(conn)
	}
	e.j = j
	return e, nil
}

// loadPG applies the journal table to e, up to the first missing sequence
// number, and rewrites it as e's snapshot, numbered from 1; it returns how
// many records that is.
func loadPG(ctx context.Context, conn *pgx.Conn, e *engine) (int64, error) {
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+journalTable+` (seq bigserial PRIMARY KEY, rec bytea NOT NULL)`); err != nil {
		return 0, err
	}
	rows, err := conn.Query(ctx, `SELECT seq, rec FROM `+journalTable+` ORDER BY seq`)
	if err != nil {
		return 0, err
	}
	prev := int64(-1)
	for rows.Next() {
		var seq int64
		var raw []byte
		if err := rows.Scan(&seq, &raw); err != nil {
			rows.Close()
			return 0, err
		}
		if prev >= 0 && seq != prev+1 {
			break // a batch that was never answered (see pgJournal)
		}
		prev = seq
		if err := e.applyRaw(raw); err != nil {
			rows.Close()
			return 0, fmt.Errorf("localmongo: journal table: %w", err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var recs [][]any
	if err := e.snapshot(func(rec bson.D) error {
		raw, err := bson.Marshal(rec)
		recs = append(recs, []any{int64(len(recs) + 1), raw})
		return err
	}); err != nil {
		return 0, err
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM `+journalTable); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{journalTable}, []string{"seq", "rec"}, pgx.CopyFromRows(recs))
		return err
	})
	return int64(len(recs)), err
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

// run inserts queued records on conn, a batch per statement, until closed.
func (j *pgJournal) run(conn *pgx.Conn) {
	defer j.wg.Done()
	for {
		j.mu.Lock()
		for len(j.queue) == 0 && !j.closed {
			j.cond.Wait()
		}
		batch, first := j.queue, j.taken
		j.queue = nil
		j.taken += uint64(len(batch))
		j.mu.Unlock()
		if len(batch) == 0 {
			return // closed and nothing left
		}
		ctx, cancel := context.WithTimeout(context.Background(), insertTimeout)
		_, err := conn.Exec(ctx, `INSERT INTO `+journalTable+` (seq, rec) SELECT $1::bigint + i, r FROM unnest($2::bytea[]) WITH ORDINALITY AS u(r, i)`,
			j.base+int64(first), batch)
		cancel()
		j.mu.Lock()
		if err != nil && j.err == nil {
			j.err = fmt.Errorf("localmongo: journal insert failed: %w", err)
		}
		j.ahead[first] = uint64(len(batch))
		for n, ok := j.ahead[j.written]; ok; n, ok = j.ahead[j.written] {
			delete(j.ahead, j.written)
			j.written += n
		}
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
	j.wg.Wait()
	var errs []error
	for _, c := range j.conns {
		errs = append(errs, c.Close(context.Background()))
	}
	return errors.Join(errs...)
}
