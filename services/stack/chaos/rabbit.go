package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitBin is where the installed RabbitMQ keeps its scripts. The scripts are
// called directly (not through the /usr/sbin wrappers, which switch to the
// rabbitmq user) so that the nodes run as the test's user in its temp dirs.
var RabbitBin = "/usr/lib/rabbitmq/bin"

// Node is a private RabbitMQ node started by a test: its own name, ports,
// data, logs and Erlang cookie, so that nothing it does can touch the shared
// broker (rabbit@localhost) the other tests use.
type Node struct {
	Name     string // e.g. chaos1@localhost
	Port     int    // AMQP port on 127.0.0.1
	DistPort int    // Erlang distribution port
	dir      string
	home     string // HOME with the .erlang.cookie shared by the nodes of a Fleet
	env      []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Fleet is a set of private nodes sharing one Erlang cookie.
type Fleet struct {
	Dir   string
	home  string
	Nodes []*Node
}

// NewFleet prepares n nodes named <prefix>1@localhost ... in dir (nothing is
// started yet).
func NewFleet(dir, prefix string, n int) (*Fleet, error) {
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	cookie := strings.ToUpper(hex.EncodeToString(b))
	if err := os.WriteFile(filepath.Join(home, ".erlang.cookie"), []byte(cookie), 0o400); err != nil {
		return nil, err
	}
	f := &Fleet{Dir: dir, home: home}
	for i := 1; i <= n; i++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("%s%d", prefix, i)
		nd := &Node{Name: name + "@localhost", Port: ports[0], DistPort: ports[1], dir: filepath.Join(dir, name), home: home}
		if err := nd.prepare(); err != nil {
			return nil, err
		}
		f.Nodes = append(f.Nodes, nd)
	}
	return f, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (n *Node) prepare() error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\nlog.file.level = info\n", n.Port)
	files := map[string]string{
		"rabbitmq.conf":   conf,
		"enabled_plugins": "[].\n",
		// An empty env file: the system's /etc/rabbitmq/rabbitmq-env.conf names
		// the shared node and must not apply to ours.
		"rabbitmq-env.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	n.env = append(os.Environ(),
		"HOME="+n.home,
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.dir, "rabbitmq-env.conf"),
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.Port),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.DistPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_FLAGS=-kernel inet_dist_use_interface {127,0,0,1}",
	)
	return nil
}

// URL is the AMQP URL of vhost on this node.
func (n *Node) URL(vhost string) string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%s", n.Port, vhost)
}

// Start starts the node's Erlang VM and RabbitMQ and waits until it accepts
// AMQP connections.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.cmd != nil {
		n.mu.Unlock()
		return fmt.Errorf("%s is already running", n.Name)
	}
	// The node runs under a small shell that also watches its stdin, a pipe
	// whose write end only this process holds: if the test process dies
	// without stopping the node (a panic, a -timeout), the pipe closes and the
	// shell takes the node down instead of leaving it running.
	// (A background job's stdin is /dev/null unless redirected explicitly,
	// hence fd 3.)
	const script = `exec 3<&0
"$0" </dev/null 3<&- &
pid=$!
( cat <&3 >/dev/null; kill -TERM "$pid" 2>/dev/null; sleep 20; kill -KILL "$pid" 2>/dev/null ) &
exec 3<&-
wait "$pid"`
	cmd := exec.Command("/bin/sh", "-c", script, filepath.Join(RabbitBin, "rabbitmq-server"))
	cmd.Env = n.env
	cmd.Dir = n.dir
	out, err := os.Create(filepath.Join(n.dir, "console.log"))
	if err != nil {
		n.mu.Unlock()
		return err
	}
	watchR, watchW, err := os.Pipe()
	if err != nil {
		n.mu.Unlock()
		out.Close()
		return err
	}
	cmd.Stdin = watchR
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		out.Close()
		watchR.Close()
		watchW.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	watchR.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); watchW.Close(); close(exited) }()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	return n.WaitReady(ctx)
}

// WaitReady waits until the node accepts AMQP connections (its app runs).
func (n *Node) WaitReady(ctx context.Context) error {
	for {
		if n.Ready() {
			return nil
		}
		n.mu.Lock()
		exited := n.exited
		n.mu.Unlock()
		select {
		case <-exited:
			return fmt.Errorf("%s exited while starting; %s ends with:\n%s", n.Name, filepath.Join(n.dir, "console.log"), n.consoleTail(15))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", n.Name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// consoleTail returns the last lines of the node's console log.
func (n *Node) consoleTail(lines int) string {
	b, err := os.ReadFile(filepath.Join(n.dir, "console.log"))
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// Ready reports whether the node answers AMQP now.
func (n *Node) Ready() bool {
	c, err := amqp.DialConfig(n.URL(""), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Ctl runs rabbitmqctl (or another CLI tool of RabbitBin, when args[0] is
// "queues:..." style is not needed) against this node.
func (n *Node) Ctl(ctx context.Context, args ...string) (string, error) {
	return n.cli(ctx, "rabbitmqctl", args...)
}

func (n *Node) cli(ctx context.Context, tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(RabbitBin, tool), append([]string{"-n", n.Name}, args...)...)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s -n %s %s: %v: %s", tool, n.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// StopApp stops the RabbitMQ application (the Erlang VM keeps running): every
// client connection is closed and the AMQP port stops listening.
func (n *Node) StopApp(ctx context.Context) error {
	_, err := n.Ctl(ctx, "stop_app")
	return err
}

// StartApp starts the application again and waits until it accepts AMQP.
func (n *Node) StartApp(ctx context.Context) error {
	if _, err := n.Ctl(ctx, "start_app"); err != nil {
		return err
	}
	return n.WaitReady(ctx)
}

// Running reports whether the node's VM process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Kill kills the node's whole process group with sig and waits for it to exit
// (SIGKILL after timeout).
func (n *Node) Kill(sig syscall.Signal, timeout time.Duration) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	// The VM may have left its epmd registration and child processes behind
	// only for an instant; give epmd a moment to notice.
	time.Sleep(200 * time.Millisecond)
}

// Stop stops the node cleanly (rabbitmqctl stop), killing it if that fails.
func (n *Node) Stop(ctx context.Context) {
	if !n.Running() {
		n.Kill(syscall.SIGKILL, time.Second) // forgets a VM that exited by itself
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	_, _ = n.Ctl(ctx, "stop")
	n.Kill(syscall.SIGTERM, 20*time.Second)
}

// StartTries bounds how often StartAll starts one node.
const StartTries = 3

// StartAll starts the fleet's nodes concurrently. A node whose VM exits while
// it boots (a port taken between choosing and binding it, a busy machine) is
// started again on fresh ports and wiped data, up to StartTries times; logf
// is told why each failed try failed. Tries tells how many starts each node took.
func (f *Fleet) StartAll(ctx context.Context, logf func(format string, args ...any)) (tries map[string]int, err error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	tries = map[string]int{}
	errs := make([]error, len(f.Nodes))
	for i, n := range f.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := 1; try <= StartTries; try++ {
				mu.Lock()
				tries[n.Name] = try
				mu.Unlock()
				if errs[i] = n.Start(ctx); errs[i] == nil || ctx.Err() != nil {
					return
				}
				logf("starting %s, try %d of %d failed: %v", n.Name, try, StartTries, errs[i])
				n.Kill(syscall.SIGKILL, 10*time.Second)
				if errs[i] = n.renew(); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return tries, errors.Join(errs...)
}

// renew gives a stopped node fresh ports and empty data, keeping its name.
func (n *Node) renew() error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(n.dir, "mnesia")); err != nil {
		return err
	}
	n.Port, n.DistPort = ports[0], ports[1]
	return n.prepare()
}

// StopAll stops every node.
func (f *Fleet) StopAll() {
	var wg sync.WaitGroup
	for _, n := range f.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop(context.Background()) }()
	}
	wg.Wait()
}

// ClusterTries bounds how often Cluster tries to join one node.
const ClusterTries = 5

// Cluster makes the fleet one cluster around its first node and returns once
// every node's cluster_status lists every node running. Nodes that are running
// members already are left alone (so calling it on a formed cluster only
// checks it); the others join one at a time, since concurrent joins contend
// for the seed's mnesia schema. A join that fails (on a busy machine mnesia has
// crashed start_app right after join_cluster with a badmatch) is tried again
// from a fully reset node, up to ClusterTries times; logf is told why each
// failed try failed. Tries tells how many tries each joined node took.
func (f *Fleet) Cluster(ctx context.Context, logf func(format string, args ...any)) (tries map[string]int, err error) {
	seed := f.Nodes[0]
	tries = map[string]int{}
	for i, n := range f.Nodes[1:] {
		members := f.Nodes[:i+2]
		if f.holds(ctx, members) == nil {
			continue
		}
		var last error
		for try := 1; try <= ClusterTries; try++ {
			tries[n.Name] = try
			if last = f.join(ctx, seed, n, try > 1); last == nil {
				if last = f.waitHolds(ctx, members); last == nil {
					break
				}
			}
			logf("joining %s to %s, try %d of %d failed: %v", n.Name, seed.Name, try, ClusterTries, last)
			if ctx.Err() != nil {
				break
			}
		}
		if last != nil {
			return tries, fmt.Errorf("%s did not join %s's cluster in %d tries; last: %w", n.Name, seed.Name, tries[n.Name], last)
		}
	}
	return tries, f.waitHolds(ctx, f.Nodes)
}

// join joins n to seed's cluster: stop_app, reset, join_cluster, start_app.
// With hard (a retry), or when the node's VM is down, or reset fails, n is
// reset by force_reset or, failing that, by wiping its data and restarting
// its VM; seed then forgets the half-joined node.
func (f *Fleet) join(ctx context.Context, seed, n *Node, hard bool) error {
	reset := n.Running()
	if reset {
		if _, err := n.Ctl(ctx, "stop_app"); err != nil {
			reset = false
		}
	}
	if reset {
		_, err := n.Ctl(ctx, "reset")
		reset = err == nil
	}
	if hard || !reset {
		if err := n.forceReset(ctx); err != nil {
			return err
		}
		// Not an error when seed never knew n.
		_, _ = seed.Ctl(ctx, "forget_cluster_node", n.Name)
	}
	for _, args := range [][]string{{"join_cluster", seed.Name}, {"start_app"}} {
		if _, err := n.Ctl(ctx, args...); err != nil {
			return err
		}
	}
	return n.WaitReady(ctx)
}

// forceReset leaves n running with its app stopped and no cluster state:
// force_reset, or else a fresh VM on wiped data.
func (n *Node) forceReset(ctx context.Context) error {
	if n.Running() {
		if _, err := n.Ctl(ctx, "stop_app"); err == nil {
			if _, err := n.Ctl(ctx, "force_reset"); err == nil {
				return nil
			}
		}
	}
	n.Kill(syscall.SIGKILL, 10*time.Second)
	if err := os.RemoveAll(filepath.Join(n.dir, "mnesia")); err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		return err
	}
	_, err := n.Ctl(ctx, "stop_app")
	return err
}

// waitHolds waits, up to two minutes, until members form a cluster.
func (f *Fleet) waitHolds(ctx context.Context, members []*Node) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := f.holds(ctx, members)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// holds checks that every one of members, asked by cluster_status, lists all
// of them as running nodes.
func (f *Fleet) holds(ctx context.Context, members []*Node) error {
	for _, n := range members {
		if !n.Running() {
			return fmt.Errorf("%s is not running", n.Name)
		}
		out, err := n.Ctl(ctx, "cluster_status", "--formatter", "json")
		if err != nil {
			return err
		}
		var st struct {
			Running []string `json:"running_nodes"`
		}
		if err := json.Unmarshal([]byte(jsonPart(out)), &st); err != nil {
			return fmt.Errorf("cluster_status of %s: %v: %s", n.Name, err, out)
		}
		for _, m := range members {
			if !slices.Contains(st.Running, m.Name) {
				return fmt.Errorf("%s sees running nodes %v, without %s", n.Name, st.Running, m.Name)
			}
		}
	}
	return nil
}

// jsonPart drops anything a CLI printed before its JSON output.
func jsonPart(out string) string {
	if i := strings.IndexAny(out, "[{"); i > 0 {
		return out[i:]
	}
	return out
}

// AddVhost creates a vhost on the node (and so on its cluster) with full
// permissions for guest.
func (n *Node) AddVhost(ctx context.Context, name string) error {
	if _, err := n.Ctl(ctx, "add_vhost", name); err != nil {
		return err
	}
	_, err := n.Ctl(ctx, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
	return err
}

// QueueInfo is what list_queues says of one queue.
type QueueInfo struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Leader   string   `json:"leader"`
	Members  []string `json:"members"`
	Online   []string `json:"online"`
	Messages int      `json:"messages"`
}

// Queues lists the queues of vhost with their quorum leader and members.
func (n *Node) Queues(ctx context.Context, vhost string) ([]QueueInfo, error) {
	out, err := n.Ctl(ctx, "list_queues", "-p", vhost, "name", "type", "leader", "members", "online", "messages", "--formatter", "json")
	if err != nil {
		return nil, err
	}
	var qs []QueueInfo
	if err := json.Unmarshal([]byte(jsonPart(out)), &qs); err != nil {
		return nil, fmt.Errorf("list_queues: %v: %s", err, out)
	}
	return qs, nil
}

// ConnectionNodes maps the client-provided connection name (person,
// score...) to the nodes of the fleet its connections are on, asking via.
func (f *Fleet) ConnectionNodes(ctx context.Context, via *Node) (map[string][]string, error) {
	out, err := via.Ctl(ctx, "list_connections", "port", "client_properties", "--formatter", "json")
	if err != nil {
		return nil, err
	}
	var conns []struct {
		Port  int `json:"port"`
		Props any `json:"client_properties"`
	}
	if err := json.Unmarshal([]byte(jsonPart(out)), &conns); err != nil {
		return nil, fmt.Errorf("list_connections: %v: %s", err, out)
	}
	res := map[string][]string{}
	for _, c := range conns {
		name := connectionName(c.Props)
		for _, n := range f.Nodes {
			if n.Port == c.Port { // the server port names the node
				res[name] = append(res[name], n.Name)
			}
		}
	}
	return res, nil
}

// connectionName digs connection_name out of client_properties, which the CLI
// renders as a list of [key, type, value] triples or as an object.
func connectionName(props any) string {
	switch p := props.(type) {
	case map[string]any:
		if s, ok := p["connection_name"].(string); ok {
			return s
		}
	case []any:
		for _, e := range p {
			if t, ok := e.([]any); ok && len(t) == 3 {
				if k, _ := t[0].(string); k == "connection_name" {
					s, _ := t[2].(string)
					return s
				}
			}
		}
	}
	return ""
}
