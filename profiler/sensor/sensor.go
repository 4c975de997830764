package sensor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
)

// HistSlots is the number of syscall slots per cgroup; the last one counts numbers
// beyond the table ("other").
const HistSlots = len(sensorHist{}.Counts)

// BTFPath is where the kernel exposes its own type information.
const BTFPath = "/sys/kernel/btf/vmlinux"

// ErrNoBTF means the kernel has no BTF, which CO-RE and tp_btf programs need.
var ErrNoBTF = errors.New("kernel BTF not available (build the kernel with CONFIG_DEBUG_INFO_BTF=y or set sensor.kernel_btf)")

// eventSyscalls are the syscalls the sys_enter program turns into events.
var eventSyscalls = []string{
	"open", "openat", "openat2", "connect", "clone", "clone3", "unshare", "setns", "capset",
	"mount", "umount2", "pivot_root", "move_mount", "fsopen", "fsmount", "open_tree", "mount_setattr",
	"ptrace", "init_module", "finit_module", "delete_module", "bpf", "keyctl", "userfaultfd",
	"io_uring_setup", "open_by_handle_at", "perf_event_open",
	"socket", "chmod", "fchmod", "fchmodat", "fchmodat2",
	// File writes (write-opens are judged by the sys_exit program).
	"unlink", "unlinkat", "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
	"chown", "lchown", "fchown", "fchownat", "truncate", "ftruncate", "mknod", "mknodat",
}

// Options are the in-kernel filters the loader fills before attaching.
type Options struct {
	// WatchPrefixes are path prefixes whose opens and unix-socket connects become events.
	WatchPrefixes []string
	// WatchNames are final path components reported under any directory.
	WatchNames []string
	// WatchPorts are TCP/UDP destination ports whose connects become events; 0 means all.
	WatchPorts []uint16
	// WriteWatch maps a tree (path prefix) to the write operations
	// (model.WriteOps) reported below it.
	WriteWatch map[string][]string
	// IgnoreTGID is a process (the agent itself) whose syscalls never become events.
	IgnoreTGID uint32
	// KernelBTF is the kernel's BTF file; empty means BTFPath. Kernels without
	// built-in BTF can be given an external one (e.g. from BTFHub).
	KernelBTF string
	// everyReturn judges write-opens at tp_btf/sys_exit even where the
	// per-syscall tracepoints exist (tests of the fallback).
	everyReturn bool
	// HistogramSlots is how many (cgroup, CPU) pairs are counted at once; 0 means
	// DefaultHistogramSlots. Syscalls beyond it are counted in Stats.HistFull.
	HistogramSlots int
}

// Stats are the sensor's counters, summed over CPUs since load.
type Stats struct {
	Events     uint64 // written to the ring buffer
	EventsLost uint64 // dropped because the ring buffer was full
	HistFull   uint64 // syscalls not counted because every histogram slot was taken
	PathFaults uint64 // user paths unreadable at syscall entry
	Killed     uint64 // processes killed in enforce mode
}

// Sensor is the loaded and attached set of BPF programs.
type Sensor struct {
	objs  sensorObjects
	hist  *histograms
	links []link.Link
	clock time.Time
	opts  Options // the report-only watch lists, restored when enforcement changes

	enforceMu    sync.Mutex
	killPrefixes []string // entries the last policy changed
	killNames    []string
	// enforcedPrefixes are the cgroup path prefixes in enforce_prefixes.
	enforcedPrefixes []string
	writeTrees       map[string][]string // in write_prefixes
	exitMode         string
	hostMountNSFrom  string // where the host's mount namespace was read
	// filterPrefixes and filterNames are the entries of watch_prefixes and
	// watch_names, hashed into watch_filter.
	filterPrefixes, filterNames map[string]bool
}

// Load checks the kernel, loads the programs with opts' filters and attaches them.
func Load(opts Options) (*Sensor, error) {
	var loadOpts ebpf.CollectionOptions
	if opts.KernelBTF == "" {
		if _, err := os.Stat(BTFPath); err != nil {
			return nil, fmt.Errorf("%s: %w", BTFPath, ErrNoBTF)
		}
	} else {
		kernelTypes, err := btf.LoadSpec(opts.KernelBTF)
		if err != nil {
			return nil, fmt.Errorf("kernel BTF %s: %w: %w", opts.KernelBTF, ErrNoBTF, err)
		}
		loadOpts.Programs.KernelTypes = kernelTypes
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("removing memlock limit: %w", err)
	}
	spec, err := loadSensor()
	if err != nil {
		return nil, err
	}
	if err := SizeHistogramMaps(spec, opts.HistogramSlots); err != nil {
		return nil, err
	}
	var mask [HistSlots / 64]uint64
	for _, name := range eventSyscalls {
		nr, ok := model.SyscallNumber(name)
		if !ok {
			return nil, fmt.Errorf("no syscall number for %q", name)
		}
		mask[nr/64] |= 1 << (nr % 64)
	}
	if err := spec.Variables[sensorVarEventSyscalls].Set(mask); err != nil {
		return nil, fmt.Errorf("setting event syscalls: %w", err)
	}
	if err := spec.Variables[sensorVarAgentTgid].Set(opts.IgnoreTGID); err != nil {
		return nil, fmt.Errorf("setting agent tgid: %w", err)
	}
	hostNS, hostNSFrom := hostMountNamespace()
	if err := spec.Variables[sensorVarHostMntNs].Set(hostNS); err != nil {
		return nil, fmt.Errorf("setting host mount namespace: %w", err)
	}

	s := &Sensor{clock: bootTime(), opts: opts, filterPrefixes: map[string]bool{}, filterNames: map[string]bool{}, hostMountNSFrom: hostNSFrom}
	if err := spec.LoadAndAssign(&s.objs, &loadOpts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading sensor programs: %w\n%+v", err, verr)
		}
		return nil, fmt.Errorf("loading sensor programs: %w", err)
	}
	if s.hist, err = newHistograms(s.objs.HistSlots, s.objs.FreeSlots, s.objs.PairSlots); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.fillFilters(opts); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Attach(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Attach attaches the programs, all or none. Load does; a benchmark calls it
// again after Detach.
func (s *Sensor) Attach() error {
	if s.links != nil {
		return errors.New("attaching an attached sensor")
	}
	for name, prog := range map[string]*ebpf.Program{
		"sys_enter":                       s.objs.SysEnter,
		"sched_switch":                    s.objs.SchedSwitch,
		"cgroup_attach_task":              s.objs.CgroupAttachTask,
		"sched_process_exec":              s.objs.SchedProcessExec,
		"sched_process_fork":              s.objs.SchedProcessFork,
		"cgroup_attach_task (exec sites)": s.objs.ExecSiteAttach,
		"cgroup_rmdir":                    s.objs.CgroupRmdir,
		"cgroup_mkdir":                    s.objs.CgroupMkdir,
		"io_uring_submit_req":             s.objs.IoUringSubmitReq,
		"signal_generate":                 s.objs.SignalGenerate,
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return errors.Join(fmt.Errorf("attaching tp_btf/%s: %w", name, err), s.Detach())
		}
		s.links = append(s.links, l)
	}
	exits, mode, err := s.attachOpenExits()
	if err != nil {
		return errors.Join(err, s.Detach())
	}
	s.links = append(s.links, exits...)
	s.exitMode = mode
	return nil
}

// ExitMode says where write-opens are judged on return: ExitPerSyscall, or
// ExitEverySyscall on a kernel without per-syscall tracepoints.
func (s *Sensor) ExitMode() string { return s.exitMode }

// HostMountNSFrom says where the host's mount namespace, which tells a
// runtime's setup from a container's workload, was read: /proc/1/ns/mnt, or
// the agent's own when PID 1's could not be (a pod without hostPID or
// CAP_SYS_PTRACE: runtime setup then alerts as workload).
func (s *Sensor) HostMountNSFrom() string { return s.hostMountNSFrom }

// Detach detaches the programs and keeps the maps, so a benchmark can write the
// histogram slots without the kernel claiming them too (WriteHistogramSlot).
// Close detaches too.
func (s *Sensor) Detach() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	return errors.Join(errs...)
}

// SysEnterProgram is the loaded sys_enter program, for a benchmark reading its
// run-time statistics; the agent does not use it.
func (s *Sensor) SysEnterProgram() *ebpf.Program { return s.objs.SysEnter }

func (s *Sensor) fillFilters(opts Options) error {
	for _, p := range opts.WatchPrefixes {
		if err := s.setPrefix(p, watchReport, false); err != nil {
			return err
		}
	}
	for _, n := range opts.WatchNames {
		if err := s.setName(n, watchReport, false); err != nil {
			return err
		}
	}
	if err := s.SetWriteWatch(opts.WriteWatch); err != nil {
		return err
	}
	for _, port := range opts.WatchPorts {
		if err := s.objs.WatchPorts.Put(port, uint8(1)); err != nil {
			return fmt.Errorf("adding watch port %d: %w", port, err)
		}
	}
	return nil
}

const nameLen = 64 // NAME_LEN in bpf/sensor.h

// SetWriteWatch replaces the trees whose writes are reported (rule reload).
func (s *Sensor) SetWriteWatch(trees map[string][]string) error {
	s.enforceMu.Lock()
	defer s.enforceMu.Unlock()
	for tree := range s.writeTrees {
		if _, keep := trees[tree]; keep {
			continue
		}
		key, err := prefixKey(tree)
		if err != nil {
			return err
		}
		if err := s.objs.WritePrefixes.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing write tree %q: %w", tree, err)
		}
	}
	for tree, ops := range trees {
		key, err := prefixKey(tree)
		if err != nil {
			return fmt.Errorf("write tree: %w", err)
		}
		bits := model.WriteOpBits(ops)
		if bits == 0 {
			return fmt.Errorf("write tree %q: no known write operation in %v", tree, ops)
		}
		if err := s.objs.WritePrefixes.Put(key, bits); err != nil {
			return fmt.Errorf("setting write tree %q: %w", tree, err)
		}
	}
	s.writeTrees = maps.Clone(trees)
	return nil
}

// Close detaches the programs and frees the maps.
func (s *Sensor) Close() error {
	if s.hist != nil {
		s.hist.unmap()
	}
	return errors.Join(s.Detach(), s.objs.Close())
}

// Decoder returns a decoder whose timestamps match this sensor's clock.
func (s *Sensor) Decoder() Decoder { return Decoder{BootTime: s.clock} }

// OpenEvents opens a reader on the events ring buffer. Closing it unblocks Read.
func (s *Sensor) OpenEvents() (*ringbuf.Reader, error) {
	r, err := ringbuf.NewReader(s.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("opening event ring buffer: %w", err)
	}
	return r, nil
}

// Stats sums the per-CPU counters.
func (s *Sensor) Stats() (Stats, error) {
	var st Stats
	dst := []*uint64{&st.Events, &st.EventsLost, &st.HistFull, &st.PathFaults, &st.Killed}
	for i, p := range dst {
		var perCPU []uint64
		if err := s.objs.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return st, fmt.Errorf("reading stats[%d]: %w", i, err)
		}
		for _, v := range perCPU {
			*p += v
		}
	}
	return st, nil
}

// bootTime is the wall-clock time at which CLOCK_BOOTTIME was zero.
func bootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Unix(0, 0)
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// hostMountNamespace is the inode of the host's mount namespace, where container
// runtimes run: PID 1's (the agent runs in the host's PID namespace); else, as
// a pod whose node's PID 1 cannot be read (some init processes are not
// dumpable, or hold capabilities no pod has), its parent's, the runtime's
// shim; else the agent's own. 0 when none can be read, and then no process is
// taken for a runtime's init.
func hostMountNamespace() (inode uint32, from string) {
	for _, path := range []string{"/proc/1/ns/mnt", fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()), "/proc/self/ns/mnt"} {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err == nil {
			return uint32(st.Ino), path
		}
	}
	return 0, ""
}
