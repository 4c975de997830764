package container

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoCgroup2 means no cgroup v2 hierarchy is mounted; without it every process
// shares one cgroup id and containers cannot be told apart.
var ErrNoCgroup2 = errors.New("no cgroup v2 (cgroup2) filesystem mounted: mount one (e.g. at /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy")

// ErrCgroupGone means the cgroup id no longer names a directory.
var ErrCgroupGone = errors.New("cgroup removed")

// fileIDKernfs is the file handle type of kernfs (cgroupfs) ids, FILEID_KERNFS.
const fileIDKernfs = 0xfe

// FindCgroup2Mount returns the first cgroup2 mount point in a mountinfo file.
func FindCgroup2Mount(mountinfo io.Reader) (string, error) {
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		// "36 25 0:31 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fields := strings.Fields(post); len(fields) > 0 && fields[0] == "cgroup2" {
			pf := strings.Fields(pre)
			if len(pf) >= 5 {
				return unescapeMountPath(pf[4]), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading mountinfo: %w", err)
	}
	return "", ErrNoCgroup2
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CgroupFS turns cgroup v2 ids into paths with open_by_handle_at, one syscall per
// lookup, instead of walking the whole tree.
type CgroupFS struct {
	Mount   string
	mountFD int
}

// OpenCgroupFS opens the cgroup v2 mount at mount, or finds it when mount is "".
func OpenCgroupFS(mount string) (*CgroupFS, error) {
	if mount == "" {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return nil, fmt.Errorf("finding cgroup v2 mount: %w", err)
		}
		defer f.Close()
		if mount, err = FindCgroup2Mount(f); err != nil {
			return nil, err
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mount, &sfs); err != nil {
		return nil, fmt.Errorf("cgroup v2 mount %s: %w", mount, err)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%s is not a cgroup2 filesystem: %w", mount, ErrNoCgroup2)
	}
	fd, err := unix.Open(mount, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening cgroup v2 mount %s: %w", mount, err)
	}
	c := &CgroupFS{Mount: strings.TrimSuffix(mount, "/"), mountFD: fd}
	// Ids resolve only with CAP_DAC_READ_SEARCH: say so now, not once per
	// event (a pod granted too few capabilities).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil {
		if _, err := c.PathOf(st.Ino); errors.Is(err, ErrNeedsDACReadSearch) {
			c.Close()
			return nil, fmt.Errorf("cgroup v2 mount %s: %w", mount, err)
		}
	}
	return c, nil
}

// ErrNeedsDACReadSearch: open_by_handle_at, which turns a cgroup id into its
// path, takes CAP_DAC_READ_SEARCH.
var ErrNeedsDACReadSearch = errors.New("open_by_handle_at needs CAP_DAC_READ_SEARCH")

// SelfID is the cgroup v2 id and path of the calling process's cgroup, read
// from /proc/self/cgroup; 0 when it is the root or outside this mount (a
// cgroup namespace hides the path).
func (c *CgroupFS) SelfID() (uint64, string, error) {
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, "", err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		rel, ok := strings.CutPrefix(line, "0::")
		if !ok || rel == "/" || rel == "" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(c.Mount+rel, &st); err != nil {
			return 0, "", fmt.Errorf("own cgroup %s: %w", rel, err)
		}
		return st.Ino, rel, nil
	}
	return 0, "", nil
}

// Close releases the mount's file descriptor.
func (c *CgroupFS) Close() error { return unix.Close(c.mountFD) }

// PathOf returns the cgroup's path relative to the mount ("/" for the root).
func (c *CgroupFS) PathOf(id uint64) (string, error) {
	fd, err := c.openByID(id)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("resolving cgroup id %d: %w", id, err)
	}
	rel, ok := strings.CutPrefix(target, c.Mount)
	if !ok {
		return "", fmt.Errorf("cgroup id %d resolved outside %s: %s", id, c.Mount, target)
	}
	if rel == "" {
		rel = "/"
	}
	return rel, nil
}

// openByID opens the cgroup directory with that id (O_PATH).
func (c *CgroupFS) openByID(id uint64) (int, error) {
	var raw [8]byte
	binary.NativeEndian.PutUint64(raw[:], id)
	h := unix.NewFileHandle(fileIDKernfs, raw[:])
	fd, err := unix.OpenByHandleAt(c.mountFD, h, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("cgroup id %d: %w", id, ErrCgroupGone)
		}
		if errors.Is(err, unix.EPERM) {
			return -1, fmt.Errorf("resolving cgroup id %d: %w", id, ErrNeedsDACReadSearch)
		}
		return -1, fmt.Errorf("resolving cgroup id %d: %w", id, err)
	}
	return fd, nil
}

// Alive reports whether the cgroup id still names a directory. The sampler asks
// this for every idle cgroup each window, so it opens and closes, nothing more.
func (c *CgroupFS) Alive(id uint64) bool {
	fd, err := c.openByID(id)
	if err != nil {
		return !errors.Is(err, ErrCgroupGone)
	}
	unix.Close(fd)
	return true
}

// Freeze stops every process of a cgroup (cgroup v2 cgroup.freeze), the
// enforcement for alerts a single syscall cannot be blamed for.
func (c *CgroupFS) Freeze(cgroupPath string) error {
	if cgroupPath == "" || cgroupPath == "/" || strings.Contains(cgroupPath, "..") {
		return fmt.Errorf("refusing to freeze cgroup %q", cgroupPath)
	}
	p := c.Mount + cgroupPath + "/cgroup.freeze"
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("freezing cgroup %s: %w", cgroupPath, err)
	}
	return nil
}

// IDOf returns the id (inode) of a cgroup path relative to the mount.
func (c *CgroupFS) IDOf(cgroupPath string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(c.Mount+cgroupPath, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", cgroupPath, err)
	}
	return st.Ino, nil
}

// Walk calls fn with the path (relative to the mount) and id of every cgroup
// in the tree, parents first. Cgroups removed while it walks are skipped.
func (c *CgroupFS) Walk(fn func(cgroupPath string, id uint64)) error {
	return filepath.WalkDir(c.Mount, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("walking cgroup tree: %w", err)
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed since it was listed
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("walking cgroup tree: no inode for %s", p)
		}
		rel := strings.TrimPrefix(p, c.Mount)
		if rel == "" {
			rel = "/"
		}
		fn(rel, st.Ino)
		return nil
	})
}
