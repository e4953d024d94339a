package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/personscore/k8s/test/chartdeps"
)

// imagesEnv reads k8s/images/images.env, the one place that names the images.
func imagesEnv(t testing.TB) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "k8s", "images", "images.env"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(strings.TrimSpace(k), "#") {
			env[k] = v
		}
	}
	return env
}

// operatorModuleDir is the module cache directory of the Go module the operator chart
// declares (downloaded through the module proxy when missing).
func operatorModuleDir(t *testing.T) (dir, module, version string) {
	t.Helper()
	module, version, err := chartdeps.OperatorModule(filepath.Join(repoRoot, "charts"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err = chartdeps.ModuleDir(module, version)
	if err != nil {
		t.Fatal(err)
	}
	return dir, module, version
}

// moduleRules reads the rules of an RBAC (Cluster)Role file of the operator's module.
func moduleRules(t *testing.T, dir, rel string) []rbacv1.PolicyRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	// The file opens with a license comment and "---".
	doc := b[bytes.Index(b, []byte("apiVersion:")):]
	if err := sigyaml.Unmarshal(doc, &role); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	if len(role.Rules) == 0 {
		t.Fatalf("%s has no rules", rel)
	}
	return role.Rules
}

// covers tells whether rules grant verb on group/resource (wildcards included).
func covers(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	in := func(list []string, s string) bool {
		for _, v := range list {
			if v == s || v == "*" {
				return true
			}
		}
		return false
	}
	for _, r := range rules {
		if in(r.APIGroups, group) && in(r.Resources, resource) && in(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// The operator chart is what the declared module v2.20.0 ships: its CRD verbatim, and
// RBAC that grants every (group, resource, verb) of the module's role.yaml (v2.20 lists
// endpointslices, which older packagings missed) and leader_election_role.yaml.
func TestOperatorChartMatchesItsModule(t *testing.T) {
	dir, module, version := operatorModuleDir(t)
	for dst, src := range chartdeps.OperatorFiles {
		want, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(repoRoot, "charts", chartdeps.OperatorChart, dst))
		if err != nil {
			t.Fatalf("%s: %v (make chart-deps writes it)", dst, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("charts/%s/%s differs from %s@%s/%s", chartdeps.OperatorChart, dst, module, version, src)
		}
	}
	clusterRules := moduleRules(t, dir, "config/rbac/role.yaml")
	leaderRules := moduleRules(t, dir, "config/rbac/leader_election_role.yaml")

	r := renderChart(t, "person", profile{Name: "default"})
	var clusterRole, leaderRole []rbacv1.PolicyRule
	var bound, leaderBound bool
	var sa string
	for _, d := range all[*appsv1.Deployment](r) {
		if d.Labels["app.kubernetes.io/name"] == "rabbitmq-cluster-operator" {
			sa = d.Spec.Template.Spec.ServiceAccountName
		}
	}
	if sa == "" {
		t.Fatal("person renders no operator Deployment")
	}
	for _, cr := range all[*rbacv1.ClusterRole](r) {
		clusterRole = append(clusterRole, cr.Rules...)
	}
	for _, role := range all[*rbacv1.Role](r) {
		leaderRole = append(leaderRole, role.Rules...)
	}
	for _, b := range all[*rbacv1.ClusterRoleBinding](r) {
		for _, s := range b.Subjects {
			bound = bound || (s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == testNamespace)
		}
	}
	for _, b := range all[*rbacv1.RoleBinding](r) {
		for _, s := range b.Subjects {
			leaderBound = leaderBound || (s.Kind == "ServiceAccount" && s.Name == sa)
		}
	}
	if !bound || !leaderBound {
		t.Errorf("the operator's ServiceAccount %s must be bound to its ClusterRole and leader-election Role", sa)
	}
	check := func(what string, want, have []rbacv1.PolicyRule) {
		n := 0
		for _, rule := range want {
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						n++
						if !covers(have, g, res, v) {
							t.Errorf("%s: %s %q %s is in the module's rules but not granted", what, v, g, res)
						}
					}
				}
			}
		}
		t.Logf("%s: %d (group, resource, verb) grants of %s@%s covered", what, n, module, version)
	}
	check("ClusterRole", clusterRules, clusterRole)
	check("leader-election Role", leaderRules, leaderRole)
	if !covers(clusterRole, "discovery.k8s.io", "endpointslices", "list") {
		t.Errorf("v2.20 watches EndpointSlices: the ClusterRole must grant them")
	}
}

// Image references: the operator from the registry its releases are published to now
// (not docker.io/rabbitmqoperator, not Bitnami's withdrawn images), at the version of
// the module the chart and `make images` use; every image the charts name on the local
// node is one images.env names.
func TestImageReferences(t *testing.T) {
	env := imagesEnv(t)
	op, err := loadRawChart(chartdeps.OperatorChart)
	if err != nil {
		t.Fatal(err)
	}
	if v := op.Metadata.Annotations[chartdeps.VersionAnnotation]; v != "v"+op.Metadata.AppVersion || v != env["RABBITMQ_OPERATOR_VERSION"] {
		t.Errorf("operator version: chart appVersion %s, module annotation %s, images.env %s must agree", op.Metadata.AppVersion, v, env["RABBITMQ_OPERATOR_VERSION"])
	}
	if m := op.Metadata.Annotations[chartdeps.ModuleAnnotation]; m != env["RABBITMQ_OPERATOR_MODULE"] {
		t.Errorf("operator module: chart %s, images.env %s", m, env["RABBITMQ_OPERATOR_MODULE"])
	}
	if !strings.HasSuffix(env["RABBITMQ_OPERATOR_IMAGE"], ":"+op.Metadata.AppVersion) {
		t.Errorf("RABBITMQ_OPERATOR_IMAGE %s is not tagged with the chart's appVersion %s", env["RABBITMQ_OPERATOR_IMAGE"], op.Metadata.AppVersion)
	}

	images := func(r *rendered) map[string]bool {
		out := map[string]bool{}
		for _, d := range all[*appsv1.Deployment](r) {
			for _, c := range d.Spec.Template.Spec.Containers {
				out[c.Image] = true
			}
		}
		for _, s := range all[*appsv1.StatefulSet](r) {
			for _, c := range s.Spec.Template.Spec.Containers {
				out[c.Image] = true
			}
		}
		for _, rc := range ofKind(r, "RabbitmqCluster") {
			img, _ := rc.Unstructured.Object["spec"].(map[string]any)["image"].(string)
			out[img] = true
		}
		for _, h := range r.Hooks {
			objs, err := decodeStrict(h)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if u := o.Unstructured; u.GetKind() == "Pod" {
					for _, c := range u.Object["spec"].(map[string]any)["containers"].([]any) {
						out[c.(map[string]any)["image"].(string)] = true
					}
				}
			}
		}
		return out
	}
	def := images(renderChart(t, "person", profile{Name: "default"}))
	want := "ghcr.io/rabbitmq/cluster-operator:" + op.Metadata.AppVersion
	if !def[want] {
		t.Errorf("person installs the operator as %v, want %s", def, want)
	}
	for img := range def {
		if strings.Contains(img, "rabbitmqoperator/") || strings.Contains(img, "bitnami") {
			t.Errorf("image %s: a registry the operator's releases are no longer published to", img)
		}
	}

	// The local node: values-kind.yaml plus the image --sets the node passes.
	known := map[string]bool{}
	for k, v := range env {
		if strings.HasSuffix(k, "_IMAGE") {
			known[v] = true
		}
	}
	opRepo, opTag, _ := strings.Cut(env["RABBITMQ_OPERATOR_IMAGE"], ":")
	localSets := map[string][]string{
		"person": {"rabbitmqOperator.image.repository=" + opRepo, "rabbitmqOperator.image.tag=" + opTag,
			"rabbitmq.cluster.image=" + env["RABBITMQ_IMAGE"], "mongodb.server=localmongo"},
		"score": {"mongodb.server=localmongo"},
	}
	for _, c := range charts {
		got := images(renderChart(t, c, profiles(c)[1], localSets[c]...))
		for img := range got {
			if !known[img] {
				t.Errorf("%s on the local node uses image %s, which make images does not build (k8s/images/images.env)", c, img)
			}
		}
		if !got[env[strings.ToUpper(c)+"_IMAGE"]] || !got[env["LOCALMONGO_IMAGE"]] || !got[env["HTTP_CHECK_IMAGE"]] {
			t.Errorf("%s on the local node: images %v, want %s, %s and %s", c, got, env[strings.ToUpper(c)+"_IMAGE"], env["LOCALMONGO_IMAGE"], env["HTTP_CHECK_IMAGE"])
		}
	}
}

// The operator dependency is aliased rabbitmqOperator; whatever the release name, the
// objects it renders have lower-case names (an alias-derived name would not).
func TestOperatorObjectNamesIgnoreTheAlias(t *testing.T) {
	r := renderChart(t, "person", profile{Name: "default"})
	n := 0
	for _, o := range r.Objects {
		if o.Unstructured.GetLabels()["app.kubernetes.io/name"] != "rabbitmq-cluster-operator" {
			continue
		}
		n++
		if o.Name != strings.ToLower(o.Name) || strings.Contains(strings.ToLower(o.Name), "rabbitmqoperator") {
			t.Errorf("%s: name derived from the alias", o)
		}
	}
	if n < 6 {
		t.Errorf("want the operator's ServiceAccount, Deployment, (Cluster)Roles and bindings, got %d objects", n)
	}
	// A second release of the chart in another namespace gets distinct cluster-scoped names.
	for _, o := range r.Objects {
		if clusterScoped[o.GVK.Kind] && !strings.HasPrefix(o.Name, testNamespace+"-") {
			t.Errorf("%s: cluster-scoped name must carry the namespace", o)
		}
	}
}

// mongodb.server=localmongo: the local node's stand-in, no credentials, TCP probes, the
// image's non-root user; the default stays the official mongod.
func TestLocalmongoStandIn(t *testing.T) {
	for _, c := range charts {
		r := renderChart(t, c, profiles(c)[1], "mongodb.server=localmongo")
		sts := all[*appsv1.StatefulSet](r)
		if len(sts) != 1 {
			t.Fatalf("%s: want one StatefulSet", c)
		}
		pod := sts[0].Spec.Template.Spec
		checkRestrictedPod(t, c+" localmongo", pod)
		ct := pod.Containers[0]
		if ct.Image != imagesEnv(t)["LOCALMONGO_IMAGE"] || len(ct.Args) != 0 || len(ct.Env) != 0 {
			t.Errorf("%s: localmongo container: image %s args %v env %v", c, ct.Image, ct.Args, ct.Env)
		}
		if ct.ReadinessProbe == nil || ct.ReadinessProbe.TCPSocket == nil {
			t.Errorf("%s: localmongo has no mongosh: probes must be TCP", c)
		}
		if u := pod.SecurityContext.RunAsUser; u == nil || *u != 65532 {
			t.Errorf("%s: localmongo runs as the image user 65532, got %v", c, u)
		}
		app := appContainer(t, r)
		uri, _ := envValue(app, "MONGO_URI")
		if uri.Value != fmt.Sprintf("mongodb://%s.%s.svc:27017/", sts[0].Spec.ServiceName, testNamespace) {
			t.Errorf("%s: MONGO_URI %q, want no credentials", c, uri.Value)
		}
		if _, ok := envValue(app, "MONGO_PASSWORD"); ok {
			t.Errorf("%s: localmongo has no authentication: no MONGO_PASSWORD", c)
		}
	}
	if _, err := tryRender(t, "person", profile{Name: "bad"}, "mongodb.server=mongo"); err == nil {
		t.Errorf("mongodb.server must be mongod or localmongo")
	}
}

// score can use a RabbitmqCluster in another namespace through its own broker user;
// the operator's default-user Secret (same-namespace only) is refused early.
func TestBrokerInAnotherNamespace(t *testing.T) {
	if _, err := tryRender(t, "score", profile{Name: "other-ns"}, "rabbitmq.clusterNamespace=broker"); err == nil ||
		!strings.Contains(err.Error(), "default-user Secret cannot be read") {
		t.Errorf("operator mode with a cluster in another namespace must be refused with a reason, got %v", err)
	}
	if _, err := tryRender(t, "person", profile{Name: "other-ns"}, "rabbitmq.clusterNamespace=broker", "rabbitmq.topologyOperator.enabled=true"); err == nil {
		t.Errorf("createCluster with a clusterNamespace elsewhere must be refused")
	}
	r := renderChart(t, "score", profile{Name: "other-ns"}, "rabbitmq.clusterNamespace=broker", "rabbitmq.topologyOperator.enabled=true")
	url, _ := envValue(appContainer(t, r), "AMQP_URL")
	if !strings.Contains(url.Value, "@personscore-rabbitmq.broker.svc:5672/") {
		t.Errorf("AMQP_URL %q must point at the cluster's Service in namespace broker", url.Value)
	}
	for _, kind := range []string{"User", "Permission"} {
		for _, o := range ofKind(r, kind) {
			ref, _ := o.Unstructured.Object["spec"].(map[string]any)["rabbitmqClusterReference"].(map[string]any)
			if ref["name"] != "personscore-rabbitmq" || ref["namespace"] != "broker" {
				t.Errorf("%s: rabbitmqClusterReference %v, want personscore-rabbitmq in broker", o, ref)
			}
		}
	}
	np := false
	for _, o := range ofKind(r, "NetworkPolicy") {
		if strings.Contains(string(o.Raw), "kubernetes.io/metadata.name: broker") {
			np = true
		}
	}
	if !np {
		t.Errorf("the NetworkPolicy must allow egress to the broker pods in namespace broker")
	}
	p := renderChart(t, "person", profile{Name: "allow"}, "rabbitmq.cluster.topologyAllowedNamespaces[0]=apps", "rabbitmq.cluster.topologyAllowedNamespaces[1]=more")
	for _, rc := range ofKind(p, "RabbitmqCluster") {
		if got := rc.Unstructured.GetAnnotations()["rabbitmq.com/topology-allowed-namespaces"]; got != "apps,more" {
			t.Errorf("RabbitmqCluster annotation topology-allowed-namespaces %q, want apps,more", got)
		}
	}
}
