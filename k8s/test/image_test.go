package test

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/personscore/k8s/test/imagebuild"
)

// maxImageBytes bounds the compressed image size: a static Go service on scratch.
const maxImageBytes = 60 << 20

type imageFile struct {
	hdr  *tar.Header
	data []byte
}

// imageFS flattens the image's layers into path -> file.
func imageFS(t *testing.T, img v1.Image) map[string]imageFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	fs := map[string]imageFile{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(tr)
			fs["/"+strings.TrimSuffix(h.Name, "/")] = imageFile{h, data}
		}
		rc.Close()
	}
	return fs
}

// checkImage asserts what a restricted Pod needs from the image: a numeric non-root
// user (kubelet's runAsNonRoot check), a known passwd entry, an absolute entrypoint to a
// static executable that the user cannot modify, the CA bundle, a small size.
func checkImage(t *testing.T, img v1.Image, svc string) map[string]imageFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != fmt.Sprintf("%d:%d", imagebuild.UID, imagebuild.GID) {
		t.Errorf("%s: image user %q, want numeric non-root 65532:65532", svc, cf.Config.User)
	}
	entry := filepath.Join(imagebuild.BinDir, svc)
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != entry {
		t.Errorf("%s: entrypoint %v, want [%s]", svc, cf.Config.Entrypoint, entry)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("%s: platform %s/%s", svc, cf.OS, cf.Architecture)
	}
	size, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	var compressed int64
	layers, _ := img.Layers()
	for _, l := range layers {
		s, _ := l.Size()
		compressed += s
	}
	if compressed > maxImageBytes {
		t.Errorf("%s: image layers are %d bytes, limit %d", svc, compressed, maxImageBytes)
	}
	t.Logf("%s: %d layer(s), %.1f MiB compressed, manifest %d bytes", svc, len(layers), float64(compressed)/(1<<20), size)

	fs := imageFS(t, img)
	bin, ok := fs[entry]
	if !ok {
		t.Fatalf("%s: entrypoint %s not in the image", svc, entry)
	}
	if bin.hdr.Uid != 0 || bin.hdr.Mode&0o022 != 0 || bin.hdr.Mode&0o111 == 0 {
		t.Errorf("%s: entrypoint must be root-owned, executable, not writable by others (uid %d mode %o)", svc, bin.hdr.Uid, bin.hdr.Mode)
	}
	tmp := filepath.Join(t.TempDir(), svc)
	if err := os.WriteFile(tmp, bin.data, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(tmp)
	if err != nil {
		t.Fatalf("%s: entrypoint is not an ELF binary: %v", svc, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: entrypoint is dynamically linked; a scratch image needs CGO_ENABLED=0", svc)
		}
	}
	f.Close()
	passwd := string(fs["/etc/passwd"].data)
	if !regexp.MustCompile(`(?m)^nonroot:x:65532:65532:`).MatchString(passwd) {
		t.Errorf("%s: /etc/passwd lacks the nonroot user: %q", svc, passwd)
	}
	if ca := fs[imagebuild.CABundlePath]; !strings.Contains(string(ca.data), "BEGIN CERTIFICATE") {
		t.Errorf("%s: CA bundle missing at %s", svc, imagebuild.CABundlePath)
	}
	if tmpDir, ok := fs["/tmp"]; !ok || tmpDir.hdr.Mode&0o1777 != 0o1777 {
		t.Errorf("%s: /tmp must exist with mode 1777", svc)
	}
	for p, f := range fs {
		if f.hdr.Mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 && f.hdr.Typeflag == tar.TypeReg {
			t.Errorf("%s: setuid/setgid file %s", svc, p)
		}
	}
	return fs
}

// roundTrip writes the image as a `docker save` tarball and reads it back.
func roundTrip(t *testing.T, img v1.Image, ref, out string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(out, r, img); err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatalf("read back %s: %v", out, err)
	}
	return back
}

// The builder itself, on a fixture: the image's entrypoint, extracted and run as the
// image's user (65532), serves HTTP and can read the CA bundle.
func TestImageBuilderRunsAsNonRoot(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fixture")
	if err := imagebuild.GoBuild(filepath.Join(repoRoot, "k8s", "test"), "./testdata/fixture", bin, ""); err != nil {
		t.Fatal(err)
	}
	img, err := imagebuild.Build(imagebuild.Spec{Name: "fixture", Binary: bin, Ports: []int{8080}, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	img = roundTrip(t, img, "personscore/fixture:test", filepath.Join(dir, "fixture.tar"))
	fs := checkImage(t, img, "fixture")

	if os.Geteuid() != 0 {
		t.Fatal("running the entrypoint as uid 65532 needs root (as on CI); run this test as root")
	}
	// A minimal root filesystem from the image, entered with chroot as 65532:65532 —
	// what a container runtime does, without one.
	rootfs := filepath.Join(dir, "rootfs")
	for p, f := range fs {
		target := filepath.Join(rootfs, p)
		if f.hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(target, os.FileMode(f.hdr.Mode&0o777)|modeBits(f.hdr.Mode)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(target, f.hdr.Uid, f.hdr.Gid); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, f.data, os.FileMode(f.hdr.Mode&0o777)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cf, _ := img.ConfigFile()
	cmd := exec.Command(cf.Config.Entrypoint[0])
	cmd.Env = append(cf.Config.Env, fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", port))
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: imagebuild.UID, Gid: imagebuild.GID}}
	dieWithParent(cmd)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start entrypoint as 65532 in the image rootfs: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			t.Log("fixture:", s.Text())
		}
	}()
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, "uid=65532 gid=65532 ca=true") {
		t.Fatalf("entrypoint did not serve as 65532 with the CA bundle readable: %q", body)
	}
}

// The service images: built from services/<svc>/cmd/<svc> exactly as `make images`
// does, written to bin/images/<svc>.tar.
func TestServiceImages(t *testing.T) {
	for _, svc := range charts {
		t.Run(svc, func(t *testing.T) {
			mainDir := filepath.Join(repoRoot, "services", svc, "cmd", svc)
			if _, err := os.Stat(filepath.Join(mainDir, "main.go")); err != nil {
				t.Fatalf("services/%s/cmd/%s/main.go does not exist yet: the %s image cannot be built (the service authors must provide this main package)", svc, svc, svc)
			}
			bin := filepath.Join(t.TempDir(), svc)
			if err := imagebuild.GoBuild(filepath.Join(repoRoot, "services", svc), "./cmd/"+svc, bin, ""); err != nil {
				t.Fatal(err)
			}
			ports := map[string][]int{"person": {8080}, "score": {8080, 9090}}[svc]
			img, err := imagebuild.Build(imagebuild.Spec{Name: svc, Binary: bin, Ports: ports, Version: "dev", Env: []string{"HTTP_ADDR=:8080"}})
			if err != nil {
				t.Fatal(err)
			}
			img = roundTrip(t, img, "personscore/"+svc+":dev", filepath.Join(repoRoot, "bin", "images", svc+".tar"))
			checkImage(t, img, svc)
			cf, _ := img.ConfigFile()
			for _, p := range ports {
				if _, ok := cf.Config.ExposedPorts[fmt.Sprintf("%d/tcp", p)]; !ok {
					t.Errorf("port %d not exposed", p)
				}
			}
		})
	}
}

// The Dockerfiles (used by skaffold on machines with Docker) describe the same image.
func TestDockerfilesMatchTheImageLayout(t *testing.T) {
	for _, svc := range charts {
		b, err := os.ReadFile(filepath.Join(repoRoot, "services", svc, "Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		df := string(b)
		stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
		if len(stages) < 2 || stages[len(stages)-1][1] != "scratch" {
			t.Errorf("%s: the final stage must be FROM scratch", svc)
		}
		for _, want := range []string{
			"CGO_ENABLED=0",
			"USER 65532:65532",
			fmt.Sprintf(`ENTRYPOINT ["%s/%s"]`, imagebuild.BinDir, svc),
			imagebuild.CABundlePath,
			"./cmd/" + svc,
		} {
			if !strings.Contains(df, want) {
				t.Errorf("%s: Dockerfile lacks %q", svc, want)
			}
		}
	}
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
