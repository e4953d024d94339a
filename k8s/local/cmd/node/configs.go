package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeConfigs writes the containerd, CNI, kubelet and kube-proxy configurations.
func (n *node) writeConfigs() error {
	files := map[string]string{
		n.path("containerd.toml"): fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
# NRI would create /run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q

[plugins.'io.containerd.cri.v1.runtime']
  # These machines lack CAP_SYS_RESOURCE: without this runc fails to set the -998 the
  # kubelet asks for pod sandboxes and no pod starts.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory instead of /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[6]q
`, n.path("containerd"), filepath.Join(n.run, "containerd"), n.containerdSock(), n.containerdSock()+".ttrpc", pauseImage, n.path("cni", "net.d")),

		n.path("cni", "net.d", "10-personscore.conflist"): fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "personscore",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %[1]q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %[2]q, "gateway": %[3]q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %[4]q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridgeName, podCIDR, podGateway, n.path("cni", "ipam")),

		n.path("kubelet.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 on these machines: the kubelet refuses it by default since 1.35.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%[1]s
podCIDR: %[2]s
clusterDNS: [%[3]s]
clusterDomain: cluster.local
address: %[4]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
podLogsDir: %[5]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[6]s}
authorization:
  mode: Webhook
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%%
  imagefs.available: 2%%
  nodefs.inodesFree: 2%%
imageGCHighThresholdPercent: 100
serializeImagePulls: false
`, n.containerdSock(), podCIDR, dnsIP, nodeIP, n.path("pod-logs"), n.pki("ca.crt")),

		n.path("kube-proxy.yaml"): fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
mode: iptables
clusterCIDR: %[2]s
hostnameOverride: %[3]s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the node address: nothing published on this machine's interfaces.
nodePortAddresses: ["%[4]s/32"]
iptables:
  localhostNodePorts: false
# Leave the conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, n.kubeconfig("kube-proxy"), clusterCIDR, nodeName, nodeIP),
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		// Unchanged files are left alone: kube-proxy exits when its file is written.
		if old, err := os.ReadFile(path); err == nil && string(old) == content {
			continue
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, d := range []string{n.path("pod-logs"), n.path("kubelet"), n.path("cni", "ipam"), filepath.Join(n.run, "containerd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// args returns each component's command line.
func (n *node) args(name string) []string {
	switch name {
	case "etcd":
		return []string{
			"--name=personscore-node", "--data-dir=" + n.path("etcd"),
			"--listen-client-urls=http://" + etcdClient, "--advertise-client-urls=http://" + etcdClient,
			"--listen-peer-urls=http://" + etcdPeer, "--initial-advertise-peer-urls=http://" + etcdPeer,
			"--initial-cluster=personscore-node=http://" + etcdPeer,
		}
	case "kube-apiserver":
		return []string{
			"--etcd-servers=http://" + etcdClient,
			"--bind-address=" + nodeIP, "--advertise-address=" + nodeIP, "--secure-port=" + apiPort,
			"--tls-cert-file=" + n.pki("apiserver.crt"), "--tls-private-key-file=" + n.pki("apiserver.key"),
			"--client-ca-file=" + n.pki("ca.crt"),
			"--token-auth-file=" + n.pki("tokens.csv"),
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--service-cluster-ip-range=" + serviceCIDR,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + n.pki("sa.pub"),
			"--service-account-signing-key-file=" + n.pki("sa.key"),
			"--kubelet-client-certificate=" + n.pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + n.pki("apiserver-kubelet-client.key"),
			"--kubelet-preferred-address-types=InternalIP",
			"--requestheader-client-ca-file=" + n.pki("front-proxy-ca.crt"),
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + n.pki("front-proxy-client.crt"),
			"--proxy-client-key-file=" + n.pki("front-proxy-client.key"),
			// Aggregated APIs (metrics-server) are reached at their pod address.
			"--enable-aggregator-routing=true",
			"--allow-privileged=true",
			"--profiling=false",
		}
	case "kube-controller-manager":
		kc := n.kubeconfig("controller-manager")
		return []string{
			"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--bind-address=127.0.0.1", "--leader-elect=false",
			"--service-account-private-key-file=" + n.pki("sa.key"), "--root-ca-file=" + n.pki("ca.crt"),
			"--use-service-account-credentials=true",
			"--allocate-node-cidrs=false", "--cluster-cidr=" + clusterCIDR, "--service-cluster-ip-range=" + serviceCIDR,
			"--profiling=false",
		}
	case "kube-scheduler":
		kc := n.kubeconfig("scheduler")
		return []string{
			"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false",
		}
	case "containerd":
		return []string{"--config=" + n.path("containerd.toml")}
	case "kubelet":
		return []string{
			"--config=" + n.path("kubelet.yaml"), "--kubeconfig=" + n.kubeconfig("kubelet"),
			"--root-dir=" + n.path("kubelet"), "--cert-dir=" + n.path("kubelet", "pki"),
			"--hostname-override=" + nodeName, "--node-ip=" + nodeIP,
		}
	case "kube-proxy":
		return []string{"--config=" + n.path("kube-proxy.yaml")}
	}
	panic("unknown component " + name)
}
