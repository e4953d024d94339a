package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/personscore/k8s/test/chartdeps"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	sigyaml "sigs.k8s.io/yaml"
)

// Kubernetes version the charts are rendered for (the API server built for the tests).
const kubeVersion = "v1.37.2"

// Releases and namespace used by the kind path (make up) and by the tests.
const testNamespace = "personscore"

var charts = []string{"person", "score"}

// repoRoot is the repository root (this module lives in k8s/test).
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

func chartDir(name string) string { return filepath.Join(repoRoot, "charts", name) }

// profile is a named set of values files and --set overrides.
type profile struct {
	Name  string
	Files []string
	Set   []string
}

// profiles are the three documented ways to install a chart.
func profiles(chartName string) []profile {
	return []profile{
		{Name: "default"},
		{Name: "kind", Files: []string{filepath.Join(chartDir(chartName), "values-kind.yaml")}},
		{Name: "production", Files: []string{filepath.Join(chartDir(chartName), "values-production.yaml")}},
	}
}

// CRD-backed API groups the charts may emit (installed from their Go modules in the
// API-server test). Anything else must be a built-in type.
var customKinds = map[schema.GroupVersionKind]bool{
	{Group: "rabbitmq.com", Version: "v1beta1", Kind: "RabbitmqCluster"}:    true,
	{Group: "rabbitmq.com", Version: "v1beta1", Kind: "User"}:               true,
	{Group: "rabbitmq.com", Version: "v1beta1", Kind: "Permission"}:         true,
	{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}:           true,
	{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}:  true,
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: true,
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}: true,
	{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}:  true,
}

// TestMain prepares the charts' dependencies as `make chart-deps` does (offline: the
// operator's CRD and RBAC from its Go module, then `helm dependency update` of the
// file:// dependencies), so every test loads the charts exactly as `helm install
// charts/<name>` would.
func TestMain(m *testing.M) {
	var log bytes.Buffer
	if err := chartdeps.Prepare(filepath.Join(repoRoot, "charts"), &log); err != nil {
		fmt.Fprintf(os.Stderr, "preparing the chart dependencies (make chart-deps) failed: %v\n%s", err, log.String())
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// loadChart loads a chart from charts/ with the Helm SDK, dependencies included.
func loadChart(t testing.TB, name string) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir(name))
	if err != nil {
		t.Fatalf("load chart %s: %v", name, err)
	}
	return c
}

func mergeValues(t testing.TB, p profile, extra ...string) map[string]any {
	t.Helper()
	opts := values.Options{ValueFiles: p.Files, Values: append(append([]string{}, p.Set...), extra...)}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		t.Fatalf("values for profile %s: %v", p.Name, err)
	}
	return vals
}

func capabilitiesVersions() chartutil.VersionSet {
	var vs chartutil.VersionSet
	for gvk := range customKinds {
		vs = append(vs, gvk.GroupVersion().String(), gvk.GroupVersion().String()+"/"+gvk.Kind)
	}
	return vs
}

func parsedKubeVersion() *chartutil.KubeVersion {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		panic(err)
	}
	return kv
}

// rendered is one chart rendered under one profile, as `helm template` would.
type rendered struct {
	Chart, Profile string
	Values         map[string]any
	Manifest       string
	Notes          string
	Hooks          []string
	Objects        []object
}

// object is a rendered manifest decoded strictly: Typed is the API type for built-in
// kinds, nil for CRD kinds (then only Unstructured is set).
type object struct {
	Source       string
	GVK          schema.GroupVersionKind
	Name         string
	Typed        runtime.Object
	Unstructured *unstructured.Unstructured
	Raw          []byte
}

func (o object) String() string { return fmt.Sprintf("%s %s (%s)", o.GVK.Kind, o.Name, o.Source) }

// renderChart renders a chart client-side (helm template) with the SDK.
func renderChart(t testing.TB, chartName string, p profile, extra ...string) *rendered {
	t.Helper()
	r, err := tryRender(t, chartName, p, extra...)
	if err != nil {
		t.Fatalf("render %s/%s %v: %v", chartName, p.Name, extra, err)
	}
	return r
}

func tryRender(t testing.TB, chartName string, p profile, extra ...string) (*rendered, error) {
	t.Helper()
	c := loadChart(t, chartName)
	vals := mergeValues(t, p, extra...)
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	// CRDs (crds/ of the operator chart) are checked against their Go module separately.
	inst.IncludeCRDs = false
	inst.ReleaseName = chartName
	inst.Namespace = testNamespace
	inst.KubeVersion = parsedKubeVersion()
	inst.APIVersions = capabilitiesVersions()
	rel, err := inst.Run(c, vals)
	if err != nil {
		return nil, err
	}
	// The effective values: chart defaults coalesced with the profile's.
	eff, err := chartutil.CoalesceValues(c, vals)
	if err != nil {
		return nil, err
	}
	r := &rendered{Chart: chartName, Profile: p.Name, Values: eff, Manifest: rel.Manifest, Notes: rel.Info.Notes}
	for _, h := range rel.Hooks {
		r.Hooks = append(r.Hooks, h.Manifest)
	}
	all := rel.Manifest
	for _, h := range r.Hooks {
		all += "\n---\n" + h
	}
	objs, err := decodeStrict(all)
	if err != nil {
		return nil, err
	}
	r.Objects = objs
	return r, nil
}

var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

var sourceRe = regexp.MustCompile(`(?m)^# Source: (.+)$`)

// decodeStrict splits a multi-document manifest and decodes every document into its
// Kubernetes API type, failing on unknown or duplicate fields. CRD kinds must be in
// customKinds; their schemas are enforced by the API server test.
func decodeStrict(manifest string) ([]object, error) {
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var out []object
	for _, k := range keys {
		doc := docs[k]
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		src := ""
		if m := sourceRe.FindStringSubmatch(doc); m != nil {
			src = m[1]
		}
		u := &unstructured.Unstructured{}
		js, err := sigyaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s: invalid YAML: %w", src, err)
		}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		gvk := u.GroupVersionKind()
		o := object{Source: src, GVK: gvk, Name: u.GetName(), Unstructured: u, Raw: []byte(doc)}
		if customKinds[gvk] {
			out = append(out, o)
			continue
		}
		typed, _, err := strictDecoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): strict decode: %w", src, gvk, err)
		}
		o.Typed = typed
		out = append(out, o)
	}
	return out, nil
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// all returns the typed objects of type T.
func all[T runtime.Object](r *rendered) []T {
	var out []T
	for _, o := range r.Objects {
		if v, ok := o.Typed.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func ofKind(r *rendered, kind string) []object {
	var out []object
	for _, o := range r.Objects {
		if o.GVK.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// appDeployment is the service's Deployment (exactly one per chart; the operator's
// Deployment, when the chart installs it, is another component).
func appDeployment(t testing.TB, r *rendered) *appsv1.Deployment {
	t.Helper()
	var out []*appsv1.Deployment
	for _, d := range all[*appsv1.Deployment](r) {
		if d.Labels["app.kubernetes.io/component"] == "api" {
			out = append(out, d)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%s/%s: want exactly 1 Deployment with component api, got %d", r.Chart, r.Profile, len(out))
	}
	return out[0]
}

func appContainer(t testing.TB, r *rendered) corev1.Container {
	t.Helper()
	d := appDeployment(t, r)
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == r.Chart {
			return c
		}
	}
	t.Fatalf("%s/%s: no container named %s", r.Chart, r.Profile, r.Chart)
	return corev1.Container{}
}

func envValue(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// value reads a nested value by dotted path.
func value(vals map[string]any, path string) any {
	var cur any = vals
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func truthy(v any) bool { b, _ := v.(bool); return b }
