// Command node runs a real single-node Kubernetes cluster on this machine from binaries
// built by k8s/hack/build-control-plane.sh (bin/): etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd + runc + CNI bridge, kubelet and
// kube-proxy as host processes; CoreDNS, metrics-server, Traefik (127.0.0.1:80 and :81)
// and static volumes (StorageClass "standard") as add-ons; then both charts.
//
//	node up      start (or complete) the cluster, install the charts, wait until Ready
//	node down    stop every process by PID and undo every host change, then verify
//	node status  print what runs
//
// Every host change is recorded in the state directory before it is made, so `down`
// restores the machine even after a failed or interrupted `up`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	root := flag.String("root", ".", "repository root (bin/, charts/, payloads/)")
	state := flag.String("state", "/var/lib/personscore-node", "state directory (certificates, etcd, containerd, kubelet, logs)")
	charts := flag.Bool("charts", true, "up: install both charts after the add-ons")
	addons := flag.Bool("addons", true, "up: apply the add-ons (CoreDNS, metrics-server, Traefik, storage); false = the bare node, no charts")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: node [flags] up|down|status\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		fatal(err)
	}
	n := newNode(abs, *state)
	switch flag.Arg(0) {
	case "up":
		err = n.up(*addons, *addons && *charts)
	case "down":
		err = n.down()
	case "status":
		err = n.status()
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "node: %v\n", err)
	os.Exit(1)
}

var start = time.Now()

// step prints a progress line with the time since the command started.
func step(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}
