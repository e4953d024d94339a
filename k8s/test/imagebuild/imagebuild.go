// Package imagebuild assembles the service images without a container daemon: a static
// Go binary on an empty (scratch) base with a generated /etc/passwd and /etc/group (user
// nonroot, 65532), the CA bundle and a writable /tmp, running as 65532:65532. The
// services/Dockerfile produces the same layout with Docker (one target stage per service).
package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// UID and GID of the image's user ("nonroot", as in distroless).
const (
	UID = 65532
	GID = 65532
)

// BinDir is where the service binary lives in the image.
const BinDir = "/usr/local/bin"

// CABundlePath is where the CA bundle is placed (Go's crypto/x509 looks there).
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// Spec describes one image.
type Spec struct {
	Name     string   // binary and entrypoint name, e.g. "person"
	Binary   string   // path of the static binary on disk
	Arch     string   // GOARCH of the binary
	Ports    []int    // exposed TCP ports
	Env      []string // extra default environment
	Version  string   // org.opencontainers.image.version
	CABundle string   // PEM bundle to ship; empty = first found on this machine
	DataDirs []string // absolute directories created owned by the image user (e.g. a data dir)
}

// caCandidates are the usual locations of the system CA bundle.
var caCandidates = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
	"/etc/ssl/cert.pem",                  // macOS, BSDs
}

func findCABundle() (string, error) {
	for _, c := range caCandidates {
		if st, err := os.Stat(c); err == nil && st.Size() > 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("no CA bundle found in %v (install ca-certificates or pass one)", caCandidates)
}

// epoch is the timestamp of every file and of the image, for reproducible builds.
var epoch = time.Unix(0, 0).UTC()

// Build assembles the image.
func Build(s Spec) (v1.Image, error) {
	if s.Arch == "" {
		s.Arch = runtime.GOARCH
	}
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, err
	}
	caPath := s.CABundle
	if caPath == "" {
		if caPath, err = findCABundle(); err != nil {
			return nil, err
		}
	}
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid, gid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/ssl", 0o755, 0, 0) },
		func() error { return dir("etc/ssl/certs", 0o755, 0, 0) },
		func() error { return file(CABundlePath[1:], 0o644, ca) },
		func() error { return dir("home", 0o755, 0, 0) },
		func() error { return dir("home/nonroot", 0o700, UID, GID) },
		func() error { return dir("tmp", 0o1777, 0, 0) },
		func() error { return dir("usr", 0o755, 0, 0) },
		func() error { return dir("usr/local", 0o755, 0, 0) },
		func() error { return dir("usr/local/bin", 0o755, 0, 0) },
		// Owned by root, not writable by the runtime user.
		func() error { return file(filepath.Join(BinDir, s.Name)[1:], 0o755, bin) },
	}
	made := map[string]bool{"etc": true, "etc/ssl": true, "etc/ssl/certs": true, "home": true, "home/nonroot": true, "tmp": true, "usr": true, "usr/local": true, "usr/local/bin": true}
	for _, d := range s.DataDirs {
		parts := strings.Split(strings.Trim(filepath.Clean(d), "/"), "/")
		for i := range parts {
			p := strings.Join(parts[:i+1], "/")
			if made[p] {
				continue
			}
			made[p] = true
			uid, gid, mode := 0, 0, int64(0o755)
			if i == len(parts)-1 {
				uid, gid, mode = UID, GID, 0o700
			}
			steps = append(steps, func() error { return dir(p, mode, uid, gid) })
		}
	}
	steps = append(steps, tw.Close)
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", s.Arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = fmt.Sprintf("%d:%d", UID, GID)
	cf.Config.Entrypoint = []string{filepath.Join(BinDir, s.Name)}
	cf.Config.WorkingDir = "/"
	cf.Config.Env = append([]string{"PATH=" + BinDir, "SSL_CERT_FILE=" + CABundlePath, "HOME=/home/nonroot"}, s.Env...)
	if len(s.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.Ports {
			cf.Config.ExposedPorts[fmt.Sprintf("%d/tcp", p)] = struct{}{}
		}
	}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "personscore-" + s.Name,
		"org.opencontainers.image.version": s.Version,
		"org.opencontainers.image.source":  "https://github.com/personscore/personscore",
	}
	return mutate.ConfigFile(img, cf)
}

// GoBuild compiles a static (CGO_ENABLED=0), stripped binary of pkg from dir. It uses the
// same compile flags as `make build`, so the two share the Go build cache.
func GoBuild(dir, pkg, out, arch string) error {
	if arch == "" {
		arch = runtime.GOARCH
	}
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	dieWithParent(cmd)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %v\n%s", pkg, dir, err, b)
	}
	return nil
}
