// Command local-registry serves an OCI distribution registry on a loopback address
// (go-containerregistry's registry, blobs on disk). skaffold needs one to learn the digest
// of an image it did not build through Docker: the local-node profile's custom build
// pushes each image here and imports it into the node's containerd (`make dev` starts and
// stops this registry).
//
//	local-registry -addr 127.0.0.1:5000 -dir bin/.registry
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "listen address (keep it on loopback)")
	dir := flag.String("dir", "", "blob directory (empty: in memory)")
	flag.Parse()
	opts := []registry.Option{registry.Logger(log.New(os.Stderr, "local-registry: ", log.LstdFlags))}
	if *dir != "" {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)))
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "local-registry:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "local-registry: serving on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
