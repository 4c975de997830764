package sensor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Write-opens are judged on return. The per-syscall tracepoints
// (syscalls:sys_exit_openat, …) call the program only for the opens, where
// tp_btf/sys_exit would run on every syscall's return. Attaching them takes
// their ids from tracefs, which a fresh node often has not mounted: the ids are
// then read by a copy of this binary in a private mount namespace, so the
// host's mounts stay as they were.

// tracefsIDsEnv makes a process started from this binary print the ids of the
// named syscalls events and exit (see init).
const tracefsIDsEnv = "CAGEWATCH_TRACEFS_IDS"

var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

func init() {
	names := os.Getenv(tracefsIDsEnv)
	if names == "" {
		return
	}
	// A private mount namespace (exec.Cmd made it, and / private): mount
	// tracefs where it belongs, for this process only.
	if err := unix.Mount("tracefs", tracefsDirs[0], "tracefs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		fmt.Fprintln(os.Stderr, "mounting tracefs:", err)
		os.Exit(2)
	}
	ids, err := readEventIDs(tracefsDirs[0], strings.Split(names, ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, name := range strings.Split(names, ",") {
		fmt.Printf("%s %d\n", name, ids[name])
	}
	os.Exit(0)
}

func readEventIDs(tracefs string, names []string) (map[string]uint64, error) {
	ids := map[string]uint64{}
	for _, name := range names {
		raw, err := os.ReadFile(filepath.Join(tracefs, "events", "syscalls", name, "id"))
		if err != nil {
			return nil, fmt.Errorf("tracepoint syscalls:%s: %w", name, err)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("tracepoint syscalls:%s: id %q: %w", name, raw, err)
		}
		ids[name] = id
	}
	return ids, nil
}

// syscallEventIDs returns the ids of the syscalls events named, from a mounted
// tracefs or else from a copy of this binary in a private mount namespace.
func syscallEventIDs(names []string) (map[string]uint64, error) {
	for _, dir := range tracefsDirs {
		if _, err := os.Stat(filepath.Join(dir, "events")); err == nil {
			return readEventIDs(dir, names)
		}
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), tracefsIDsEnv+"="+strings.Join(names, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading tracepoint ids in a private mount namespace: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	ids := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, id, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("tracepoint id helper printed %q", sc.Text())
		}
		ids[name] = n
	}
	for _, name := range names {
		if _, ok := ids[name]; !ok {
			return nil, fmt.Errorf("tracepoint id helper gave no id for %s", name)
		}
	}
	return ids, nil
}

// attachSyscallTracepoint attaches prog to the tracepoint with this id, on
// every CPU, through a bpf_link.
func attachSyscallTracepoint(id uint64, prog *ebpf.Program) (link.Link, error) {
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id, Sample_type: unix.PERF_SAMPLE_RAW, Sample: 1, Wakeup: 1}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("perf_event_open of tracepoint %d: %w", id, err)
	}
	l, err := link.AttachRawLink(link.RawLinkOptions{Target: fd, Program: prog, Attach: ebpf.AttachPerfEvent})
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &perfLink{RawLink: l, fd: fd}, nil
}

// perfLink closes the perf event with the link.
type perfLink struct {
	*link.RawLink
	fd int
}

func (l *perfLink) Close() error {
	return errors.Join(l.RawLink.Close(), unix.Close(l.fd))
}

// attachOpenExits attaches the per-syscall exit programs of the opens, or
// tp_btf/sys_exit when the kernel lacks them; it returns the links and which
// way it went.
func (s *Sensor) attachOpenExits() ([]link.Link, string, error) {
	progs := map[string]*ebpf.Program{
		"sys_exit_open": s.objs.OpenExit, "sys_exit_openat": s.objs.OpenatExit,
		"sys_exit_openat2": s.objs.Openat2Exit, "sys_exit_creat": s.objs.CreatExit,
	}
	names := make([]string, 0, len(progs))
	for name := range progs {
		names = append(names, name)
	}
	ids, err := syscallEventIDs(names)
	if s.opts.everyReturn {
		err = errors.New("per-syscall tracepoints not asked for")
	}
	if err == nil {
		var links []link.Link
		for name, prog := range progs {
			l, aerr := attachSyscallTracepoint(ids[name], prog)
			if aerr != nil {
				err = fmt.Errorf("syscalls:%s: %w", name, aerr)
				break
			}
			links = append(links, l)
		}
		if err == nil {
			return links, ExitPerSyscall, nil
		}
		for _, l := range links {
			_ = l.Close()
		}
	}
	l, lerr := link.AttachTracing(link.TracingOptions{Program: s.objs.SysExit})
	if lerr != nil {
		return nil, "", errors.Join(fmt.Errorf("attaching tp_btf/sys_exit: %w", lerr), err)
	}
	return []link.Link{l}, ExitEverySyscall, nil
}

// How write-opens are judged on return (Sensor.ExitMode).
const (
	ExitPerSyscall   = "syscalls:sys_exit_open*" // only the opens pay
	ExitEverySyscall = "tp_btf/sys_exit"         // every syscall pays
)
