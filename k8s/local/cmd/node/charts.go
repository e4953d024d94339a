package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// appImages are the tarballs `make images` writes to bin/images (k8s/images/images.env).
var appImages = []string{"person", "score", "localmongo", "http-check", "rabbitmq", "rabbitmq-cluster-operator"}

// importAppImages imports bin/images/*.tar, failing when one of appImages is missing.
func (n *node) importAppImages() error {
	for _, name := range appImages {
		if _, err := os.Stat(filepath.Join(n.bin, "images", name+".tar")); err != nil {
			return fmt.Errorf("image %s missing: run make images (writes bin/images/%s.tar)", name, name)
		}
	}
	tars, err := filepath.Glob(filepath.Join(n.bin, "images", "*.tar"))
	if err != nil {
		return err
	}
	for _, t := range tars {
		if err := n.importImage(t); err != nil {
			return err
		}
	}
	return nil
}

// imageRefs reads k8s/images/images.env, the one place naming the images.
func (n *node) imageRefs() (map[string]string, error) {
	f, err := os.Open(filepath.Join(n.root, "k8s", "images", "images.env"))
	if err != nil {
		return nil, fmt.Errorf("image names: %w", err)
	}
	defer f.Close()
	refs := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			refs[k] = v
		}
	}
	return refs, sc.Err()
}

// chartSets are the --set flags of each chart on this node: where its images are (the
// ones imported from bin/images) and nothing else; the rest is values-kind.yaml.
func (n *node) chartSets() (map[string][]string, error) {
	refs, err := n.imageRefs()
	if err != nil {
		return nil, err
	}
	repoTag := func(key string) (string, string, error) {
		ref := refs[key]
		i := strings.LastIndex(ref, ":")
		if ref == "" || i < 0 {
			return "", "", fmt.Errorf("k8s/images/images.env: no %s", key)
		}
		return ref[:i], ref[i+1:], nil
	}
	opRepo, opTag, err := repoTag("RABBITMQ_OPERATOR_IMAGE")
	if err != nil {
		return nil, err
	}
	if refs["RABBITMQ_IMAGE"] == "" {
		return nil, fmt.Errorf("k8s/images/images.env: no RABBITMQ_IMAGE")
	}
	common := []string{
		// MongoDB: no MongoDB image can be built here; the embedded MongoDB-wire server
		// (personscore/localmongo) stands in on this node only.
		"mongodb.server=localmongo",
	}
	return map[string][]string{
		"person": append([]string{
			"rabbitmqOperator.image.repository=" + opRepo,
			"rabbitmqOperator.image.tag=" + opTag,
			"rabbitmq.cluster.image=" + refs["RABBITMQ_IMAGE"],
		}, common...),
		"score": common,
	}, nil
}

// installCharts installs both charts as a user would on kind (values-kind.yaml), with
// only the image settings changed, and waits until everything is Ready.
func (n *node) installCharts() error {
	if err := n.importAppImages(); err != nil {
		return err
	}
	helm := filepath.Join(n.bin, "helm")
	if _, err := os.Stat(helm); err != nil {
		return fmt.Errorf("%s missing: run make cluster-up (it installs helm into bin/)", helm)
	}
	sets, err := n.chartSets()
	if err != nil {
		return err
	}
	if _, err := n.kubectl("apply", "-f", filepath.Join(n.root, "k8s", "addons", "namespace.yaml")); err != nil {
		return err
	}
	for _, chart := range []string{"person", "score"} {
		t0 := time.Now()
		args := []string{"--kubeconfig", n.adminKubeconfig(), "upgrade", "--install", chart, filepath.Join(n.root, "charts", chart),
			"-n", namespace, "-f", filepath.Join(n.root, "charts", chart, "values-kind.yaml"), "--wait", "--timeout", "15m"}
		for _, s := range sets[chart] {
			args = append(args, "--set", s)
		}
		step("helm upgrade --install %s (values-kind.yaml, --set %s)", chart, strings.Join(sets[chart], " --set "))
		if _, err := run(helm, args...); err != nil {
			n.kubectl("-n", namespace, "get", "pods", "-o", "wide")
			return err
		}
		step("%s installed and ready in %.0fs", chart, time.Since(t0).Seconds())
	}
	for _, kind := range []string{"deployment", "statefulset"} {
		out, err := n.kubectl("-n", namespace, "get", kind, "-o", "name")
		if err != nil {
			return err
		}
		for _, name := range strings.Fields(out) {
			if _, err := n.kubectl("-n", namespace, "rollout", "status", name, "--timeout=10m"); err != nil {
				return err
			}
		}
	}
	step("every Deployment and StatefulSet of %s rolled out", namespace)
	return nil
}
