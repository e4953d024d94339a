// Command localmongo runs the embedded MongoDB-wire server for local
// development.
//
// Environment:
//
//	LOCALMONGO_ADDR            listen address (default 127.0.0.1:27017)
//	LOCALMONGO_DIR             data directory: the journal (default .data/mongo)
//	LOCALMONGO_POSTGRESQL_URL  keep the journal in this PostgreSQL database instead
//	LOCALMONGO_PPROF_ADDR      serve net/http/pprof here (off by default), to
//	                           profile the store under load
//	LOG_LEVEL                  debug, info (default), warn, error
package main

import (
	"context"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/personscore/localmongo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localmongo:", err)
		os.Exit(1)
	}
}

func run() error {
	level := zapcore.InfoLevel
	if s := os.Getenv("LOG_LEVEL"); s != "" {
		l, err := zapcore.ParseLevel(s)
		if err != nil {
			return fmt.Errorf("LOG_LEVEL: %w", err)
		}
		level = l
	}
	zcfg := zap.NewProductionConfig()
	zcfg.Level = zap.NewAtomicLevelAt(level)
	log, err := zcfg.Build()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	cfg := localmongo.Config{
		Addr:          envOr("LOCALMONGO_ADDR", "127.0.0.1:27017"),
		Dir:           envOr("LOCALMONGO_DIR", ".data/mongo"),
		PostgreSQLURL: os.Getenv("LOCALMONGO_POSTGRESQL_URL"),
		Logger:        log,
	}

	if addr := os.Getenv("LOCALMONGO_PPROF_ADDR"); addr != "" {
		go func() {
			log.Warn("pprof stopped", zap.Error(http.ListenAndServe(addr, nil)))
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := localmongo.Start(ctx, cfg)
	if err != nil {
		return err
	}
	backend := zap.String("dir", cfg.Dir)
	if cfg.PostgreSQLURL != "" {
		backend = zap.String("backend", "postgresql") // the URL may hold a password
	}
	log.Info("localmongo ready", zap.String("uri", srv.URI()), backend)

	<-ctx.Done()
	log.Info("localmongo shutting down")
	return srv.Close()
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
