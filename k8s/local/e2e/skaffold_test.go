package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// skaffoldNamespace holds the stack that skaffold deploys: a second copy next to the one
// of `make cluster-up` (which the other tests use), without a second operator or
// ingress routes (PERSONSCORE_OPERATOR=false, PERSONSCORE_INGRESS=false).
const skaffoldNamespace = "skaffold-e2e"

// The served string the dev iteration changes: the title of score's /openapi.json.
const (
	openAPITitle     = `"title": "score"`
	openAPITitleFile = "services/score/httpapi/openapi.json"
)

// TestSkaffoldRunThenDevIteration runs `make dev SKAFFOLD_PROFILE=local-node
// SKAFFOLD_CMD=run` (skaffold builds both images daemonlessly, imports them into the
// node's containerd and installs both charts) from a copy of the repository, checks that
// score answers from the image skaffold built, then starts `skaffold dev` the same way,
// changes a served string in the copy and waits until a new score pod serves it.
func TestSkaffoldRunThenDevIteration(t *testing.T) {
	skaffold := filepath.Join(repoRoot, "bin", "skaffold")
	if _, err := os.Stat(skaffold); err != nil {
		t.Fatalf("no skaffold at %s (%v): run `make test-cluster`, which builds it (k8s/hack/build-skaffold.sh)", skaffold, err)
	}
	src := copyRepo(t)
	removeSkaffoldStack(t)
	t.Cleanup(func() { removeSkaffoldStack(t) })

	run := startDev(t, src, "run")
	if err := run.wait(20 * time.Minute); err != nil {
		t.Fatalf("make dev SKAFFOLD_CMD=run: %v\n%s", err, run.tail())
	}
	image := kubectl(t, "-n", skaffoldNamespace, "get", "deployment", "score",
		"-o", "jsonpath={.spec.template.spec.containers[0].image}")
	if !strings.HasPrefix(image, "127.0.0.1:5000/") {
		t.Fatalf("score's image is %q, not one skaffold built and pushed to the loopback registry", image)
	}
	t.Logf("skaffold run deployed score %s", image)
	waitOpenAPITitle(t, openAPITitle)

	newTitle := fmt.Sprintf(`"title": "score (skaffold dev iteration %d)"`, time.Now().Unix())
	dev := startDev(t, src, "dev")
	defer dev.stop(t)
	eventually(t, "skaffold dev watching for changes", timeoutLong, func() (bool, string) {
		if dev.exited() {
			t.Fatalf("skaffold dev exited before watching:\n%s", dev.tail())
		}
		return strings.Contains(dev.output(), "Watching for changes"), ""
	})
	path := filepath.Join(src, openAPITitleFile)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), openAPITitle) {
		t.Fatalf("%s no longer contains %s: update the test", openAPITitleFile, openAPITitle)
	}
	watching := strings.Count(dev.output(), "Watching for changes")
	writeFile(t, path, strings.Replace(string(old), openAPITitle, newTitle, 1))
	waitOpenAPITitle(t, newTitle)
	// skaffold watches again once its helm upgrade finished; stopping it earlier
	// cancels the upgrade.
	eventually(t, "skaffold dev watching again after the iteration", timeoutLong, func() (bool, string) {
		if dev.exited() {
			t.Fatalf("skaffold dev exited during the iteration:\n%s", dev.tail())
		}
		return strings.Count(dev.output(), "Watching for changes") > watching, ""
	})
	image2 := kubectl(t, "-n", skaffoldNamespace, "get", "deployment", "score",
		"-o", "jsonpath={.spec.template.spec.containers[0].image}")
	if image2 == image {
		t.Fatalf("score serves the new string but its image %s is unchanged", image)
	}
	t.Logf("skaffold dev rebuilt and redeployed score as %s", image2)
}

// waitOpenAPITitle waits until score's Service in skaffoldNamespace (through the API
// server's service proxy, so only Ready pods answer) serves the given title.
func waitOpenAPITitle(t *testing.T, title string) {
	t.Helper()
	path := "/api/v1/namespaces/" + skaffoldNamespace + "/services/score:http/proxy/openapi.json"
	eventually(t, "score in "+skaffoldNamespace+" serves "+title, timeoutLong, func() (bool, string) {
		out, err := kubectlErr("get", "--raw", path)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, title), firstLine(out)
	})
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// copyRepo copies the working tree (not bin/, .data/, .git or the charts' generated
// dependencies) into a temporary directory: the dev iteration edits the copy.
func copyRepo(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		switch {
		case rel == ".git" && !d.IsDir(): // a worktree's .git file
			return nil
		case rel == "bin" || rel == ".data" || rel == ".git":
			return filepath.SkipDir
		case d.IsDir() && filepath.Base(rel) == "charts" && filepath.Dir(filepath.Dir(rel)) == "charts":
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s: %v", repoRoot, err)
	}
	return dst
}

// devProcess is `make dev SKAFFOLD_PROFILE=local-node` running in its own process group
// (make, skaffold and the loopback registry), its output collected in a file.
type devProcess struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startDev(t *testing.T, dir, skaffoldCmd string) *devProcess {
	t.Helper()
	log := filepath.Join(t.TempDir(), "make-dev-"+skaffoldCmd+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"dev", "SKAFFOLD_PROFILE=local-node", "SKAFFOLD_CMD=" + skaffoldCmd,
		"BIN=" + filepath.Join(repoRoot, "bin"), "SKAFFOLD_ARGS=-n " + skaffoldNamespace}
	if skaffoldCmd == "dev" {
		// The namespace is deleted by the test; skaffold need not uninstall on exit.
		args[len(args)-1] += " --cleanup=false"
	}
	cmd := exec.Command("make", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PERSONSCORE_OPERATOR=false", "PERSONSCORE_INGRESS=false")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("make %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("started make %s in %s", strings.Join(args, " "), dir)
	p := &devProcess{cmd: cmd, log: log, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	return p
}

func (p *devProcess) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// tail is the end of the output, for failure messages.
func (p *devProcess) tail() string {
	lines := strings.Split(strings.TrimRight(p.output(), "\n"), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	return strings.Join(lines, "\n")
}

func (p *devProcess) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// wait waits for the process to exit by itself and kills its group after timeout.
func (p *devProcess) wait(timeout time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("still running after %s, killed", timeout)
	}
}

// stop interrupts the whole group (as Ctrl-C does) and kills it if it lingers.
func (p *devProcess) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Errorf("make dev did not stop within a minute of SIGINT; killed\n%s", p.tail())
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// removeSkaffoldStack uninstalls skaffold's releases first (score, then person, whose
// RabbitmqCluster the operator finalizes while its secrets and service account still
// exist), then deletes the namespace and waits until it is gone.
func removeSkaffoldStack(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, release := range []string{"score", "person"} {
		out, err := exec.CommandContext(ctx, helmBin, "--kubeconfig", kubeconfig, "-n", skaffoldNamespace,
			"uninstall", release, "--ignore-not-found", "--wait", "--timeout", "8m").CombinedOutput()
		if err != nil {
			t.Errorf("helm uninstall %s in %s: %v\n%s", release, skaffoldNamespace, err, out)
		}
	}
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "delete", "namespace", skaffoldNamespace,
		"--ignore-not-found", "--wait=true").CombinedOutput()
	if err != nil {
		t.Errorf("delete namespace %s: %v\n%s", skaffoldNamespace, err, out)
	}
}
