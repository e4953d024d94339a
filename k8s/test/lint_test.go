package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/lint/support"
)

func loadRawChart(name string) (*chart.Chart, error) { return loader.Load(chartDir(name)) }

// TestHelmLintStrict runs Helm's own linter (the code behind `helm lint --strict`) on the
// real chart directories, dependencies included, under each profile; and on the library
// and operator charts.
func TestHelmLintStrict(t *testing.T) {
	type target struct {
		chart string
		p     profile
	}
	var targets []target
	for _, c := range charts {
		for _, p := range profiles(c) {
			targets = append(targets, target{c, p})
		}
	}
	targets = append(targets, target{"common", profile{Name: "default"}}, target{"rabbitmq-cluster-operator", profile{Name: "default"}})
	for _, tg := range targets {
		t.Run(tg.chart+"/"+tg.p.Name, func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = testNamespace
			l.KubeVersion = parsedKubeVersion()
			res := l.Run([]string{chartDir(tg.chart)}, mergeValues(t, tg.p))
			for _, m := range res.Messages {
				if m.Severity < support.WarningSev {
					t.Logf("lint: %s", m)
					continue
				}
				t.Errorf("lint: %s", m)
			}
		})
	}
}

// The templates both service charts share live once, in the library chart: each chart's
// copy is a one-line include of a common.* template, and no other template file is
// duplicated between them.
func TestSharedTemplatesInLibraryChart(t *testing.T) {
	lib, err := loadRawChart("common")
	if err != nil {
		t.Fatal(err)
	}
	if lib.Metadata.Type != "library" {
		t.Fatalf("charts/common must be a library chart, got type %q", lib.Metadata.Type)
	}
	defined := map[string]bool{}
	for _, tpl := range lib.Templates {
		for _, m := range regexp.MustCompile(`\{\{-? define "([^"]+)"`).FindAllStringSubmatch(string(tpl.Data), -1) {
			defined[m[1]] = true
		}
	}
	include := regexp.MustCompile(`^\{\{- include "(common\.[A-Za-z.]+)" \. \}\}\n$`)
	files := map[string]map[string][]byte{}
	for _, c := range charts {
		files[c] = map[string][]byte{}
		err := filepath.WalkDir(filepath.Join(chartDir(c), "templates"), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(chartDir(c), p)
			files[c][rel] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := files[c]["templates/_helpers.tpl"]; ok {
			t.Errorf("%s: templates/_helpers.tpl must not exist: the helpers live in charts/common", c)
		}
	}
	shared := 0
	for rel, a := range files["person"] {
		b, ok := files["score"][rel]
		if !ok || string(a) != string(b) {
			continue
		}
		m := include.FindSubmatch(a)
		if m == nil {
			t.Errorf("templates %s is identical in both charts but not a one-line include of the library chart", rel)
			continue
		}
		if !defined[string(m[1])] {
			t.Errorf("%s includes %s, which charts/common does not define", rel, m[1])
		}
		shared++
	}
	if shared < 10 {
		t.Errorf("only %d templates are shared through the library chart", shared)
	}
	for _, c := range charts {
		if _, err := os.Stat(filepath.Join(chartDir(c), "files", "dashboard.json")); err == nil {
			t.Errorf("%s: files/dashboard.json is a copy: the dashboard lives in charts/common", c)
		}
		ch, err := loadRawChart(c)
		if err != nil {
			t.Fatal(err)
		}
		var hasLib bool
		for _, d := range ch.Metadata.Dependencies {
			hasLib = hasLib || (d.Name == "common" && strings.HasPrefix(d.Repository, "file://../common"))
		}
		if !hasLib {
			t.Errorf("%s does not depend on file://../common", c)
		}
	}
}
