// Command person is the write side: it stores persons and their incomes,
// assets and debts in MongoDB and publishes every change through the outbox.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/person/httpapi"
	"github.com/personscore/person/mongodb"
	"github.com/personscore/person/scoreevents"
	"github.com/personscore/person/snapshots"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// config is the common service configuration plus person's own settings.
type config struct {
	service.Config
	personConfig
}

type personConfig struct {
	// ConsumerName names person's queues: <name>.queue, <name>.dlq, ...
	ConsumerName string `env:"CONSUMER_NAME" envDefault:"person"`
	// OutboxMaxPending and OutboxMaxAge bound the outbox backlog: writes are
	// accepted while the broker is unreachable until this process counts
	// that many unpublished events, or its oldest is that old (0: no bound).
	OutboxMaxPending int           `env:"OUTBOX_MAX_PENDING" envDefault:"100000"`
	OutboxMaxAge     time.Duration `env:"OUTBOX_MAX_AGE" envDefault:"1h"`
}

func main() {
	var own personConfig
	common, err := service.LoadConfig(&own)
	if err != nil {
		fmt.Fprintln(os.Stderr, "person:", err)
		os.Exit(1)
	}
	log, err := service.NewLogger("person", common.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "person:", err)
		os.Exit(1)
	}
	ctx, stop := service.SignalContext()
	err = run(ctx, config{Config: common, personConfig: own}, log, prometheus.DefaultRegisterer)
	stop()
	_ = log.Sync()
	if err != nil {
		fmt.Fprintln(os.Stderr, "person:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (SIGTERM), then shuts down within
// cfg.ShutdownTimeout: it stops accepting and finishes the requests in flight
// (first half of the deadline), then flushes the outbox so that every write
// that got a 2xx is published, while the consumer finishes its handlers
// (second half).
func run(ctx context.Context, cfg config, log *zap.Logger, reg prometheus.Registerer) error {
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8080"
	}
	if cfg.MongoDatabase == "" {
		cfg.MongoDatabase = "person"
	}
	if cfg.ConsumerName == "" {
		cfg.ConsumerName = "person"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}

	client, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoURI).SetServerSelectionTimeout(2 * time.Second).SetTimeout(5 * time.Second))
	if err != nil {
		return fmt.Errorf("MONGO_URI: %w", err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database(cfg.MongoDatabase)

	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(cfg.AMQPURL), Name: "person", Logger: log})
	defer conn.Close()
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: cfg.Exchange, Logger: log})
	defer pub.Close()
	// Published events wait up to ClearDelay for the score.changed their
	// write causes: storing that score clears them in the same write.
	ob := outbox.New(outbox.Config{Collection: mongodb.PersonsCollection(db), Publisher: pub, Logger: log,
		ClearDelay: time.Second})
	store := mongodb.New(db, ob)
	consumer := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: cfg.ConsumerName, Exchange: cfg.Exchange,
		Workers: cfg.Workers, ShutdownTimeout: cfg.ShutdownTimeout / 2, Logger: log})
	scoreevents.Register(consumer, store)
	snapshots.Register(consumer, store, pub, log) // answers score's rebuild requests

	// The broker is not needed to take writes: their events wait in the
	// outbox, up to the backlog's bounds. Only the store makes person unready.
	bound := httpapi.BacklogBound{Backlog: ob.Backlog, MaxPending: cfg.OutboxMaxPending, MaxAge: cfg.OutboxMaxAge,
		BrokerReady: func() bool { return pub.Ready() && consumer.Ready() }}
	ready := func(ctx context.Context) (map[string]any, error) {
		if err := store.Ping(ctx); err != nil {
			return nil, fmt.Errorf("mongodb: %w", err)
		}
		return bound.Status(), nil
	}
	router := service.NewRouter(log, service.NewHTTPMetrics(reg), ready)
	httpapi.Register(router, httpapi.Config{Store: store, Logger: log, CanWrite: bound.Check})
	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: router, ReadHeaderTimeout: 5 * time.Second}

	// Shutdown order: stop taking requests and finish those in flight, then flush
	// the outbox so every accepted write is published, then stop consuming.
	bgCtx, stopBackground := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); _ = ob.Run(bgCtx, cfg.ShutdownTimeout/2) }()
	go func() { defer bg.Done(); _ = consumer.Run(bgCtx) }()

	err = service.Serve(ctx, log, srv, cfg.ShutdownTimeout/2)
	log.Info("shutting down")
	stopBackground()
	bg.Wait()
	log.Info("stopped")
	return err
}
