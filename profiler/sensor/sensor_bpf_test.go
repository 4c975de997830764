package sensor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
)

// cgroup2Root is where the test machines mount cgroup v2 (hybrid mode).
const cgroup2Root = "/sys/fs/cgroup/unified"

const helperEnv = "CAGEWATCH_SENSOR_HELPER"

// TestMain lets the test binary double as the helper process that tests start
// inside their own cgroup.
func TestMain(m *testing.M) {
	if action := os.Getenv(helperEnv); action != "" {
		os.Exit(runHelper(action))
	}
	os.Exit(m.Run())
}

func runHelper(action string) int {
	switch action {
	case "getppid":
		n, _ := strconv.Atoi(os.Getenv("CAGEWATCH_HELPER_N"))
		for range n {
			unix.Getppid()
		}
	case "security":
		// Each call may fail; the sensor sees the attempt at syscall entry.
		_ = unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUSER)
		if fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY, 0); err == nil {
			_ = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if f, err := os.Open("/etc/shadow"); err == nil {
			f.Close()
		}
		_ = unix.Mount("none", "/nonexistent-cagewatch-target", "tmpfs", unix.MS_RDONLY, "")
		if c, err := net.DialTimeout("tcp", "127.0.0.1:22", time.Second); err == nil {
			c.Close()
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown helper action", action)
		return 2
	}
	return 0
}

// loadTestSensor loads the sensor or, when the kernel really lacks a feature and CI
// has not asked for BPF, skips naming that feature.
func loadTestSensor(tb testing.TB, opts Options) *Sensor {
	tb.Helper()
	s, err := Load(opts)
	if err != nil {
		failOrSkipLoad(tb, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// failOrSkipLoad fails on a load error, except that without CAGEWATCH_REQUIRE_BPF a
// missing kernel feature is a skip that names the feature.
func failOrSkipLoad(tb testing.TB, err error) {
	tb.Helper()
	switch {
	case os.Getenv("CAGEWATCH_REQUIRE_BPF") != "":
		tb.Fatalf("loading BPF programs (CAGEWATCH_REQUIRE_BPF is set): %v", err)
	case errors.Is(err, ErrNoBTF):
		tb.Skipf("kernel feature missing: BTF (%v)", err)
	case errors.Is(err, ebpf.ErrNotSupported):
		tb.Skipf("kernel feature missing: tp_btf/raw_tp programs or ring buffers (%v)", err)
	case errors.Is(err, unix.EPERM):
		tb.Skipf("BPF not permitted (needs root or CAP_BPF): %v", err)
	default:
		tb.Fatalf("loading BPF programs: %v", err)
	}
}

// testCgroup creates a cgroup v2 directory for one test and returns its path and id.
func testCgroup(t *testing.T) (string, uint64) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cgroup2Root, "cgroup.procs")); err != nil {
		if os.Getenv("CAGEWATCH_REQUIRE_BPF") != "" {
			t.Fatalf("cgroup v2 not mounted at %s: %v", cgroup2Root, err)
		}
		t.Skipf("kernel feature missing: cgroup v2 at %s", cgroup2Root)
	}
	dir, err := os.MkdirTemp(cgroup2Root, "cagewatch-test-")
	if err != nil {
		t.Fatalf("creating cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return dir, st.Ino
}

func removeCgroup(t *testing.T, dir string) {
	for range 50 { // the helper may still be exiting
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("cgroup %s not removed", dir)
}

// runInCgroup runs the test binary as a helper directly inside cgroup dir.
func runInCgroup(t *testing.T, dir, action string, env ...string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+action)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper %s: %v\n%s", action, err, out)
	}
}

func TestBPFHistogramCountsPerCgroup(t *testing.T) {
	s := loadTestSensor(t, Options{})
	dirA, idA := testCgroup(t)
	_, idB := testCgroup(t)
	sampler := NewSampler(s, time.Now(), nil)
	if _, _, err := sampler.Sample(time.Now()); err != nil {
		t.Fatal(err)
	}

	const calls = 1000
	runInCgroup(t, dirA, "getppid", "CAGEWATCH_HELPER_N="+strconv.Itoa(calls))

	deltas, _, err := sampler.Sample(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	getppid, _ := model.SyscallNumber("getppid")
	var gotA bool
	for _, d := range deltas {
		switch d.CgroupID {
		case idA:
			gotA = true
			if d.Counts[getppid] < calls {
				t.Errorf("cgroup A: getppid = %d, want >= %d", d.Counts[getppid], calls)
			}
			if w := d.Window(model.Container{}); w.Counts["getppid"] != d.Counts[getppid] {
				t.Errorf("window by name: getppid = %d, want %d", w.Counts["getppid"], d.Counts[getppid])
			}
		case idB:
			t.Errorf("cgroup B made no syscalls but has a window: %v", d.Counts)
		default:
			if d.Counts[getppid] >= calls {
				t.Errorf("cgroup %d got %d getppid; they belong to cgroup A", d.CgroupID, d.Counts[getppid])
			}
		}
	}
	if !gotA {
		t.Fatalf("no window for cgroup A (id %d) among %d windows", idA, len(deltas))
	}

	// The next window of an idle cgroup is empty: deltas, not totals.
	deltas, _, err = sampler.Sample(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deltas {
		if d.CgroupID == idA {
			t.Errorf("idle cgroup A has a second window: %v", d.Counts)
		}
	}
}

func nsInode(t *testing.T, name string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/"+name, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func TestBPFSecurityEvents(t *testing.T) {
	s := loadTestSensor(t, Options{
		WatchPrefixes: []string{"/etc/shadow"},
		WatchPorts:    []uint16{22},
		IgnoreTGID:    uint32(os.Getpid()),
	})
	dir, id := testCgroup(t)
	reader, err := s.OpenEvents()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := make(chan model.Event, 1024)
	done := make(chan error, 1)
	go func() {
		done <- ReadEvents(ctx, reader, s.Decoder(), func(e model.Event) {
			if e.CgroupID == id && e.Kind == model.EventSyscall {
				events <- e
			}
		}, func(err error) { t.Errorf("undecodable record: %v", err) })
	}()

	start := time.Now()
	runInCgroup(t, dir, "security")

	want := map[string]func(model.Event) error{
		"unshare": func(e model.Event) error {
			return wantFlags(e, unix.CLONE_NEWNS|unix.CLONE_NEWUSER)
		},
		"setns": func(e model.Event) error { return wantFlags(e, unix.CLONE_NEWNET) },
		"openat": func(e model.Event) error {
			if e.Path != "/etc/shadow" {
				return fmt.Errorf("path %q", e.Path)
			}
			return nil
		},
		"mount": func(e model.Event) error {
			if e.Path != "/nonexistent-cagewatch-target" || e.Path2 != "none" || e.FsType != "tmpfs" || e.Flags != unix.MS_RDONLY {
				return fmt.Errorf("target %q source %q fstype %q flags %#x", e.Path, e.Path2, e.FsType, e.Flags)
			}
			return nil
		},
		"connect": func(e model.Event) error {
			if e.Family != "inet" || e.Addr.String() != "127.0.0.1" || e.Port != 22 {
				return fmt.Errorf("family %q addr %v port %d", e.Family, e.Addr, e.Port)
			}
			return nil
		},
	}
	mnt, netns, userns, pidns := nsInode(t, "mnt"), nsInode(t, "net"), nsInode(t, "user"), nsInode(t, "pid")
	got := map[string]int{}
	for len(got) < len(want) {
		select {
		case e := <-events:
			check, ok := want[e.Syscall]
			if !ok {
				continue
			}
			got[e.Syscall]++
			if err := check(e); err != nil {
				t.Errorf("%s event: %v", e.Syscall, err)
			}
			if e.Namespaces.Mnt != mnt || e.Namespaces.Net != netns || e.Namespaces.User != userns || e.Namespaces.PID != pidns {
				t.Errorf("%s event namespaces %+v, want mnt %d net %d user %d pid %d", e.Syscall, e.Namespaces, mnt, netns, userns, pidns)
			}
			if e.PID == 0 || e.Comm == "" || e.Time.Before(start.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
				t.Errorf("%s event header: pid %d comm %q time %v (test started %v)", e.Syscall, e.PID, e.Comm, e.Time, start)
			}
			if e.CapEff == 0 {
				t.Errorf("%s event: effective caps 0 for a root helper", e.Syscall)
			}
		case <-ctx.Done():
			t.Fatalf("timed out; got events %v, want one each of %d syscalls", got, len(want))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ReadEvents: %v", err)
	}
	for name, n := range got {
		if n != 1 {
			t.Errorf("%s: %d events, want 1", name, n)
		}
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.EventsLost != 0 {
		t.Errorf("events lost: %d", st.EventsLost)
	}
}

func wantFlags(e model.Event, flags uint64) error {
	if e.Flags != flags {
		return fmt.Errorf("flags %#x, want %#x", e.Flags, flags)
	}
	return nil
}
