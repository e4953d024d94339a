package localmongo

import (
	"context"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// FerretDB v1's PostgreSQL backend pushes an _id filter down as
// `_jsonb->'_id' @> $value`, which its own (btree) _id index cannot serve:
// every lookup and compare-and-swap then scans the table, and the store slows
// down as collections grow. A GIN index on (_jsonb->'_id') serves that
// containment, as long as PostgreSQL plans each statement with its parameters
// (plan_cache_mode=force_custom_plan; a generic plan cannot use it).

// withCustomPlans adds plan_cache_mode=force_custom_plan to a PostgreSQL URL.
func withCustomPlans(pgURL string) (string, error) {
	u, err := url.Parse(pgURL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	if q.Get("plan_cache_mode") == "" {
		q.Set("plan_cache_mode", "force_custom_plan")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Every FerretDB update writes a new row version, and no update is HOT (the
// indexes are on expressions of the one _jsonb column). When the server runs
// without autovacuum (as the local PostgreSQL here does), dead versions pile
// up: the GIN index returns every version of a document for the heap to
// recheck, and table scans read them all, so a busy store keeps slowing down.
// localmongo therefore vacuums its busy tables itself, with thresholds like
// autovacuum's.
const (
	vacuumBase  = 1000 // dead row versions before a table is vacuumed...
	vacuumScale = 0.2  // ...plus this share of its live rows
)

// maintainInterval is how often tables are looked at.
const maintainInterval = time.Second

// maintainTables gives every FerretDB table in the database a GIN index on
// its _id and vacuums tables with many dead rows, until ctx ends: at once,
// then every maintainInterval.
func maintainTables(ctx context.Context, pgURL string, log *zap.Logger) {
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		log.Warn("cannot maintain FerretDB's tables", zap.Error(err))
		return
	}
	defer pool.Close()
	done := map[string]bool{}
	t := time.NewTicker(maintainInterval)
	defer t.Stop()
	for {
		if err := indexNewTables(ctx, pool, done); err != nil && ctx.Err() == nil {
			log.Warn("indexing _id for FerretDB's pushdown failed; will retry", zap.Error(err))
		}
		if err := vacuumBusyTables(ctx, pool); err != nil && ctx.Err() == nil {
			log.Warn("vacuuming FerretDB's tables failed; will retry", zap.Error(err))
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// indexNewTables indexes the FerretDB tables (those with a _jsonb column,
// other than FerretDB's own metadata) not in done.
func indexNewTables(ctx context.Context, pool *pgxpool.Pool, done map[string]bool) error {
	rows, err := pool.Query(ctx, `SELECT table_schema, table_name FROM information_schema.columns
		WHERE column_name = '_jsonb' AND table_name NOT LIKE '\_ferretdb\_%'`)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Schema, Name string }])
	if err != nil {
		return err
	}
	for _, tb := range tables {
		key := tb.Schema + "." + tb.Name
		if done[key] {
			continue
		}
		idx := pgx.Identifier{tb.Name + "_id_gin"}.Sanitize()
		on := pgx.Identifier{tb.Schema, tb.Name}.Sanitize()
		// CONCURRENTLY: FerretDB keeps writing while a big table is indexed.
		if _, err := pool.Exec(ctx, `CREATE INDEX CONCURRENTLY IF NOT EXISTS `+idx+` ON `+on+` USING gin ((_jsonb->'_id'))`); err != nil {
			return err
		}
		done[key] = true
	}
	return nil
}

// vacuumBusyTables vacuums (and analyzes) the tables of the database whose
// dead row versions passed the threshold.
func vacuumBusyTables(ctx context.Context, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, `SELECT schemaname, relname FROM pg_stat_user_tables
		WHERE n_dead_tup > $1 + $2 * n_live_tup`, vacuumBase, vacuumScale)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var schema, name string
		err := r.Scan(&schema, &name)
		return pgx.Identifier{schema, name}.Sanitize(), err
	})
	if err != nil {
		return err
	}
	for _, tb := range tables {
		if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+tb); err != nil {
			return err
		}
	}
	return nil
}
