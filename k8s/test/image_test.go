package test

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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

// The Dockerfile (used by skaffold on machines with Docker) describes the same image:
// its build stage builds the service named by SERVICE, and each service's final stage
// (the target skaffold.yaml names) starts from the scratch runtime stage.
func TestDockerfileMatchesTheImageLayout(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "services", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	stages := map[string]string{} // stage name -> base
	for _, m := range regexp.MustCompile(`(?m)^FROM\s+(\S+)\s+AS\s+(\S+)`).FindAllStringSubmatch(df, -1) {
		stages[m[2]] = m[1]
	}
	if stages["runtime"] != "scratch" {
		t.Errorf("the runtime stage must be FROM scratch, stages %v", stages)
	}
	for _, want := range []string{"CGO_ENABLED=0", "USER 65532:65532", imagebuild.CABundlePath, "./cmd/${SERVICE}"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, svc := range charts {
		if stages[svc] != "runtime" {
			t.Errorf("%s: no final stage %q FROM runtime (stages %v)", svc, svc, stages)
		}
		entry := fmt.Sprintf(`ENTRYPOINT ["%s/%s"]`, imagebuild.BinDir, svc)
		if !strings.Contains(df[strings.Index(df, "AS "+svc):], entry) {
			t.Errorf("%s: its stage lacks %s", svc, entry)
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

// buildImages runs `make images` for the named images (k8s/images/build.sh, cached) and
// reads each tarball back.
func buildImages(t *testing.T, names ...string) map[string]v1.Image {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "k8s", "images", "build.sh"), names...)
	cmd.Dir = repoRoot
	dieWithParent(cmd)
	out, err := cmd.CombinedOutput()
	t.Logf("k8s/images/build.sh %v:\n%s", names, out)
	if err != nil {
		t.Fatalf("k8s/images/build.sh %v: %v", names, err)
	}
	env := imagesEnv(t)
	key := map[string]string{"localmongo": "LOCALMONGO_IMAGE", "http-check": "HTTP_CHECK_IMAGE", "rabbitmq": "RABBITMQ_IMAGE", "rabbitmq-cluster-operator": "RABBITMQ_OPERATOR_IMAGE", "operator": "RABBITMQ_OPERATOR_IMAGE"}
	imgs := map[string]v1.Image{}
	for _, n := range names {
		file := n
		if n == "operator" {
			file = "rabbitmq-cluster-operator"
		}
		ref, err := name.NewTag(env[key[n]])
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(filepath.Join(repoRoot, "bin", "images", file+".tar"), &ref)
		if err != nil {
			t.Fatalf("bin/images/%s.tar does not hold %s: %v", file, ref, err)
		}
		imgs[n] = img
	}
	return imgs
}

// The local node's extra Go images: localmongo (the MongoDB stand-in, its data directory
// writable by the image user), the helm test probe and the operator, all on the same
// non-root scratch layout.
func TestLocalNodeGoImages(t *testing.T) {
	imgs := buildImages(t, "localmongo", "http-check", "operator")
	fs := checkImage(t, imgs["localmongo"], "localmongo")
	if d, ok := fs["/data/db"]; !ok || d.hdr.Uid != imagebuild.UID || d.hdr.Typeflag != tar.TypeDir {
		t.Errorf("localmongo: /data/db must be a directory owned by %d", imagebuild.UID)
	}
	cf, _ := imgs["localmongo"].ConfigFile()
	if !contains(cf.Config.Env, "LOCALMONGO_ADDR=0.0.0.0:27017") || !contains(cf.Config.Env, "LOCALMONGO_DIR=/data/db") {
		t.Errorf("localmongo must listen on all addresses and keep its data in /data/db: %v", cf.Config.Env)
	}
	checkImage(t, imgs["http-check"], "http-check")
	checkImage(t, imgs["operator"], "manager")
}

// The RabbitMQ server image from Debian's package, checked against what the RabbitMQ
// Cluster Operator v2.20.0 does with it (internal/resource/statefulset.go): uid 999,
// bash for hooks and probes, sh and cp for the init container, the server as the
// default command, the Erlang cookie's home, writable data/config directories, the
// plugins it enables (rabbitmq_plugins.go) shipped, logs on stdout.
func TestRabbitMQServerImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("building the RabbitMQ image (debootstrap, chroot) needs root, as on CI: run this test as root")
	}
	img := buildImages(t, "rabbitmq")["rabbitmq"]
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "999:999" || len(cf.Config.Cmd) != 1 || cf.Config.Cmd[0] != "rabbitmq-server" || len(cf.Config.Entrypoint) != 0 {
		t.Errorf("user %q entrypoint %v cmd %v: want 999:999 and the server as the default command", cf.Config.User, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	env := map[string]string{}
	for _, e := range cf.Config.Env {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	// The operator mounts writable volumes at /var/lib/rabbitmq and its mnesia/ only (the
	// root filesystem is read-only): logs go to stdout, and the upgrade log RabbitMQ 3.10
	// still writes as a file (the first real run crashed with erofs on
	// /var/log/rabbitmq/<node>_upgrade.log) must go below /var/lib/rabbitmq.
	if env["HOME"] != "/var/lib/rabbitmq" || env["RABBITMQ_LOGS"] != "-" || env["RABBITMQ_UPGRADE_LOG"] != "-" || !strings.HasPrefix(env["RABBITMQ_LOG_BASE"], "/var/lib/rabbitmq/") {
		t.Errorf("env %v: want HOME=/var/lib/rabbitmq, RABBITMQ_LOGS=-, RABBITMQ_UPGRADE_LOG=- and RABBITMQ_LOG_BASE below /var/lib/rabbitmq", cf.Config.Env)
	}
	fs := imageFS(t, img)
	// resolve follows symlinks inside the image, in every path component (Debian's
	// merged /usr makes /bin a symlink to usr/bin).
	var resolve func(p string, depth int) (imageFile, string, bool)
	resolve = func(p string, depth int) (imageFile, string, bool) {
		if depth > 20 {
			return imageFile{}, p, false
		}
		parts := strings.Split(strings.Trim(filepath.Clean(p), "/"), "/")
		cur := ""
		for i, part := range parts {
			cur += "/" + part
			f, ok := fs[cur]
			if !ok {
				return f, cur, false
			}
			rest := strings.Join(parts[i+1:], "/")
			switch f.hdr.Typeflag {
			case tar.TypeSymlink:
				target := f.hdr.Linkname
				if !filepath.IsAbs(target) {
					target = filepath.Join(filepath.Dir(cur), target)
				}
				return resolve(filepath.Join(target, rest), depth+1)
			case tar.TypeLink:
				return resolve(filepath.Join("/"+f.hdr.Linkname, rest), depth+1)
			}
			if i == len(parts)-1 {
				return f, cur, true
			}
		}
		return imageFile{}, p, false
	}
	lookPath := func(cmd string) (string, bool) {
		for _, dir := range strings.Split(env["PATH"], ":") {
			if f, p, ok := resolve(filepath.Join(dir, cmd), 0); ok && f.hdr.Typeflag == tar.TypeReg && f.hdr.Mode&0o111 != 0 {
				return p, true
			}
		}
		return "", false
	}
	server, ok := lookPath("rabbitmq-server")
	if !ok || !strings.Contains(server, "/rabbitmq_server-") {
		t.Errorf("rabbitmq-server resolves to %q on PATH %s: want the server script itself, not Debian's wrapper", server, env["PATH"])
	}
	for _, cmd := range []string{"bash", "sh", "cp", "chmod", "sed", "rabbitmqctl", "rabbitmq-diagnostics", "rabbitmq-upgrade", "erl"} {
		if _, ok := lookPath(cmd); !ok {
			t.Errorf("%s is not on the image's PATH (the operator's hooks, probes and init container run it)", cmd)
		}
	}
	if f, _, ok := resolve("/bin/bash", 0); !ok || f.hdr.Mode&0o111 == 0 {
		t.Errorf("/bin/bash missing (the operator's lifecycle hooks run /bin/bash -c)")
	}
	if !regexp.MustCompile(`(?m)^rabbitmq:x:999:999:`).MatchString(string(fs["/etc/passwd"].data)) {
		t.Errorf("/etc/passwd lacks rabbitmq at 999:999")
	}
	for _, d := range []string{"/var/lib/rabbitmq", "/var/lib/rabbitmq/mnesia", "/etc/rabbitmq", "/etc/rabbitmq/conf.d"} {
		if f, ok := fs[d]; !ok || f.hdr.Uid != 999 || f.hdr.Typeflag != tar.TypeDir {
			t.Errorf("%s must be a directory owned by 999", d)
		}
	}
	for _, plugin := range []string{"rabbitmq_peer_discovery_k8s", "rabbitmq_prometheus", "rabbitmq_management"} {
		found := false
		for p := range fs {
			if strings.Contains(p, "/plugins/"+plugin+"-") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("plugin %s (enabled by the operator) is not in the image", plugin)
		}
	}
	if !strings.Contains(string(fs["/etc/rabbitmq/conf.d/05-image-defaults.conf"].data), "listeners.tcp.default = 5672") {
		t.Errorf("conf.d/05-image-defaults.conf must set the AMQP listener")
	}
	var compressed int64
	layers, _ := img.Layers()
	for _, l := range layers {
		s, _ := l.Size()
		compressed += s
	}
	t.Logf("rabbitmq image: %d layer(s), %.1f MiB compressed, server %s", len(layers), float64(compressed)/(1<<20), server)
}

// The skaffold local-node build imports an OCI archive into containerd and pushes the
// same image to the loopback registry; skaffold deploys repo:tag@<digest it read from
// the registry>, which the kubelet finds only if the imported manifest has that digest.
func TestOCIArchiveMatchesPushedDigest(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fixture")
	if err := imagebuild.GoBuild(filepath.Join(repoRoot, "k8s", "test"), "./testdata/fixture", bin, ""); err != nil {
		t.Fatal(err)
	}
	img, err := imagebuild.Build(imagebuild.Spec{Name: "fixture", Binary: bin, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	ref, err := name.NewTag(strings.TrimPrefix(reg.URL, "http://") + "/personscore_fixture:t1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "fixture.oci.tar")
	if err := imagebuild.WriteOCIArchive(archive, ref.String(), img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var index v1.IndexManifest
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("index.json not in the archive: %v", err)
		}
		if h.Name == "index.json" {
			if err := json.NewDecoder(tr).Decode(&index); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(index.Manifests))
	}
	m := index.Manifests[0]
	if m.Digest != desc.Digest {
		t.Errorf("archive manifest %s, registry digest %s: the imported image would not match skaffold's tag@digest", m.Digest, desc.Digest)
	}
	if m.Annotations["io.containerd.image.name"] != ref.String() {
		t.Errorf("archive names the image %q, want %q", m.Annotations["io.containerd.image.name"], ref)
	}
}
