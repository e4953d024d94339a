package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/personscore/stack"
)

// pprofOverlay is added to each main package when profiling: it serves
// net/http/pprof on $PPROF_ADDR_<BINARY NAME> (e.g. PPROF_ADDR_PERSON) and does
// nothing when that is unset. It goes in through `go build -overlay`, so the
// services' sources stay untouched.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
	"path/filepath"
	"strings"
)

func init() {
	if addr := os.Getenv("PPROF_ADDR_" + strings.ToUpper(filepath.Base(os.Args[0]))); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// BuildOptions say how to build the stack's binaries.
type BuildOptions struct {
	PProf    bool // add the pprof overlay
	Stripped bool // -ldflags='-s -w' (what an image ships, less -trimpath's few bytes)
}

// BuildBinaries compiles localmongo, person and score into dir with
// CGO_ENABLED=0, as `make build` does.
func BuildBinaries(ctx context.Context, repoRoot, dir string, o BuildOptions) error {
	args := []string{"build"}
	if o.Stripped {
		args = append(args, "-ldflags=-s -w")
	}
	if o.PProf {
		tmp, err := os.MkdirTemp("", "loadgen-overlay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		src := filepath.Join(tmp, "pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return err
		}
		replace := map[string]string{}
		for _, pkg := range stack.Packages {
			replace[filepath.Join(repoRoot, pkg, "zz_loadgen_pprof.go")] = src
		}
		raw, _ := json.Marshal(map[string]any{"Replace": replace})
		overlay := filepath.Join(tmp, "overlay.json")
		if err := os.WriteFile(overlay, raw, 0o644); err != nil {
			return err
		}
		args = append(args, "-overlay", overlay)
	}
	return buildAll(ctx, repoRoot, dir, args)
}

func buildAll(ctx context.Context, repoRoot, dir string, args []string) error {
	for name, pkg := range stack.Packages {
		cmd := exec.CommandContext(ctx, "go", append(append([]string{}, args...), "-o", filepath.Join(dir, name), pkg)...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s %s: %v\n%s", strings.Join(args, " "), pkg, err, out)
		}
	}
	return nil
}

// CaptureCPUProfile fetches a CPU profile of the given length from a pprof
// listener and writes it to file.
func CaptureCPUProfile(ctx context.Context, addr string, d time.Duration, file string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: d + time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s %s", url, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// PProfTop renders `go tool pprof -top` of a profile (flat or cumulative).
func PProfTop(ctx context.Context, binary, profile string, cum bool, n int) (string, error) {
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}
	if cum {
		args = append(args, "-cum")
	}
	args = append(args, binary, profile)
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("go tool pprof: %v: %s", err, ee.Stderr)
		}
		return "", err
	}
	return string(out), nil
}

// FileSize is a file's size in MiB (0 when missing).
func FileSize(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(st.Size()) / (1 << 20)
}
