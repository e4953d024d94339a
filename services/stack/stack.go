// Package stack runs the whole system on one machine as separate processes, as
// a cluster would: the embedded MongoDB-wire server, person and score. It backs
// `make run`, the end-to-end tests and the reliability suite.
package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Names of the processes a stack runs.
const (
	Mongo  = "localmongo"
	Person = "person"
	Score  = "score"
)

// Config says where the binaries are and how the processes are wired.
type Config struct {
	BinDir  string // holds localmongo, person and score
	DataDir string // the embedded server's data
	AMQPURL string // comma-separated broker URLs
	// MongoURI, when set, points the services at an existing MongoDB and no
	// embedded server is started.
	MongoURI   string
	MongoAddr  string // default 127.0.0.1:27017
	PersonAddr string // default 127.0.0.1:8080
	ScoreAddr  string // default 127.0.0.1:8081
	// Env is added to every service's environment (e.g. LOG_LEVEL=debug).
	Env []string
	// ServiceEnv adds variables to one process's environment, after Env (the
	// last value of a variable wins), keyed by Mongo, Person or Score: e.g. a
	// per-service AMQP_URL, or LOCALMONGO_POSTGRESQL_URL for the store.
	ServiceEnv map[string][]string
	// ServiceMongoURI, when set, is the URI person and score are given instead
	// of MongoURI(), e.g. a fault-injecting proxy in front of the embedded server.
	ServiceMongoURI string
	// Output receives every process's output, each line prefixed with its name.
	Output io.Writer
	// ReadyTimeout bounds the wait for a process to become ready (default 30s).
	ReadyTimeout time.Duration
}

// Stack is a running system.
type Stack struct {
	cfg   Config
	mu    sync.Mutex
	procs map[string]*exec.Cmd
	exits map[string]chan error
	// replicas maps the name of an extra instance to its binary and HTTP address.
	replicas map[string]replica
	logs     *syncBuffer // set by the test helpers
}

type replica struct{ of, addr string }

// ErrNoBroker means RabbitMQ could not be reached.
var ErrNoBroker = errors.New("RabbitMQ is not reachable")

// CheckBroker dials the first reachable broker URL within timeout.
func CheckBroker(urls string, timeout time.Duration) error {
	var errs []error
	for _, u := range strings.Split(urls, ",") {
		conn, err := amqp.DialConfig(strings.TrimSpace(u), amqp.Config{Dial: amqp.DefaultDial(timeout)})
		if err == nil {
			return conn.Close()
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w at %s: %v", ErrNoBroker, redact(urls), errors.Join(errs...))
}

// Start starts every process and returns once all are ready.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.MongoAddr == "" {
		cfg.MongoAddr = "127.0.0.1:27017"
	}
	if cfg.PersonAddr == "" {
		cfg.PersonAddr = "127.0.0.1:8080"
	}
	if cfg.ScoreAddr == "" {
		cfg.ScoreAddr = "127.0.0.1:8081"
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	s := &Stack{cfg: cfg, procs: map[string]*exec.Cmd{}, exits: map[string]chan error{}, replicas: map[string]replica{}}
	names := []string{Person, Score}
	if cfg.MongoURI == "" {
		names = append([]string{Mongo}, names...)
	}
	for _, name := range names {
		if err := s.Start(ctx, name); err != nil {
			_ = s.Stop(5 * time.Second)
			return nil, err
		}
	}
	return s, nil
}

// MongoURI is the URI the services use.
func (s *Stack) MongoURI() string {
	if s.cfg.MongoURI != "" {
		return s.cfg.MongoURI
	}
	return "mongodb://" + s.cfg.MongoAddr + "/"
}

// URL is the base HTTP URL of person or score (or of a replica started with
// StartReplica).
func (s *Stack) URL(name string) string {
	s.mu.Lock()
	r, ok := s.replicas[name]
	s.mu.Unlock()
	switch {
	case ok:
		return "http://" + r.addr
	case name == Score:
		return "http://" + s.cfg.ScoreAddr
	}
	return "http://" + s.cfg.PersonAddr
}

// Logs returns the output of every process so far when the stack was started
// by StartForTest or StartConfigForTest, else "".
func (s *Stack) Logs() string {
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
}

// kind is the binary a process name runs: itself, or what a replica is of.
func (s *Stack) kind(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.replicas[name]; ok {
		return r.of
	}
	return name
}

func (s *Stack) command(name string) *exec.Cmd {
	kind := s.kind(name)
	cmd := exec.Command(filepath.Join(s.cfg.BinDir, kind))
	mongoURI := s.MongoURI()
	if kind != Mongo && s.cfg.ServiceMongoURI != "" {
		mongoURI = s.cfg.ServiceMongoURI
	}
	env := append(os.Environ(), "AMQP_URL="+s.cfg.AMQPURL, "MONGO_URI="+mongoURI)
	switch kind {
	case Mongo:
		env = append(env, "LOCALMONGO_ADDR="+s.cfg.MongoAddr, "LOCALMONGO_DIR="+s.cfg.DataDir)
	default:
		env = append(env, "HTTP_ADDR="+strings.TrimPrefix(s.URL(name), "http://"))
	}
	if kind != Mongo {
		env = append(env, s.cfg.Env...)
	}
	env = append(env, s.cfg.ServiceEnv[kind]...)
	cmd.Env = env
	// Each process gets its own process group so Ctrl-C on `make run` reaches
	// only the runner, which then stops the children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// StartReplica starts one more instance of person or score, named name and
// serving HTTP on addr, wired like the first one (same store, broker and
// queues: replicas of one service compete for its queue). Use URL, Kill and
// Start with its name; Stop stops it too.
func (s *Stack) StartReplica(ctx context.Context, of, name, addr string) error {
	if of != Person && of != Score {
		return fmt.Errorf("stack: only person and score have replicas, not %q", of)
	}
	s.mu.Lock()
	s.replicas[name] = replica{of: of, addr: addr}
	s.mu.Unlock()
	return s.Start(ctx, name)
}

// Start (re)starts one process and waits until it is ready.
func (s *Stack) Start(ctx context.Context, name string) error {
	// A server already answering on the address would look ready at once.
	if addr := s.addr(name); addr != "" {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return fmt.Errorf("start %s: %s is already in use (another instance running?)", name, addr)
		}
	}
	cmd := s.command(name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(s.cfg.Output, "[%s] %s\n", name, sc.Text())
		}
		exited <- cmd.Wait()
	}()
	s.mu.Lock()
	s.procs[name], s.exits[name] = cmd, exited
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	for {
		if s.ready(ctx, name) {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("%s exited while starting: %v", name, err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s", name, s.cfg.ReadyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Stack) addr(name string) string {
	s.mu.Lock()
	r, isReplica := s.replicas[name]
	s.mu.Unlock()
	if isReplica {
		return r.addr
	}
	switch name {
	case Mongo:
		return s.cfg.MongoAddr
	case Person:
		return s.cfg.PersonAddr
	case Score:
		return s.cfg.ScoreAddr
	}
	return ""
}

func (s *Stack) ready(ctx context.Context, name string) bool {
	if s.kind(name) == Mongo {
		c, err := net.DialTimeout("tcp", s.cfg.MongoAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL(name)+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Kill sends sig to one process and waits for it to exit.
func (s *Stack) Kill(name string, sig syscall.Signal, timeout time.Duration) error {
	s.mu.Lock()
	cmd, exited := s.procs[name], s.exits[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s did not exit within %s after %s; killed", name, timeout, sig)
	}
}

// Running reports whether a process is running.
func (s *Stack) Running(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.procs[name]
	return ok
}

// Stop stops the services with SIGTERM (they drain and flush) and then the
// store, each within timeout.
func (s *Stack) Stop(timeout time.Duration) error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	names := []string{Person, Score}
	s.mu.Lock()
	for name := range s.replicas {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Kill(name, syscall.SIGTERM, timeout); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := s.Kill(Mongo, syscall.SIGTERM, timeout); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func redact(urls string) string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				u = u[:scheme+3] + "***" + u[at:]
			}
		}
		out = append(out, strings.TrimSpace(u))
	}
	return strings.Join(out, ",")
}
