package main

import "path/filepath"

// Addresses: all from 198.18.0.0/15 (reserved for network testing).
const (
	nodeName     = "personscore-node"
	nodeIP       = "198.18.255.1" // added to lo; API server, kubelet and node address
	podCIDR      = "198.18.0.0/24"
	podGateway   = "198.18.0.1"
	clusterCIDR  = "198.18.0.0/17"
	serviceCIDR  = "198.19.0.0/16"
	apiServiceIP = "198.19.0.1" // the first address of serviceCIDR: Service "kubernetes"
	dnsIP        = "198.19.0.10"
	bridgeName   = "psbr0"
	apiPort      = "6443"
	etcdClient   = "127.0.0.1:23790"
	etcdPeer     = "127.0.0.1:23800"
	namespace    = "personscore"
	pauseImage   = "personscore.local/pause:1"
)

// node holds the paths of one cluster.
type node struct {
	root  string // repository
	bin   string // built binaries
	state string // everything the cluster writes, removed by down
	run   string // runtime sockets (tmpfs)
}

func newNode(root, state string) *node {
	return &node{root: root, bin: filepath.Join(root, "bin"), state: state, run: "/run/personscore-node"}
}

func (n *node) path(elem ...string) string {
	return filepath.Join(append([]string{n.state}, elem...)...)
}

func (n *node) pki(name string) string { return n.path("pki", name) }

func (n *node) kubeconfig(user string) string { return n.path("kubeconfig", user+".kubeconfig") }

// AdminKubeconfig is the kubeconfig for users and tests.
func (n *node) adminKubeconfig() string { return n.kubeconfig("admin") }

func (n *node) containerdSock() string { return filepath.Join(n.run, "containerd", "containerd.sock") }

func (n *node) apiURL() string { return "https://" + nodeIP + ":" + apiPort }
