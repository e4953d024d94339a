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

// indexInterval is how often new FerretDB tables are looked for.
const indexInterval = time.Second

// indexIDs gives every FerretDB table in the database a GIN index on its _id
// until ctx ends: at once, then every indexInterval for tables created since.
func indexIDs(ctx context.Context, pgURL string, log *zap.Logger) {
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		log.Warn("cannot index _id for FerretDB's pushdown", zap.Error(err))
		return
	}
	defer pool.Close()
	done := map[string]bool{}
	t := time.NewTicker(indexInterval)
	defer t.Stop()
	for {
		if err := indexNewTables(ctx, pool, done); err != nil && ctx.Err() == nil {
			log.Warn("indexing _id for FerretDB's pushdown failed; will retry", zap.Error(err))
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
	type table struct{ schema, name string }
	var tables []table
	for rows.Next() {
		var tb table
		if err := rows.Scan(&tb.schema, &tb.name); err != nil {
			rows.Close()
			return err
		}
		if !done[tb.schema+"."+tb.name] {
			tables = append(tables, tb)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, tb := range tables {
		idx := pgx.Identifier{tb.name + "_id_gin"}.Sanitize()
		on := pgx.Identifier{tb.schema, tb.name}.Sanitize()
		// CONCURRENTLY: FerretDB keeps writing while a big table is indexed.
		if _, err := pool.Exec(ctx, `CREATE INDEX CONCURRENTLY IF NOT EXISTS `+idx+` ON `+on+` USING gin ((_jsonb->'_id'))`); err != nil {
			return err
		}
		done[tb.schema+"."+tb.name] = true
	}
	return nil
}
