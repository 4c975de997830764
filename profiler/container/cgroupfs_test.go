package container

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// Real /proc/self/mountinfo excerpts.
const (
	// Hybrid hierarchy (systemd default before v247, and this CI's kernel): v1
	// controllers under a tmpfs, cgroup2 at /sys/fs/cgroup/unified.
	mountinfoHybrid = `22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
`
	// Pure v2 (unified) hierarchy.
	mountinfoUnified = `22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	// cgroup v1 only: no cgroup2 anywhere.
	mountinfoV1Only = `25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
31 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
`
)

func TestFindCgroup2Mount(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		want      string
		wantErr   error
	}{
		{name: "hybrid unified mount", mountinfo: mountinfoHybrid, want: "/sys/fs/cgroup/unified"},
		{name: "pure v2", mountinfo: mountinfoUnified, want: "/sys/fs/cgroup"},
		{
			name:      "space escaped as octal",
			mountinfo: `41 31 0:38 / /mnt/my\040cgroups rw,relatime shared:9 - cgroup2 cgroup2 rw` + "\n",
			want:      "/mnt/my cgroups",
		},
		{
			name:      "backslash and tab escaped as octal",
			mountinfo: `41 31 0:38 / /mnt/a\134b\011c rw,relatime - cgroup2 cgroup2 rw` + "\n",
			want:      "/mnt/a\\b\tc",
		},
		{
			name:      "no optional fields",
			mountinfo: "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
			want:      "/sys/fs/cgroup/unified",
		},
		{
			name:      "several optional fields",
			mountinfo: "41 31 0:38 / /run/cg rw,relatime shared:9 master:3 propagate_from:2 - cgroup2 none rw\n",
			want:      "/run/cg",
		},
		{
			name:      "first of two cgroup2 mounts",
			mountinfo: mountinfoUnified + "90 35 0:30 / /host/cgroup rw,relatime - cgroup2 cgroup2 rw\n",
			want:      "/sys/fs/cgroup",
		},
		{
			name:      "last line without newline",
			mountinfo: mountinfoV1Only + "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
			want:      "/sys/fs/cgroup/unified",
		},
		{name: "v1 only", mountinfo: mountinfoV1Only, wantErr: ErrNoCgroup2},
		{name: "empty", mountinfo: "", wantErr: ErrNoCgroup2},
		{
			name:      "cgroup2 as source name but not fstype",
			mountinfo: "41 31 0:38 / /sys/fs/cgroup2 rw,relatime - tmpfs cgroup2 rw\n",
			wantErr:   ErrNoCgroup2,
		},
		{
			name:      "line without separator",
			mountinfo: "41 31 0:38 / /sys/fs/cgroup/unified rw cgroup2 cgroup2 rw\n",
			wantErr:   ErrNoCgroup2,
		},
		{
			name:      "too few fields before separator",
			mountinfo: "41 31 0:38 / - cgroup2 cgroup2 rw\n",
			wantErr:   ErrNoCgroup2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindCgroup2Mount(strings.NewReader(tt.mountinfo))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("FindCgroup2Mount() = %q, %v; want error %v", got, err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("FindCgroup2Mount() path = %q with error, want empty", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindCgroup2Mount() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("FindCgroup2Mount() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFindCgroup2MountReadError(t *testing.T) {
	readErr := errors.New("disk on fire")
	got, err := FindCgroup2Mount(iotest.ErrReader(readErr))
	if !errors.Is(err, readErr) {
		t.Fatalf("FindCgroup2Mount() = %q, %v; want wrapped %v", got, err, readErr)
	}
	if errors.Is(err, ErrNoCgroup2) {
		t.Errorf("read error %v must not be reported as ErrNoCgroup2", err)
	}
	if !strings.HasPrefix(err.Error(), "reading mountinfo: ") {
		t.Errorf("error %q lacks the lower-case context prefix", err)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain", in: "/sys/fs/cgroup", want: "/sys/fs/cgroup"},
		{name: "space", in: `/mnt/a\040b`, want: "/mnt/a b"},
		{name: "escape at the very end", in: `/mnt/a\040`, want: "/mnt/a "},
		{name: "only an escape", in: `\040`, want: " "},
		{name: "two escapes in a row", in: `\040\040`, want: "  "},
		{name: "newline", in: `/mnt/a\012b`, want: "/mnt/a\nb"},
		{name: "backslash", in: `/mnt/a\134b`, want: `/mnt/a\b`},
		{name: "truncated escape kept", in: `/mnt/a\04`, want: `/mnt/a\04`},
		{name: "non-octal escape kept", in: `/mnt/a\9zz`, want: `/mnt/a\9zz`},
		{name: "out of byte range kept", in: `/mnt/a\400`, want: `/mnt/a\400`},
		{name: "lone trailing backslash", in: `/mnt/a\`, want: `/mnt/a\`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unescapeMountPath(tt.in); got != tt.want {
				t.Errorf("unescapeMountPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestOpenCgroupFSRejects(t *testing.T) {
	tests := []struct {
		name        string
		mount       string
		wantErr     error
		wantMention string
	}{
		{
			name:        "not a cgroup2 filesystem",
			mount:       t.TempDir(),
			wantErr:     ErrNoCgroup2,
			wantMention: "is not a cgroup2 filesystem",
		},
		{
			name:        "missing directory",
			mount:       filepath.Join(t.TempDir(), "absent"),
			wantErr:     syscall.ENOENT,
			wantMention: "cgroup v2 mount ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := OpenCgroupFS(tt.mount)
			if err == nil {
				fs.Close()
				t.Fatalf("OpenCgroupFS(%q) succeeded, want error", tt.mount)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("OpenCgroupFS(%q) error = %v, want errors.Is %v", tt.mount, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.mount) || !strings.Contains(err.Error(), tt.wantMention) {
				t.Errorf("OpenCgroupFS(%q) error %q should name the mount and say %q", tt.mount, err, tt.wantMention)
			}
		})
	}
}

// TestCgroupFSPathOfRealCgroup needs root (mkdir in the cgroup2 hierarchy,
// open_by_handle_at needs CAP_DAC_READ_SEARCH) and a mounted cgroup2 filesystem.
func TestCgroupFSPathOfRealCgroup(t *testing.T) {
	sensortest.RequireRoot(t, "creating cgroups and open_by_handle_at (CAP_DAC_READ_SEARCH) need it")
	mount := "/sys/fs/cgroup/unified"
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		found, ferr := FindCgroup2Mount(f)
		f.Close()
		if ferr == nil {
			mount = found
		}
	}
	if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
		sensortest.SkipOrFail(t, "cgroup v2", "no cgroup2 filesystem mounted: %v", err)
	}

	fs, err := OpenCgroupFS(mount)
	if err != nil {
		sensortest.SkipOrFail(t, "cgroup v2", "cgroup2 mount %s unusable: %v", mount, err)
	}
	t.Cleanup(func() {
		if err := fs.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if fs.Mount != strings.TrimSuffix(mount, "/") {
		t.Errorf("Mount = %q, want %q", fs.Mount, mount)
	}

	parent, err := os.MkdirTemp(mount, "cagewatch-test-")
	if err != nil {
		sensortest.SkipOrFail(t, "a writable cgroup v2 hierarchy", "cannot create a cgroup under %s (read-only or delegated hierarchy): %v", mount, err)
	}
	child := filepath.Join(parent, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		os.Remove(parent)
		t.Fatalf("creating nested cgroup: %v", err)
	}
	t.Cleanup(func() {
		// rmdir, not RemoveAll: a cgroup directory holds interface files that
		// cannot be unlinked; removal is only ever rmdir of an empty cgroup.
		os.Remove(child)
		os.Remove(parent)
	})
	name := filepath.Base(parent)

	inode := func(p string) uint64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		return st.Ino
	}
	parentID, childID := inode(parent), inode(child)

	tests := []struct {
		name string
		id   uint64
		want string
	}{
		{name: "root cgroup", id: 1, want: "/"},
		{name: "created cgroup", id: parentID, want: "/" + name},
		{name: "nested cgroup", id: childID, want: "/" + name + "/child"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fs.PathOf(tt.id)
			if err != nil {
				if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EOPNOTSUPP) {
					sensortest.SkipOrFail(t, "open_by_handle_at on cgroupfs", "not permitted: %v", err)
				}
				t.Fatalf("PathOf(%d) error = %v", tt.id, err)
			}
			if got != tt.want {
				t.Errorf("PathOf(%d) = %q, want %q", tt.id, got, tt.want)
			}
			if !fs.Alive(tt.id) {
				t.Errorf("Alive(%d) = false for an existing cgroup", tt.id)
			}
		})
	}

	t.Run("walk finds every cgroup with its id", func(t *testing.T) {
		walked := map[string]uint64{}
		if err := fs.Walk(func(p string, id uint64) { walked[p] = id }); err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			if got, ok := walked[tt.want]; !ok || got != tt.id {
				t.Errorf("Walk: %s has id %d (found %v), want %d", tt.want, got, ok, tt.id)
			}
		}
	})

	t.Run("removed cgroup is gone", func(t *testing.T) {
		if err := os.Remove(child); err != nil {
			t.Fatalf("rmdir %s: %v", child, err)
		}
		got, err := fs.PathOf(childID)
		if !errors.Is(err, ErrCgroupGone) {
			t.Fatalf("PathOf(%d) after rmdir = %q, %v; want ErrCgroupGone", childID, got, err)
		}
		if fs.Alive(childID) {
			t.Errorf("Alive(%d) = true after rmdir", childID)
		}
		// The parent is untouched.
		if got, err := fs.PathOf(parentID); err != nil || got != "/"+name {
			t.Errorf("PathOf(parent %d) = %q, %v; want %q", parentID, got, err, "/"+name)
		}
		if err := os.Remove(parent); err != nil {
			t.Fatalf("rmdir %s: %v", parent, err)
		}
		if _, err := fs.PathOf(parentID); !errors.Is(err, ErrCgroupGone) {
			t.Errorf("PathOf(%d) after rmdir error = %v, want ErrCgroupGone", parentID, err)
		}
		if fs.Alive(parentID) {
			t.Errorf("Alive(%d) = true after rmdir", parentID)
		}
	})

	t.Run("id that never existed is gone", func(t *testing.T) {
		const never = 1<<62 + 12345
		if _, err := fs.PathOf(never); !errors.Is(err, ErrCgroupGone) {
			t.Errorf("PathOf(%d) error = %v, want ErrCgroupGone", uint64(never), err)
		}
		if fs.Alive(never) {
			t.Errorf("Alive(%d) = true for an id that never existed", uint64(never))
		}
	})
}

func TestOpenCgroupFSFindsMount(t *testing.T) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		sensortest.SkipOrFail(t, "/proc/self/mountinfo", "%v", err)
	}
	want, err := FindCgroup2Mount(f)
	f.Close()
	if errors.Is(err, ErrNoCgroup2) {
		sensortest.SkipOrFail(t, "cgroup v2", "no cgroup2 filesystem mounted")
	}
	if err != nil {
		t.Fatalf("FindCgroup2Mount(/proc/self/mountinfo): %v", err)
	}
	fs, err := OpenCgroupFS("")
	if err != nil {
		t.Fatalf("OpenCgroupFS(\"\") error = %v", err)
	}
	defer fs.Close()
	if fs.Mount != strings.TrimSuffix(want, "/") {
		t.Errorf("OpenCgroupFS(\"\").Mount = %q, want %q", fs.Mount, want)
	}
}

// TestCgroupFSSelfID: a process started in a cgroup of its own (clone3 into
// it) finds that cgroup's id and path; the agent skips its own container so.
func TestCgroupFSSelfID(t *testing.T) {
	if os.Getenv("CAGEWATCH_SELFID_HELPER") != "" {
		fs, err := OpenCgroupFS(os.Getenv("CAGEWATCH_SELFID_HELPER"))
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		id, path, err := fs.SelfID()
		fmt.Printf("selfid %d %s %v\n", id, path, err)
		return
	}
	sensortest.RequireRoot(t, "creating a cgroup needs it")
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mount, err := FindCgroup2Mount(f)
	f.Close()
	if err != nil {
		sensortest.SkipOrFail(t, "cgroup v2", "no cgroup2 filesystem mounted: %v", err)
	}
	dir, err := os.MkdirTemp(mount, "cagewatch-selfid-")
	if err != nil {
		sensortest.SkipOrFail(t, "a writable cgroup v2 hierarchy", "cannot create a cgroup under %s: %v", mount, err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCgroupFSSelfID$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CAGEWATCH_SELFID_HELPER="+mount)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("selfid %d %s <nil>", st.Ino, strings.TrimPrefix(dir, strings.TrimSuffix(mount, "/")))
	if !strings.Contains(string(out), want) {
		t.Errorf("helper said %q, want %q", out, want)
	}
}
