// Command score is the read side: it keeps a denormalized copy of every person
// from person's events in MongoDB and serves the credit score.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/score/admin"
	"github.com/personscore/score/httpapi"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/personevents"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// scoreConfig is what score reads from the environment beyond the common config.
type scoreConfig struct {
	MinVersionWait time.Duration `env:"MIN_VERSION_WAIT" envDefault:"2s"`
	// AdminAddr is the admin listener (rebuild); never routed by the ingress.
	AdminAddr string `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9081"`
	// AdminToken is the admin listener's bearer token; empty disables it.
	AdminToken     string        `env:"ADMIN_TOKEN"`
	RebuildTimeout time.Duration `env:"REBUILD_TIMEOUT" envDefault:"30m"`
	// ConsumerName names score's queues: <name>.queue, <name>.dlq, ...
	ConsumerName string `env:"CONSUMER_NAME" envDefault:"score"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "score:", err)
		os.Exit(1)
	}
}

func run() error {
	var extra scoreConfig
	cfg, err := service.LoadConfig(&extra)
	if err != nil {
		return err
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8081"
	}
	if cfg.MongoDatabase == "" {
		cfg.MongoDatabase = "score"
	}
	log, err := service.NewLogger("score", cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	ctx, stop := service.SignalContext()
	defer stop()

	client, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoURI).SetServerSelectionTimeout(2 * time.Second).SetTimeout(5 * time.Second))
	if err != nil {
		return fmt.Errorf("MONGO_URI: %w", err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database(cfg.MongoDatabase)

	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(cfg.AMQPURL), Name: "score", Logger: log})
	defer conn.Close()
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: cfg.Exchange, Logger: log})
	defer pub.Close()
	store := mongodb.New(mongodb.Config{DB: db, Publisher: pub, Logger: log, RebuildTimeout: extra.RebuildTimeout})
	consumer := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: extra.ConsumerName, Exchange: cfg.Exchange,
		Workers: cfg.Workers, ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
	personevents.Register(consumer, store)

	// Once score has consumed from its queue, reads need only the store:
	// while the broker is unreachable they are served, marked stale (see
	// httpapi.StaleHeader). Before that, score is not ready: its queue may
	// not even exist yet, so person's events would find no route to it.
	var attached atomic.Bool
	ready := func(ctx context.Context) (map[string]any, error) {
		if err := store.Ping(ctx); err != nil {
			return nil, fmt.Errorf("mongodb: %w", err)
		}
		if pub.Ready() && consumer.Ready() {
			attached.Store(true)
			return map[string]any{"broker": "connected", "reads": "served"}, nil
		}
		if !attached.Load() {
			return nil, errors.New("rabbitmq: not consuming from its queue yet since start")
		}
		return map[string]any{"broker": "unreachable", "reads": "served, marked stale: " + httpapi.StaleDisconnected}, nil
	}
	router := service.NewRouter(log, service.NewHTTPMetrics(prometheus.DefaultRegisterer), ready)
	httpapi.Register(router, httpapi.Config{Store: store, Logger: log, MaxWait: extra.MinVersionWait, Receiving: consumer.Ready})
	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: router, ReadHeaderTimeout: 5 * time.Second}

	var adminSrv *http.Server
	if extra.AdminToken == "" {
		log.Warn("admin listener disabled: ADMIN_TOKEN is empty (rebuilds cannot be started)")
	} else {
		h, err := admin.NewHandler(store, extra.AdminToken, log.With(zap.String("listener", "admin")))
		if err != nil {
			return err
		}
		adminSrv = &http.Server{Addr: extra.AdminAddr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	}

	// Stop consuming first (in-flight events finish), then flush score.changed.
	consumerCtx, stopConsumer := context.WithCancel(context.Background())
	storeCtx, stopStore := context.WithCancel(context.Background())
	var consuming, running sync.WaitGroup
	consuming.Add(1)
	running.Add(1)
	go func() { defer consuming.Done(); _ = consumer.Run(consumerCtx) }()
	go func() { defer running.Done(); _ = store.Run(storeCtx) }()
	// A failing admin listener (e.g. its port is taken) stops the service.
	ctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	adminErr := make(chan error, 1)
	if adminSrv != nil {
		go func() {
			err := service.Serve(ctx, log.With(zap.String("listener", "admin")), adminSrv, cfg.ShutdownTimeout/2)
			if err != nil {
				log.Error("admin listener failed", zap.Error(err))
				stopAll()
			}
			adminErr <- err
		}()
	} else {
		close(adminErr)
	}

	err = service.Serve(ctx, log, srv, cfg.ShutdownTimeout/2)
	stopAll()
	if aerr := <-adminErr; aerr != nil && err == nil {
		err = fmt.Errorf("admin listener: %w", aerr)
	}
	log.Info("shutting down")
	stopConsumer()
	consuming.Wait()
	stopStore()
	running.Wait()
	log.Info("stopped")
	return err
}
