package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/personscore/contract"
	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/localmongo/mongotest"
	"github.com/personscore/person/internal/persontest"
	"github.com/personscore/person/mongodb"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// broker is a channel on the test broker with the exchange and queues this
// test declared, all deleted when the test ends.
type broker struct {
	t        *testing.T
	conn     *amqp.Connection
	ch       *amqp.Channel
	exchange string
	consumer string // the service's consumer name (queue prefix)
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	conn, err := amqp.Dial(eventbustest.BrokerURL())
	if err != nil {
		t.Fatalf("RabbitMQ at %s is required: %v", eventbustest.BrokerURL(), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	name := eventbustest.Unique("person-test")
	b := &broker{t: t, conn: conn, ch: ch, exchange: name, consumer: name}
	if err := ch.ExchangeDeclare(b.exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.cleanup)
	return b
}

// tap binds a fresh queue to every routing key and returns its deliveries.
func (b *broker) tap() <-chan amqp.Delivery {
	b.t.Helper()
	q, err := b.ch.QueueDeclare(b.consumer+".tap", false, false, true, false, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.ch.QueueBind(q.Name, "#", b.exchange, false, nil); err != nil {
		b.t.Fatal(err)
	}
	d, err := b.ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return d
}

// waitConsuming waits until the service consumes from queue (declared, bound and with
// a consumer): person's consumer starts in the background, and an event published
// before its queue is bound reaches only the tap.
func (b *broker) waitConsuming(queue string) {
	b.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ch, err := b.conn.Channel() // a failed passive declare closes its channel
		if err != nil {
			b.t.Fatal(err)
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil {
			_ = ch.Close()
			if q.Consumers > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("nothing consumes from %s: %v", queue, err)
		}
	}
}

func (b *broker) cleanup() {
	_ = b.conn.Close() // the broker deletes the exclusive tap queue with it
	names := []string{eventbus.WorkQueue(b.consumer), eventbus.DeadLetterQueue(b.consumer)}
	// The consumer's delay queues, whatever the library names them: list ours.
	if out, err := exec.Command("rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name").Output(); err == nil {
		for _, name := range strings.Fields(string(out)) {
			if strings.HasPrefix(name, b.consumer+".") && name != b.consumer+".tap" {
				names = append(names, name)
			}
		}
	}
	for _, retry := range []string{"500ms", "2s", "8s", "32s"} {
		names = append(names, b.consumer+".retry."+retry)
	}
	eventbustest.DeleteDeclared(b.t, b.exchange, names...)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type app struct {
	base   string
	cancel context.CancelFunc
	done   chan error
	mongo  *mongo.Database
}

// start runs the service on the given MongoDB and broker.
func start(t *testing.T, b *broker, log *zap.Logger, mongoURI, brokerURL string) *app {
	t.Helper()
	return startWith(t, b, log, mongoURI, brokerURL, personConfig{OutboxMaxPending: 100_000, OutboxMaxAge: time.Hour})
}

// startWith is start with person's own settings (the consumer name is the broker's).
func startWith(t *testing.T, b *broker, log *zap.Logger, mongoURI, brokerURL string, own personConfig) *app {
	t.Helper()
	addr := freeAddr(t)
	cfg := service.Config{HTTPAddr: addr, AMQPURL: brokerURL, MongoURI: mongoURI, MongoDatabase: "person",
		ConsumerName: b.consumer, Exchange: b.exchange, LogLevel: "info", ShutdownTimeout: 20 * time.Second, Workers: 2}
	ctx, cancel := context.WithCancel(context.Background())
	a := &app{base: "http://" + addr, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- service.Run(ctx, spec(&own), cfg, log, prometheus.NewRegistry()) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-a.done:
		case <-time.After(time.Minute):
			t.Error("run did not return")
		}
	})
	client, err := mongo.Connect(options.Client().ApplyURI(mongoURI))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	a.mongo = client.Database("person")

	a.waitReady(t, http.StatusOK)
	return a
}

// waitReady polls /readyz until it answers want.
func (a *app) waitReady(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, m, err := a.call("GET", "/readyz", "")
		if err == nil && code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d: %d %v %v", want, code, m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *app) call(method, path, body string) (int, map[string]any, error) {
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, nil
}

func (a *app) must(t *testing.T, method, path, body string, want int) map[string]any {
	t.Helper()
	code, m, err := a.call(method, path, body)
	if err != nil || code != want {
		t.Fatalf("%s %s: %d %v (%v), want %d", method, path, code, m, err, want)
	}
	return m
}

// collect reads events from deliveries until every key in want was seen or
// the timeout passes; it returns what was seen ("type cpf@version").
func collect(t *testing.T, deliveries <-chan amqp.Delivery, want map[string]bool, timeout time.Duration) map[string]int {
	t.Helper()
	seen := map[string]int{}
	missing := len(want)
	deadline := time.After(timeout)
	for missing > 0 {
		select {
		case d := <-deliveries:
			ev, err := eventbus.ParseEvent(d.Body)
			if err != nil {
				t.Errorf("published a malformed event: %v", err)
				continue
			}
			if d.ContentType != eventbus.ContentType || d.MessageId != ev.ID || d.Type != ev.Type || d.RoutingKey != ev.Type {
				t.Errorf("AMQP properties %q %q %q %q do not mirror event %s %s", d.ContentType, d.MessageId, d.Type, d.RoutingKey, ev.ID, ev.Type)
			}
			key := fmt.Sprintf("%s %s@%d", ev.Type, ev.Subject, ev.Version)
			seen[key]++
			if want[key] && seen[key] == 1 {
				missing--
			}
		case <-deadline:
			for k := range want {
				if seen[k] == 0 {
					t.Errorf("never published: %s", k)
				}
			}
			return seen
		}
	}
	return seen
}

// The service end to end on the real broker: the original's calls publish
// their events; a score.changed published by "score" shows up in GET; on
// shutdown with writes in flight every write that got a 2xx is published
// and the outbox is left empty.
func TestServiceEndToEndAndGracefulShutdown(t *testing.T) {
	b := newBroker(t)
	events := b.tap()
	a := start(t, b, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), mongotest.Start(t).URI(), eventbustest.BrokerURL())

	a.must(t, "POST", "/person", `{"cpf": 11111, "name": "abc", "address": "abc", "date_of_birth": "2019-06-15T19:23:55-03:00"}`, 201)
	a.must(t, "POST", "/person/11111/income", `{"type": "renting", "value": 1000}`, 201)
	a.must(t, "POST", "/person/11111/asset", `{"type": "apartment", "value": 100000}`, 201)
	a.must(t, "POST", "/person/11111/debt", `{"value": 1000}`, 201)
	collect(t, events, map[string]bool{"person.created 11111@1": true, "income.created 11111@2": true,
		"asset.created 11111@3": true, "debt.created 11111@4": true}, 30*time.Second)

	// score.changed, as the score service publishes it, through the library.
	b.waitConsuming(eventbus.WorkQueue(b.consumer))
	conn := eventbus.Open(eventbus.ConnConfig{URLs: []string{eventbustest.BrokerURL()}, Name: "person-test-score"})
	defer conn.Close()
	pub := eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: b.exchange})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ score, version int64 }{{4970, 4}, {20, 2}} { // the older one arrives late
		ev, err := eventbus.NewEvent(ctx, "/score", contract.ScoreChanged, "11111", s.version, contract.ScoreChangedData{CPF: 11111, Score: s.score})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		m := a.must(t, "GET", "/person/11111", "", 200)
		if sc, ok := m["score"].(map[string]any); ok && sc["value"] == float64(4970) && sc["version"] == float64(4) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("score never replicated: %v", m["score"])
		}
	}

	// Shutdown with writes in flight.
	const writers = 8
	type answer struct {
		cpf     int
		version float64
	}
	answers := make(chan answer, 10_000)
	var wg sync.WaitGroup
	stopWriting := make(chan struct{})
	for w := range writers {
		cpf := 20000 + w
		a.must(t, "POST", "/person", fmt.Sprintf(`{"cpf": %d, "name": "w", "date_of_birth": "2000-01-01"}`, cpf), 201)
		answers <- answer{cpf, 1}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopWriting:
					return
				default:
				}
				code, m, err := a.call("POST", fmt.Sprintf("/person/%d/debt", cpf), `{"value": 0.01}`)
				if err != nil {
					return // the server stopped accepting
				}
				if code == 201 {
					answers <- answer{cpf, m["version"].(float64)}
				} else if code != 503 {
					t.Errorf("write during shutdown: %d %v", code, m)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	began := time.Now()
	a.cancel()
	var runErr error
	select {
	case runErr = <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within its shutdown deadline")
	}
	a.done <- runErr // for the cleanup
	close(stopWriting)
	wg.Wait()
	close(answers)
	if runErr != nil {
		t.Errorf("run: %v", runErr)
	}
	t.Logf("shutdown took %v", time.Since(began))

	want := map[string]bool{}
	for ans := range answers {
		want[fmt.Sprintf("%s %d@%d", map[bool]string{true: "person.created", false: "debt.created"}[ans.version == 1], ans.cpf, int64(ans.version))] = true
	}
	if len(want) < 2*writers {
		t.Fatalf("only %d writes succeeded before the shutdown", len(want))
	}
	seen := collect(t, events, want, 30*time.Second)
	t.Logf("%d acknowledged writes, %d events seen", len(want), len(seen))

	// Nothing is left behind in the outbox.
	n, err := mongodb.PersonsCollection(a.mongo).CountDocuments(context.Background(), bson.D{{Key: "outbox.0", Value: bson.D{{Key: "$exists", Value: true}}}})
	if err != nil || n != 0 {
		t.Errorf("%d persons with pending events after shutdown (%v)", n, err)
	}
}

// /readyz is 200 exactly while MongoDB answers, whether or not the broker is
// connected, and its body tells the two apart; /healthz stays 200. While the
// broker is unreachable writes are accepted into the outbox backlog up to
// OUTBOX_MAX_PENDING, then refused with 503 and Retry-After, nothing written;
// once the broker is back the backlog drains by itself, in version order,
// and writes are accepted again.
func TestReadinessFollowsDependencies(t *testing.T) {
	const bound = 5
	b := newBroker(t)
	events := b.tap()
	mongoSrv := mongotest.Start(t)
	mongoHost := strings.TrimPrefix(strings.Split(mongoSrv.URI(), "/?")[0], "mongodb://")
	mongoProxy := persontest.StartProxy(t, mongoHost)
	brokerProxy := persontest.StartProxy(t, "127.0.0.1:5672")
	a := startWith(t, b, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		persontest.ProxiedURI(mongoProxy), "amqp://guest:guest@"+brokerProxy.Addr()+"/",
		personConfig{OutboxMaxPending: bound, OutboxMaxAge: time.Hour})
	a.must(t, "POST", "/person", `{"cpf": 1, "name": "a", "date_of_birth": "2000-01-01"}`, 201)
	a.waitReadyz(t, func(m map[string]any) bool { return m["broker"] == "connected" && pending(m) == 0 })

	brokerProxy.Cut()
	a.waitReadyz(t, func(m map[string]any) bool { return m["broker"] == "unreachable" })
	a.must(t, "GET", "/healthz", "", 200)
	for range bound {
		a.must(t, "POST", "/person/1/debt", `{"value": 1}`, 201)
	}
	for _, w := range []struct{ path, body string }{
		{"/person/1/debt", `{"value": 1}`},
		{"/person", `{"cpf": 2, "name": "b", "date_of_birth": "2000-01-01"}`},
	} {
		code, hdr, m := a.callHeader("POST", w.path, w.body)
		if code != 503 || hdr.Get("Retry-After") != "5" || hdr.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(fmt.Sprint(m["detail"]), "outbox backlog full") {
			t.Errorf("POST %s past the bound: %d %v %v", w.path, code, hdr, m)
		}
	}
	if m := a.must(t, "GET", "/person/1", "", 200); m["version"] != float64(1+bound) {
		t.Errorf("a refused write changed the person: %v", m)
	}
	a.must(t, "GET", "/person/2", "", 404)
	if m := a.must(t, "GET", "/readyz", "", 200); pending(m) != bound || !strings.HasPrefix(fmt.Sprint(m["writes"]), "refused") {
		t.Errorf("readyz with the backlog full: %v", m)
	}

	brokerProxy.Restore()
	a.waitReadyz(t, func(m map[string]any) bool { return m["broker"] == "connected" && pending(m) == 0 })
	var versions []int64
	seen := map[int64]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < 1+bound {
		select {
		case d := <-events:
			ev, err := eventbus.ParseEvent(d.Body)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Subject == "1" && !seen[ev.Version] {
				seen[ev.Version] = true
				versions = append(versions, ev.Version)
			}
		case <-deadline:
			t.Fatalf("after the outage only versions %v were published", versions)
		}
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Errorf("published in order %v, want 1..%d", versions, 1+bound)
			break
		}
	}
	a.must(t, "POST", "/person/1/debt", `{"value": 1}`, 201)

	mongoProxy.Cut()
	a.waitReady(t, http.StatusServiceUnavailable)
	a.must(t, "GET", "/healthz", "", 200)
	a.must(t, "POST", "/person/1/debt", `{"value": 1}`, 503)
	mongoProxy.Restore()
	a.waitReady(t, http.StatusOK)
	if m := a.must(t, "GET", "/person/1", "", 200); m["version"] != float64(2+bound) {
		t.Errorf("version %v, want %d", m["version"], 2+bound)
	}
}

// pending is the outbox backlog a /readyz body reports.
func pending(m map[string]any) float64 {
	ob, _ := m["outbox"].(map[string]any)
	n, _ := ob["pending"].(float64)
	return n
}

// waitReadyz polls /readyz until it answers 200 with a body ok accepts.
func (a *app) waitReadyz(t *testing.T, ok func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, m, err := a.call("GET", "/readyz", "")
		if err == nil && code == 200 && ok(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered as wanted: %d %v %v", code, m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *app) callHeader(method, path, body string) (int, http.Header, map[string]any) {
	req, _ := http.NewRequest(method, a.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}
