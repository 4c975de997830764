// Package inventory reads what an image holds from a running container's root
// (/proc/PID/root): its package database (dpkg, apk), and the shared libraries
// an executed binary loads. It also parses SBOMs. Paths it returns are canonical
// paths inside the container, as the kernel reports an exec's file.
package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinks bounds link chains, as the kernel's ELOOP does (40).
const maxSymlinks = 40

// Root is a container's root directory seen from the host, e.g. /proc/PID/root.
// Absolute symlinks inside it are resolved against it, not against the host.
type Root string

// ProcessRoot is the root of a running process.
func ProcessRoot(pid uint32) Root { return Root(fmt.Sprintf("/proc/%d/root", pid)) }

// host turns a canonical in-root path into a host path.
func (r Root) host(p string) string { return string(r) + p }

// Resolve gives the canonical path of p inside the root: every symlink
// followed, absolute targets taken from the root.
func (r Root) Resolve(p string) (string, error) {
	resolved, err := r.resolve(p, true)
	if err != nil {
		return "", fmt.Errorf("resolving %s in %s: %w", p, r, err)
	}
	return resolved, nil
}

// ResolveDir resolves p's directories but leaves its last component as it is,
// so a package's own symlink (/bin/sh → busybox) is not taken for its target.
// It reports whether the last component is a regular file.
func (r Root) ResolveDir(p string) (string, bool, error) {
	dir, base := path.Split(path.Clean("/" + p))
	rdir, err := r.resolve(dir, true)
	if err != nil {
		return "", false, err
	}
	full := path.Join(rdir, base)
	fi, err := os.Lstat(r.host(full))
	if err != nil {
		return "", false, err
	}
	return full, fi.Mode().IsRegular(), nil
}

func (r Root) resolve(p string, followLast bool) (string, error) {
	resolved := "/"
	rest := splitPath(p)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, c)
		if len(rest) == 0 && !followLast {
			return next, nil
		}
		fi, err := os.Lstat(r.host(next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(rest) > 0 && !fi.IsDir() {
				return "", fmt.Errorf("%s: %w", next, errNotDir)
			}
			resolved = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(r.host(next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			resolved = "/"
		}
		rest = append(splitPath(target), rest...)
	}
	return resolved, nil
}

var errNotDir = errors.New("not a directory")

// errNotRegular: a file the inventory would read is a FIFO, device, socket
// or directory; opening or reading it could block or never end.
var errNotRegular = errors.New("not a regular file")

// openPath opens p inside the root as an O_PATH descriptor: the kernel
// resolves the path inside the root (openat2 RESOLVE_IN_ROOT, no magic
// links), so a container that swaps a directory for a symlink to "/" after
// Resolve looked cannot send the agent to a host file, and nothing is
// really opened yet (a device's open could act, a FIFO's block).
func (r Root) openPath(p string, flags uint64) (int, error) {
	rootPath := string(r)
	if rootPath == "" {
		rootPath = "/"
	}
	dirfd, err := unix.Open(rootPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: rootPath, Err: err}
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, strings.TrimPrefix(path.Clean("/"+p), "/"), &unix.OpenHow{
		Flags:   flags | unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// Open opens a regular file of the image for reading: resolved inside the
// root, checked to be a regular file before it is really opened (through
// its O_PATH descriptor), so no device, FIFO or socket is ever opened.
func (r Root) Open(p string) (*os.File, error) {
	pathfd, err := r.openPath(p, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pathfd)
	var st unix.Stat_t
	if err := unix.Fstat(pathfd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &fs.PathError{Op: "open", Path: p, Err: errNotRegular}
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", pathfd), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return f, nil
}

// Exists says whether p exists inside the root.
func (r Root) Exists(p string) bool {
	fd, err := r.openPath(p, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// maxDirEntries bounds a directory listing of the image.
const maxDirEntries = 1 << 16

// ReadDir lists a directory of the image, resolved inside the root, sorted.
func (r Root) ReadDir(p string) ([]string, error) {
	pathfd, err := r.openPath(p, unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pathfd)
	d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", pathfd), os.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer d.Close()
	names, err := d.Readdirnames(maxDirEntries)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("listing %s: %w", p, err)
	}
	slices.Sort(names)
	return names, nil
}

// Glob matches a pattern whose last component may hold wildcards (as
// ld.so.conf includes do) inside the root.
func (r Root) Glob(pattern string) []string {
	dir, base := path.Split(path.Clean("/" + pattern))
	names, err := r.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range names {
		if ok, _ := path.Match(base, n); ok {
			out = append(out, path.Join(dir, n))
		}
	}
	return out
}

// ReadFile reads a regular file of the image, refusing one over limit bytes.
func (r Root) ReadFile(p string, limit int64) ([]byte, error) {
	f, err := r.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", p, limit)
	}
	return data, nil
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// runnable says whether a packaged file can run or be loaded, by its path:
//   - a directory named bin, sbin or libexec on its path (/usr/bin/zgrep, a
//     script; /usr/lib/postgresql/15/bin/postgres; /usr/libexec/…);
//   - a shared object's name: ending in .so or holding .so. (libz.so.1.2.13,
//     ld-linux-x86-64.so.2, gconv/UTF-16.so, Python and Perl extensions).
//
// The inventory keeps only those files.
func runnable(p string) bool {
	dir, base := path.Split(p)
	if strings.HasSuffix(base, ".so") || strings.Contains(base, ".so.") {
		return true
	}
	for _, c := range splitPath(dir) {
		switch c {
		case "bin", "sbin", "libexec":
			return true
		}
	}
	return false
}
