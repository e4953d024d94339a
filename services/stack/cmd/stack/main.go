// Command stack runs the whole system locally in the foreground (`make run`):
// the embedded MongoDB-wire server, person on :8080 and score on :8081, each
// its own process. Ctrl-C stops them all cleanly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/personscore/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(1)
	}
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run() error {
	bin := flag.String("bin", "bin", "folder holding the localmongo, person and score binaries")
	data := flag.String("data", ".data/mongo", "folder for the embedded MongoDB-wire server's data")
	flag.Parse()

	cfg := stack.Config{
		BinDir:     *bin,
		DataDir:    *data,
		AMQPURL:    getenv("AMQP_URL", "amqp://guest:guest@localhost:5672/"),
		MongoURI:   os.Getenv("MONGO_URI"),
		PersonAddr: getenv("PERSON_ADDR", "127.0.0.1:8080"),
		ScoreAddr:  getenv("SCORE_ADDR", "127.0.0.1:8081"),
		Output:     os.Stdout,
	}
	if err := ensureBroker(cfg.AMQPURL); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("\nready: person %s, score %s, MongoDB %s\n", s.URL(stack.Person), s.URL(stack.Score), s.MongoURI())
	fmt.Println("try: curl -i -H 'Content-Type: application/json' http://localhost:8080/person --data @payloads/new_person.json")
	fmt.Println("stop with Ctrl-C")
	<-ctx.Done()
	fmt.Println("\nstopping…")
	return s.Stop(15 * time.Second)
}

// ensureBroker checks RabbitMQ; when it is down and a Docker engine answers, it
// starts the official image, otherwise it fails at once saying what to do.
func ensureBroker(url string) error {
	err := stack.CheckBroker(url, 3*time.Second)
	if err == nil {
		return nil
	}
	if exec.Command("docker", "info").Run() != nil {
		return fmt.Errorf("%v\n\nStart RabbitMQ, then run again:\n"+
			"  rabbitmq-server -detached                 # Debian/Ubuntu package rabbitmq-server\n"+
			"  docker run -d --name personscore-rabbitmq -p 5672:5672 rabbitmq:4-management   # with Docker\n"+
			"or point AMQP_URL at a running broker", err)
	}
	fmt.Println("RabbitMQ not reachable; starting the official rabbitmq:4-management image with Docker…")
	out, derr := exec.Command("docker", "run", "-d", "--rm", "--name", "personscore-rabbitmq", "-p", "5672:5672", "-p", "15672:15672", "rabbitmq:4-management").CombinedOutput()
	if derr != nil {
		return fmt.Errorf("docker run rabbitmq: %v: %s", derr, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if err = stack.CheckBroker(url, 2*time.Second); err == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return errors.Join(errors.New("RabbitMQ container did not become ready within 60s"), err)
}
