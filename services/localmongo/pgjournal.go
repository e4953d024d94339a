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

// pgJournal keeps the engine's journal in a PostgreSQL table. Each record is
// its own insert, committed without waiting for PostgreSQL's WAL flush
// (synchronous_commit off): an answered write survives a crash of localmongo,
// not one of PostgreSQL's machine, like the file journal.
type pgJournal struct {
	mu   sync.Mutex
	conn *pgx.Conn
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
	e.j = &pgJournal{conn: conn}
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

// appendTimeout bounds one record's insert.
const appendTimeout = 10 * time.Second

func (j *pgJournal) append(rec bson.D) error {
	raw, err := bson.Marshal(rec)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil {
		return errors.New("localmongo: store closed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	_, err = j.conn.Exec(ctx, `INSERT INTO `+journalTable+` (rec) VALUES ($1)`, raw)
	return err
}

func (j *pgJournal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil {
		return nil
	}
	err := j.conn.Close(context.Background())
	j.conn = nil
	return err
}
