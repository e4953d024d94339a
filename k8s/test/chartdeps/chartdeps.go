// Package chartdeps prepares the charts' dependencies without any chart registry: it
// copies the RabbitMQ Cluster Operator's CRD and RBAC rules from the operator's Go module
// (the module cache, filled through the Go module proxy) into
// charts/rabbitmq-cluster-operator, then runs `helm dependency update` on each service
// chart, whose dependencies (charts/common, charts/rabbitmq-cluster-operator) are all
// file:// ones. `make chart-deps` and the chart tests both call Prepare.
package chartdeps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/downloader"
	"helm.sh/helm/v3/pkg/getter"
)

// OperatorChart is the directory (under charts/) of the operator chart.
const OperatorChart = "rabbitmq-cluster-operator"

// ServiceCharts are the charts whose dependencies are built.
var ServiceCharts = []string{"person", "score"}

// Chart.yaml annotations naming the operator's Go module and version.
const (
	ModuleAnnotation  = "personscore.io/go-module"
	VersionAnnotation = "personscore.io/go-module-version"
)

// OperatorFiles maps a file of the operator chart to its source in the Go module.
var OperatorFiles = map[string]string{
	"crds/rabbitmq.com_rabbitmqclusters.yaml": "config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml",
	"files/role.yaml":                         "config/rbac/role.yaml",
	"files/leader_election_role.yaml":         "config/rbac/leader_election_role.yaml",
}

// OperatorModule reads the module path and version the operator chart declares.
func OperatorModule(chartsDir string) (module, version string, err error) {
	c, err := loader.Load(filepath.Join(chartsDir, OperatorChart))
	if err != nil {
		return "", "", err
	}
	module, version = c.Metadata.Annotations[ModuleAnnotation], c.Metadata.Annotations[VersionAnnotation]
	if module == "" || version == "" {
		return "", "", fmt.Errorf("charts/%s/Chart.yaml must declare the annotations %s and %s", OperatorChart, ModuleAnnotation, VersionAnnotation)
	}
	return module, version, nil
}

// ModuleDir returns the module cache directory of module@version, downloading it
// through the Go module proxy when missing.
func ModuleDir(module, version string) (string, error) {
	tmp, err := os.MkdirTemp("", "chartdeps-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s", module, version, err, info.Error)
	}
	return info.Dir, nil
}

// CopyOperatorFiles copies OperatorFiles from the declared module into the operator
// chart (a file is rewritten only when its content differs).
func CopyOperatorFiles(chartsDir string, log io.Writer) error {
	module, version, err := OperatorModule(chartsDir)
	if err != nil {
		return err
	}
	dir, err := ModuleDir(module, version)
	if err != nil {
		return err
	}
	for dst, src := range OperatorFiles {
		b, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			return fmt.Errorf("%s@%s: %w", module, version, err)
		}
		target := filepath.Join(chartsDir, OperatorChart, dst)
		if old, err := os.ReadFile(target); err == nil && bytes.Equal(old, b) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(log, "charts/%s/%s <- %s@%s/%s\n", OperatorChart, dst, module, version, src)
	}
	return nil
}

// UpdateDependencies is `helm dependency update` of one chart directory: it packages
// the file:// dependencies into <chart>/charts/ and writes Chart.lock. No repository is
// configured or contacted.
func UpdateDependencies(chartDir string, log io.Writer) error {
	tmp, err := os.MkdirTemp("", "chartdeps-helm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	settings := cli.New()
	settings.RepositoryConfig = filepath.Join(tmp, "repositories.yaml")
	settings.RepositoryCache = filepath.Join(tmp, "cache")
	m := &downloader.Manager{
		Out:              log,
		ChartPath:        chartDir,
		Getters:          getter.All(settings),
		RepositoryConfig: settings.RepositoryConfig,
		RepositoryCache:  settings.RepositoryCache,
		SkipUpdate:       true,
	}
	if err := m.Update(); err != nil {
		return fmt.Errorf("helm dependency update %s: %w", chartDir, err)
	}
	return nil
}

// Prepare copies the operator's files from its module and updates the dependencies
// of every service chart.
func Prepare(chartsDir string, log io.Writer) error {
	if err := CopyOperatorFiles(chartsDir, log); err != nil {
		return err
	}
	for _, c := range ServiceCharts {
		if err := UpdateDependencies(filepath.Join(chartsDir, c), log); err != nil {
			return err
		}
	}
	return nil
}
