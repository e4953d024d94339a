package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Packages maps each binary to its main package, relative to the repository root.
var Packages = map[string]string{
	Mongo:  "./services/localmongo/cmd/localmongo",
	Person: "./services/person/cmd/person",
	Score:  "./services/score/cmd/score",
}

// Build compiles the three binaries into binDir (the go build cache makes a
// repeated build quick).
func Build(ctx context.Context, repoRoot, binDir string) error {
	for name, pkg := range Packages {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(binDir, name), pkg)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// RepoRoot finds the repository root (the folder holding go.work) from dir upwards.
func RepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s", dir)
		}
	}
}
