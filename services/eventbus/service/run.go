package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/personscore/eventbus"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// Spec is what differs between services in how they start.
type Spec struct {
	// Name names the service: its log field, its broker connection, and the
	// default of MONGO_DATABASE and CONSUMER_NAME.
	Name string
	// HTTPAddr is the default of HTTP_ADDR.
	HTTPAddr string
	// Build assembles the service on the runtime Run opened: it registers its
	// handlers with rt.Consumer, its routes with rt.Router, and its own
	// listeners and background workers.
	Build func(rt *Runtime) error
}

// Runtime is what Run opens for a service before Build.
type Runtime struct {
	Config    Config
	Log       *zap.Logger
	Metrics   prometheus.Registerer
	DB        *mongo.Database
	Conn      *eventbus.Conn
	Publisher *eventbus.Publisher
	Consumer  *eventbus.Consumer
	// Router serves on HTTP_ADDR; /readyz fails while MongoDB does not answer
	// a ping, then asks Ready.
	Router *gin.Engine
	// Ready adds the service's own readiness (nil: ready once MongoDB is).
	Ready ReadyFunc

	listeners []listener
	workers   []func(ctx context.Context) error
}

type listener struct {
	name string
	srv  *http.Server
}

// Listen adds a listener besides the main one, e.g. an admin port. It stops
// with the main one; if it fails, the whole service stops.
func (rt *Runtime) Listen(name, addr string, h http.Handler) {
	rt.listeners = append(rt.listeners, listener{name, &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}})
}

// Background adds a worker that runs until its context ends. Workers stop one
// after the other in the order they were added, after the consumer.
func (rt *Runtime) Background(run func(ctx context.Context) error) {
	rt.workers = append(rt.workers, run)
}

// Main is a service's main function: it reads the configuration from the
// environment (the common Config and the service's own settings, Own, a
// struct of env tags), runs the service spec describes until SIGINT or
// SIGTERM and exits with status 1 if it fails.
func Main[Own any](spec func(own *Own) Spec) {
	var own Own
	s := spec(&own)
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", s.Name, err)
		os.Exit(1)
	}
	cfg, err := LoadConfig(&own)
	if err != nil {
		fail(err)
	}
	log, err := NewLogger(s.Name, cfg.LogLevel)
	if err != nil {
		fail(err)
	}
	ctx, stop := SignalContext()
	err = Run(ctx, s, cfg, log, prometheus.DefaultRegisterer)
	stop()
	_ = log.Sync()
	if err != nil {
		fail(err)
	}
}

// Run starts the service described by spec and serves until ctx ends or a
// listener fails. Empty HTTPAddr, MongoDatabase and ConsumerName take the
// spec's defaults. It opens, in this order, the MongoDB client, the broker
// connection, the publisher and the consumer, then calls spec.Build, then
// starts the consumer, the background workers and the listeners.
//
// Shutdown, within cfg.ShutdownTimeout:
//  1. the listeners stop accepting and finish the requests in flight (half
//     the timeout), so no new write comes in;
//  2. the consumer stops taking deliveries and finishes its handlers (a
//     quarter: ConsumerConfig.ShutdownTimeout), which may still publish;
//  3. the background workers stop one by one in the order they were added;
//     a worker that flushes what it has to publish should bound the flush
//     by the last quarter (FlushTimeout);
//  4. the publisher, the broker connection and the MongoDB client close.
func Run(ctx context.Context, spec Spec, cfg Config, log *zap.Logger, reg prometheus.Registerer) error {
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = spec.HTTPAddr
	}
	if cfg.MongoDatabase == "" {
		cfg.MongoDatabase = spec.Name
	}
	if cfg.ConsumerName == "" {
		cfg.ConsumerName = spec.Name
	}
	client, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoURI).SetServerSelectionTimeout(2 * time.Second).SetTimeout(5 * time.Second))
	if err != nil {
		return fmt.Errorf("MONGO_URI: %w", err)
	}
	defer client.Disconnect(context.Background())
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(cfg.AMQPURL), Name: spec.Name, Logger: log})
	defer conn.Close()
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: cfg.Exchange, Logger: log})
	defer pub.Close()
	rt := &Runtime{Config: cfg, Log: log, Metrics: reg, DB: client.Database(cfg.MongoDatabase), Conn: conn, Publisher: pub,
		Consumer: eventbus.NewConsumer(conn, eventbus.ConsumerConfig{Service: cfg.ConsumerName, Exchange: cfg.Exchange,
			Workers: cfg.Workers, ShutdownTimeout: cfg.FlushTimeout(), Logger: log})}
	rt.Router = NewRouter(log, NewHTTPMetrics(reg), func(ctx context.Context) (map[string]any, error) {
		if err := client.Ping(ctx, nil); err != nil {
			return nil, fmt.Errorf("mongodb: %w", err)
		}
		if rt.Ready == nil {
			return nil, nil
		}
		return rt.Ready(ctx)
	})
	if err := spec.Build(rt); err != nil {
		return err
	}
	main := listener{"", &http.Server{Addr: cfg.HTTPAddr, Handler: rt.Router, ReadHeaderTimeout: 5 * time.Second}}

	consumerCtx, stopConsumer := context.WithCancel(context.Background())
	consumerDone := make(chan struct{})
	go func() { defer close(consumerDone); _ = rt.Consumer.Run(consumerCtx) }()
	workerStops := make([]func(), len(rt.workers))
	for i, run := range rt.workers {
		wctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = run(wctx) }()
		workerStops[i] = func() { cancel(); <-done }
	}

	err = serve(ctx, log, append([]listener{main}, rt.listeners...), cfg.ShutdownTimeout/2)
	log.Info("shutting down")
	stopConsumer()
	<-consumerDone
	for _, stop := range workerStops {
		stop()
	}
	log.Info("stopped")
	return err
}

// FlushTimeout is what each of the two last steps of the shutdown may take
// (see Run): a quarter of ShutdownTimeout.
func (c Config) FlushTimeout() time.Duration { return c.ShutdownTimeout / 4 }

// serve runs every listener until ctx ends or one of them fails, then shuts
// them all down within timeout; it returns the first failure.
func serve(ctx context.Context, log *zap.Logger, ls []listener, timeout time.Duration) error {
	ctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			llog := log
			if l.name != "" {
				llog = log.With(zap.String("listener", l.name))
			}
			if err := Serve(ctx, llog, l.srv, timeout); err != nil {
				if l.name != "" {
					err = fmt.Errorf("%s listener: %w", l.name, err)
				}
				llog.Error("listener failed", zap.Error(err))
				errs[i] = err
				stopAll()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
