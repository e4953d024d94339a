package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/personscore/stack/measure"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Startup is one measured start of a binary.
type Startup struct {
	ReadyMS float64 `json:"ready_ms"` // process start → ready
	RSSMB   float64 `json:"rss_mb"`   // VmRSS when it became ready
}

// TimeStartup starts binary with env and returns how long it took until ready
// answered true (polled every 2 ms), then stops it with SIGTERM.
func TimeStartup(binary string, env []string, ready func(ctx context.Context) bool, timeout time.Duration) (Startup, error) {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Startup{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if ready(ctx) {
			d := time.Since(start)
			p, _ := measure.ReadProc(cmd.Process.Pid)
			return Startup{ReadyMS: measure.MS(d), RSSMB: p.RSSMB}, nil
		}
		select {
		case err := <-exited:
			exited <- err
			return Startup{}, fmt.Errorf("%s exited while starting: %v", binary, err)
		case <-ctx.Done():
			return Startup{}, fmt.Errorf("%s not ready after %s", binary, timeout)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// HTTPReady answers whether url returns 200.
func HTTPReady(url string) func(ctx context.Context) bool {
	client := &http.Client{Timeout: time.Second}
	return func(ctx context.Context) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// MongoReady answers whether a MongoDB-wire server at addr accepts a TCP
// connection and then answers a ping.
func MongoReady(addr string) func(ctx context.Context) bool {
	return func(ctx context.Context) bool {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		conn.Close()
		c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + addr + "/?directConnection=true").
			SetServerSelectionTimeout(2 * time.Second))
		if err != nil {
			return false
		}
		defer c.Disconnect(context.Background())
		return c.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err() == nil
	}
}
