package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	sigyaml "sigs.k8s.io/yaml"
)

func readYAML(t *testing.T, rel string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := sigyaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// The kind host ports 80/81 reach Traefik's web/score entry points, which the charts'
// kind values route to (port 80 by path, port 81 score only).
func TestKindIngressWiring(t *testing.T) {
	var kind struct {
		Kind, APIVersion, Name string
		Nodes                  []struct {
			Role              string
			ExtraPortMappings []struct {
				ContainerPort, HostPort int
				ListenAddress, Protocol string
			} `json:"extraPortMappings"`
		}
	}
	readYAML(t, "k8s/kind-config.yaml", &kind)
	hostToNode := map[int]int{}
	for _, n := range kind.Nodes {
		for _, m := range n.ExtraPortMappings {
			hostToNode[m.HostPort] = m.ContainerPort
		}
	}
	var traefik struct {
		Ports map[string]struct {
			Port, ExposedPort, NodePort int
			Protocol                    string
			Expose                      map[string]bool
		}
		Service struct{ Type string }
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "k8s/addons/traefik.values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sigyaml.Unmarshal(b, &traefik); err != nil {
		t.Fatal(err)
	}
	if traefik.Service.Type != "NodePort" {
		t.Errorf("Traefik Service must be a NodePort for kind's port mappings")
	}
	for host, entry := range map[int]string{80: "web", 81: "score"} {
		p, ok := traefik.Ports[entry]
		if !ok || !p.Expose["default"] {
			t.Errorf("Traefik entry point %s is not exposed", entry)
			continue
		}
		if hostToNode[host] == 0 || hostToNode[host] != p.NodePort {
			t.Errorf("host port %d maps to node port %d, Traefik %s listens on nodePort %d", host, hostToNode[host], entry, p.NodePort)
		}
	}
	for c, want := range map[string]string{"person": "web", "score": "web,score"} {
		r := renderChart(t, c, profiles(c)[1])
		for _, o := range ofKind(r, "Ingress") {
			if got := o.Unstructured.GetAnnotations()["traefik.ingress.kubernetes.io/router.entrypoints"]; got != want {
				t.Errorf("%s kind Ingress entry points %q, want %q", c, got, want)
			}
		}
	}
	var versions = map[string]string{}
	env, _ := os.ReadFile(filepath.Join(repoRoot, "k8s/addons/versions.env"))
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			versions[k] = v
		}
	}
	for _, k := range []string{"TRAEFIK_CHART_VERSION", "METRICS_SERVER_CHART_VERSION"} {
		if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(versions[k]) {
			t.Errorf("%s must pin an exact version, got %q", k, versions[k])
		}
	}
}

// skaffold.yaml builds both images and wires them into both charts.
func TestSkaffoldWiring(t *testing.T) {
	var sk struct {
		APIVersion string
		Build      struct {
			Artifacts []struct {
				Image, Context string
				Docker         struct {
					Dockerfile, Target string
					BuildArgs          map[string]string `json:"buildArgs"`
				}
			}
		}
		Deploy struct {
			Helm struct {
				Releases []struct {
					Name, ChartPath, Namespace string
					SetValueTemplates          map[string]string `json:"setValueTemplates"`
				}
			}
		}
		Profiles []struct {
			Name    string
			Patches []struct {
				Op, Path string
				Value    any
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sigyaml.Unmarshal(b, &sk); err != nil {
		t.Fatal(err)
	}
	images := map[string]bool{}
	for _, a := range sk.Build.Artifacts {
		images[a.Image] = true
		if _, err := os.Stat(filepath.Join(repoRoot, a.Context, a.Docker.Dockerfile)); err != nil {
			t.Errorf("artifact %s: %v", a.Image, err)
		}
		// One Dockerfile for both services: the target stage and SERVICE name the image's.
		svc := strings.TrimPrefix(a.Image, "personscore/")
		if a.Docker.Target != svc || a.Docker.BuildArgs["SERVICE"] != svc {
			t.Errorf("artifact %s: target %q, SERVICE %q; want %q for both", a.Image, a.Docker.Target, a.Docker.BuildArgs["SERVICE"], svc)
		}
	}
	for _, c := range charts {
		img := "personscore/" + c
		if !images[img] {
			t.Errorf("skaffold does not build %s", img)
		}
		found := false
		for _, r := range sk.Deploy.Helm.Releases {
			if r.ChartPath != "charts/"+c {
				continue
			}
			found = true
			key := strings.NewReplacer("/", "_", "-", "_", ".", "_").Replace(img)
			if r.SetValueTemplates["image.repository"] != fmt.Sprintf("{{.IMAGE_REPO_%s}}", key) || r.SetValueTemplates["image.tag"] != fmt.Sprintf("{{.IMAGE_TAG_%s}}", key) {
				t.Errorf("release %s does not wire the built image: %v", r.Name, r.SetValueTemplates)
			}
		}
		if !found {
			t.Errorf("skaffold does not deploy charts/%s", c)
		}
	}
	var kindProfile, localProfile bool
	env := imagesEnv(t)
	opRepo, opTag, _ := strings.Cut(env["RABBITMQ_OPERATOR_IMAGE"], ":")
	for _, p := range sk.Profiles {
		if p.Name == "local-node" {
			localProfile = true
			custom := 0
			for _, patch := range p.Patches {
				v, _ := patch.Value.(map[string]any)
				if cmd, ok := v["buildCommand"].(string); ok {
					custom++
					script, svc, _ := strings.Cut(cmd, " ")
					if st, err := os.Stat(filepath.Join(repoRoot, script)); err != nil || st.Mode()&0o111 == 0 || !contains(charts, svc) {
						t.Errorf("local-node: custom build %q must run an executable script of this repository for person or score (%v)", cmd, err)
					}
				}
				if strings.HasSuffix(patch.Path, "/setValues") {
					want := map[string]any{"mongodb.server": "localmongo"}
					if patch.Path == "/deploy/helm/releases/0/setValues" {
						want["rabbitmqOperator.image.repository"] = opRepo
						want["rabbitmqOperator.image.tag"] = opTag
						want["rabbitmq.cluster.image"] = env["RABBITMQ_IMAGE"]
					}
					if fmt.Sprint(v) != fmt.Sprint(want) {
						t.Errorf("local-node %s = %v, want the images of k8s/images/images.env %v", patch.Path, v, want)
					}
				}
			}
			if custom != 2 {
				t.Errorf("local-node: want a custom (daemonless) build for both images, got %d", custom)
			}
		}
		for _, patch := range p.Patches {
			if files, ok := patch.Value.([]any); ok {
				for _, f := range files {
					if _, err := os.Stat(filepath.Join(repoRoot, fmt.Sprint(f))); err != nil {
						t.Errorf("profile %s: %v", p.Name, err)
					}
				}
			}
		}
		if p.Name == "kind" {
			kindProfile = true
		}
	}
	if !kindProfile || !localProfile {
		t.Errorf("skaffold.yaml needs a kind and a local-node profile")
	}
}
