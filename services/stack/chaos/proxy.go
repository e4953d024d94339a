package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

var (
	toxiServerOnce sync.Once
	toxiServer     *toxiproxy.ApiServer
)

// Proxy is an in-process Toxiproxy TCP proxy on a free loopback port in front
// of one upstream (a broker node, the MongoDB-wire server).
type Proxy struct {
	p *toxiproxy.Proxy
}

// NewProxy starts a proxy named name to upstream (host:port).
func NewProxy(name, upstream string) (*Proxy, error) {
	toxiServerOnce.Do(func() {
		toxiServer = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	})
	p := toxiproxy.NewProxy(toxiServer, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	return &Proxy{p: p}, nil
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.p.Listen }

// AMQPURL rewrites a broker URL to go through the proxy.
func (p *Proxy) AMQPURL(brokerURL string) string {
	scheme, rest, _ := strings.Cut(brokerURL, "://")
	creds, hostAndPath, found := strings.Cut(rest, "@")
	if !found {
		hostAndPath, creds = creds, ""
	}
	_, path, _ := strings.Cut(hostAndPath, "/")
	if creds != "" {
		creds += "@"
	}
	return scheme + "://" + creds + p.Addr() + "/" + path
}

// Cut closes every connection through the proxy and refuses new ones until
// Restore: the upstream looks down.
func (p *Proxy) Cut() { p.p.Stop() }

// Restore accepts connections again (on the same address).
func (p *Proxy) Restore() error {
	if p.p.Enabled {
		return nil
	}
	return p.p.Start()
}

// Toxic adds a Toxiproxy toxic, e.g. Toxic("lat", "latency", "downstream", 1,
// map[string]any{"latency": 200, "jitter": 100}).
func (p *Proxy) Toxic(name, typ, stream string, toxicity float64, attrs map[string]any) error {
	body, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": toxicity, "attributes": attrs})
	if err != nil {
		return err
	}
	_, err = p.p.Toxics.AddToxicJson(strings.NewReader(string(body)))
	return err
}

// RemoveToxic removes one toxic by name.
func (p *Proxy) RemoveToxic(name string) error {
	return p.p.Toxics.RemoveToxic(context.Background(), name)
}

// Reset removes every toxic.
func (p *Proxy) Reset() { p.p.Toxics.ResetToxics(context.Background()) }

// Close stops the proxy for good.
func (p *Proxy) Close() { p.p.Stop() }
