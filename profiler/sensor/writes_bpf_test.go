package sensor

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
)

// writeCalls makes file writes by every route the write rules must see through,
// in dir: etc/ is a watched tree, log/ a tree where only truncation and
// removal count, free/ is not watched, and secret a watched file. It ends
// chrooted into jail/, writing through a directory fd left from before.
func writeCalls(dir string) {
	at := func(p string) string { return filepath.Join(dir, p) }
	_ = os.Chdir(at("etc"))
	if fd, err := unix.Open("rel", unix.O_WRONLY|unix.O_CREAT, 0o600); err == nil { // relative to the cwd
		unix.Close(fd)
	}
	etc, _ := unix.Open(at("etc"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if fd, err := unix.Openat(etc, "passwd", unix.O_WRONLY, 0); err == nil { // through a directory fd
		unix.Close(fd)
	}
	if ro, err := unix.Open(at("etc/passwd"), unix.O_RDONLY, 0); err == nil { // reopened for writing
		if fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(ro), unix.O_WRONLY|unix.O_TRUNC, 0); err == nil {
			unix.Close(fd)
		}
		unix.Close(ro)
	}
	// creat right after a read-only open on the same thread: a read-only
	// open's exit skips its judgement on a mark its entry set; creat's entry
	// sets none, and creat is still judged.
	if ro, err := unix.Open(at("etc/passwd"), unix.O_RDONLY, 0); err == nil {
		if name, err := unix.BytePtrFromString(at("etc/created")); err == nil {
			if fd, _, errno := unix.Syscall(unix.SYS_CREAT, uintptr(unsafe.Pointer(name)), 0o600, 0); errno == 0 {
				unix.Close(int(fd))
			}
		}
		unix.Close(ro)
	}
	if fd, err := unix.Open(at("free/x"), unix.O_WRONLY|unix.O_CREAT, 0o600); err == nil { // not watched
		unix.Close(fd)
	}
	if fd, err := unix.Open(at("log/app.log"), unix.O_WRONLY|unix.O_APPEND, 0); err == nil { // logging: not counted
		unix.Close(fd)
	}
	if fd, err := unix.Open("/dev/stdout", unix.O_WRONLY, 0); err == nil { // a pipe: no path, not outside the root
		unix.Close(fd)
	}
	_ = unix.Truncate(at("log/app.log"), 0)
	_ = os.WriteFile(at("free/new"), nil, 0o600)
	_ = unix.Rename(at("free/new"), at("etc/moved"))
	_ = unix.Unlinkat(etc, "moved", 0)
	_ = unix.Symlink(at("secret"), at("free/soft"))
	_ = unix.Link(at("secret"), at("free/hard"))
	_ = unix.Chmod("rel", 0o640)
	_ = unix.Mknod(at("etc/fifo"), unix.S_IFIFO|0o600, 0)
	if _, err := unix.Open(at("free/busy"), unix.O_WRONLY, 0); err == nil { // refused: it runs
		fmt.Fprintln(os.Stderr, "write-open of a running program succeeded")
	}
	free, _ := unix.Open(at("free"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if unix.Chroot(at("jail")) == nil {
		if fd, err := unix.Openat(free, "escaped", unix.O_WRONLY|unix.O_CREAT, 0o600); err == nil {
			unix.Close(fd)
		}
	}
}

// TestBPFFileWritesAreJudgedOnTheResolvedFile: writes are reported by the file
// the kernel resolved, whatever name reached it, with what they did; writes
// outside the watched trees, and operations a tree does not count, stay in the
// kernel.
func TestBPFFileWritesAreJudgedOnTheResolvedFile(t *testing.T) {
	for _, every := range []bool{false, true} {
		name := ExitPerSyscall
		if every {
			name = ExitEverySyscall
		}
		t.Run(name, func(t *testing.T) { testFileWrites(t, every) })
	}
}

func testFileWrites(t *testing.T, everyReturn bool) {
	scratch := t.TempDir()
	at := func(p string) string { return filepath.Join(scratch, p) }
	for _, d := range []string{"etc", "log", "free", "jail"} {
		if err := os.Mkdir(at(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "log/app.log", "secret"} {
		if err := os.WriteFile(at(f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sleep, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(at("free/busy"), sleep, 0o755); err != nil {
		t.Fatal(err)
	}
	busy := exec.Command(at("free/busy"), "30")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Process.Kill(); _ = busy.Wait() }()

	s := loadTestSensor(t, Options{
		WatchPrefixes: []string{at("secret")},
		WriteWatch: map[string][]string{
			at("etc") + "/": model.WriteOps,
			at("log") + "/": {"truncate", "unlink"},
		},
		IgnoreTGID:  uint32(os.Getpid()),
		everyReturn: everyReturn,
	})
	wantMode := ExitPerSyscall
	if everyReturn {
		wantMode = ExitEverySyscall
	}
	if got := s.ExitMode(); got != wantMode {
		t.Fatalf("write-opens judged at %s, want %s", got, wantMode)
	}
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	runInCgroup(t, dir, "writes", "CAGEWATCH_HELPER_DIR="+scratch)

	type seen struct {
		syscall, ops, path, path2 string
		flags                     string // outside_root, text_busy, source_watched
	}
	describe := func(e model.Event) seen {
		w := e.Write
		var flags []string
		for _, k := range model.WriteFileKinds {
			if (k == "outside_root" && w.OutsideRoot) || (k == "text_busy" && w.TextBusy) || (k == "source_watched" && w.SourceWatched) {
				flags = append(flags, k)
			}
		}
		return seen{syscall: e.Syscall, ops: strings.Join(w.Ops, "+"), path: e.Path, path2: e.Path2, flags: strings.Join(flags, ",")}
	}
	want := []seen{
		{syscall: "openat", ops: "open+create", path: at("etc/rel")},
		{syscall: "openat", ops: "open", path: at("etc/passwd")},
		{syscall: "openat", ops: "open+truncate", path: at("etc/passwd")},
		{syscall: "creat", ops: "open+create", path: at("etc/created")},
		{syscall: "truncate", ops: "truncate", path: at("log/app.log")},
		{syscall: "renameat", ops: "rename", path: at("etc/moved"), path2: at("free/new")},
		{syscall: "unlinkat", ops: "unlink", path: at("etc/moved")},
		{syscall: "symlinkat", ops: "symlink", path: at("free/soft"), path2: at("secret"), flags: "source_watched"},
		{syscall: "linkat", ops: "link", path: at("free/hard"), path2: at("secret"), flags: "source_watched"},
		{syscall: "fchmodat", ops: "chmod", path: at("etc/rel")},
		{syscall: "mknodat", ops: "create+mknod", path: at("etc/fifo")},
		{syscall: "openat", ops: "open", path: at("free/busy"), flags: "text_busy"},
		{syscall: "openat", ops: "open+create", path: at("free/escaped"), flags: "outside_root"},
	}
	var got []seen
	deadline := time.After(3 * time.Second)
collect:
	for {
		select {
		case e := <-events:
			if e.Write != nil {
				got = append(got, describe(e))
			}
		case <-deadline:
			break collect
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("writes reported:\n%s\nwant:\n%s", formatSeen(got), formatSeen(want))
	}
}

func formatSeen[T any](xs []T) string {
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "  %+v\n", x)
	}
	return b.String()
}

// TestBPFExecUpperLayer: on an overlayfs, as a container's root is, a file
// written after the mount (in the upper layer) is marked at exec, and one from
// the image's layer is not, also once it was read.
func TestBPFExecUpperLayer(t *testing.T) {
	base := t.TempDir()
	at := func(p string) string { return filepath.Join(base, p) }
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(at(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	trueBin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(at("lower/image-true"), trueBin, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", at("lower"), at("upper"), at("work"))
	if err := unix.Mount("overlay", at("merged"), "overlay", 0, opts); err != nil {
		t.Fatalf("mounting overlayfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(at("merged"), unix.MNT_DETACH) })
	if err := os.WriteFile(at("merged/dropped-true"), trueBin, 0o755); err != nil {
		t.Fatal(err)
	}

	s := loadTestSensor(t, Options{IgnoreTGID: uint32(os.Getpid())})
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, name := range []string{"image-true", "dropped-true"} {
		cmd := exec.Command(at("merged/" + name))
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	upper := map[string]bool{}
	deadline := time.After(3 * time.Second)
	for len(upper) < 2 {
		select {
		case e := <-events:
			if e.Kind == model.EventExec && e.Exec != nil {
				upper[filepath.Base(e.Path)] = e.Exec.UpperLayer
			}
		case <-deadline:
			t.Fatalf("exec events seen: %v", upper)
		}
	}
	if want := map[string]bool{"image-true": false, "dropped-true": true}; !maps.Equal(upper, want) {
		t.Errorf("upper layer marks %v, want %v", upper, want)
	}
}
