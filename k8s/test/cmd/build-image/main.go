// Command build-image builds a personscore service image without a container daemon and
// writes it as a `docker save`-style tarball (loadable with `docker load` or
// `kind load image-archive`).
//
//	go run ./k8s/test/cmd/build-image -service person -tag personscore/person:dev -out bin/images/person.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/personscore/k8s/test/imagebuild"
)

func main() {
	root := flag.String("root", ".", "repository root")
	svc := flag.String("service", "", "service to build: person or score")
	tag := flag.String("tag", "", "image reference, e.g. personscore/person:dev")
	out := flag.String("out", "", "output tarball")
	arch := flag.String("arch", runtime.GOARCH, "GOARCH")
	version := flag.String("version", "dev", "image version label")
	flag.Parse()
	if err := run(*root, *svc, *tag, *out, *arch, *version); err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(1)
	}
}

func run(root, svc, tag, out, arch, version string) error {
	ports := map[string][]int{"person": {8080}, "score": {8080, 9090}}[svc]
	if ports == nil || tag == "" || out == "" {
		return fmt.Errorf("need -service person|score, -tag and -out")
	}
	ref, err := name.ParseReference(tag)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "build-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, svc)
	if err := imagebuild.GoBuild(filepath.Join(root, "services", svc), "./cmd/"+svc, bin, arch); err != nil {
		return err
	}
	img, err := imagebuild.Build(imagebuild.Spec{Name: svc, Binary: bin, Arch: arch, Ports: ports, Version: version, Env: []string{"HTTP_ADDR=:8080"}})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return err
	}
	fmt.Printf("%s -> %s\n", ref, out)
	return nil
}
