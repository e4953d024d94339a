package main

import (
	"crypto/tls"
	"crypto/x509"
	"embed"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// manifests are the add-ons (${NAME} placeholders filled by manifestVars).
//
//go:embed manifests/*.yaml
var manifests embed.FS

// volumes is how many static PersistentVolumes of StorageClass "standard" exist.
const volumes = 12

// traefikPingPort is Traefik's health entrypoint on 127.0.0.1.
const traefikPingPort = "10380"

func (n *node) up(withAddons, installCharts bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("node up needs root (it runs containerd, the kubelet and kube-proxy)")
	}
	if err := n.preflight(withAddons); err != nil {
		return err
	}
	if err := n.recordHost(); err != nil {
		return err
	}
	if err := n.addNodeAddress(); err != nil {
		return err
	}
	if err := n.writePKI(); err != nil {
		return err
	}
	if err := n.writeConfigs(); err != nil {
		return err
	}
	step("configuration in %s", n.state)

	if err := n.startProcess("etcd", n.args("etcd")...); err != nil {
		return err
	}
	if err := waitFor("etcd healthy", 2*time.Minute, func() (bool, error) {
		return httpOK(http.DefaultClient, "http://"+etcdClient+"/health")
	}); err != nil {
		return n.withLog("etcd", err)
	}
	if err := n.startProcess("kube-apiserver", n.args("kube-apiserver")...); err != nil {
		return err
	}
	// Only a 200 from /readyz means the RBAC bootstrap is done; the controller-manager
	// exits if it starts earlier.
	api, err := n.apiClient()
	if err != nil {
		return err
	}
	if err := waitFor("kube-apiserver /readyz", 5*time.Minute, func() (bool, error) {
		return httpOK(api, n.apiURL()+"/readyz")
	}); err != nil {
		return n.withLog("kube-apiserver", err)
	}
	step("kube-apiserver ready at %s", n.apiURL())
	for _, c := range []string{"kube-controller-manager", "kube-scheduler", "containerd"} {
		if err := n.startProcess(c, n.args(c)...); err != nil {
			return err
		}
	}
	if err := waitFor("containerd socket", 2*time.Minute, func() (bool, error) {
		_, err := n.ctr("version")
		return err == nil, err
	}); err != nil {
		return n.withLog("containerd", err)
	}
	// The sandbox image must be there before the kubelet starts pods.
	for _, a := range n.addonImages() {
		if !withAddons && a.binary != "pause" {
			continue
		}
		if err := n.packAddonImage(a); err != nil {
			return err
		}
		if err := n.importImage(n.addonImageTar(a)); err != nil {
			return err
		}
	}
	for _, c := range []string{"kubelet", "kube-proxy"} {
		if err := n.startProcess(c, n.args(c)...); err != nil {
			return err
		}
	}
	if err := waitFor("node "+nodeName+" Ready", 5*time.Minute, func() (bool, error) {
		out, err := n.kubectl("get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return strings.TrimSpace(out) == "True", err
	}); err != nil {
		return n.withLog("kubelet", err)
	}
	step("node %s Ready", nodeName)
	if !withAddons {
		step("bare node up (no add-ons): export KUBECONFIG=%s", n.adminKubeconfig())
		return n.printMemory()
	}

	if err := n.applyAddons(); err != nil {
		return err
	}
	for _, d := range []string{"kube-system/coredns", "kube-system/metrics-server", "traefik/traefik"} {
		ns, name, _ := strings.Cut(d, "/")
		if _, err := n.kubectl("-n", ns, "rollout", "status", "deployment/"+name, "--timeout=5m"); err != nil {
			return err
		}
		step("%s available", d)
	}
	if err := waitFor("metrics API", 5*time.Minute, func() (bool, error) {
		out, err := n.kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
		return strings.TrimSpace(out) == "True", err
	}); err != nil {
		return err
	}
	step("metrics API available")
	if installCharts {
		if err := n.installCharts(); err != nil {
			return err
		}
	}
	step("cluster up: export KUBECONFIG=%s", n.adminKubeconfig())
	return n.printMemory()
}

// preflight checks the built binaries and installs missing Debian packages.
func (n *node) preflight(withAddons bool) error {
	var missing []string
	need := append(append([]string{}, components...), "ctr", "containerd-shim-runc-v2", "pause")
	if withAddons {
		need = append(need, "coredns", "metrics-server", "traefik")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(n.bin, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing in %s: %s; run make cluster-up (it builds them: k8s/hack/build-control-plane.sh node, go build ./k8s/local/cmd/pause)", n.bin, strings.Join(missing, " "))
	}
	debs := map[string]string{"/usr/sbin/runc": "runc", "/usr/lib/cni/bridge": "containernetworking-plugins", "/usr/sbin/iptables": "iptables", "/usr/sbin/conntrack": "conntrack", "/usr/sbin/ethtool": "ethtool"}
	var pkgs []string
	for path, pkg := range debs {
		if _, err := os.Stat(path); err != nil {
			pkgs = append(pkgs, pkg)
		}
	}
	if len(pkgs) > 0 {
		step("installing Debian packages: %s", strings.Join(pkgs, " "))
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "-qq"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install %s: %v\n%s", strings.Join(pkgs, " "), err, out)
		}
	}
	return nil
}

// addNodeAddress puts the node's address on lo (removed by down).
func (n *node) addNodeAddress() error {
	out, err := run("ip", "-o", "addr", "show", "dev", "lo")
	if err != nil {
		return err
	}
	if strings.Contains(out, " "+nodeIP+"/32 ") {
		return nil
	}
	_, err = run("ip", "addr", "add", nodeIP+"/32", "dev", "lo")
	return err
}

func (n *node) apiClient() (*http.Client, error) {
	ca, err := os.ReadFile(n.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	token, err := n.adminToken()
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &bearer{token: token, rt: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}, nil
}

type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}

func (n *node) adminToken() (string, error) {
	b, err := os.ReadFile(n.pki("tokens.csv"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 1 && f[1] == identities["admin"].user {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("no admin token in %s", n.pki("tokens.csv"))
}

func httpOK(c *http.Client, url string) (bool, error) {
	resp, err := c.Get(url)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return true, nil
}

// withLog adds the tail of a component's log to an error.
func (n *node) withLog(name string, err error) error {
	b, _ := os.ReadFile(n.path("logs", name+".log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Errorf("%w\nlast lines of %s:\n%s", err, n.path("logs", name+".log"), strings.Join(lines, "\n"))
}

func (n *node) kubectl(args ...string) (string, error) {
	return run("kubectl", append([]string{"--kubeconfig", n.adminKubeconfig()}, args...)...)
}

// applyAddons applies storage, CoreDNS, metrics-server and Traefik.
func (n *node) applyAddons() error {
	vars := map[string]string{
		"DNS_IP":               dnsIP,
		"COREDNS_IMAGE":        n.addonRef("coredns"),
		"METRICS_SERVER_IMAGE": n.addonRef("metrics-server"),
		"TRAEFIK_IMAGE":        n.addonRef("traefik"),
		"TRAEFIK_PING_PORT":    traefikPingPort,
	}
	entries, err := manifests.ReadDir("manifests")
	if err != nil {
		return err
	}
	var all []string
	for _, e := range entries {
		b, err := manifests.ReadFile("manifests/" + e.Name())
		if err != nil {
			return err
		}
		all = append(all, os.Expand(string(b), func(k string) string { return vars[k] }))
	}
	all = append(all, n.volumeManifests()...)
	f := n.path("addons.yaml")
	if err := os.WriteFile(f, []byte(strings.Join(all, "\n---\n")), 0o644); err != nil {
		return err
	}
	if _, err := n.kubectl("apply", "-f", f); err != nil {
		return err
	}
	step("add-ons applied: storage (%d volumes), CoreDNS, metrics-server, Traefik", volumes)
	return nil
}

// volumeManifests are the static PersistentVolumes, one host directory each.
func (n *node) volumeManifests() []string {
	var pvs []string
	for i := 1; i <= volumes; i++ {
		name := fmt.Sprintf("pv-%02d", i)
		dir := n.path("volumes", name)
		os.MkdirAll(dir, 0o777)
		os.Chmod(dir, 0o777) // pods run as various users
		pvs = append(pvs, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata:
  name: %s
  labels: {personscore.local/volume: static}
spec:
  storageClassName: standard
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: %s, type: Directory}
`, name, dir))
	}
	return pvs
}

// printMemory prints the resident memory of the node's processes and of its pods.
func (n *node) printMemory() error {
	var total int
	var parts []string
	for _, c := range components {
		pid, ok := n.running(c)
		if !ok {
			continue
		}
		kb := rssKB(pid)
		total += kb
		parts = append(parts, fmt.Sprintf("%s %d", c, kb/1024))
	}
	pods := cgroupRSSKB("/sys/fs/cgroup/memory/kubepods")
	step("resident memory: components %d MiB (%s MiB), pods %d MiB, total %d MiB", total/1024, strings.Join(parts, ", "), pods/1024, (total+pods)/1024)
	return nil
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	return 0
}

// cgroupRSSKB is the resident memory (rss + mapped files) charged to a v1 memory cgroup tree.
func cgroupRSSKB(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0
	}
	var rss, mapped int
	for _, line := range strings.Split(string(b), "\n") {
		var v int
		if _, err := fmt.Sscanf(line, "total_rss %d", &v); err == nil {
			rss = v
		}
		if _, err := fmt.Sscanf(line, "total_mapped_file %d", &v); err == nil {
			mapped = v
		}
	}
	return (rss + mapped) / 1024
}
