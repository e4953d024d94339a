package imagebuild

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RootfsSpec describes an image made of one directory tree (a root filesystem built on
// this machine, e.g. by debootstrap), packed as a single layer.
type RootfsSpec struct {
	Name       string   // image title
	Dir        string   // root filesystem on disk
	LayerFile  string   // where the uncompressed layer tar is written
	Arch       string   // GOARCH of the root filesystem's binaries
	Version    string   // org.opencontainers.image.version
	User       string   // "uid:gid"
	Entrypoint []string // may be empty (then Cmd is the command)
	Cmd        []string
	Env        []string
	WorkingDir string
	Ports      []int
}

// BuildRootfs packs s.Dir (owners, modes, symlinks and hard links kept; device nodes,
// sockets and FIFOs skipped: the runtime provides /dev) and sets the runtime config.
func BuildRootfs(s RootfsSpec) (v1.Image, error) {
	if s.Arch == "" {
		s.Arch = runtime.GOARCH
	}
	if err := writeRootfsTar(s.Dir, s.LayerFile); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromFile(s.LayerFile, tarball.WithMediaType(types.OCILayer))
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
	cf.Config.User = s.User
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Cmd = s.Cmd
	cf.Config.WorkingDir = s.WorkingDir
	cf.Config.Env = s.Env
	if len(s.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.Ports {
			cf.Config.ExposedPorts[fmt.Sprintf("%d/tcp", p)] = struct{}{}
		}
	}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   s.Name,
		"org.opencontainers.image.version": s.Version,
		"org.opencontainers.image.source":  "https://github.com/personscore/personscore",
	}
	return mutate.ConfigFile(img, cf)
}

// writeRootfsTar writes dir as an uncompressed tar, entries in lexical order.
func writeRootfsTar(dir, out string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		mode := fi.Mode()
		if mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeSocket|fs.ModeNamedPipe) != 0 {
			continue
		}
		link := ""
		if mode&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		h.Format = tar.FormatPAX
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			h.Uid, h.Gid = int(st.Uid), int(st.Gid)
			if mode.IsRegular() && st.Nlink > 1 {
				key := inode{uint64(st.Dev), uint64(st.Ino)}
				if first, dup := seen[key]; dup {
					h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
				} else {
					seen[key] = h.Name
				}
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
