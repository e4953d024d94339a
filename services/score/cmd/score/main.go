// Command score is the read side: it keeps a denormalized copy of every person
// from person's events in MongoDB and serves the credit score. It starts and
// stops as service.Run describes; the relay of score.changed is flushed after
// the consumer stopped.
package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/personscore/eventbus/service"
	"github.com/personscore/score/admin"
	"github.com/personscore/score/httpapi"
	"github.com/personscore/score/mongodb"
	"github.com/personscore/score/personevents"
	"github.com/personscore/score/rebuild"
	"github.com/personscore/score/relays"
	"go.uber.org/zap"
)

// scoreConfig is what score reads from the environment beyond service.Config.
type scoreConfig struct {
	MinVersionWait time.Duration `env:"MIN_VERSION_WAIT" envDefault:"2s"`
	// AdminAddr is the admin listener (rebuild); never routed by the ingress.
	AdminAddr string `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9081"`
	// AdminToken is the admin listener's bearer token; empty disables it.
	AdminToken     string        `env:"ADMIN_TOKEN"`
	RebuildTimeout time.Duration `env:"REBUILD_TIMEOUT" envDefault:"30m"`
}

func main() { service.Main(spec) }

func spec(own *scoreConfig) service.Spec {
	return service.Spec{Name: "score", HTTPAddr: ":8081", Build: func(rt *service.Runtime) error {
		// score.changed goes out through an outbox in each document of the
		// collection serving the read model; its relay follows a switch.
		out := relays.New(rt.DB, rt.Publisher, rt.Log, 0, rt.Config.FlushTimeout())
		store := mongodb.New(mongodb.Config{DB: rt.DB, Relays: out, Logger: rt.Log})
		router := rebuild.New(rebuild.Config{Store: store, Publisher: rt.Publisher, Logger: rt.Log,
			RebuildTimeout: own.RebuildTimeout})
		personevents.Register(rt.Consumer, router)
		rt.Background(router.Run) // follows switches, drives rebuilds
		rt.Background(store.Run)  // wakes min_version readers on other replicas' writes
		rt.Background(out.Run)    // last: flushes score.changed after the rest stopped

		// Once score has consumed from its queue, reads need only the store:
		// while the broker is unreachable they are served, marked stale (see
		// httpapi.StaleHeader). Before that, score is not ready: its queue may
		// not even exist yet, so person's events would find no route to it.
		var attached atomic.Bool
		rt.Ready = func(context.Context) (map[string]any, error) {
			if rt.Publisher.Ready() && rt.Consumer.Ready() {
				attached.Store(true)
				return map[string]any{"broker": "connected", "reads": "served"}, nil
			}
			if !attached.Load() {
				return nil, errors.New("rabbitmq: not consuming from its queue yet since start")
			}
			return map[string]any{"broker": "unreachable", "reads": "served, marked stale: " + httpapi.StaleDisconnected}, nil
		}
		httpapi.Register(rt.Router, httpapi.Config{Store: store, Logger: rt.Log, MaxWait: own.MinVersionWait, Receiving: rt.Consumer.Ready})

		if own.AdminToken == "" {
			rt.Log.Warn("admin listener disabled: ADMIN_TOKEN is empty (rebuilds cannot be started)")
			return nil
		}
		h, err := admin.NewHandler(router, own.AdminToken, rt.Log.With(zap.String("listener", "admin")))
		if err != nil {
			return err
		}
		rt.Listen("admin", own.AdminAddr, h) // a failing admin listener (e.g. its port is taken) stops the service
		return nil
	}}
}
