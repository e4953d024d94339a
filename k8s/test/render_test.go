package test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// forEachRendering renders every chart under every profile and runs fn on it.
func forEachRendering(t *testing.T, fn func(t *testing.T, r *rendered)) {
	for _, c := range charts {
		for _, p := range profiles(c) {
			t.Run(c+"/"+p.Name, func(t *testing.T) {
				fn(t, renderChart(t, c, p))
			})
		}
	}
}

var clusterScoped = map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true}

// Every document decodes strictly into a known API type; names are valid and unique per kind.
func TestRenderedManifestsDecodeStrictly(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		if len(r.Objects) < 8 {
			t.Fatalf("suspiciously few objects: %d", len(r.Objects))
		}
		seen := map[string]bool{}
		for _, o := range r.Objects {
			key := o.GVK.String() + "/" + o.Name
			if seen[key] {
				t.Errorf("duplicate object %s", key)
			}
			seen[key] = true
			if o.Name == "" {
				t.Errorf("%s has no name", o)
			}
			// Object names must be valid DNS-1123 names (lower case): an upper-case name
			// (e.g. derived from a dependency alias such as rabbitmqOperator) is refused
			// by the API server.
			if errs := validation.IsDNS1123Subdomain(o.Name); len(errs) > 0 {
				t.Errorf("%s: invalid object name: %v", o, errs)
			}
			if clusterScoped[o.GVK.Kind] {
				if o.Unstructured.GetNamespace() != "" {
					t.Errorf("%s: cluster-scoped object with a namespace", o)
				}
			} else if ns := o.Unstructured.GetNamespace(); ns != testNamespace {
				t.Errorf("%s: namespace %q, want the release namespace", o, ns)
			}
			if o.Unstructured.GetLabels()["app.kubernetes.io/instance"] != r.Chart {
				t.Errorf("%s: missing app.kubernetes.io/instance label", o)
			}
		}
	})
}

// Deployments and StatefulSets: probes, resources, restricted Pod Security.
func TestWorkloadsProbesLimitsSecurity(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		var specs []struct {
			name string
			spec corev1.PodSpec
		}
		for _, d := range all[*appsv1.Deployment](r) {
			specs = append(specs, struct {
				name string
				spec corev1.PodSpec
			}{"Deployment " + d.Name, d.Spec.Template.Spec})
		}
		for _, s := range all[*appsv1.StatefulSet](r) {
			specs = append(specs, struct {
				name string
				spec corev1.PodSpec
			}{"StatefulSet " + s.Name, s.Spec.Template.Spec})
		}
		if len(specs) == 0 {
			t.Fatal("no workloads rendered")
		}
		for _, w := range specs {
			checkRestrictedPod(t, w.name, w.spec)
			for _, c := range w.spec.Containers {
				where := w.name + "/" + c.Name
				if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.StartupProbe == nil {
					t.Errorf("%s: needs liveness, readiness and startup probes", where)
				}
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[res]; !ok {
						t.Errorf("%s: no %s request", where, res)
					}
					if _, ok := c.Resources.Limits[res]; !ok {
						t.Errorf("%s: no %s limit", where, res)
					}
				}
			}
		}
	})
}

// checkRestrictedPod enforces the "restricted" Pod Security Standard on a pod spec.
func checkRestrictedPod(t *testing.T, where string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces", where)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", where, v.Name)
		}
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s/%s: no securityContext", where, c.Name)
			continue
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("%s/%s: runAsNonRoot not set", where, c.Name)
		}
		if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (psc.RunAsUser != nil && *psc.RunAsUser == 0) {
			t.Errorf("%s/%s: runs as uid 0", where, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s/%s: allowPrivilegeEscalation must be false", where, c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s/%s: privileged", where, c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: readOnlyRootFilesystem must be true", where, c.Name)
		}
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s/%s: capabilities must drop ALL and add none", where, c.Name)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s/%s: seccompProfile must be RuntimeDefault", where, c.Name)
		}
	}
}

// The service container: contract env, probes on the service's endpoints, GOMAXPROCS and
// GOMEMLIMIT from the limits, and a grace period longer than the shutdown deadline.
func TestServiceContainerContract(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		d := appDeployment(t, r)
		c := appContainer(t, r)
		if want := "personscore/" + r.Chart; !strings.HasPrefix(c.Image, want+":") && !strings.HasPrefix(c.Image, want+"@") {
			t.Errorf("image %q, want %s", c.Image, want)
		}
		probe := func(name string, p *corev1.Probe, path string) {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s probe must be an httpGet", name)
				return
			}
			if p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("http") {
				t.Errorf("%s probe: %s on %s, want %s on port http", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
			}
		}
		probe("startup", c.StartupProbe, "/healthz")
		probe("liveness", c.LivenessProbe, "/healthz")
		probe("readiness", c.ReadinessProbe, "/readyz")
		if !hasPort(c, "http", 8080) {
			t.Errorf("container port http 8080 missing")
		}

		wantEnv := map[string]string{
			"HTTP_ADDR":      ":8080",
			"MONGO_DATABASE": r.Chart,
			"EXCHANGE_NAME":  "event_dispatcher",
			"LOG_LEVEL":      "info",
		}
		if r.Chart == "score" {
			wantEnv["ADMIN_ADDR"] = ":9090"
			if !hasPort(c, "admin", 9090) {
				t.Errorf("container port admin 9090 missing")
			}
			tok, ok := envValue(c, "ADMIN_TOKEN")
			if !ok || tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil {
				t.Errorf("ADMIN_TOKEN must come from a Secret")
			}
		}
		for k, v := range wantEnv {
			e, ok := envValue(c, k)
			if !ok || e.Value != v {
				t.Errorf("env %s = %q, want %q", k, e.Value, v)
			}
		}
		for _, k := range []string{"AMQP_URL", "MONGO_URI"} {
			if _, ok := envValue(c, k); !ok {
				t.Errorf("env %s missing", k)
			}
		}
		for name, res := range map[string]string{"GOMAXPROCS": "limits.cpu", "GOMEMLIMIT": "limits.memory"} {
			e, _ := envValue(c, name)
			if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != res {
				t.Errorf("%s must come from resourceFieldRef %s", name, res)
			}
		}
		checkDependentEnv(t, c)

		// Grace period > preStop sleep + SHUTDOWN_TIMEOUT.
		st, _ := envValue(c, "SHUTDOWN_TIMEOUT")
		shutdown, err := time.ParseDuration(st.Value)
		if err != nil {
			t.Fatalf("SHUTDOWN_TIMEOUT %q: %v", st.Value, err)
		}
		var preStop time.Duration
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if grace == nil || time.Duration(*grace)*time.Second <= shutdown+preStop {
			t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %v + shutdown %v", grace, preStop, shutdown)
		}
		// AMQP_URL: the RabbitmqCluster's client Service in its namespace, whatever the
		// number of broker nodes (nothing to copy from the release that creates it).
		if u, _ := envValue(c, "AMQP_URL"); u.Value != "" {
			want := fmt.Sprintf("@%s.%s.svc:", value(r.Values, "rabbitmq.clusterName"), testNamespace)
			if !regexp.MustCompile(`^amqps?://\$\(AMQP_USERNAME\):\$\(AMQP_PASSWORD\)@[a-z0-9.-]+:567[12]/$`).MatchString(u.Value) || !strings.Contains(u.Value, want) {
				t.Errorf("AMQP_URL %q: want one URL to the client Service (%s...)", u.Value, want)
			}
		}
		if d.Spec.Template.Spec.AutomountServiceAccountToken == nil || *d.Spec.Template.Spec.AutomountServiceAccountToken {
			t.Errorf("the service needs no API token: automountServiceAccountToken must be false")
		}
	})
}

func hasPort(c corev1.Container, name string, port int32) bool {
	for _, p := range c.Ports {
		if p.Name == name && p.ContainerPort == port {
			return true
		}
	}
	return false
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkDependentEnv: every $(VAR) in an env value must name a variable defined earlier in
// the list, or Kubernetes leaves the reference unexpanded.
func checkDependentEnv(t *testing.T, c corev1.Container) {
	t.Helper()
	defined := map[string]bool{}
	for _, e := range c.Env {
		for _, m := range envRef.FindAllStringSubmatch(e.Value, -1) {
			if !defined[m[1]] {
				t.Errorf("env %s references $(%s) before it is defined", e.Name, m[1])
			}
		}
		defined[e.Name] = true
	}
}

func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	return -1
}

func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector: %v", err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

// HPA (or KEDA, never both), PDB, Service and NetworkPolicy all select the service pods.
func TestScalingDisruptionAndSelectors(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		d := appDeployment(t, r)
		podLabels := d.Spec.Template.Labels
		if !selects(t, d.Spec.Selector, podLabels) {
			t.Fatalf("Deployment selector does not match its own pods")
		}
		var mongoLabels map[string]string
		for _, s := range all[*appsv1.StatefulSet](r) {
			mongoLabels = s.Spec.Template.Labels
			if selects(t, d.Spec.Selector, mongoLabels) {
				t.Errorf("Deployment selector also matches the MongoDB pods")
			}
		}

		hpas := all[*autoscalingv2.HorizontalPodAutoscaler](r)
		scaled := ofKind(r, "ScaledObject")
		keda := truthy(value(r.Values, "autoscaling.keda.enabled"))
		switch {
		case keda:
			if len(hpas) != 0 {
				t.Errorf("KEDA is on: the chart must render no HPA, got %d", len(hpas))
			}
			if len(scaled) != 1 {
				t.Fatalf("KEDA is on: want 1 ScaledObject, got %d", len(scaled))
			}
			target, _, _ := unstructured.NestedString(scaled[0].Unstructured.Object, "spec", "scaleTargetRef", "name")
			if target != d.Name {
				t.Errorf("ScaledObject targets %q, want %q", target, d.Name)
			}
			trig, _, _ := unstructured.NestedSlice(scaled[0].Unstructured.Object, "spec", "triggers")
			if len(trig) != 1 || fmt.Sprint(trig[0].(map[string]any)["metadata"].(map[string]any)["queueName"]) != "score.queue" {
				t.Errorf("ScaledObject must scale on score.queue: %v", trig)
			}
		case truthy(value(r.Values, "autoscaling.enabled")):
			if len(scaled) != 0 {
				t.Errorf("HPA mode: no ScaledObject expected")
			}
			if len(hpas) != 1 {
				t.Fatalf("want 1 HPA, got %d", len(hpas))
			}
			h := hpas[0]
			if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name || h.Spec.ScaleTargetRef.APIVersion != "apps/v1" {
				t.Errorf("HPA targets %+v, want Deployment %s", h.Spec.ScaleTargetRef, d.Name)
			}
			if len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
				t.Errorf("HPA must scale on CPU")
			}
			if h.Spec.Behavior == nil || h.Spec.Behavior.ScaleDown == nil || h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds == nil {
				t.Errorf("HPA needs a scale-down behaviour")
			}
		}
		if (len(hpas) > 0 || len(scaled) > 0) && d.Spec.Replicas != nil {
			t.Errorf("autoscaled Deployment must not set spec.replicas (it would fight the autoscaler)")
		}

		pdbs := all[*policyv1.PodDisruptionBudget](r)
		if len(pdbs) != 1 || !selects(t, pdbs[0].Spec.Selector, podLabels) {
			t.Errorf("want one PDB selecting the service pods")
		} else if mongoLabels != nil && selects(t, pdbs[0].Spec.Selector, mongoLabels) {
			t.Errorf("PDB also selects the MongoDB pod")
		}

		svcs := all[*corev1.Service](r)
		found := false
		for _, s := range svcs {
			if s.Name == d.Name {
				found = true
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(podLabels)) {
					t.Errorf("Service %s does not select the pods", s.Name)
				}
			}
		}
		if !found {
			t.Errorf("no Service named after the Deployment")
		}
	})
}

func TestNetworkPolicies(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		d := appDeployment(t, r)
		podLabels := d.Spec.Template.Labels
		var app *networkingv1.NetworkPolicy
		var mongoNP *networkingv1.NetworkPolicy
		sts := all[*appsv1.StatefulSet](r)
		for _, np := range all[*networkingv1.NetworkPolicy](r) {
			if selects(t, &np.Spec.PodSelector, podLabels) {
				app = np
			}
			if len(sts) == 1 && selects(t, &np.Spec.PodSelector, sts[0].Spec.Template.Labels) {
				mongoNP = np
			}
		}
		if app == nil {
			t.Fatal("no NetworkPolicy selects the service pods")
		}
		if len(app.Spec.PolicyTypes) != 2 {
			t.Errorf("policy must restrict both Ingress and Egress (deny by default): %v", app.Spec.PolicyTypes)
		}
		ingressNS := fmt.Sprint(value(r.Values, "networkPolicy.ingressControllerNamespace"))
		var fromController bool
		for _, rule := range app.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == ingressNS {
					fromController = true
					for _, p := range rule.Ports {
						if p.Port.String() != "http" {
							t.Errorf("the ingress controller may reach only the http port, got %s", p.Port.String())
						}
					}
				}
			}
			for _, p := range rule.Ports {
				if p.Port.String() == "admin" {
					if len(rule.From) != 1 || rule.From[0].NamespaceSelector != nil || rule.From[0].PodSelector == nil || len(rule.From[0].PodSelector.MatchLabels)+len(rule.From[0].PodSelector.MatchExpressions) != 0 {
						t.Errorf("admin port must be open to pods of the same namespace only: %+v", rule.From)
					}
				}
			}
		}
		if !fromController {
			t.Errorf("no ingress rule from the ingress controller namespace %q", ingressNS)
		}
		egressPorts := map[string]bool{}
		var toRabbit, toMongo bool
		clusterName := fmt.Sprint(value(r.Values, "rabbitmq.clusterName"))
		for _, rule := range app.Spec.Egress {
			for _, p := range rule.Ports {
				egressPorts[fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String())] = true
			}
			for _, peer := range rule.To {
				if peer.PodSelector != nil && peer.PodSelector.MatchLabels["app.kubernetes.io/name"] == clusterName {
					toRabbit = true
				}
				if len(sts) == 1 && peer.PodSelector != nil && selects(t, peer.PodSelector, sts[0].Spec.Template.Labels) {
					toMongo = true
				}
			}
		}
		for _, want := range []string{"UDP/53", "TCP/53", "TCP/5672", "TCP/27017"} {
			if !egressPorts[want] {
				t.Errorf("egress to %s not allowed", want)
			}
		}
		if !toRabbit {
			t.Errorf("egress to the RabbitmqCluster pods (app.kubernetes.io/name=%s) missing", clusterName)
		}
		if len(sts) == 1 {
			if !toMongo {
				t.Errorf("egress to the MongoDB pod missing")
			}
			if mongoNP == nil {
				t.Fatalf("no NetworkPolicy protects MongoDB")
			}
			if len(mongoNP.Spec.Ingress) != 1 || len(mongoNP.Spec.Ingress[0].From) != 1 || !selects(t, mongoNP.Spec.Ingress[0].From[0].PodSelector, podLabels) {
				t.Errorf("MongoDB must accept connections from the service pods only")
			}
		}
	})
}

// Request paths the ingress must route to each service (the original README's curls)
// and paths it must never route: probes, metrics, the OpenAPI document.
var (
	publicPaths = map[string][]string{
		"person": {"/person", "/person/11111", "/person/11111/income", "/person/11111/asset", "/person/11111/debt"},
		"score":  {"/11111/score", "/11111"},
	}
	internalPaths = []string{"/metrics", "/healthz", "/readyz", "/openapi.json", "/", "/metrics/"}
)

// routes tells whether an Ingress path routes a request path, as Traefik (the
// controller of the kind and local clusters) reads it: Exact = Path, Prefix =
// PathPrefix, ImplementationSpecific = the annotation router.pathmatcher (Path,
// PathPrefix or PathRegexp, an unanchored Go regexp), PathPrefix by default.
func routes(t *testing.T, ing *networkingv1.Ingress, p networkingv1.HTTPIngressPath, reqPath string) bool {
	t.Helper()
	matcher := "PathPrefix"
	switch *p.PathType {
	case networkingv1.PathTypeExact:
		matcher = "Path"
	case networkingv1.PathTypeImplementationSpecific:
		if m := ing.Annotations["traefik.ingress.kubernetes.io/router.pathmatcher"]; m != "" {
			matcher = m
		}
	}
	switch matcher {
	case "Path":
		return reqPath == p.Path
	case "PathPrefix":
		return strings.HasPrefix(reqPath, p.Path)
	case "PathRegexp":
		re, err := regexp.Compile(p.Path)
		if err != nil {
			t.Fatalf("path %q is not a Go regexp: %v", p.Path, err)
		}
		return re.MatchString(reqPath)
	}
	t.Fatalf("unknown Traefik path matcher %q", matcher)
	return false
}

// The Ingress routes the service's public API and nothing else: not the probes, not
// /metrics (score used to own "/" and so exposed them), never the admin port.
func TestIngressRouting(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		ings := all[*networkingv1.Ingress](r)
		if len(ings) != 1 {
			t.Fatalf("want one Ingress, got %d", len(ings))
		}
		ing := ings[0]
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != fmt.Sprint(value(r.Values, "ingress.className")) {
			t.Errorf("ingressClassName must come from ingress.className")
		}
		if len(ing.Spec.Rules) != 1 || len(ing.Spec.Rules[0].HTTP.Paths) == 0 {
			t.Fatalf("want one rule with paths")
		}
		paths := ing.Spec.Rules[0].HTTP.Paths
		routed := func(req string) bool {
			for _, p := range paths {
				if routes(t, ing, p, req) {
					return true
				}
			}
			return false
		}
		for _, req := range publicPaths[r.Chart] {
			if !routed(req) {
				t.Errorf("public path %s is not routed", req)
			}
		}
		for _, req := range internalPaths {
			if routed(req) {
				t.Errorf("internal path %s is routed through the ingress", req)
			}
		}
		for _, p := range paths {
			if p.Backend.Service == nil || p.Backend.Service.Name != appDeployment(t, r).Name || p.Backend.Service.Port.Name != "http" {
				t.Errorf("backend must be the service's http port: %+v", p.Backend)
			}
		}
		if r.Profile == "kind" {
			want := map[string]string{"person": "web", "score": "web,score"}[r.Chart]
			if got := ing.Annotations["traefik.ingress.kubernetes.io/router.entrypoints"]; got != want {
				t.Errorf("kind: Traefik entrypoints %q, want %q (host port 80 = web, 81 = score)", got, want)
			}
		}
		// The admin port is never routed.
		for _, s := range all[*corev1.Service](r) {
			for _, sp := range s.Spec.Ports {
				if sp.Name == "admin" && s.Name == paths[0].Backend.Service.Name {
					t.Errorf("the routed Service %s must not carry the admin port", s.Name)
				}
			}
		}
	})
}

func TestGatewayHTTPRouteOption(t *testing.T) {
	for _, c := range charts {
		r := renderChart(t, c, profile{Name: "gateway"}, "httpRoute.enabled=true", "httpRoute.parentRefs[0].name=personscore", "httpRoute.parentRefs[0].namespace=gateway-system")
		routes := ofKind(r, "HTTPRoute")
		if len(routes) != 1 {
			t.Fatalf("%s: want one HTTPRoute, got %d", c, len(routes))
		}
		rules, _, _ := unstructured.NestedSlice(routes[0].Unstructured.Object, "spec", "rules")
		backend := rules[0].(map[string]any)["backendRefs"].([]any)[0].(map[string]any)
		if backend["port"] != int64(8080) {
			t.Errorf("%s: HTTPRoute must target the http port 8080, got %v", c, backend["port"])
		}
		if _, err := tryRender(t, c, profile{Name: "gateway-no-parent"}, "httpRoute.enabled=true"); err == nil {
			t.Errorf("%s: an HTTPRoute without parentRefs must be refused", c)
		}
	}
}

// Exactly one release installs the operator and creates the RabbitmqCluster, in every
// documented pairing of the two charts.
func TestOneOperatorOneBroker(t *testing.T) {
	for i, p := range profiles("person") {
		person := renderChart(t, "person", p)
		score := renderChart(t, "score", profiles("score")[i])
		op := 0
		for _, r := range []*rendered{person, score} {
			if truthy(value(r.Values, "rabbitmqOperator.enabled")) {
				op++
			}
		}
		clusters := len(ofKind(person, "RabbitmqCluster")) + len(ofKind(score, "RabbitmqCluster"))
		if op != 1 || clusters != 1 {
			t.Errorf("profile %s: %d releases install the operator and %d create the RabbitmqCluster; want 1 and 1", p.Name, op, clusters)
		}
		for _, rc := range append(ofKind(person, "RabbitmqCluster"), ofKind(score, "RabbitmqCluster")...) {
			replicas, _, _ := unstructured.NestedInt64(rc.Unstructured.Object, "spec", "replicas")
			want := map[string]int64{"default": 1, "kind": 1, "production": 3}[p.Name]
			if replicas != want {
				t.Errorf("profile %s: RabbitmqCluster replicas %d, want %d", p.Name, replicas, want)
			}
		}
	}
	// The dependencies: the library chart, and the operator chart behind a condition,
	// both from this repository (file://), pinned.
	for _, c := range charts {
		ch, err := loadRawChart(c)
		if err != nil {
			t.Fatal(err)
		}
		deps := map[string]*chart.Dependency{}
		for _, d := range ch.Metadata.Dependencies {
			deps[d.Name] = d
			if !strings.HasPrefix(d.Repository, "file://../") || d.Version == "" || strings.ContainsAny(d.Version, "*^~x") {
				t.Errorf("%s: dependency %s must be a pinned file://../ chart of this repository, got %s %s", c, d.Name, d.Repository, d.Version)
			}
		}
		if len(deps) != 2 || deps["common"] == nil || deps["rabbitmq-cluster-operator"] == nil {
			t.Fatalf("%s: want the dependencies common and rabbitmq-cluster-operator, got %v", c, deps)
		}
		if op := deps["rabbitmq-cluster-operator"]; op.Condition != "rabbitmqOperator.enabled" || op.Alias != "rabbitmqOperator" {
			t.Errorf("%s: the operator dependency must be aliased rabbitmqOperator behind condition rabbitmqOperator.enabled: %+v", c, op)
		}
		if ch.Metadata.APIVersion != "v2" {
			t.Errorf("%s: Chart.yaml apiVersion %s, want v2", c, ch.Metadata.APIVersion)
		}
	}
}

// Credentials: the operator's default-user Secret by default, the service's own User +
// Permission with the Messaging Topology Operator, an existing Secret for external ones.
func TestCredentialSources(t *testing.T) {
	for _, c := range charts {
		def := renderChart(t, c, profile{Name: "default"})
		u, _ := envValue(appContainer(t, def), "AMQP_USERNAME")
		if u.ValueFrom.SecretKeyRef.Name != "personscore-rabbitmq-default-user" {
			t.Errorf("%s: default AMQP credentials from %q, want the operator's personscore-rabbitmq-default-user", c, u.ValueFrom.SecretKeyRef.Name)
		}

		topo := renderChart(t, c, profile{Name: "topology"}, "rabbitmq.topologyOperator.enabled=true")
		users, perms := ofKind(topo, "User"), ofKind(topo, "Permission")
		if len(users) != 1 || len(perms) != 1 {
			t.Fatalf("%s: topology mode needs one User and one Permission", c)
		}
		u, _ = envValue(appContainer(t, topo), "AMQP_USERNAME")
		imported, _, _ := unstructured.NestedString(users[0].Unstructured.Object, "spec", "importCredentialsSecret", "name")
		if u.ValueFrom.SecretKeyRef.Name != imported {
			t.Errorf("%s: service reads %q but the User imports %q", c, u.ValueFrom.SecretKeyRef.Name, imported)
		}
		tags, _, _ := unstructured.NestedSlice(users[0].Unstructured.Object, "spec", "tags")
		if len(tags) != 0 {
			t.Errorf("%s: least privilege: the User must have no tags", c)
		}
		for _, k := range []string{"configure", "write", "read"} {
			re, _, _ := unstructured.NestedString(perms[0].Unstructured.Object, "spec", "permissions", k)
			if re == ".*" || re == "" {
				t.Errorf("%s: %s permission %q is not least-privilege", c, k, re)
			}
			other := map[string]string{"person": "score", "score": "person"}[c]
			if regexp.MustCompile(re).MatchString(other + ".queue") {
				t.Errorf("%s: %s permission %q grants the other service's queue", c, k, re)
			}
			if k != "write" && !regexp.MustCompile(re).MatchString(c+".queue") {
				t.Errorf("%s: %s permission %q misses its own queue", c, k, re)
			}
		}

		ext := renderChart(t, c, profile{Name: "external"}, "rabbitmq.external.existingSecret=amqp", "mongodb.external.existingSecret=mongo")
		url, _ := envValue(appContainer(t, ext), "AMQP_URL")
		mongo, _ := envValue(appContainer(t, ext), "MONGO_URI")
		if url.ValueFrom == nil || url.ValueFrom.SecretKeyRef.Name != "amqp" || mongo.ValueFrom == nil || mongo.ValueFrom.SecretKeyRef.Name != "mongo" {
			t.Errorf("%s: external broker/database must be read from the existing Secrets", c)
		}
		if n := len(all[*appsv1.StatefulSet](ext)); n != 0 {
			t.Errorf("%s: external MongoDB: no StatefulSet expected, got %d", c, n)
		}
		if n := len(ofKind(ext, "RabbitmqCluster")); n != 0 {
			t.Errorf("%s: external broker: no RabbitmqCluster expected", c)
		}
	}
}

// MongoDB: official image, StatefulSet with a PVC by default.
func TestMongoDBStatefulSet(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		sts := all[*appsv1.StatefulSet](r)
		if len(sts) != 1 {
			t.Fatalf("want one MongoDB StatefulSet, got %d", len(sts))
		}
		s := sts[0]
		img := s.Spec.Template.Spec.Containers[0].Image
		if !strings.HasPrefix(img, "mongo:") {
			t.Errorf("MongoDB image %q, want the official mongo image", img)
		}
		if len(s.Spec.VolumeClaimTemplates) != 1 || s.Spec.VolumeClaimTemplates[0].Name != "data" {
			t.Errorf("MongoDB needs a PVC (volumeClaimTemplates data)")
		}
		uri, _ := envValue(appContainer(t, r), "MONGO_URI")
		if !strings.Contains(uri.Value, s.Spec.ServiceName+"."+testNamespace+".svc:27017") {
			t.Errorf("MONGO_URI %q does not point at the StatefulSet's Service %s", uri.Value, s.Spec.ServiceName)
		}
	})
}

// Every Secret a workload reads is rendered by the chart or is a documented external one.
func TestSecretReferencesResolve(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		have := map[string]bool{"personscore-rabbitmq-default-user": true} // created by the cluster operator
		for _, s := range all[*corev1.Secret](r) {
			have[s.Name] = true
		}
		check := func(where string, spec corev1.PodSpec) {
			for _, c := range spec.Containers {
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !have[e.ValueFrom.SecretKeyRef.Name] {
						t.Errorf("%s/%s: env %s reads unknown Secret %s", where, c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
					}
				}
			}
		}
		for _, d := range all[*appsv1.Deployment](r) {
			check(d.Name, d.Spec.Template.Spec)
		}
		for _, s := range all[*appsv1.StatefulSet](r) {
			check(s.Name, s.Spec.Template.Spec)
		}
		for _, ta := range ofKind(r, "TriggerAuthentication") {
			refs, _, _ := unstructured.NestedSlice(ta.Unstructured.Object, "spec", "secretTargetRef")
			for _, ref := range refs {
				if n := ref.(map[string]any)["name"].(string); !have[n] {
					t.Errorf("TriggerAuthentication reads unknown Secret %s", n)
				}
			}
		}
	})
}

// The grace-period guard and the values schema reject unsafe settings.
func TestUnsafeValuesAreRefused(t *testing.T) {
	bad := [][]string{
		{"terminationGracePeriodSeconds=12"},      // <= 5s preStop + 10s shutdown
		{"config.shutdownTimeout=ten"},            // not a Go duration
		{"podSecurityContext.runAsNonRoot=false"}, // restricted PSS
		{"resources=null"},                        // limits feed GOMAXPROCS/GOMEMLIMIT
		{"ingres.enabled=false"},                  // typo: unknown key
		{"rabbitmq.replicas=0"},
	}
	for _, c := range charts {
		for _, set := range bad {
			if _, err := tryRender(t, c, profile{Name: "bad"}, set...); err == nil {
				t.Errorf("%s: values %v must be refused", c, set)
			}
		}
	}
	if _, err := tryRender(t, "score", profile{Name: "bad"}, "autoscaling.keda.enabled=true", "rabbitmq.external.existingSecret=amqp"); err == nil {
		t.Errorf("score: KEDA with an external broker and no hostSecret must be refused")
	}
}

// Optional objects: ServiceMonitor and the dashboard ConfigMap (production turns them on).
func TestMonitoringOptions(t *testing.T) {
	for _, c := range charts {
		def := renderChart(t, c, profile{Name: "default"})
		if len(ofKind(def, "ServiceMonitor")) != 0 || len(all[*corev1.ConfigMap](def)) != 0 {
			t.Errorf("%s: ServiceMonitor and dashboard are opt-in", c)
		}
		prod := renderChart(t, c, profiles(c)[2])
		sms := ofKind(prod, "ServiceMonitor")
		if len(sms) != 1 {
			t.Fatalf("%s: production wants a ServiceMonitor", c)
		}
		eps, _, _ := unstructured.NestedSlice(sms[0].Unstructured.Object, "spec", "endpoints")
		if ep := eps[0].(map[string]any); ep["port"] != "http" || ep["path"] != "/metrics" {
			t.Errorf("%s: ServiceMonitor must scrape http /metrics: %v", c, ep)
		}
		cms := all[*corev1.ConfigMap](prod)
		if len(cms) != 1 || cms[0].Labels["grafana_dashboard"] != "1" {
			t.Fatalf("%s: production wants the dashboard ConfigMap with label grafana_dashboard=1", c)
		}
		for _, js := range cms[0].Data {
			checkDashboard(t, c, []byte(js))
		}
	}
}

// The example alert rules on the outbox backlog are opt-in; enabled, they
// watch the backlog's growth and age on the release's own pods.
func TestOutboxAlertRule(t *testing.T) {
	for _, c := range charts {
		for _, p := range profiles(c) {
			if n := len(ofKind(renderChart(t, c, p), "PrometheusRule")); n != 0 {
				t.Errorf("%s/%s: %d PrometheusRules, want none unless enabled", c, p.Name, n)
			}
		}
		r := renderChart(t, c, profile{Name: "default"}, "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.backlogAbove=500")
		rules := ofKind(r, "PrometheusRule")
		if len(rules) != 1 {
			t.Fatalf("%s: want one PrometheusRule when enabled, got %d", c, len(rules))
		}
		groups, _, _ := unstructured.NestedSlice(rules[0].Unstructured.Object, "spec", "groups")
		exprs := map[string]string{}
		for _, g := range groups {
			rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
			for _, rule := range rs {
				m := rule.(map[string]any)
				exprs[fmt.Sprint(m["alert"])] = fmt.Sprint(m["expr"])
			}
		}
		job := fmt.Sprintf(`namespace=%q, job=%q`, testNamespace, c)
		for alert, want := range map[string][]string{
			"OutboxBacklogGrowing":     {"eventbus_outbox_pending{" + job + "}) > 500", "deriv(eventbus_outbox_pending{" + job + "}[10m])) > 0"},
			"OutboxOldestPendingEvent": {"eventbus_outbox_oldest_pending_seconds{" + job + "}) > 600"},
		} {
			for _, w := range want {
				if !strings.Contains(exprs[alert], w) {
					t.Errorf("%s: alert %s: expr %q lacks %q", c, alert, exprs[alert], w)
				}
			}
		}
	}
}

// person passes the outbox backlog's bounds to the service.
func TestOutboxBoundsReachPerson(t *testing.T) {
	r := renderChart(t, "person", profile{Name: "default"}, "config.outbox.maxPending=500", "config.outbox.maxAge=15m")
	env := map[string]string{}
	for _, e := range appContainer(t, r).Env {
		env[e.Name] = e.Value
	}
	if env["OUTBOX_MAX_PENDING"] != "500" || env["OUTBOX_MAX_AGE"] != "15m" {
		t.Errorf("person env: OUTBOX_MAX_PENDING=%q OUTBOX_MAX_AGE=%q", env["OUTBOX_MAX_PENDING"], env["OUTBOX_MAX_AGE"])
	}
}

// NOTES.txt carries the README's curls; a helm test hook exists.
func TestNotesAndHelmTest(t *testing.T) {
	forEachRendering(t, func(t *testing.T, r *rendered) {
		want := map[string][]string{
			"person": {
				"curl -i -H 'Content-Type: application/json' http://localhost/person --data @payloads/new_person.json",
				"http://localhost/person/11111/income --data @payloads/new_income.json",
				"http://localhost/person/11111/asset --data @payloads/new_asset.json",
				"http://localhost/person/11111/debt --data @payloads/new_debt.json",
			},
			"score": {"curl -i http://localhost:81/11111/score"},
		}[r.Chart]
		for _, w := range want {
			if !strings.Contains(r.Notes, w) {
				t.Errorf("NOTES.txt lacks %q", w)
			}
		}
		var testPods int
		for _, h := range r.Hooks {
			objs, err := decodeStrict(h)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if p, ok := o.Typed.(*corev1.Pod); ok && p.Annotations["helm.sh/hook"] == "test" {
					testPods++
					checkRestrictedPod(t, "test pod "+p.Name, p.Spec)
					if p.Labels["personscore.io/client"] != "true" {
						t.Errorf("the test pod must carry the label the NetworkPolicy admits")
					}
				}
			}
		}
		if testPods != 1 {
			t.Errorf("want one `helm test` pod, got %d", testPods)
		}
	})
}
