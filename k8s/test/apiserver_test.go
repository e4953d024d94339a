package test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// CRDs installed into the API server, each read from the module cache of the project
// that owns it (downloaded through the Go module proxy with `go mod download`).
var crdSources = []struct{ Module, Version, Glob string }{
	{"github.com/rabbitmq/cluster-operator/v2", "v2.20.0", "config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml"},
	{"github.com/kedacore/keda/v2", "v2.21.0", "config/crd/bases/keda.sh_*.yaml"},
	{"github.com/prometheus-operator/prometheus-operator", "v0.85.0", "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"},
	{"sigs.k8s.io/gateway-api", "v1.4.1", "config/crd/standard/gateway.networking.k8s.io_*.yaml"},
}

// The Messaging Topology Operator's Go module is not served by the module proxy, so its
// User and Permission CRDs cannot be read from it. They are registered here with an
// open schema: the API server then checks the group/version/kind, names and metadata of
// those two kinds, not their spec fields.
var openSchemaKinds = []struct{ Plural, Kind string }{{"users", "User"}, {"permissions", "Permission"}}

func binPath(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	return filepath.Join(repoRoot, "bin", name)
}

type controlPlane struct {
	cfg        *rest.Config
	kubeconfig string
	dyn        dynamic.Interface
	mapper     *restmapper.DeferredDiscoveryRESTMapper
	warnings   *warningCollector
}

type warningCollector struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningCollector) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningCollector) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess starts a server process; the returned channel closes when it exits.
func startProcess(t *testing.T, name, bin string, args []string, logDir string) <-chan struct{} {
	t.Helper()
	logFile, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- tail of %s log ---\n%s", name, b)
		}
	})
	return done
}

// startControlPlane runs etcd and kube-apiserver (built by k8s/hack/build-control-plane.sh)
// on loopback ports, authenticating a system:masters user with a static token.
func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	etcdBin, apiBin := binPath("ETCD_BIN", "etcd"), binPath("KUBE_APISERVER_BIN", "kube-apiserver")
	for _, b := range []string{etcdBin, apiBin} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("%s is missing: build it with `make control-plane` (k8s/hack/build-control-plane.sh); `make test-charts` does this first", b)
		}
	}
	dir := t.TempDir()
	clientPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdDone := startProcess(t, "etcd", etcdBin, []string{
		"--name=default", "--data-dir=" + filepath.Join(dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", clientPort),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", clientPort),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peerPort),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peerPort),
		fmt.Sprintf("--initial-cluster=default=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync=true", "--log-level=warn",
	}, dir)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.key")
	der := x509.MarshalPKCS1PrivateKey(key)
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "personscore-test-token"
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apiDone := startProcess(t, "kube-apiserver", apiBin, []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", clientPort),
		"--cert-dir=" + filepath.Join(dir, "pki"),
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		// No kubernetes.default endpoints: a loopback advertise address is refused by the
		// endpoint reconciler, and nothing in-cluster needs to reach this API server.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--allow-privileged=false",
		"--enable-priority-and-fairness=false",
	}, dir)

	host := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		req, _ := http.NewRequest(http.MethodGet, host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-apiDone:
			t.Fatalf("kube-apiserver exited before it was ready (log below)")
		case <-etcdDone:
			t.Fatalf("etcd exited (log below)")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 3m (last error: %v)", err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, host, token)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &warningCollector{}
	cfg := &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, WarningHandler: w, QPS: 200, Burst: 400}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &controlPlane{cfg: cfg, kubeconfig: kubeconfig, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), warnings: w}
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// moduleDir downloads (or finds in the module cache) one module version.
func moduleDir(t *testing.T, mod, version string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", mod+"@"+version)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	dieWithParent(cmd)
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s@%s: %v %s", mod, version, err, info.Error)
	}
	return info.Dir
}

func (cp *controlPlane) installCRDs(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var crds []*unstructured.Unstructured
	for _, src := range crdSources {
		files, _ := filepath.Glob(filepath.Join(moduleDir(t, src.Module, src.Version), src.Glob))
		if len(files) == 0 {
			t.Fatalf("no CRD %s in %s@%s", src.Glob, src.Module, src.Version)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(string(b)), 4096)
			for {
				u := &unstructured.Unstructured{}
				if err := dec.Decode(&u.Object); err != nil {
					break
				}
				if u.GetKind() == "CustomResourceDefinition" {
					crds = append(crds, u)
				}
			}
		}
	}
	for _, k := range openSchemaKinds {
		crds = append(crds, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": k.Plural + ".rabbitmq.com"},
			"spec": map[string]any{
				"group": "rabbitmq.com", "scope": "Namespaced",
				"names": map[string]any{"plural": k.Plural, "singular": strings.ToLower(k.Kind), "kind": k.Kind, "listKind": k.Kind + "List"},
				"versions": []any{map[string]any{"name": "v1beta1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object",
						"properties": map[string]any{
							"spec":   map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
							"status": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
						}}}}},
			},
		}})
	}
	for _, crd := range crds {
		if _, err := cp.dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create CRD %s: %v", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		deadline := time.Now().Add(time.Minute)
		for {
			got, err := cp.dyn.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err == nil && crdEstablished(got) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established: %v", crd.GetName(), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	cp.mapper.Reset()
	t.Logf("installed %d CRDs", len(crds))
}

func crdEstablished(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// createNamespace makes a namespace that enforces the "restricted" Pod Security Standard
// and warns about pod templates that would violate it.
func (cp *controlPlane) createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": map[string]any{
			"pod-security.kubernetes.io/enforce": "restricted",
			"pod-security.kubernetes.io/warn":    "restricted",
			"pod-security.kubernetes.io/audit":   "restricted",
		}},
	}}
	if _, err := cp.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager would create the namespace's default ServiceAccount, which
	// the ServiceAccount admission plugin requires for Pods (the helm test pod).
	sa := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": "default", "namespace": name},
	}}
	if _, err := cp.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}).Namespace(name).Create(context.Background(), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (cp *controlPlane) resource(t *testing.T, o object, ns string) dynamic.ResourceInterface {
	t.Helper()
	m, err := cp.mapper.RESTMapping(o.GVK.GroupKind(), o.GVK.Version)
	if err != nil {
		t.Fatalf("%s: the API server does not serve this kind: %v", o, err)
	}
	if m.Scope.Name() == "namespace" {
		return cp.dyn.Resource(m.Resource).Namespace(ns)
	}
	return cp.dyn.Resource(m.Resource)
}

type scenario struct {
	name   string
	person profile
	score  profile
	// extra --set values per chart
	personSet, scoreSet []string
	only                []string // charts to install (default both)
}

func apiServerScenarios() []scenario {
	ps, ss := profiles("person"), profiles("score")
	return []scenario{
		{name: "default", person: ps[0], score: ss[0]},
		{name: "kind", person: ps[1], score: ss[1]},
		{name: "production", person: ps[2], score: ss[2]},
		{name: "gateway", person: ps[0], score: ss[0],
			personSet: []string{"httpRoute.enabled=true", "httpRoute.parentRefs[0].name=personscore", "ingress.enabled=false"},
			scoreSet:  []string{"httpRoute.enabled=true", "httpRoute.parentRefs[0].name=personscore", "ingress.enabled=false"}},
		{name: "score-alone", score: ss[0], scoreSet: []string{"rabbitmq.createCluster=true", "rabbitmq.topologyOperator.enabled=true"}, only: []string{"score"}},
		// The local node: the kind values plus the image settings of k8s/images/images.env.
		{name: "local-node", person: ps[1], score: ss[1],
			personSet: []string{"rabbitmqOperator.image.repository=personscore/rabbitmq-cluster-operator", "rabbitmqOperator.image.tag=2.20.0",
				"rabbitmq.cluster.image=personscore/rabbitmq:3.10-debian12", "mongodb.server=localmongo"},
			scoreSet: []string{"mongodb.server=localmongo"}},
	}
}

// TestInstallOnAPIServer installs both charts, under every profile, on a real
// kube-apiserver + etcd with the CRDs of the operators: every object is first created
// with a server-side dry run and strict field validation (unknown fields are errors),
// in a namespace that enforces the restricted Pod Security Standard (violations in pod
// templates come back as warnings, which fail the test), then `helm install` and
// `helm upgrade` run for real.
func TestInstallOnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Fatal("TestInstallOnAPIServer does not skip: run without -short")
	}
	start := time.Now()
	cp := startControlPlane(t)
	t.Logf("control plane ready in %v", time.Since(start).Round(time.Millisecond))
	cp.installCRDs(t)
	_ = cp.warnings.take()

	for _, sc := range apiServerScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			ns := "ps-" + sc.name
			cp.createNamespace(t, ns)
			installs := []struct {
				chart string
				p     profile
				set   []string
			}{{"person", sc.person, sc.personSet}, {"score", sc.score, sc.scoreSet}}
			for _, in := range installs {
				if sc.only != nil && !contains(sc.only, in.chart) {
					continue
				}
				r := renderChart(t, in.chart, in.p, in.set...)
				cp.dryRunStrict(t, r, ns)
				cp.helmInstall(t, in.chart, in.p, in.set, ns, r)
			}
			if sc.name == "kind" {
				cp.checkOperatorRBAC(t, ns)
				cp.reinstallKeepsMongoPassword(t, "person", sc.person, sc.personSet, ns)
			}
		})
	}
}

// checkOperatorRBAC asks the API server's RBAC authorizer (SubjectAccessReview) whether
// the operator's ServiceAccount, as installed by the person chart, may do everything
// the module's role.yaml lists, in any namespace, and its leader election in its own.
func (cp *controlPlane) checkOperatorRBAC(t *testing.T, ns string) {
	t.Helper()
	dir, _, _ := operatorModuleDir(t)
	sa := "person-rabbitmq-cluster-operator"
	sar := schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "subjectaccessreviews"}
	allowed := func(namespace, verb, group, resource string) bool {
		res, sub, _ := strings.Cut(resource, "/")
		review := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
			"spec": map[string]any{
				"user":   fmt.Sprintf("system:serviceaccount:%s:%s", ns, sa),
				"groups": []any{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				"resourceAttributes": map[string]any{
					"namespace": namespace, "verb": verb, "group": group, "resource": res, "subresource": sub,
				},
			},
		}}
		out, err := cp.dyn.Resource(sar).Create(context.Background(), review, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		ok, _, _ := unstructured.NestedBool(out.Object, "status", "allowed")
		return ok
	}
	n := 0
	for _, set := range []struct {
		file, namespace string
	}{{"config/rbac/role.yaml", "some-other-namespace"}, {"config/rbac/leader_election_role.yaml", ns}} {
		for _, rule := range moduleRules(t, dir, set.file) {
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						n++
						if !allowed(set.namespace, v, g, res) {
							t.Errorf("the operator may not %s %q %s in namespace %s (%s)", v, g, res, set.namespace, set.file)
						}
					}
				}
			}
		}
	}
	if allowed(ns, "delete", "", "secrets") {
		t.Errorf("the operator may delete Secrets: more than the module's role grants")
	}
	t.Logf("RBAC authorizer: the operator's ServiceAccount holds all %d grants of its module's roles", n)
}

// reinstallKeepsMongoPassword uninstalls a release and installs it again: the MongoDB
// Secret (helm.sh/resource-policy: keep) survives the uninstall, and the new release
// reads the same password back, as the retained data volume requires.
func (cp *controlPlane) reinstallKeepsMongoPassword(t *testing.T, chartName string, p profile, set []string, ns string) {
	t.Helper()
	secret := chartName + "-mongodb"
	before := cp.secretData(t, ns)[secret]
	if before == "" {
		t.Fatalf("no Secret %s after install", secret)
	}
	cfg := new(action.Configuration)
	if err := cfg.Init(kube.GetConfig(cp.kubeconfig, "", ns), ns, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	un := action.NewUninstall(cfg)
	un.Timeout = 2 * time.Minute
	res, err := un.Run(chartName)
	if err != nil {
		t.Fatalf("helm uninstall %s: %v", chartName, err)
	}
	if !strings.Contains(res.Info, secret) {
		t.Errorf("helm uninstall did not report keeping %s: %q", secret, res.Info)
	}
	if got := cp.secretData(t, ns)[secret]; got != before {
		t.Fatalf("after helm uninstall the Secret %s is gone or changed", secret)
	}
	inst := action.NewInstall(cfg)
	inst.ReleaseName = chartName
	inst.Namespace = ns
	inst.Timeout = 2 * time.Minute
	if _, err := inst.Run(loadChart(t, chartName), mergeValues(t, p, set...)); err != nil {
		t.Fatalf("helm install %s again after uninstall: %v", chartName, err)
	}
	if got := cp.secretData(t, ns)[secret]; got != before {
		t.Errorf("helm uninstall + install changed the MongoDB password in %s", secret)
	}
	t.Logf("helm uninstall + install %s: Secret %s kept with the same password", chartName, secret)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (cp *controlPlane) dryRunStrict(t *testing.T, r *rendered, ns string) {
	t.Helper()
	ctx := context.Background()
	for _, o := range r.Objects {
		u := o.Unstructured.DeepCopy()
		u.SetNamespace(ns)
		_, err := cp.resource(t, o, ns).Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if err != nil {
			t.Errorf("%s/%s: API server rejected %s: %v", r.Chart, r.Profile, o, err)
		}
		for _, w := range cp.warnings.take() {
			t.Errorf("%s/%s: API server warning for %s: %s", r.Chart, r.Profile, o, w)
		}
	}
}

func (cp *controlPlane) helmInstall(t *testing.T, chartName string, p profile, set []string, ns string, r *rendered) {
	t.Helper()
	cfg := new(action.Configuration)
	if err := cfg.Init(kube.GetConfig(cp.kubeconfig, "", ns), ns, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(cfg)
	inst.ReleaseName = chartName
	inst.Namespace = ns
	inst.Timeout = 2 * time.Minute
	rel, err := inst.Run(loadChart(t, chartName), mergeValues(t, p, set...))
	if err != nil {
		t.Fatalf("helm install %s (%s) in %s: %v", chartName, p.Name, ns, err)
	}
	if rel.Info.Status != release.StatusDeployed {
		t.Fatalf("release %s status %s", chartName, rel.Info.Status)
	}
	// Every rendered object (hooks aside) now exists.
	ctx := context.Background()
	manifestObjs, err := decodeStrict(rel.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range manifestObjs {
		if _, err := cp.resource(t, o, ns).Get(ctx, o.Name, metav1.GetOptions{}); err != nil {
			t.Errorf("%s not found after install: %v", o, err)
		}
	}
	t.Logf("helm install %s (%s): %d objects accepted in %s", chartName, p.Name, len(manifestObjs), ns)

	// Generated secrets are read back with `lookup` and survive an upgrade unchanged, and
	// an upgrade with unchanged values changes no pod template (no rollout).
	before := cp.secretData(t, ns)
	generations := cp.workloadGenerations(t, ns)
	up := action.NewUpgrade(cfg)
	up.Namespace = ns
	up.Timeout = 2 * time.Minute
	if _, err := up.Run(chartName, loadChart(t, chartName), mergeValues(t, p, set...)); err != nil {
		t.Fatalf("helm upgrade %s: %v", chartName, err)
	}
	after := cp.secretData(t, ns)
	for name, data := range before {
		if after[name] != data {
			t.Errorf("helm upgrade changed the generated Secret %s", name)
		}
	}
	for name, g := range cp.workloadGenerations(t, ns) {
		if generations[name] != g {
			t.Errorf("helm upgrade with unchanged values changed %s (generation %d -> %d): its pods would roll", name, generations[name], g)
		}
	}
	for _, w := range cp.warnings.take() {
		t.Errorf("API server warning: %s", w)
	}
}

// workloadGenerations returns metadata.generation of every Deployment and StatefulSet of
// a namespace (it changes with the spec, e.g. a pod template annotation).
func (cp *controlPlane) workloadGenerations(t *testing.T, ns string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, res := range []string{"deployments", "statefulsets"} {
		list, err := cp.dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: res}).Namespace(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			out[res+"/"+o.GetName()] = o.GetGeneration()
		}
	}
	return out
}

// secretData returns the chart-generated Secrets of a namespace (Helm's release records
// excluded), serialised for comparison.
func (cp *controlPlane) secretData(t *testing.T, ns string) map[string]string {
	t.Helper()
	list, err := cp.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=personscore"})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		if s.Object["type"] == string(corev1.SecretTypeOpaque) {
			b, _ := json.Marshal(s.Object["data"])
			out[s.GetName()] = string(b)
		}
	}
	return out
}
