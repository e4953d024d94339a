// Command build-image builds an image without a container daemon and writes it as a
// `docker save`-style tarball (loadable with `docker load`, `kind load image-archive` or
// `ctr images import`). The tarball is rewritten only when the image changed (same tag
// and digest: "up to date").
//
//	# a personscore service (person, score, localmongo) from services/<svc>/cmd/<svc>
//	go run ./k8s/test/cmd/build-image -service person -tag personscore/person:dev -out bin/images/person.tar
//	# a prebuilt static binary on the same scratch layout
//	go run ./k8s/test/cmd/build-image -binary bin/.build/x/manager -name cluster-operator -tag ... -out ...
//	# a root filesystem directory as one layer
//	go run ./k8s/test/cmd/build-image -rootfs DIR -user 999:999 -cmd rabbitmq-server -tag ... -out ...
//
// Outputs (at least one): -out (docker-archive), -oci-out (OCI layout archive named for
// `ctr images import`, manifest byte-identical to the pushed one), -push (to the tag's
// registry, e.g. the loopback registry of the skaffold local-node profile).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/personscore/k8s/test/imagebuild"
)

// services are the Go commands of this repository that ship as images.
var services = map[string]struct {
	Ports    []int
	Env      []string
	DataDirs []string
}{
	"person": {Ports: []int{8080}, Env: []string{"HTTP_ADDR=:8080"}},
	"score":  {Ports: []int{8080, 9090}, Env: []string{"HTTP_ADDR=:8080"}},
	// The embedded MongoDB-wire server: the MongoDB stand-in of the local node only.
	"localmongo": {Ports: []int{27017}, Env: []string{"LOCALMONGO_ADDR=0.0.0.0:27017", "LOCALMONGO_DIR=/data/db"}, DataDirs: []string{"/data/db"}},
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "repository root")
	flag.StringVar(&o.service, "service", "", "personscore command to build: person, score or localmongo")
	flag.StringVar(&o.binary, "binary", "", "prebuilt static binary to pack (with -name)")
	flag.StringVar(&o.name, "name", "", "entrypoint name of -binary (/usr/local/bin/NAME)")
	flag.StringVar(&o.rootfs, "rootfs", "", "root filesystem directory to pack as one layer")
	flag.StringVar(&o.user, "user", "", "-rootfs: uid:gid the image runs as")
	flag.Var(&o.cmd, "cmd", "-rootfs: command word (repeatable)")
	flag.StringVar(&o.workdir, "workdir", "/", "-rootfs: working directory")
	flag.Var(&o.env, "env", "extra environment KEY=VALUE (repeatable)")
	flag.Var(&o.ports, "port", "exposed TCP port (repeatable; -binary and -rootfs)")
	flag.StringVar(&o.tag, "tag", "", "image reference, e.g. personscore/person:dev")
	flag.StringVar(&o.out, "out", "", "output tarball (docker-archive)")
	flag.StringVar(&o.ociOut, "oci-out", "", "output OCI layout archive (for ctr images import)")
	flag.BoolVar(&o.push, "push", false, "push the image to the tag's registry")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH")
	flag.StringVar(&o.version, "version", "dev", "image version label")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(1)
	}
}

type options struct {
	root, service, binary, name, rootfs, user, workdir, tag, out, ociOut, arch, version string
	push                                                                                bool
	cmd, env, ports                                                                     list
}

func run(o options) error {
	modes := 0
	for _, s := range []string{o.service, o.binary, o.rootfs} {
		if s != "" {
			modes++
		}
	}
	if modes != 1 || o.tag == "" || (o.out == "" && o.ociOut == "" && !o.push) {
		return fmt.Errorf("need exactly one of -service, -binary, -rootfs, -tag, and -out, -oci-out or -push")
	}
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return err
	}
	start := time.Now()
	var ports []int
	for _, p := range o.ports {
		var n int
		if _, err := fmt.Sscan(p, &n); err != nil {
			return fmt.Errorf("-port %q: %w", p, err)
		}
		ports = append(ports, n)
	}
	var img v1.Image
	switch {
	case o.service != "":
		svc, ok := services[o.service]
		if !ok {
			return fmt.Errorf("unknown -service %q (person, score, localmongo)", o.service)
		}
		tmp, err := os.MkdirTemp("", "build-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		bin := filepath.Join(tmp, o.service)
		if err := imagebuild.GoBuild(filepath.Join(o.root, "services", o.service), "./cmd/"+o.service, bin, o.arch); err != nil {
			return err
		}
		img, err = imagebuild.Build(imagebuild.Spec{Name: o.service, Binary: bin, Arch: o.arch, Ports: svc.Ports,
			Version: o.version, Env: append(svc.Env, o.env...), DataDirs: svc.DataDirs})
		if err != nil {
			return err
		}
	case o.binary != "":
		if o.name == "" {
			return fmt.Errorf("-binary needs -name")
		}
		img, err = imagebuild.Build(imagebuild.Spec{Name: o.name, Binary: o.binary, Arch: o.arch, Ports: ports, Version: o.version, Env: o.env})
		if err != nil {
			return err
		}
	default:
		if o.user == "" || len(o.cmd) == 0 {
			return fmt.Errorf("-rootfs needs -user and -cmd")
		}
		if o.out == "" {
			return fmt.Errorf("-rootfs needs -out")
		}
		img, err = imagebuild.BuildRootfs(imagebuild.RootfsSpec{
			Name: ref.RepositoryStr(), Dir: o.rootfs, LayerFile: o.out + ".layer", Arch: o.arch, Version: o.version,
			User: o.user, Cmd: o.cmd, Env: o.env, WorkingDir: o.workdir, Ports: ports,
		})
		if err != nil {
			return err
		}
		defer os.Remove(o.out + ".layer")
	}
	if o.ociOut != "" {
		if err := imagebuild.WriteOCIArchive(o.ociOut, ref.String(), img); err != nil {
			return err
		}
		fmt.Printf("%-45s OCI archive %s\n", ref, o.ociOut)
	}
	if o.push {
		if err := remote.Write(ref, img); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		d, _ := img.Digest()
		fmt.Printf("%-45s pushed (%s)\n", ref, d)
	}
	if o.out == "" {
		return nil
	}
	// The config digest covers the runtime config and every layer's content (diff IDs);
	// the manifest digest depends on how the tarball stores the layers.
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	if old, err := tarball.ImageFromPath(o.out, &ref); err == nil {
		if d, err := old.ConfigName(); err == nil && d == id {
			fmt.Printf("%-45s up to date (%s)\n", ref, o.out)
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(o.out+".tmp", ref, img); err != nil {
		return err
	}
	if err := os.Rename(o.out+".tmp", o.out); err != nil {
		return err
	}
	st, _ := os.Stat(o.out)
	fmt.Printf("%-45s built in %v: %s (%.1f MiB)\n", ref, time.Since(start).Round(100*time.Millisecond), o.out, float64(st.Size())/(1<<20))
	return nil
}
