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
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/outbox"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/score/httpapi"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/personevents"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// scoreConfig is what score reads from the environment beyond the common config.
type scoreConfig struct {
	MinVersionWait time.Duration `env:"MIN_VERSION_WAIT" envDefault:"2s"`
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
	coll := client.Database(cfg.MongoDatabase).Collection(mongodb.Collection)

	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(cfg.AMQPURL), Name: "score", Logger: log})
	defer conn.Close()
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: cfg.Exchange, Logger: log})
	defer pub.Close()
	ob := outbox.New(outbox.Config{Collection: coll, Publisher: pub, Logger: log})
	store := mongodb.New(coll, ob, mongodb.NewHub(200*time.Millisecond))
	consumer := eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: "score", Exchange: cfg.Exchange,
		Workers: cfg.Workers, ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
	personevents.Register(consumer, store)

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
	httpapi.Register(router, store, log, extra.MinVersionWait)
	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: router, ReadHeaderTimeout: 5 * time.Second}

	// Stop consuming first (in-flight events finish), then flush score.changed.
	consumerCtx, stopConsumer := context.WithCancel(context.Background())
	outboxCtx, stopOutbox := context.WithCancel(context.Background())
	var consuming, relaying sync.WaitGroup
	consuming.Add(1)
	relaying.Add(1)
	go func() { defer consuming.Done(); _ = consumer.Run(consumerCtx) }()
	go func() { defer relaying.Done(); _ = ob.Run(outboxCtx, cfg.ShutdownTimeout/2) }()

	err = service.Serve(ctx, log, srv, cfg.ShutdownTimeout/2)
	log.Info("shutting down")
	stopConsumer()
	consuming.Wait()
	stopOutbox()
	relaying.Wait()
	log.Info("stopped")
	return err
}
