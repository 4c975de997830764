package sensor

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// cgroup2Root is where the test machines mount cgroup v2 (hybrid mode).
const cgroup2Root = "/sys/fs/cgroup/unified"

const helperEnv = "CAGEWATCH_SENSOR_HELPER"

// A helper keeps its main goroutine on the thread group leader (LockOSThread
// in init lasts into main), so work it moves to another goroutine runs on a
// thread that is not the leader.
func init() {
	if os.Getenv(helperEnv) != "" {
		runtime.LockOSThread()
	}
}

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
	case "gram-cycle": // CAGEWATCH_HELPER_N cycles of getppid, getuid, getgid, nanosleep on one thread
		runtime.LockOSThread()
		n, _ := strconv.Atoi(os.Getenv("CAGEWATCH_HELPER_N"))
		pause := unix.Timespec{Nsec: 20_000}
		for range n {
			unix.Getppid()
			unix.Getuid()
			unix.Getgid()
			_ = unix.Nanosleep(&pause, nil) // switches the thread out every cycle
		}
	case "spin": // until killed
		for {
			unix.Getppid()
		}
	case "security":
		securityCalls(os.Getenv("CAGEWATCH_HELPER_DIR"))
	case "unshare-on-input": // says it runs, then once a line arrives, as CAGEWATCH_HELPER_THEN says
		fmt.Println("running")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		if dir := os.Getenv("CAGEWATCH_HELPER_JOIN"); dir != "" { // moves itself
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
		self, _ := os.Executable()
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, helperEnv+"=") })
		env = append(env, helperEnv+"=unshare-now")
		switch os.Getenv("CAGEWATCH_HELPER_THEN") {
		case "reexec": // as runc 1.1's init re-executes its sealed binary
			return execFailed(syscall.Exec(self, []string{self}, env))
		case "reexec-thread": // the same from a thread that is not the leader
			runtime.LockOSThread() // keeps the main goroutine, and so no other, on the leader
			failed := make(chan error)
			go func() {
				runtime.LockOSThread()
				if unix.Gettid() == unix.Getpid() {
					failed <- errors.New("exec'ing goroutine runs on the leader thread")
					return
				}
				failed <- syscall.Exec(self, []string{self}, env)
			}()
			return execFailed(<-failed)
		case "new-mount-ns": // as a workload is exec'd inside the container's mount namespace
			return execFailed(syscall.Exec("/usr/bin/unshare", []string{"unshare", "-m", self}, env))
		}
		unshareNow()
	case "unshare-now":
		unshareNow()
	case "getppid-on-input": // says it runs, then once a line arrives, CAGEWATCH_HELPER_N getppid calls
		fmt.Println("running")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		n, _ := strconv.Atoi(os.Getenv("CAGEWATCH_HELPER_N"))
		for range n {
			unix.Getppid()
		}
	case "signal-self-on-input": // says it runs, then once a line arrives, SIGTERMs itself
		fmt.Println("running")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = unix.Kill(unix.Getpid(), unix.SIGTERM)
		time.Sleep(10 * time.Second) // the signal ends it first
		return 3
	case "exec-fd":
		return execFailed(execFD())
	case "breadth":
		breadthCalls(os.Getenv("CAGEWATCH_HELPER_DIR"))
	case "writes":
		writeCalls(os.Getenv("CAGEWATCH_HELPER_DIR"))
	case "io-uring":
		if err := ioUringCalls(os.Getenv("CAGEWATCH_HELPER_DIR")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown helper action", action)
		return 2
	}
	return 0
}

// unshareNow makes one unshare call (EINVAL: Go is multithreaded) from a
// thread that is not the leader, named CAGEWATCH_HELPER_COMM when that is set:
// the process's facts must hold on every thread, not only on the leader.
func unshareNow() {
	runtime.LockOSThread() // keeps the main goroutine, and so no other, on the leader
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // comm is per thread: rename the one that calls
		if unix.Gettid() == unix.Getpid() {
			fmt.Fprintln(os.Stderr, "unshare would run on the leader thread")
			os.Exit(3)
		}
		if name := os.Getenv("CAGEWATCH_HELPER_COMM"); name != "" {
			_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(unsafe.StringData(name+"\x00"))), 0, 0, 0)
		}
		_ = unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUSER)
	}()
	<-done
}

// execFD runs CAGEWATCH_HELPER_FILE through a file descriptor (execveat with
// AT_EMPTY_PATH, as fexecve does), with argv CAGEWATCH_HELPER_ARGV. Before
// that, as the environment says: copy the file into a memfd of that name
// (_MEMFD), unlink it (_UNLINK), or chroot away from it (_CHROOT).
func execFD() error {
	file := os.Getenv("CAGEWATCH_HELPER_FILE")
	fd, err := unix.Open(file, unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	if name := os.Getenv("CAGEWATCH_HELPER_MEMFD"); name != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if fd, err = unix.MemfdCreate(name, 0); err != nil {
			return err
		}
		if _, err := unix.Write(fd, data); err != nil {
			return err
		}
	}
	if os.Getenv("CAGEWATCH_HELPER_UNLINK") != "" {
		if err := os.Remove(file); err != nil {
			return err
		}
	}
	if dir := os.Getenv("CAGEWATCH_HELPER_CHROOT"); dir != "" {
		if err := unix.Chroot(dir); err != nil {
			return err
		}
		if err := unix.Chdir("/"); err != nil {
			return err
		}
	}
	return sensortest.Fexecve(fd, strings.Fields(os.Getenv("CAGEWATCH_HELPER_ARGV")), os.Environ())
}

func execFailed(err error) int {
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 2
}

// startWaitingHelper starts the test binary as helper action in cgroup dir
// (born there, with cloneFlags) and returns once it says it runs, with its
// stdin: a line on it lets the helper go on. Start returns once the exec is
// past its point of no return, which may be before the kernel's exec
// tracepoint; a runtime, too, moves its init only once the init runs.
func startWaitingHelper(t *testing.T, dir string, cloneFlags uintptr, stderr io.Writer, env ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Cloneflags: cloneFlags}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "running\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	return cmd, stdin
}

// loadTestSensor loads the sensor, or skips or fails as sensortest.SkipOrFailLoad says.
func loadTestSensor(tb testing.TB, opts Options) *Sensor {
	tb.Helper()
	s, err := Load(opts)
	sensortest.SkipOrFailLoad(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
}

// testCgroup creates a cgroup v2 directory for one test and returns its path and id.
func testCgroup(t *testing.T) (string, uint64) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cgroup2Root, "cgroup.procs")); err != nil {
		sensortest.SkipOrFail(t, "cgroup v2", "not mounted at %s: %v", cgroup2Root, err)
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
			if d.Count(getppid) < calls {
				t.Errorf("cgroup A: getppid = %d, want >= %d", d.Count(getppid), calls)
			}
			if w := d.Window(model.Container{}); w.Counts["getppid"] != d.Count(getppid) {
				t.Errorf("window by name: getppid = %d, want %d", w.Counts["getppid"], d.Count(getppid))
			}
		case idB: // other cgroups may be busy (tests of other packages run in parallel)
			t.Errorf("cgroup B made no syscalls but has a window: %v", d.Counts)
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

// securityCalls makes every syscall the sensor reports, harmlessly: most fail on
// bad arguments, and the sensor sees the attempt at entry either way. dir is a
// scratch directory holding a "release_agent" file and a "docker.sock" listener.
func securityCalls(dir string) {
	_ = unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUSER) // EINVAL: Go is multithreaded
	if fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY, 0); err == nil {
		_ = unix.Setns(fd, unix.CLONE_NEWNET) // joins the namespace it is already in
		unix.Close(fd)
	}
	if f, err := os.Open("/etc/shadow"); err == nil {
		f.Close()
	}
	if etc, err := unix.Open("/etc", unix.O_RDONLY|unix.O_DIRECTORY, 0); err == nil {
		if fd, err := unix.Openat(etc, "shadow", unix.O_RDONLY, 0); err == nil { // relative: matched by name
			unix.Close(fd)
		}
		unix.Close(etc)
	}
	if f, err := os.OpenFile(filepath.Join(dir, "release_agent"), os.O_WRONLY, 0); err == nil {
		f.Close()
	}
	_ = unix.Mount("none", "/nonexistent-cagewatch-target", "tmpfs", unix.MS_RDONLY, "")
	_ = unix.Unmount("/nonexistent-cagewatch-target", unix.MNT_DETACH)
	_ = unix.PivotRoot("/nonexistent-cagewatch-new", "/nonexistent-cagewatch-old")
	_, _ = unix.Fsopen("cagewatch-nofs", 0)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:22", time.Second); err == nil {
		c.Close()
	}
	if c, err := net.Dial("unix", filepath.Join(dir, "docker.sock")); err == nil {
		c.Close()
	}
	// Both the parent and the child process may report this; the child then execs.
	child := exec.Command("/bin/true", "cagewatch-arg")
	child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUTS}
	_ = child.Run()
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) == nil {
		_ = unix.Capset(&hdr, &data[0]) // same sets: no change
	}
	_ = unix.PtraceAttach(0x3fffffff) // ESRCH
	_, _, _ = unix.Syscall(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0)
	_, _, _ = unix.Syscall(unix.SYS_DELETE_MODULE, uintptr(unsafe.Pointer(&[]byte("cagewatch_nonexistent\x00")[0])), 0, 0)
	_, _, _ = unix.Syscall(unix.SYS_BPF, 0xffff, 0, 0)
	_, _, _ = unix.Syscall(unix.SYS_KEYCTL, 0xffff, 0, 0)
	_, _, _ = unix.Syscall(unix.SYS_IO_URING_SETUP, 0, 0, 0)
	_, _, _ = unix.Syscall(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0)
	_, _, _ = unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
	if fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0); errno == 0 {
		unix.Close(int(fd))
	}
}

func TestBPFSecurityEvents(t *testing.T) {
	trueBinary, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	if err := os.WriteFile(filepath.Join(scratch, "release_agent"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", filepath.Join(scratch, "docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	s := loadTestSensor(t, Options{
		WatchPrefixes: []string{"/etc/shadow", scratch + "/docker.sock"},
		WatchNames:    []string{"release_agent", "shadow"},
		WatchPorts:    []uint16{22},
		IgnoreTGID:    uint32(os.Getpid()),
	})
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	start := time.Now()
	runInCgroup(t, dir, "security", "CAGEWATCH_HELPER_DIR="+scratch)

	type want struct {
		syscall string
		kind    model.EventKind
		match   func(model.Event) bool // picks the event meant, among several of one syscall
		check   func(model.Event) error
	}
	isPath := func(p string) func(model.Event) bool { return func(e model.Event) bool { return e.Path == p } }
	wants := []want{
		{syscall: "unshare", check: flagsAre(unix.CLONE_NEWNS | unix.CLONE_NEWUSER)},
		{syscall: "setns", check: flagsAre(unix.CLONE_NEWNET)},
		{syscall: "openat", match: isPath("/etc/shadow"), check: func(e model.Event) error { return nil }},
		{syscall: "openat", match: isPath("shadow"), check: func(e model.Event) error { return nil }},
		{syscall: "openat", match: isPath(filepath.Join(scratch, "release_agent")), check: func(e model.Event) error {
			if e.Flags&unix.O_WRONLY == 0 {
				return fmt.Errorf("flags %#o lack O_WRONLY", e.Flags)
			}
			return nil
		}},
		{syscall: "mount", check: func(e model.Event) error {
			if e.Path != "/nonexistent-cagewatch-target" || e.Path2 != "none" || e.FsType != "tmpfs" || e.Flags != unix.MS_RDONLY {
				return fmt.Errorf("target %q source %q fstype %q flags %#x", e.Path, e.Path2, e.FsType, e.Flags)
			}
			return nil
		}},
		{syscall: "umount2", check: pathIs("/nonexistent-cagewatch-target")},
		{syscall: "pivot_root", check: func(e model.Event) error {
			if e.Path != "/nonexistent-cagewatch-new" || e.Path2 != "/nonexistent-cagewatch-old" {
				return fmt.Errorf("new %q old %q", e.Path, e.Path2)
			}
			return nil
		}},
		{syscall: "fsopen", check: func(e model.Event) error {
			if e.FsType != "cagewatch-nofs" {
				return fmt.Errorf("fstype %q", e.FsType)
			}
			return nil
		}},
		{syscall: "connect", match: func(e model.Event) bool { return e.Family == "inet" }, check: func(e model.Event) error {
			if e.Addr.String() != "127.0.0.1" || e.Port != 22 {
				return fmt.Errorf("addr %v port %d", e.Addr, e.Port)
			}
			return nil
		}},
		{syscall: "connect", match: func(e model.Event) bool { return e.Family == "unix" }, check: pathIs(scratch + "/docker.sock")},
		{syscall: "clone|clone3", check: func(e model.Event) error { // Go picks clone3 when it wants a pidfd
			if e.Flags&unix.CLONE_NEWUTS == 0 {
				return fmt.Errorf("flags %#x lack CLONE_NEWUTS", e.Flags)
			}
			return nil
		}},
		// The exec's path is the file that ran: /bin is a symlink on merged-/usr systems.
		{syscall: "execve", kind: model.EventExec, match: isPath(trueBinary), check: func(e model.Event) error {
			if len(e.Argv) != 2 || e.Argv[1] != "cagewatch-arg" {
				return fmt.Errorf("argv %q", e.Argv)
			}
			if e.PPID == 0 || e.PPID == e.PID {
				return fmt.Errorf("ppid %d of pid %d", e.PPID, e.PID)
			}
			return nil
		}},
		{syscall: "capset", check: func(e model.Event) error {
			if e.CapsRequested == nil || e.CapsRequested.Effective != e.CapEff {
				return fmt.Errorf("requested %+v, effective now %#x", e.CapsRequested, e.CapEff)
			}
			return nil
		}},
		{syscall: "ptrace", check: flagsAre(unix.PTRACE_ATTACH)},
		{syscall: "finit_module", check: func(e model.Event) error { return nil }},
		{syscall: "delete_module", check: pathIs("cagewatch_nonexistent")},
		{syscall: "bpf", match: func(e model.Event) bool { return e.Flags == 0xffff }, check: flagsAre(0xffff)},
		{syscall: "keyctl", check: flagsAre(0xffff)},
		{syscall: "io_uring_setup", check: func(e model.Event) error { return nil }},
		{syscall: "open_by_handle_at", check: func(e model.Event) error { return nil }},
		{syscall: "perf_event_open", check: func(e model.Event) error { return nil }},
		{syscall: "userfaultfd", check: flagsAre(unix.O_CLOEXEC)},
	}

	mnt, netns, userns, pidns := nsInode(t, "mnt"), nsInode(t, "net"), nsInode(t, "user"), nsInode(t, "pid")
	found := make([]bool, len(wants))
	deadline := time.After(10 * time.Second)
	for remaining := len(wants); remaining > 0; {
		var e model.Event
		select {
		case e = <-events:
		case <-deadline:
			for i, w := range wants {
				if !found[i] {
					t.Errorf("no %s event", w.syscall)
				}
			}
			t.FailNow()
		}
		for i, w := range wants {
			kind := cmp.Or(w.kind, model.EventSyscall)
			if found[i] || e.Kind != kind || !slices.Contains(strings.Split(w.syscall, "|"), e.Syscall) || (w.match != nil && !w.match(e)) {
				continue
			}
			found[i] = true
			remaining--
			if err := w.check(e); err != nil {
				t.Errorf("%s event: %v", w.syscall, err)
			}
			if e.Namespaces.Mnt != mnt || e.Namespaces.Net != netns || e.Namespaces.User != userns || e.Namespaces.PID != pidns {
				t.Errorf("%s event namespaces %+v, want mnt %d net %d user %d pid %d", w.syscall, e.Namespaces, mnt, netns, userns, pidns)
			}
			if e.PID == 0 || e.TID == 0 || e.Comm == "" || e.Time.Before(start.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
				t.Errorf("%s event header: pid %d tid %d comm %q time %v (test started %v)", w.syscall, e.PID, e.TID, e.Comm, e.Time, start)
			}
			if e.CapEff == 0 {
				t.Errorf("%s event: effective caps 0 for a root helper", w.syscall)
			}
			break
		}
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.EventsLost != 0 || st.Events == 0 {
		t.Errorf("stats: %+v, want events and none lost", st)
	}
}

// TestBPFUnwatchedOpensAreFiltered checks the in-kernel filter drops what no list names.
func TestBPFUnwatchedOpensAreFiltered(t *testing.T) {
	s := loadTestSensor(t, Options{WatchPrefixes: []string{"/etc/shadow"}, WatchPorts: []uint16{22}})
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	runInCgroup(t, dir, "getppid", "CAGEWATCH_HELPER_N=10") // opens its own binary, libs, /proc files…
	// The helper's own exec is reported, and so are the bpf() probes cilium/ebpf makes
	// when the test binary starts; nothing else from its startup should be.
	deadline := time.After(500 * time.Millisecond)
	for {
		select {
		case e := <-events:
			if e.Kind == model.EventSyscall && e.Syscall != "bpf" {
				t.Errorf("unexpected event: %s %s", e.Syscall, e.Describe())
			}
		case <-deadline:
			return
		}
	}
}

// TestBPFRemovedCgroupsAreReclaimed starts and removes 200 cgroups with a process
// each and checks the kernel map and the sampler do not grow.
func TestBPFRemovedCgroupsAreReclaimed(t *testing.T) {
	s := loadTestSensor(t, Options{})
	reader, err := s.OpenEvents()
	if err != nil {
		t.Fatal(err)
	}
	sampler := NewSampler(s, time.Now(), nil) // no alive sweep: removal must come from rmdir events
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ReadEvents(ctx, reader, s.Decoder(), func(e model.Event) {
			if e.Kind == model.EventCgroupRemove {
				sampler.CgroupRemoved(e.CgroupID)
			}
		}, nil)
	}()
	defer func() { cancel(); <-done }()

	countEntries := func() int {
		n := 0
		if err := s.ReadHistograms(func(uint64, []SyscallCount, []GramCount) { n++ }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	sample := func() {
		time.Sleep(50 * time.Millisecond) // let the rmdir events arrive
		if _, _, err := sampler.Sample(time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	sample()
	before, trackedBefore := countEntries(), sampler.Tracked()
	var ids []uint64
	for i := range 200 {
		dir, err := os.MkdirTemp(cgroup2Root, "cagewatch-churn-")
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.Ino)
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		err = cmd.Run()
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		removeCgroup(t, dir)
		if i%50 == 49 {
			sample()
		}
	}
	sample()
	after, trackedAfter := countEntries(), sampler.Tracked()
	// Other tests and host activity may add a cgroup or two; 200 leaked would show.
	if after > before+5 || trackedAfter > trackedBefore+5 {
		t.Errorf("map entries %d -> %d, tracked %d -> %d after 200 cgroups came and went", before, after, trackedBefore, trackedAfter)
	}
	removed := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		removed[id] = true
	}
	if err := s.ReadHistograms(func(id uint64, _ []SyscallCount, _ []GramCount) {
		if removed[id] {
			t.Errorf("removed cgroup %d still has a histogram slot", id)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBPFGramsAreConsecutiveSyscallsOfOneThread: a thread cycling through four
// syscalls, one of them a sleep that switches it out, makes its cycle's gram
// once a cycle, and its run survives the switch, so grams do not depend on the
// scheduler. No pair is out of the cycle's order.
func TestBPFGramsAreConsecutiveSyscallsOfOneThread(t *testing.T) {
	s := loadTestSensor(t, Options{})
	dir, id := testCgroup(t)
	sampler := NewSampler(s, time.Now(), nil)
	if _, _, err := sampler.Sample(time.Now()); err != nil {
		t.Fatal(err)
	}
	const cycles = 500
	runInCgroup(t, dir, "gram-cycle", "CAGEWATCH_HELPER_N="+strconv.Itoa(cycles))
	deltas, _, err := sampler.Sample(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var grams map[string]uint64
	for _, d := range deltas {
		if d.CgroupID == id {
			grams = d.Window(model.Container{}).Grams
		}
	}
	if grams == nil {
		t.Fatalf("no grams for the test cgroup among %d windows", len(deltas))
	}
	cycle := []string{"getppid", "getuid", "getgid", "nanosleep"}
	if g := model.GramKey(cycle...); grams[g] < cycles*9/10 || grams[g] > cycles {
		t.Errorf("gram %s counted %d times, want about %d (all grams: %d kinds)", g, grams[g], cycles, len(grams))
	}
	// After each sleep the thread's run goes on (a runtime futex call may come
	// first): a run cut at the switch would start 500 short grams here.
	var short uint64
	for g, n := range grams {
		names := model.GramNames(g)
		if len(names) < model.GramOrder && slices.Contains(cycle[:3], names[len(names)-1]) {
			short += n
		}
	}
	if short > 5 {
		t.Errorf("%d grams of the cycle start a run: the thread's run was cut when it slept", short)
	}
	pairs := model.PairCounts(grams)
	for p, n := range pairs {
		prev, next := model.GramNames(p)[0], model.GramNames(p)[1]
		// The runtime's own threads sleep too (sysmon): judge pairs from the
		// syscalls only the cycling thread makes.
		i, j := slices.Index(cycle[:3], prev), slices.Index(cycle, next)
		if i >= 0 && j >= 0 && j != (i+1)%4 {
			t.Errorf("pair %s counted %d times: the thread never made it", p, n)
		}
	}
}

// TestBPFHistogramSlotsRunOutAndComeBack takes every free slot away: a new cgroup
// goes uncounted, and once a cgroup is released its zeroed slots serve the next
// one, with no counts carried over, and the released cgroup (still alive) is
// counted again from zero.
func TestBPFHistogramSlotsRunOutAndComeBack(t *testing.T) {
	s := loadTestSensor(t, Options{HistogramSlots: 64})
	countsOf := func(id uint64) (Counts, bool) {
		var got Counts
		var ok bool
		if err := s.ReadHistograms(func(owner uint64, counts []SyscallCount, _ []GramCount) {
			if owner == id {
				for _, c := range counts {
					got[c.Nr] = c.Count
				}
				ok = true
			}
		}); err != nil {
			t.Fatal(err)
		}
		return got, ok
	}
	getppid, _ := model.SyscallNumber("getppid")
	dirA, idA := testCgroup(t)
	dirB, idB := testCgroup(t)

	runInCgroup(t, dirB, "getppid", "CAGEWATCH_HELPER_N=300")
	if c, ok := countsOf(idB); !ok || c[getppid] < 300 {
		t.Fatalf("cgroup B: slot %v, getppid = %d, want 300", ok, c[getppid])
	}
	var drained []uint32
	for {
		var slot uint32
		if err := s.objs.FreeSlots.LookupAndDelete(nil, &slot); err != nil {
			break
		}
		drained = append(drained, slot)
	}

	before, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	runInCgroup(t, dirA, "getppid", "CAGEWATCH_HELPER_N=100")
	after, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := countsOf(idA); ok {
		t.Fatal("cgroup A got a slot with none free")
	}
	if after.HistFull-before.HistFull < 100 {
		t.Errorf("uncounted syscalls grew by %d, want >= 100", after.HistFull-before.HistFull)
	}

	// A few spares for other CPUs go back, then B's slots on top (the free slots
	// are a stack; released slots are handed back at the next read), so A is
	// handed B's old slots first.
	for _, slot := range drained[:4] {
		if err := s.objs.FreeSlots.Update(nil, slot, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteHistograms([]uint64{idB}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReadHistograms(func(uint64, []SyscallCount, []GramCount) {}); err != nil {
		t.Fatal(err)
	}
	runInCgroup(t, dirA, "getppid", "CAGEWATCH_HELPER_N=300")
	if c, ok := countsOf(idA); !ok || c[getppid] < 300 || c[getppid] > 310 {
		t.Errorf("cgroup A in B's old slots: slot %v, getppid = %d after 300 calls (counts lost or carried over)", ok, c[getppid])
	}
	runInCgroup(t, dirB, "getppid", "CAGEWATCH_HELPER_N=50")
	if c, ok := countsOf(idB); !ok || c[getppid] < 50 || c[getppid] > 60 {
		t.Errorf("released cgroup B counted again: slot %v, getppid = %d after 50 calls", ok, c[getppid])
	}
}

// TestBPFMovedTaskCountsInItsNewCgroup moves a process that is busy making syscalls
// on another CPU: with no context switch to notice it, its syscalls must still
// leave the old cgroup for the new one.
func TestBPFMovedTaskCountsInItsNewCgroup(t *testing.T) {
	s := loadTestSensor(t, Options{})
	dirA, idA := testCgroup(t)
	dirB, idB := testCgroup(t)
	getppidOf := func(id uint64) uint64 {
		var n uint64
		if err := s.ReadHistograms(func(owner uint64, counts []SyscallCount, _ []GramCount) {
			if owner == id {
				n = Delta{Counts: counts}.Count(110) // getppid
			}
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fd, err := unix.Open(dirA, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=spin")
	// In a mount namespace of its own: a process exec'd in the host's and then
	// moved by another is a container runtime's init, which is not counted.
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Cloneflags: unix.CLONE_NEWNS}
	err = cmd.Start()
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	time.Sleep(200 * time.Millisecond)
	if n := getppidOf(idA); n < 1000 {
		t.Fatalf("spinning in A: getppid = %d, want thousands", n)
	}
	if err := os.WriteFile(filepath.Join(dirB, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	a1 := getppidOf(idA)
	time.Sleep(200 * time.Millisecond)
	a2, b := getppidOf(idA), getppidOf(idB)
	if b < 1000 {
		t.Errorf("moved to B: getppid = %d in B, want thousands", b)
	}
	if a2-a1 > 100 {
		t.Errorf("A kept counting the moved process: %d more getppid calls", a2-a1)
	}
}

// TestBPFRuntimeSetupIsTheKernelsFact: a process moved into its cgroup after an
// exec in the host's mount namespace is a runtime's init setting up (as runc
// init is), also after it re-executes itself there; a process that exec'd in
// its cgroup, or exec'd into another mount namespace, is a workload, whatever it
// calls itself.
func TestBPFRuntimeSetupIsTheKernelsFact(t *testing.T) {
	s := loadTestSensor(t, Options{})
	if _, err := exec.LookPath("unshare"); err != nil {
		sensortest.SkipOrFail(t, "unshare(1)", "it execs a process in a new mount namespace (util-linux)")
	}
	tests := []struct {
		name        string
		moved       bool
		self        bool   // the helper moves itself, instead of being moved
		then        string // what the helper does once moved: "", "reexec", "new-mount-ns"
		comm        string
		wantRuntime bool
	}{
		{name: "moved after its exec", moved: true, wantRuntime: true},
		{name: "moved, then re-executed itself", moved: true, then: "reexec", wantRuntime: true},
		{name: "moved, then re-executed itself from another thread", moved: true, then: "reexec-thread", wantRuntime: true},
		{name: "moved, then exec'd into a new mount namespace", moved: true, then: "new-mount-ns"},
		{name: "moved itself after its exec", moved: true, self: true},
		{name: "moved itself, then re-executed itself", moved: true, self: true, then: "reexec"},
		{name: "exec'd in its cgroup", moved: false},
		{name: "exec'd in its cgroup, named runc:[2:INIT]", moved: false, comm: "runc:[2:INIT]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, startID := testCgroup(t)
			dir, id := start, startID
			if tt.moved {
				dir, id = testCgroup(t)
			}
			events := collectEvents(t, s, id)
			env := []string{helperEnv + "=unshare-on-input", "CAGEWATCH_HELPER_COMM=" + tt.comm, "CAGEWATCH_HELPER_THEN=" + tt.then}
			if tt.self {
				env = append(env, "CAGEWATCH_HELPER_JOIN="+dir)
			}
			var out strings.Builder
			cmd, stdin := startWaitingHelper(t, start, 0, &out, env...)
			if tt.moved && !tt.self {
				if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
					t.Fatal(err)
				}
			}
			fmt.Fprintln(stdin)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("helper: %v\n%s", err, out.String())
			}
			deadline := time.After(5 * time.Second)
			endedSetup := false // an exec of the helper's said the runtime's setup ended there
			for {
				select {
				case e := <-events:
					if e.Kind == model.EventExec && e.PID == uint32(cmd.Process.Pid) && e.Exec != nil && e.Exec.EndsSetup {
						endedSetup = true
					}
					// The helper's own call: unshare(1) makes one too, with CLONE_NEWNS alone.
					if e.Syscall != "unshare" || e.PID != uint32(cmd.Process.Pid) || e.Flags != unix.CLONE_NEWNS|unix.CLONE_NEWUSER {
						continue
					}
					if e.RuntimeSetup != tt.wantRuntime || (tt.comm != "" && e.Comm != tt.comm) {
						t.Errorf("unshare by %q: runtime setup %v, want %v", e.Comm, e.RuntimeSetup, tt.wantRuntime)
					}
					// Only the exec into the workload's mount namespace ends a setup.
					if want := tt.then == "new-mount-ns"; endedSetup != want {
						t.Errorf("an exec ended the runtime's setup: %v, want %v", endedSetup, want)
					}
					return
				case <-deadline:
					t.Fatal("no unshare event from the helper")
				}
			}
		})
	}
}

func TestLoadRejectsBadHistogramSlots(t *testing.T) {
	for _, n := range []int{-1, 1 << 20} {
		if _, err := Load(Options{HistogramSlots: n}); !errors.Is(err, ErrBadHistogramSlots) {
			t.Errorf("HistogramSlots %d: err = %v, want ErrBadHistogramSlots", n, err)
		}
	}
}

// collectEvents streams the events of one cgroup into a channel until the test ends.
func collectEvents(t *testing.T, s *Sensor, cgroupID uint64) <-chan model.Event {
	t.Helper()
	reader, err := s.OpenEvents()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan model.Event, 4096)
	done := make(chan error, 1)
	go func() {
		done <- ReadEvents(ctx, reader, s.Decoder(), func(e model.Event) {
			if e.CgroupID == cgroupID {
				events <- e
			}
		}, func(err error) { t.Errorf("undecodable record: %v", err) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ReadEvents: %v", err)
		}
	})
	return events
}

func flagsAre(flags uint64) func(model.Event) error {
	return func(e model.Event) error {
		if e.Flags != flags {
			return fmt.Errorf("flags %#x, want %#x", e.Flags, flags)
		}
		return nil
	}
}

func pathIs(p string) func(model.Event) error {
	return func(e model.Event) error {
		if e.Path != p {
			return fmt.Errorf("path %q, want %q", e.Path, p)
		}
		return nil
	}
}

// TestBPFExecPathIsTheFileThatRan: an exec's path is the file the kernel
// loaded, whatever name it was given, as the process sees it from its root.
func TestBPFExecPathIsTheFileThatRan(t *testing.T) {
	s := loadTestSensor(t, Options{})
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		sensortest.SkipOrFail(t, "busybox", "a static binary runs after chroot (apt-get install busybox-static)")
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bb := filepath.Join(dir, "busybox") // busybox runs argv[1] as the applet when argv[0] is busybox
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"busybox", "gone"} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(bb, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!"+bb+" sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "jail"), 0o755); err != nil {
		t.Fatal(err)
	}
	cgDir, cgID := testCgroup(t)
	events := collectEvents(t, s, cgID)

	helper := func(env ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), append(env, helperEnv+"=exec-fd")...)
		return cmd
	}
	tests := []struct {
		name string
		cmd  func(marker string) *exec.Cmd
		want string
		file model.ExecFile
	}{
		{name: "through a symlink", want: bb,
			cmd: func(m string) *exec.Cmd {
				return &exec.Cmd{Path: filepath.Join(dir, "link"), Args: []string{"true", m}}
			}},
		{name: "relative to the working directory", want: bb,
			cmd: func(m string) *exec.Cmd { return &exec.Cmd{Path: "./busybox", Args: []string{"true", m}, Dir: dir} }},
		{name: "/proc/self/exe", want: bb,
			cmd: func(m string) *exec.Cmd { return exec.Command(bb, "sh", "-c", "exec /proc/self/exe true "+m) }},
		{name: "/proc/self/fd/N", want: bb,
			cmd: func(m string) *exec.Cmd {
				return exec.Command(bb, "sh", "-c", "exec 3<"+bb+"; exec /proc/self/fd/3 true "+m)
			}},
		{name: "a memfd", want: "memfd:payload", file: model.ExecFile{Memfd: true, Deleted: true, OutsideRoot: true},
			cmd: func(m string) *exec.Cmd {
				return helper("CAGEWATCH_HELPER_FILE="+bb, "CAGEWATCH_HELPER_MEMFD=payload", "CAGEWATCH_HELPER_ARGV=true "+m)
			}},
		{name: "a deleted file", want: filepath.Join(dir, "gone") + " (deleted)", file: model.ExecFile{Deleted: true},
			cmd: func(m string) *exec.Cmd {
				return helper("CAGEWATCH_HELPER_FILE="+filepath.Join(dir, "gone"), "CAGEWATCH_HELPER_UNLINK=1",
					"CAGEWATCH_HELPER_ARGV=true "+m)
			}},
		{name: "a file outside the root", want: bb, file: model.ExecFile{OutsideRoot: true},
			cmd: func(m string) *exec.Cmd {
				return helper("CAGEWATCH_HELPER_FILE="+bb, "CAGEWATCH_HELPER_CHROOT="+filepath.Join(dir, "jail"),
					"CAGEWATCH_HELPER_ARGV=true "+m)
			}},
		{name: "a script named relative to the working directory", want: filepath.Join(dir, "run.sh"),
			file: model.ExecFile{Script: true},
			cmd:  func(m string) *exec.Cmd { return &exec.Cmd{Path: "./run.sh", Args: []string{"./run.sh", m}, Dir: dir} }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := fmt.Sprintf("cagewatch-exec-case-%d", i)
			cmd := tt.cmd(marker)
			fd, err := unix.Open(cgDir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
			out, err := cmd.CombinedOutput()
			unix.Close(fd)
			// /proc/self/exe and the fd run busybox as an unknown applet: that
			// exits 127, after the exec under test.
			if err != nil && !strings.Contains(string(out), "applet not found") {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
			}
			deadline := time.After(5 * time.Second)
			for {
				select {
				case e := <-events:
					if e.Kind != model.EventExec || !slices.Contains(e.Argv, marker) {
						continue
					}
					if e.Path != tt.want {
						t.Errorf("exec path %q, want %q (argv %q)", e.Path, tt.want, e.Argv)
					}
					if e.Exec == nil || *e.Exec != tt.file {
						t.Errorf("exec file %+v, want %+v", e.Exec, tt.file)
					}
					return
				case <-deadline:
					t.Fatalf("no exec event with argv %q", marker)
				}
			}
		})
	}
}

// TestBPFCgroupMkdirEnforcesBelowPrefixes: in enforce mode the kernel enforces a
// cgroup created below an enforced prefix in the mkdir itself, says so in the
// mkdir event, and forgets it at rmdir.
func TestBPFCgroupMkdirEnforcesBelowPrefixes(t *testing.T) {
	s := loadTestSensor(t, Options{})
	parent, _ := testCgroup(t)
	rel := strings.TrimPrefix(parent, cgroup2Root)
	if err := s.SetEnforcement(EnforcePolicy{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetEnforcedPrefixes([]string{rel + "/app-"}); err != nil {
		t.Fatal(err)
	}
	reader, err := s.OpenEvents()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mkdirs := make(chan model.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- ReadEvents(ctx, reader, s.Decoder(), func(e model.Event) {
			if e.Kind == model.EventCgroupCreate && strings.HasPrefix(e.Path, rel+"/") {
				mkdirs <- e
			}
		}, func(err error) { t.Errorf("undecodable record: %v", err) })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ReadEvents: %v", err)
		}
	}()
	enforced := func(id uint64) bool {
		var v uint8
		return s.objs.EnforcedCgroups.Lookup(id, &v) == nil
	}
	for _, tt := range []struct {
		name string
		want bool
	}{{"app-1", true}, {"other", false}} {
		dir := filepath.Join(parent, tt.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-mkdirs:
			if e.Path != rel+"/"+tt.name || e.CgroupID != st.Ino || (e.Flags == 1) != tt.want {
				t.Errorf("mkdir event %q id %d flags %d, want %q id %d enforced %v", e.Path, e.CgroupID, e.Flags,
					rel+"/"+tt.name, st.Ino, tt.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no mkdir event for %s", dir)
		}
		if got := enforced(st.Ino); got != tt.want {
			t.Errorf("%s: in enforced_cgroups %v, want %v", tt.name, got, tt.want)
		}
		removeCgroup(t, dir)
		if enforced(st.Ino) {
			t.Errorf("%s: still in enforced_cgroups after rmdir", tt.name)
		}
	}
}

// TestBPFRuntimeSetupIsNotCounted: the syscalls of a container runtime's init
// setting a container up (exec'd in the host's mount namespace, then moved into
// the container's cgroup by another process) stay out of the container's
// histogram; those of a process exec'd in its own mount namespace and moved the
// same way are counted.
func TestBPFRuntimeSetupIsNotCounted(t *testing.T) {
	s := loadTestSensor(t, Options{})
	const calls = 5000
	for _, tt := range []struct {
		name      string
		cloneFlag uintptr
		counted   bool
	}{
		{name: "runtime init", counted: false},
		{name: "process of another mount namespace", cloneFlag: unix.CLONE_NEWNS, counted: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start, _ := testCgroup(t)
			dir, id := testCgroup(t)
			cmd, stdin := startWaitingHelper(t, start, tt.cloneFlag, nil, helperEnv+"=getppid-on-input",
				fmt.Sprintf("CAGEWATCH_HELPER_N=%d", calls))
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(stdin)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("helper: %v", err)
			}
			var n uint64
			if err := s.ReadHistograms(func(owner uint64, counts []SyscallCount, _ []GramCount) {
				if owner == id {
					n += Delta{Counts: counts}.Count(110) // getppid
				}
			}); err != nil {
				t.Fatal(err)
			}
			if got := n >= calls; got != tt.counted {
				t.Errorf("getppid counted %d times in the cgroup after %d calls; want counted %v", n, calls, tt.counted)
			}
		})
	}
}

// breadthCalls makes the setuid-bit and raw-socket calls the sensor reports,
// and their benign twins, which it must filter out in the kernel.
func breadthCalls(dir string) {
	f := filepath.Join(dir, "f")
	_ = os.WriteFile(f, nil, 0o755)
	chmod := func(mode uint32) { // chmod(2) itself: Go's Chmod calls fchmodat
		p, _ := unix.BytePtrFromString(f)
		_, _, _ = unix.Syscall(unix.SYS_CHMOD, uintptr(unsafe.Pointer(p)), uintptr(mode), 0)
	}
	chmod(0o755)                                   // benign
	chmod(0o4755)                                  // setuid
	_ = unix.Fchmodat(unix.AT_FDCWD, f, 0o2755, 0) // setgid
	for _, s := range [][2]int{
		{unix.AF_INET, unix.SOCK_STREAM}, // benign
		{unix.AF_PACKET, unix.SOCK_RAW},
		{unix.AF_INET, unix.SOCK_RAW | unix.SOCK_CLOEXEC},
	} {
		if fd, err := unix.Socket(s[0], s[1], 0); err == nil {
			unix.Close(fd)
		}
	}
}

// TestBPFBreadthEvents: setuid/setgid chmods and packet or raw sockets are
// reported with their decisive detail; plain chmods and stream sockets never
// leave the kernel.
func TestBPFBreadthEvents(t *testing.T) {
	s := loadTestSensor(t, Options{})
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	scratch := t.TempDir()
	runInCgroup(t, dir, "breadth", "CAGEWATCH_HELPER_DIR="+scratch)
	f := filepath.Join(scratch, "f")
	type seen struct {
		syscall, family, path string
		flags                 uint64
	}
	want := []seen{
		{syscall: "chmod", path: f, flags: 0o4755},
		{syscall: "fchmodat", path: f, flags: 0o2755},
		{syscall: "socket", family: "packet", flags: unix.SOCK_RAW},
		{syscall: "socket", family: "inet", flags: unix.SOCK_RAW | unix.SOCK_CLOEXEC},
	}
	var got []seen
	deadline := time.After(3 * time.Second)
	for len(got) < len(want) {
		select {
		case e := <-events:
			if e.Kind == model.EventSyscall && (e.Syscall == "socket" || strings.Contains(e.Syscall, "chmod")) {
				got = append(got, seen{syscall: e.Syscall, family: e.Family, path: e.Path, flags: e.Flags})
			}
		case <-deadline:
			t.Fatalf("events %+v, want %+v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %+v, want %+v (a benign call leaked or the detail is wrong)", got, want)
	}
}

// TestBPFReverseShellAndExecKill: an exec whose stdin is a TCP connection is
// marked; in enforce mode an exec of a deleted file is killed before the new
// image runs, and an ordinary exec beside it is not.
func TestBPFReverseShellAndExecKill(t *testing.T) {
	s := loadTestSensor(t, Options{})
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		sensortest.SkipOrFail(t, "busybox", "a static binary to exec (apt-get install busybox-static)")
	}
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	inCgroup := func(cmd *exec.Cmd) (*exec.Cmd, func()) {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		return cmd, func() { unix.Close(fd) }
	}
	execOf := func(marker string) model.Event {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case e := <-events:
				if e.Kind == model.EventExec && slices.Contains(e.Argv, marker) {
					return e
				}
			case <-deadline:
				t.Fatalf("no exec event with argv %q", marker)
			}
		}
	}

	t.Run("stdin and stdout a TCP connection", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				defer c.Close()
				time.Sleep(time.Second)
			}
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sock, err := conn.(*net.TCPConn).File()
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		cmd, done := inCgroup(exec.Command(busybox, "true", "cagewatch-revshell"))
		cmd.Stdin, cmd.Stdout = sock, sock
		err = cmd.Run()
		done()
		if err != nil {
			t.Fatal(err)
		}
		if e := execOf("cagewatch-revshell"); e.Exec == nil || !e.Exec.StdioSocket {
			t.Errorf("exec with a TCP stdin: %+v, want stdio_socket", e.Exec)
		}
		cmd, done = inCgroup(exec.Command(busybox, "true", "cagewatch-pipes"))
		out, err := cmd.CombinedOutput() // stdout a pipe, stdin /dev/null
		done()
		if err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if e := execOf("cagewatch-pipes"); e.Exec == nil || e.Exec.StdioSocket {
			t.Errorf("exec with pipes: %+v, want no stdio_socket", e.Exec)
		}
	})

	t.Run("enforce kills an exec of a deleted file", func(t *testing.T) {
		if err := s.SetEnforcement(EnforcePolicy{Enabled: true, KillExecFile: []string{"deleted"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.EnforceCgroup(id, true); err != nil {
			t.Fatal(err)
		}
		gone := filepath.Join(t.TempDir(), "gone")
		data, err := os.ReadFile(busybox)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(gone, data, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd, done := inCgroup(exec.Command(os.Args[0], "-test.run=^$"))
		cmd.Env = append(os.Environ(), helperEnv+"=exec-fd", "CAGEWATCH_HELPER_FILE="+gone, "CAGEWATCH_HELPER_UNLINK=1",
			"CAGEWATCH_HELPER_ARGV=echo cagewatch-fileless ran")
		out, err := cmd.CombinedOutput()
		done()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("exec of a deleted file: %v, output %q; want death by SIGKILL", err, out)
		}
		if strings.Contains(string(out), "ran") {
			t.Errorf("the deleted file's program ran: %q", out)
		}
		if e := execOf("cagewatch-fileless"); !e.Killed {
			t.Errorf("exec event not marked killed: %+v", e)
		}
		cmd, done = inCgroup(exec.Command(busybox, "echo", "cagewatch-ordinary"))
		out, err = cmd.CombinedOutput()
		done()
		if err != nil || !strings.Contains(string(out), "cagewatch-ordinary") {
			t.Errorf("an ordinary exec under the same policy: %v, %q", err, out)
		}
	})
}

// TestBPFStopSignalIsTheRuntimeStoppingAContainer: a terminating signal to the
// init of a container's pid namespace from outside its cgroup is reported,
// with the container's cgroup; a signal to any other process, or from inside
// the container, is not.
func TestBPFStopSignalIsTheRuntimeStoppingAContainer(t *testing.T) {
	s := loadTestSensor(t, Options{})
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	signalled := func(cloneFlags uintptr, action string, signal func(*exec.Cmd, io.WriteCloser)) int {
		cmd, stdin := startWaitingHelper(t, dir, cloneFlags, nil, helperEnv+"="+action)
		signal(cmd, stdin)
		// Go's handler re-raises the signal, which an init ignores from
		// inside: the helper then exits 2.
		if err := cmd.Wait(); cmd.ProcessState == nil || cmd.ProcessState.Success() {
			t.Fatalf("%s helper not ended by the signal: %v", action, err)
		}
		return cmd.Process.Pid
	}
	fromOutside := func(cmd *exec.Cmd, _ io.WriteCloser) {
		if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	fromInside := func(_ *exec.Cmd, stdin io.WriteCloser) { fmt.Fprintln(stdin) }

	signalled(0, "getppid-on-input", fromOutside)                            // not a pid namespace's init
	signalled(unix.CLONE_NEWPID, "signal-self-on-input", fromInside)         // init, but from inside
	initPID := signalled(unix.CLONE_NEWPID, "getppid-on-input", fromOutside) // the runtime stopping it

	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind != model.EventStopSignal {
				continue
			}
			if e.Args[1] != uint64(initPID) {
				t.Fatalf("stop signal reported for pid %d, want only the pid namespace init %d signalled from outside: %+v", e.Args[1], initPID, e)
			}
			if e.Signal != int(unix.SIGTERM) || e.PID != uint32(os.Getpid()) {
				t.Errorf("stop signal %d from pid %d, want %d from the test (%d)", e.Signal, e.PID, unix.SIGTERM, os.Getpid())
			}
			return
		case <-deadline:
			t.Fatal("no stop signal event for the pid namespace init signalled from outside its cgroup")
		}
	}
}
