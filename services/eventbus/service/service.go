// Package service is the runtime every service built on eventbus shares, so that
// no service copies it: configuration, logging, the HTTP basics (request ids,
// metrics, problem+json errors, health endpoints) and a graceful run loop.
package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config is what every service reads from its environment. HTTP_ADDR,
// MONGO_DATABASE and CONSUMER_NAME have no default here: Run fills them from
// the service's Spec.
type Config struct {
	HTTPAddr      string `env:"HTTP_ADDR"`
	AMQPURL       string `env:"AMQP_URL" envDefault:"amqp://guest:guest@localhost:5672/"`
	MongoURI      string `env:"MONGO_URI" envDefault:"mongodb://127.0.0.1:27017/"`
	MongoDatabase string `env:"MONGO_DATABASE"`
	// ConsumerName names the service's queues: <name>.queue, <name>.dlq, ...
	ConsumerName    string        `env:"CONSUMER_NAME"`
	Exchange        string        `env:"EXCHANGE_NAME" envDefault:"event_dispatcher"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`
	Workers         int           `env:"CONSUMER_WORKERS" envDefault:"64"`
}

// LoadConfig fills the common config and any service-specific struct from the
// environment (caarlos0/env tags). A bad value is an error naming the variable.
func LoadConfig(extra ...any) (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, err
	}
	for _, e := range extra {
		if err := env.Parse(e); err != nil {
			return c, err
		}
	}
	return c, nil
}

// NewLogger returns a JSON zap logger at the given level, naming the service.
func NewLogger(serviceName, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		return nil, err
	}
	return log.With(zap.String("service", serviceName)), nil
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Serve runs srv until ctx ends, then stops accepting and waits for in-flight
// requests up to timeout.
func Serve(ctx context.Context, log *zap.Logger, srv *http.Server, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		log.Info("http listening", zap.String("addr", srv.Addr))
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	return srv.Shutdown(sctx)
}
