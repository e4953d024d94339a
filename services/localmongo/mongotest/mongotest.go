// Package mongotest starts a fresh localmongo server for a test.
//
// By default the server keeps its journal in t.TempDir(). If
// MONGOTEST_POSTGRESQL_URL is set (e.g. "postgres://root@127.0.0.1:5432/test"),
// the journal is kept in PostgreSQL instead: every server gets its own freshly
// created PostgreSQL database (a random name, created through that URL and
// dropped on cleanup), so servers in parallel tests and packages never share data.
package mongotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/personscore/localmongo"
)

// EnvPostgreSQLURL names the environment variable that selects the PostgreSQL backend.
const EnvPostgreSQLURL = "MONGOTEST_POSTGRESQL_URL"

// Config is a fresh server configuration for a test: a journal in
// t.TempDir(), or in a new PostgreSQL database (MONGOTEST_POSTGRESQL_URL).
func Config(tb testing.TB) localmongo.Config {
	tb.Helper()
	cfg := localmongo.Config{
		Addr:   "127.0.0.1:0",
		Dir:    tb.TempDir(),
		Logger: zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel)),
	}
	if pgURL := os.Getenv(EnvPostgreSQLURL); pgURL != "" {
		cfg.PostgreSQLURL = freshPostgreSQLDatabase(tb, pgURL)
	}
	return cfg
}

// Start starts a server on 127.0.0.1:0 and closes it when the test ends.
// Warnings and errors go to the test log.
func Start(tb testing.TB) *localmongo.Server {
	tb.Helper()
	cfg := Config(tb)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := localmongo.Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("mongotest: cannot start the embedded MongoDB-wire server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("mongotest: close: %v", err)
		}
	})
	return s
}

// freshPostgreSQLDatabase creates an empty database next to the one in baseURL
// and returns a URL pointing at it; cleanup drops it.
func freshPostgreSQLDatabase(tb testing.TB, baseURL string) string {
	tb.Helper()

	u, err := url.Parse(baseURL)
	if err != nil {
		tb.Fatalf("mongotest: %s: %v", EnvPostgreSQLURL, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "mongotest_" + hex.EncodeToString(rnd[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		tb.Fatalf("mongotest: connect to PostgreSQL (%s): %v", EnvPostgreSQLURL, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("mongotest: create PostgreSQL database %s: %v", name, err)
	}

	// Registered before the server's Close cleanup, so it runs after it.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, baseURL)
		if err != nil {
			tb.Logf("mongotest: drop PostgreSQL database %s: %v", name, err)
			return
		}
		defer func() { _ = conn.Close(context.Background()) }()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("mongotest: drop PostgreSQL database %s: %v", name, err)
		}
	})

	u.Path = "/" + name
	return u.String()
}
