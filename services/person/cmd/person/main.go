// Command person is the write side: it stores persons and their incomes,
// assets and debts in MongoDB and publishes every change through the outbox.
package main

import (
	"context"
	"errors"
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
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "person:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := service.LoadConfig()
	if err != nil {
		return err
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8080"
	}
	if cfg.MongoDatabase == "" {
		cfg.MongoDatabase = "person"
	}
	log, err := service.NewLogger("person", cfg.LogLevel)
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

	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(cfg.AMQPURL), Name: "person", Logger: log})
	defer conn.Close()
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: cfg.Exchange, Logger: log})
	defer pub.Close()
	ob := outbox.New(outbox.Config{Collection: mongodb.PersonsCollection(db), Publisher: pub, Logger: log})
	store := mongodb.New(db, ob)
	consumer := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: "person", Exchange: cfg.Exchange,
		Workers: cfg.Workers, ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
	scoreevents.Register(consumer, store)

	ready := func(ctx context.Context) error {
		if err := store.Ping(ctx); err != nil {
			return fmt.Errorf("mongodb: %w", err)
		}
		if !pub.Ready() || !consumer.Ready() {
			return errors.New("rabbitmq: not connected")
		}
		return nil
	}
	router := service.NewRouter(log, service.NewHTTPMetrics(prometheus.DefaultRegisterer), ready)
	httpapi.Register(router, store, log)
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

