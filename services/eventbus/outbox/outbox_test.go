package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus"
	"github.com/personscore/eventbus/eventbustest"
	"github.com/personscore/localmongo/mongotest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap/zaptest"
)

// These tests use the real broker and an embedded MongoDB-wire server
// (FerretDB). Each declares its own exchange and queue and deletes them.

// env is one test's collection, broker publisher and tap queue.
type env struct {
	coll    *mongo.Collection
	pub     *eventbus.Publisher
	raw     *amqp.Channel
	tap     string
	metrics *eventbus.Metrics
	uri     string // of the embedded MongoDB-wire server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := mongotest.Start(t)
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	e := &env{coll: client.Database("outboxtest").Collection("aggregates"), metrics: eventbus.NewMetrics(prometheus.NewRegistry()), uri: srv.URI()}
	e.attachBroker(t)
	return e
}

// attachBroker creates a private exchange with a tap queue bound to every
// routing key, and a publisher to that exchange.
func (e *env) attachBroker(t *testing.T) {
	t.Helper()
	exchange, tap := eventbustest.Unique("outbox-test-x"), eventbustest.Unique("outbox-test-q")
	rc, err := amqp.Dial(eventbustest.BrokerURL())
	if err != nil {
		t.Fatalf("RabbitMQ unreachable at %s: %v", eventbustest.BrokerURL(), err)
	}
	t.Cleanup(func() {
		_ = rc.Close()
		eventbustest.DeleteDeclared(t, exchange, tap)
	})
	ch, err := rc.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(tap, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(tap, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	conn := eventbus.Open(eventbus.ConnConfig{URLs: eventbus.SplitURLs(eventbustest.BrokerURL()), Name: eventbustest.Unique("outbox-test"), Logger: zaptest.NewLogger(t)})
	t.Cleanup(func() { conn.Close() })
	e.pub = eventbus.NewPublisher(conn, eventbus.PublisherConfig{Exchange: exchange, Metrics: e.metrics})
	t.Cleanup(func() { e.pub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.pub.WaitReady(ctx); err != nil {
		t.Fatalf("RabbitMQ unreachable at %s: %v", eventbustest.BrokerURL(), err)
	}
	e.raw, e.tap = ch, tap
}

// received collects the events that reached the tap queue until want holds.
func (e *env) received(t *testing.T, timeout time.Duration, want func([]eventbus.Event) bool) []eventbus.Event {
	t.Helper()
	var got []eventbus.Event
	deadline := time.Now().Add(timeout)
	for !want(got) {
		d, ok, err := e.raw.Get(e.tap, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			ev, err := eventbus.ParseEvent(d.Body)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out with %d events received", len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return got
}

func pendingCount(t *testing.T, coll *mongo.Collection) int {
	t.Helper()
	cur, err := coll.Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []pendingDoc
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range docs {
		n += len(d.Outbox)
	}
	return n
}

func event(t *testing.T, typ, subject string, version int64) eventbus.Event {
	t.Helper()
	ev, err := eventbus.NewEvent(context.Background(), "/outbox-test", typ, subject, version, map[string]int64{"v": version})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// write is a store's state change: one single-document write that sets the
// state and appends the event to the outbox.
func write(t *testing.T, coll *mongo.Collection, id string, ev eventbus.Event) {
	t.Helper()
	update := With(bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: ev.Version}}}}, ev)
	if _, err := coll.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}}, update, options.UpdateOne().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
}

func runOutbox(t *testing.T, ob *Outbox) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ob.Run(ctx, 5*time.Second) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func TestWithAppendsToUpdate(t *testing.T) {
	ev := eventbus.Event{ID: "1"}
	got := With(bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}, ev)
	if len(got) != 2 || got[1].Key != "$push" {
		t.Fatalf("With without $push: %v", got)
	}
	merged := With(bson.D{{Key: "$push", Value: bson.D{{Key: "log", Value: "x"}}}}, ev)
	if len(merged) != 1 || len(merged[0].Value.(bson.D)) != 2 || merged[0].Value.(bson.D)[1].Key != Field {
		t.Errorf("With did not merge into $push: %v", merged)
	}
}

// The relay publishes right after the write (the sweep is far off) and clears
// the outbox once the broker confirmed.
func TestRelayPublishesRightAfterWrite(t *testing.T) {
	e := newEnv(t)
	ob := New(Config{Collection: e.coll, Publisher: e.pub, SweepInterval: time.Hour, MinAge: time.Hour, Metrics: e.metrics})
	runOutbox(t, ob)
	a1, a2 := event(t, "person.created", "A", 1), event(t, "person.updated", "A", 2)
	write(t, e.coll, "A", a1)
	ob.Notify("A", a1)
	write(t, e.coll, "A", a2)
	ob.Notify("A", a2)
	start := time.Now()
	got := e.received(t, 5*time.Second, func(g []eventbus.Event) bool { return len(g) == 2 })
	if got[0].ID != a1.ID || got[1].ID != a2.ID {
		t.Errorf("relay order %s %s, want %s %s", got[0].ID, got[1].ID, a1.ID, a2.ID)
	}
	t.Logf("relayed within %s", time.Since(start))
	deadline := time.Now().Add(5 * time.Second)
	for pendingCount(t, e.coll) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("outbox not cleared after confirm")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flakyPublisher fails while down is set, and then a fraction of the time.
type flakyPublisher struct {
	next     Publisher
	down     atomic.Bool
	failRate float64
	calls    atomic.Int32
}

func (p *flakyPublisher) Publish(ctx context.Context, events ...eventbus.Event) error {
	p.calls.Add(1)
	if p.down.Load() || mrand.Float64() < p.failRate {
		return eventbus.ErrNotConnected
	}
	return p.next.Publish(ctx, events...)
}

// While the broker is down nothing is lost: the pending gauges show the
// backlog, and once it is back the sweep republishes every event, per
// aggregate in version order (even when the array order differs).
func TestSweepRepublishesInVersionOrder(t *testing.T) {
	e := newEnv(t)
	flaky := &flakyPublisher{next: e.pub}
	flaky.down.Store(true)
	ob := New(Config{Collection: e.coll, Publisher: flaky, SweepInterval: 100 * time.Millisecond, MinAge: time.Millisecond,
		Metrics: e.metrics, SweepBatch: 4})
	runOutbox(t, ob)
	var all []eventbus.Event
	for _, subject := range []string{"A", "B", "C"} {
		for v := int64(1); v <= 3; v++ {
			ev := event(t, "score.changed", subject, v)
			write(t, e.coll, subject, ev)
			ob.Notify(subject, ev)
			all = append(all, ev)
		}
	}
	// D's outbox holds versions out of array order.
	d3, d1, d2 := event(t, "score.changed", "D", 3), event(t, "score.changed", "D", 1), event(t, "score.changed", "D", 2)
	if _, err := e.coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: "D"}, {Key: Field, Value: []eventbus.Event{d3, d1, d2}}}); err != nil {
		t.Fatal(err)
	}
	all = append(all, d3, d1, d2)

	gauge := e.metrics.OutboxPending.WithLabelValues(e.coll.Name())
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(gauge) != 12 {
		if time.Now().After(deadline) {
			t.Fatalf("pending gauge = %v while the broker is down, want 12", testutil.ToFloat64(gauge))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond)
	if age := testutil.ToFloat64(e.metrics.OutboxOldest.WithLabelValues(e.coll.Name())); age <= 0 {
		t.Errorf("oldest pending age = %v, want > 0", age)
	}
	flaky.down.Store(false)
	got := e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) >= 12 })
	bySubject := map[string][]int64{}
	for _, ev := range got {
		bySubject[ev.Subject] = append(bySubject[ev.Subject], ev.Version)
	}
	for subject, versions := range bySubject {
		if !slices.Equal(versions, []int64{1, 2, 3}) {
			t.Errorf("subject %s published in order %v, want [1 2 3]", subject, versions)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(gauge) != 0 || pendingCount(t, e.coll) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending gauge %v, %d events still in documents", testutil.ToFloat64(gauge), pendingCount(t, e.coll))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if age := testutil.ToFloat64(e.metrics.OutboxOldest.WithLabelValues(e.coll.Name())); age != 0 {
		t.Errorf("oldest pending age = %v with nothing pending", age)
	}
}

// Several replicas relaying and sweeping the same collection, with publishes
// failing at random, lose nothing (duplicates are allowed).
func TestReplicasLoseNothing(t *testing.T) {
	e := newEnv(t)
	var replicas []*Outbox
	for range 3 {
		p := &flakyPublisher{next: e.pub, failRate: 0.3}
		ob := New(Config{Collection: e.coll, Publisher: p, SweepInterval: 100 * time.Millisecond, MinAge: 50 * time.Millisecond,
			Metrics: eventbus.NewMetrics(nil)})
		runOutbox(t, ob)
		replicas = append(replicas, ob)
	}
	want := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				subject := fmt.Sprintf("s%d-%d", w, i)
				for v := int64(1); v <= 2; v++ {
					ev := event(t, "item.added", subject, v)
					write(t, e.coll, subject, ev)
					replicas[mrand.IntN(len(replicas))].Notify(subject, ev) // the replica that served the write
					mu.Lock()
					want[ev.ID] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	e.received(t, 30*time.Second, func(g []eventbus.Event) bool {
		clear(seen)
		for _, ev := range g {
			seen[ev.ID]++
		}
		for id := range want {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	deadline := time.Now().Add(10 * time.Second)
	for pendingCount(t, e.coll) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still pending", pendingCount(t, e.coll))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d events, all published by 3 flaky replicas; %d duplicates", len(want), dups)
}

// A clean shutdown flushes what is pending, however young.
func TestShutdownFlushesPending(t *testing.T) {
	e := newEnv(t)
	flaky := &flakyPublisher{next: e.pub}
	flaky.down.Store(true)
	ob := New(Config{Collection: e.coll, Publisher: flaky, SweepInterval: time.Hour, MinAge: time.Hour, Metrics: e.metrics})
	stop := runOutbox(t, ob)
	ev := event(t, "person.deleted", "Z", 4)
	write(t, e.coll, "Z", ev)
	ob.Notify("Z", ev)
	time.Sleep(100 * time.Millisecond) // the relay tried and failed
	flaky.down.Store(false)
	stop()
	got := e.received(t, 5*time.Second, func(g []eventbus.Event) bool { return len(g) == 1 })
	if got[0].ID != ev.ID || pendingCount(t, e.coll) != 0 {
		t.Errorf("got %s, %d pending", got[0].ID, pendingCount(t, e.coll))
	}
}

// blockingPublisher never publishes: it reports that a publish started and
// hangs, like a process about to die between its write and its publish.
type blockingPublisher struct{ entered chan struct{} }

func (p blockingPublisher) Publish(ctx context.Context, events ...eventbus.Event) error {
	select {
	case p.entered <- struct{}{}:
	default:
	}
	select {}
}

const (
	crashChildEnv = "OUTBOX_CRASH_CHILD"
	crashURIEnv   = "OUTBOX_CRASH_MONGO_URI"
)

// Outbox recovery when the process dies between the write and the publish:
// a child process writes the state change with its event and is SIGKILLed
// while its relay is publishing; a new Outbox's sweep then publishes the
// event.
func TestRecoveryAfterCrashBetweenWriteAndPublish(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		crashChild()
		return
	}
	e := newEnv(t)
	uri := e.uri // the child dials the server this test process runs
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecoveryAfterCrashBetweenWriteAndPublish$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashURIEnv+"="+uri)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var written string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "WRITTEN "); ok {
			written = id
			break
		}
	}
	if written == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("child never reported its write")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred cleanup, no flush
		t.Fatal(err)
	}
	werr := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(werr, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("child did not die by signal: %v", werr)
	}
	if n := pendingCount(t, e.coll); n != 1 {
		t.Fatalf("after the crash %d events are pending, want the 1 written", n)
	}

	ob := New(Config{Collection: e.coll, Publisher: e.pub, Metrics: e.metrics})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ob.sweep(ctx, 0, false); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	got := e.received(t, 5*time.Second, func(g []eventbus.Event) bool { return len(g) == 1 })
	if got[0].ID != written {
		t.Errorf("published %s, want the crashed write's event %s", got[0].ID, written)
	}
	if n := pendingCount(t, e.coll); n != 0 {
		t.Errorf("%d still pending after the sweep", n)
	}
}

// crashChild is the process that dies: it writes, its relay starts
// publishing (and hangs), it says so, and waits to be killed.
func crashChild() {
	client, err := mongo.Connect(options.Client().ApplyURI(os.Getenv(crashURIEnv)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	coll := client.Database("outboxtest").Collection("aggregates")
	pub := blockingPublisher{entered: make(chan struct{}, 1)}
	ob := New(Config{Collection: coll, Publisher: pub, SweepInterval: time.Hour, MinAge: time.Hour, Metrics: eventbus.NewMetrics(nil)})
	go func() { _ = ob.Run(context.Background(), time.Second) }()
	ev, _ := eventbus.NewEvent(context.Background(), "/outbox-test", "person.created", "crash", 1, map[string]string{"name": "Ana"})
	update := With(bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "Ana"}, {Key: "version", Value: 1}}}}, ev)
	if _, err := coll.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "crash"}}, update, options.UpdateOne().SetUpsert(true)); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	ob.Notify("crash", ev)
	<-pub.entered // the relay is publishing now
	fmt.Printf("WRITTEN %s\n", ev.ID)
	select {}
}

// countingPublisher counts the events it is given, per id; with a gate it
// holds every publish until the gate is closed.
type countingPublisher struct {
	next Publisher
	gate chan struct{} // nil: no wait
	mu   sync.Mutex
	seen map[string]int
}

func (p *countingPublisher) Publish(ctx context.Context, events ...eventbus.Event) error {
	p.mu.Lock()
	for _, ev := range events {
		p.seen[ev.ID]++
	}
	p.mu.Unlock()
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.next.Publish(ctx, events...)
}

// The sweep leaves alone what this process's relay is publishing, however
// long the broker takes to confirm: a slow relay causes no duplicates.
func TestSweepSkipsWhatTheRelayHolds(t *testing.T) {
	e := newEnv(t)
	gated := &countingPublisher{next: e.pub, gate: make(chan struct{}), seen: map[string]int{}}
	// MinAge covers the moment between the write and Notify below, when the
	// event is stored but not yet the relay's (a sweep then may take it).
	ob := New(Config{Collection: e.coll, Publisher: gated, SweepInterval: 20 * time.Millisecond, MinAge: 50 * time.Millisecond, Metrics: e.metrics})
	runOutbox(t, ob)
	ev := event(t, "score.changed", "S", 1)
	write(t, e.coll, "S", ev)
	ob.Notify("S", ev)
	time.Sleep(300 * time.Millisecond) // about 15 sweeps while the relay waits
	close(gated.gate)
	e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) >= 1 })
	deadline := time.Now().Add(5 * time.Second)
	for pendingCount(t, e.coll) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the event is still pending after its publish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	gated.mu.Lock()
	defer gated.mu.Unlock()
	if gated.seen[ev.ID] != 1 {
		t.Errorf("event handed to the publisher %d times, want once", gated.seen[ev.ID])
	}
}

// A sweep reads every document, so it runs every SweepInterval only while
// events may have been left behind (here: a failed relay publish), and
// otherwise every IdleSweepInterval.
func TestSweepRunsOftenOnlyWhenSomethingFailed(t *testing.T) {
	e := newEnv(t)
	flaky := &flakyPublisher{next: e.pub}
	ob := New(Config{Collection: e.coll, Publisher: flaky, SweepInterval: 20 * time.Millisecond,
		IdleSweepInterval: time.Hour, MinAge: time.Millisecond, Metrics: e.metrics})
	runOutbox(t, ob)
	time.Sleep(100 * time.Millisecond) // the start-up sweep found nothing

	// Written without telling the relay, as another replica that crashed
	// would leave it: nothing failed here, so no sweep comes for it.
	orphan := event(t, "score.changed", "O", 1)
	write(t, e.coll, "O", orphan)
	time.Sleep(500 * time.Millisecond) // 25 sweep intervals
	if n := pendingCount(t, e.coll); n != 1 {
		t.Fatalf("%d events pending, want the orphan still there (no sweep while nothing failed)", n)
	}

	// A relay publish fails: sweeps resume and publish both.
	flaky.down.Store(true)
	failed := event(t, "score.changed", "F", 1)
	write(t, e.coll, "F", failed)
	ob.Notify("F", failed)
	for flaky.calls.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	flaky.down.Store(false)
	got := e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) >= 2 })
	ids := map[string]bool{}
	for _, ev := range got {
		ids[ev.ID] = true
	}
	if !ids[orphan.ID] || !ids[failed.ID] {
		t.Fatalf("received %v, want the orphan %s and the failed %s", ids, orphan.ID, failed.ID)
	}
}

// waitHeld waits until the relay has published the document's events and
// holds them for ClearWith.
func waitHeld(t *testing.T, ob *Outbox, id any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ob.mu.Lock()
		h := ob.held[docKey(id)]
		ob.mu.Unlock()
		if h != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay holds no published events of %v", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// With ClearDelay, the next write of a document clears its published events
// (ClearWith); a write that does not match leaves them to the relay, which
// also clears whatever no write came for. Nothing is published twice.
func TestClearWithTheNextWrite(t *testing.T) {
	e := newEnv(t)
	pub := &countingPublisher{next: e.pub, seen: map[string]int{}}
	ob := New(Config{Collection: e.coll, Publisher: pub, SweepInterval: 20 * time.Millisecond, MinAge: time.Hour,
		ClearDelay: 300 * time.Millisecond, Metrics: e.metrics})
	runOutbox(t, ob)
	c := context.Background()
	outboxOf := func(id string) int {
		var d pendingDoc
		if err := e.coll.FindOne(c, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return len(d.Outbox)
	}

	// A: the next write clears the event.
	a := event(t, "score.changed", "A", 1)
	write(t, e.coll, "A", a)
	ob.Notify("A", a)
	waitHeld(t, ob, "A")
	update, cleared := ob.ClearWith("A", bson.D{{Key: "$set", Value: bson.D{{Key: "score", Value: 5}}}})
	res, err := e.coll.UpdateOne(c, bson.D{{Key: "_id", Value: "A"}}, update)
	if err != nil {
		t.Fatal(err)
	}
	cleared(res.MatchedCount == 1)
	if n := outboxOf("A"); n != 0 {
		t.Errorf("A's outbox holds %d events after the write that clears it", n)
	}
	if again, _ := ob.ClearWith("A", bson.D{}); len(again) != 0 {
		t.Errorf("with nothing held, ClearWith changed the update: %v", again)
	}

	// B: the write does not match; the relay clears the event itself.
	b := event(t, "score.changed", "B", 1)
	write(t, e.coll, "B", b)
	ob.Notify("B", b)
	waitHeld(t, ob, "B")
	update, cleared = ob.ClearWith("B", bson.D{{Key: "$set", Value: bson.D{{Key: "score", Value: 5}}}})
	res, err = e.coll.UpdateOne(c, bson.D{{Key: "_id", Value: "B"}, {Key: "version", Value: 99}}, update)
	if err != nil {
		t.Fatal(err)
	}
	cleared(res.MatchedCount == 1)

	// C: no write comes; the relay clears it after ClearDelay.
	cc := event(t, "score.changed", "C", 1)
	write(t, e.coll, "C", cc)
	ob.Notify("C", cc)

	deadline := time.Now().Add(5 * time.Second)
	for outboxOf("B")+outboxOf("C") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outboxes of B and C still hold %d and %d events", outboxOf("B"), outboxOf("C"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.received(t, 10*time.Second, func(g []eventbus.Event) bool { return len(g) >= 3 })
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for _, ev := range []eventbus.Event{a, b, cc} {
		if pub.seen[ev.ID] != 1 {
			t.Errorf("event of %s published %d times, want once", ev.Subject, pub.seen[ev.ID])
		}
	}
}

// confirmGate sits between the relay and the real publisher: every publish
// goes to the broker at once, and its confirm reaches the relay only once
// the gate lets it (a slow confirm); nack makes the broker's answer to a
// call a nack (the publish is not sent).
type confirmGate struct {
	pub  *eventbus.Publisher
	gate chan struct{} // closed: confirms pass
	nack func(call int) bool

	mu          sync.Mutex
	calls       int
	seen        map[string]int // event id → publishes
	outstanding int            // published, confirm not yet handed to the relay
	maxOut      int
}

func newConfirmGate(pub *eventbus.Publisher) *confirmGate {
	return &confirmGate{pub: pub, gate: make(chan struct{}), seen: map[string]int{}, nack: func(int) bool { return false }}
}

func (g *confirmGate) install(ob *Outbox) { ob.publishAsync = g.publish }

func (g *confirmGate) publish(ctx context.Context, lane int, events []eventbus.Event) (func(context.Context) error, error) {
	g.mu.Lock()
	g.calls++
	nack := g.nack(g.calls)
	for _, ev := range events {
		g.seen[ev.ID]++
	}
	g.outstanding++
	g.maxOut = max(g.maxOut, g.outstanding)
	g.mu.Unlock()
	var pd *eventbus.Pending
	if !nack {
		var err error
		if pd, err = g.pub.PublishAsyncOn(ctx, lane, events...); err != nil {
			return nil, err
		}
	}
	var once sync.Once
	return func(ctx context.Context) error {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		once.Do(func() {
			g.mu.Lock()
			g.outstanding--
			g.mu.Unlock()
		})
		if nack {
			return eventbus.ErrNacked
		}
		return pd.Wait(ctx)
	}, nil
}

func (g *confirmGate) published(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen[id]
}

// outboxIDs lists the ids of the events stored in document id's outbox.
func outboxIDs(t *testing.T, coll *mongo.Collection, id string) []string {
	t.Helper()
	var d pendingDoc
	if err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, raw := range d.Outbox {
		var ev eventbus.Event
		if err := bson.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	slices.Sort(ids)
	return ids
}

func sortedIDs(evs ...eventbus.Event) []string {
	ids := eventIDs(evs)
	slices.Sort(ids)
	return ids
}

// The relay publishes the next batch while the confirms of earlier ones are
// outstanding, in order on one channel, at most RelayInFlight batches at
// once, and clears an event only once its own confirm came.
func TestRelayPublishesWhileConfirmsAreOutstanding(t *testing.T) {
	e := newEnv(t)
	ob := New(Config{Collection: e.coll, Publisher: e.pub, SweepInterval: time.Hour, MinAge: time.Hour, RelayWorkers: 1,
		RelayInFlight: 2, Metrics: e.metrics})
	g := newConfirmGate(e.pub)
	g.install(ob)
	runOutbox(t, ob)

	a1, a2, b1 := event(t, "person.created", "A", 1), event(t, "person.updated", "A", 2), event(t, "person.created", "B", 1)
	write(t, e.coll, "A", a1)
	ob.Notify("A", a1)
	got := e.received(t, 5*time.Second, func(g []eventbus.Event) bool { return len(g) == 1 })
	// a1's confirm is held back: the next batch goes out all the same,
	// after a1 on the broker.
	write(t, e.coll, "A", a2)
	ob.Notify("A", a2)
	got = append(got, e.received(t, 5*time.Second, func(g []eventbus.Event) bool { return len(g) == 1 })...)
	if got[0].ID != a1.ID || got[1].ID != a2.ID {
		t.Fatalf("on the broker: %v, want a1 then a2", eventIDs(got))
	}
	// Two batches await their confirms: a third stays unpublished.
	write(t, e.coll, "B", b1)
	ob.Notify("B", b1)
	time.Sleep(200 * time.Millisecond) // room for a relay that ignored the bound
	if _, ok, err := e.raw.Get(e.tap, false); err != nil || ok {
		t.Errorf("a third batch was published while two awaited their confirms (RelayInFlight 2); err %v", err)
	}
	// Nothing was cleared before its confirm.
	if ids := outboxIDs(t, e.coll, "A"); !slices.Equal(ids, sortedIDs(a1, a2)) {
		t.Errorf("A's outbox before any confirm: %v, want a1, a2", ids)
	}
	if ids := outboxIDs(t, e.coll, "B"); !slices.Equal(ids, sortedIDs(b1)) {
		t.Errorf("B's outbox before its publish: %v, want b1", ids)
	}

	close(g.gate)
	got = e.received(t, 5*time.Second, func(g []eventbus.Event) bool { return len(g) >= 1 })
	if len(got) != 1 || got[0].ID != b1.ID {
		t.Errorf("after the confirms the broker got %v, want b1", eventIDs(got))
	}
	deadline := time.Now().Add(5 * time.Second)
	for pendingCount(t, e.coll) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outbox not cleared after the confirms: %d pending", pendingCount(t, e.coll))
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.maxOut > 2 {
		t.Errorf("%d batches awaited their confirms at once, RelayInFlight is 2", g.maxOut)
	}
	for _, ev := range []eventbus.Event{a1, a2, b1} {
		if g.seen[ev.ID] != 1 {
			t.Errorf("%s v%d published %d times, want once", ev.Subject, ev.Version, g.seen[ev.ID])
		}
	}
}

// A batch the broker nacks while a later one is in flight stays in the
// outbox (the later one's confirm clears only its own events), and the next
// write of its document brings it along: nothing is lost, the later batch
// is not published again.
func TestRelayRepublishesANackedBatch(t *testing.T) {
	e := newEnv(t)
	ob := New(Config{Collection: e.coll, Publisher: e.pub, SweepInterval: time.Hour, MinAge: time.Hour, RelayWorkers: 1,
		Metrics: e.metrics})
	g := newConfirmGate(e.pub)
	g.nack = func(call int) bool { return call == 1 }
	g.install(ob)
	runOutbox(t, ob)

	a1, a2, a3 := event(t, "person.created", "A", 1), event(t, "person.updated", "A", 2), event(t, "person.updated", "A", 3)
	write(t, e.coll, "A", a1)
	ob.Notify("A", a1)
	// a1 is out (and will be nacked); a2 goes out while a1's answer is pending.
	for g.published(a1.ID) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	write(t, e.coll, "A", a2)
	ob.Notify("A", a2)
	e.received(t, 5*time.Second, func(got []eventbus.Event) bool { return len(got) == 1 && got[0].ID == a2.ID })
	close(g.gate)
	// a2 confirmed and cleared; a1 nacked and still stored.
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(outboxIDs(t, e.coll, "A"), sortedIDs(a1)) {
		if time.Now().After(deadline) {
			t.Fatalf("A's outbox after a1's nack and a2's confirm: %v, want a1 only", outboxIDs(t, e.coll, "A"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	write(t, e.coll, "A", a3)
	ob.Notify("A", a3)
	got := e.received(t, 5*time.Second, func(got []eventbus.Event) bool { return len(got) == 2 })
	if got[0].ID != a1.ID || got[1].ID != a3.ID {
		t.Errorf("after the nack the broker got %v, want a1 then a3", eventIDs(got))
	}
	deadline = time.Now().Add(5 * time.Second)
	for pendingCount(t, e.coll) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outbox not cleared: %v", outboxIDs(t, e.coll, "A"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := g.published(a2.ID); n != 1 {
		t.Errorf("a2 published %d times, want once", n)
	}
	if n := g.published(a1.ID); n != 2 {
		t.Errorf("a1 published %d times, want twice (nacked, then again)", n)
	}
}
