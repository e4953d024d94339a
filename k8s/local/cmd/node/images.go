package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// addonImage is an image of one static binary from bin/ built here.
type addonImage struct {
	binary string // in bin/, also the image's entrypoint name
	ref    string
	uid    int // user the image runs as by default
}

func (n *node) addonImages() []addonImage {
	return []addonImage{
		{"pause", pauseImage, 65535},
		{"coredns", n.addonRef("coredns"), 65532},
		{"metrics-server", n.addonRef("metrics-server"), 65532},
		{"traefik", n.addonRef("traefik"), 65532},
	}
}

// addonRef is the image reference of an add-on binary: its version and a digest of the
// binary, so that a rebuilt binary rolls its Deployment.
func (n *node) addonRef(binary string) string {
	sum, err := fileSHA256(filepath.Join(n.bin, binary))
	if err != nil {
		sum = "missing"
	}
	return "personscore.local/" + binary + ":" + n.version(binary) + "-" + sum[:min(12, len(sum))]
}

// version is the version recorded next to a built binary.
func (n *node) version(binary string) string {
	b, err := os.ReadFile(filepath.Join(n.bin, binary+".version"))
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func (n *node) addonImageTar(a addonImage) string {
	return filepath.Join(n.bin, "images", "node", a.binary+".tar")
}

// packAddonImage writes the image as a docker-archive tarball unless it is newer than
// its binary: the binary at /usr/local/bin/NAME on an empty base with /etc/passwd, the
// CA bundle and /tmp.
func (n *node) packAddonImage(a addonImage) error {
	out := n.addonImageTar(a)
	bin := filepath.Join(n.bin, a.binary)
	bst, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("%s is missing: run make cluster-up (it builds it) or k8s/hack/build-control-plane.sh node", bin)
	}
	if ost, err := os.Stat(out); err == nil && ost.ModTime().After(bst.ModTime()) {
		if ref, _ := os.ReadFile(out + ".ref"); string(ref) == a.ref {
			return nil
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return fmt.Errorf("CA bundle: %w (apt-get install ca-certificates)", err)
	}
	epoch := time.Unix(0, 0)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/", 0o755, nil},
		{"etc/passwd", 0o644, []byte(fmt.Sprintf("root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n"))},
		{"etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")},
		{"etc/ssl/", 0o755, nil},
		{"etc/ssl/certs/", 0o755, nil},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, ca},
		{"tmp/", 0o1777, nil},
		{"usr/", 0o755, nil},
		{"usr/local/", 0o755, nil},
		{"usr/local/bin/", 0o755, nil},
		{"usr/local/bin/" + a.binary, 0o755, data},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = fmt.Sprintf("%d:%d", a.uid, a.uid)
	cf.Config.Entrypoint = []string{"/usr/local/bin/" + a.binary}
	cf.Config.Env = []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.WorkingDir = "/"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	ref, err := name.ParseReference(a.ref)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(out+".tmp", ref, img); err != nil {
		return err
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return err
	}
	return os.WriteFile(out+".ref", []byte(a.ref), 0o644)
}

// importImage imports a docker-archive tarball into containerd's k8s.io namespace and
// pins its images (so the kubelet's image GC never removes them; nothing can pull them
// again here), unless this very tarball was imported before.
func (n *node) importImage(tarPath string) error {
	sum, err := fileSHA256(tarPath)
	if err != nil {
		return err
	}
	mark := n.path("imported", sum)
	if _, err := os.Stat(mark); err == nil {
		return nil
	}
	t0 := time.Now()
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(tarPath) })
	if err != nil {
		return fmt.Errorf("%s: not a docker-archive tarball: %w", tarPath, err)
	}
	var refs []string
	for _, m := range manifest {
		for _, tag := range m.RepoTags {
			r, err := name.ParseReference(tag)
			if err != nil {
				return err
			}
			// containerd names Docker Hub images docker.io/..., go-containerregistry index.docker.io/...
			refs = append(refs, strings.Replace(r.Name(), "index.docker.io/", "docker.io/", 1))
		}
	}
	if _, err := n.ctr("images", "import", "--local", tarPath); err != nil {
		return err
	}
	for _, r := range refs {
		if _, err := n.ctr("images", "label", r, "io.cri-containerd.pinned=pinned"); err != nil {
			return err
		}
	}
	step("imported %s (%s) in %.1fs", filepath.Base(tarPath), strings.Join(refs, ", "), time.Since(t0).Seconds())
	if err := os.MkdirAll(filepath.Dir(mark), 0o755); err != nil {
		return err
	}
	return os.WriteFile(mark, []byte(tarPath+"\n"), 0o644)
}

func (n *node) ctr(args ...string) (string, error) {
	return run(filepath.Join(n.bin, "ctr"), append([]string{"--address", n.containerdSock(), "--namespace", "k8s.io"}, args...)...)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
