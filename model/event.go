package model

import (
	"net/netip"
	"slices"
	"time"
)

// EventKind separates syscall events from process and cgroup lifecycle events.
type EventKind string

const (
	EventSyscall      EventKind = "syscall"
	EventExec         EventKind = "exec"
	EventCgroupRemove EventKind = "cgroup_rmdir"
	// EventCgroupCreate: Flags 1 says the kernel enforced the new cgroup at once
	// (its path is below an enforced prefix, in enforce mode).
	EventCgroupCreate EventKind = "cgroup_mkdir"
	// EventStopSignal: a terminating signal (Signal) reached the container's
	// init (Args[1] its pid) from outside the container: the runtime stopping
	// it. PID, Comm and the rest describe the sender.
	EventStopSignal EventKind = "stop_signal"
)

// Namespaces are the inode numbers of a task's namespaces, as in /proc/PID/ns.
type Namespaces struct {
	Mnt    uint32 `json:"mnt"`
	PID    uint32 `json:"pid"`
	Net    uint32 `json:"net"`
	User   uint32 `json:"user"`
	Cgroup uint32 `json:"cgroup"`
}

// Event is one security-relevant action seen by the kernel sensor at syscall entry
// (the attempt, whether or not it then succeeds), or an exec.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    EventKind `json:"kind"`
	Syscall string    `json:"syscall,omitempty"`
	PID     uint32    `json:"pid"`  // thread group id, as ps shows it
	TID     uint32    `json:"tid"`  // thread id
	PPID    uint32    `json:"ppid"` // parent's thread group id
	// ProcStartNs is the process's start time (ns since boot): with PID, an
	// identity that survives PID reuse.
	ProcStartNs uint64     `json:"proc_start_ns,omitempty"`
	UID         uint32     `json:"uid"`
	GID         uint32     `json:"gid"`
	Comm        string     `json:"comm"`
	CgroupID    uint64     `json:"cgroup_id"`
	Namespaces  Namespaces `json:"namespaces"`
	CapEff      uint64     `json:"cap_effective"`

	Args  [6]uint64 `json:"args"`
	Flags uint64    `json:"flags"` // clone/unshare/setns/mount/open flags, ptrace request, bpf cmd…
	// Signal is a stop signal's number (EventStopSignal).
	Signal int `json:"signal,omitempty"`
	// Path is the open/mount target/unix socket path, or the file an exec ran
	// (see ExecFile); Path2 the mount source, pivot_root put_old or module
	// parameters.
	Path   string   `json:"path,omitempty"`
	Path2  string   `json:"path2,omitempty"`
	Argv   []string `json:"argv,omitempty"`
	FsType string   `json:"fstype,omitempty"`

	Family string     `json:"family,omitempty"` // "inet", "inet6", "unix", "packet"
	Addr   netip.Addr `json:"addr,omitzero"`
	Port   uint16     `json:"port,omitempty"`

	// Exec says what kind of file an exec ran (exec events only).
	Exec *ExecFile `json:"exec,omitempty"`
	// Write says what a file write did (the write family of syscalls, and
	// write-opens judged when they returned); Path is the file written.
	Write *FileWrite `json:"write,omitempty"`
	// IOUring: an open or connect submitted through io_uring (it never passes
	// sys_enter; the sensor judges it where the ring submits it).
	IOUring bool `json:"io_uring,omitempty"`
	// Exe is the process's executable as its last exec event named it ("" when
	// the agent did not see it exec): the binary a learned exception names.
	Exe string `json:"exe,omitempty"`

	CapsRequested *CapSets `json:"caps_requested,omitempty"`
	// Killed: the sensor sent SIGKILL at syscall entry (enforce mode).
	Killed bool `json:"killed,omitempty"`
	// RuntimeSetup: the kernel saw the process moved into its cgroup after its
	// last exec, as a runtime's init is when it sets up or enters a container.
	// Such a process is not the container's workload; hard rules skip it.
	RuntimeSetup bool `json:"runtime_setup,omitempty"`

	Container Container `json:"container"`
}

// ExecFile is what the kernel knew of the file an exec ran. An exec's Path is
// that file's own path as the process sees it from its root, not the name it
// was given: /proc/self/exe, /proc/self/fd/N, symlinks and relative names all
// resolve to the binary loaded. Path has a form of its own where the file has
// no ordinary path: "memfd:NAME" for a memfd, a " (deleted)" suffix for an
// unlinked file (as /proc/PID/exe shows it), and a leading "..." when only the
// path's tail fitted.
type ExecFile struct {
	// Memfd: an anonymous memory file (memfd_create), execution that leaves no file.
	Memfd bool `json:"memfd,omitempty"`
	// Deleted: the file was unlinked when it ran (memfds are too).
	Deleted bool `json:"deleted,omitempty"`
	// OutsideRoot: the file is not below the process's root directory, e.g. a
	// host binary reached through a leaked file descriptor.
	OutsideRoot bool `json:"outside_root,omitempty"`
	// Script: Path is a script as it was named (made absolute from the working
	// directory); its interpreter is Argv[0]. Symlinks in the name are not resolved.
	Script bool `json:"script,omitempty"`
	// Truncated: the path was too long or deep and Path is its tail.
	Truncated bool `json:"truncated,omitempty"`
	// EndsSetup: the runtime's init exec'd this (the container's workload, or
	// a docker exec's command), which ends the runtime's setup.
	EndsSetup bool `json:"ends_setup,omitempty"`
	// StdioSocket: fd 0, 1 or 2 of the new image is an IPv4 or IPv6 socket, as
	// a reverse shell's are.
	StdioSocket bool `json:"stdio_socket,omitempty"`
	// UpperLayer: the file is in the container's overlayfs upper layer, so it
	// was written or changed after the container started (drift).
	UpperLayer bool `json:"upper_layer,omitempty"`
}

// FileWrite is what the kernel knew of a file write. Path is the file written,
// resolved in the kernel (the opened file itself for a write-open; otherwise
// the name made absolute from its directory fd or the working directory), as
// the process sees it from its root. Path2 is a rename's or link's source, or
// a symlink's target as given.
type FileWrite struct {
	Ops []string `json:"ops"` // WriteOps that happened
	// OutsideRoot: the file is not below the process's root directory (a host
	// file reached through a leaked fd or /proc/PID/root).
	OutsideRoot bool `json:"outside_root,omitempty"`
	// TextBusy: the write-open was refused because the file is a running
	// program (ETXTBSY): an attempt to overwrite an executable in use.
	TextBusy bool `json:"text_busy,omitempty"`
	// SourceWatched: the source of a link, symlink or rename is on the
	// sensor's watch lists.
	SourceWatched bool `json:"source_watched,omitempty"`
	// Unresolved: the directory fd was not open; Path is the name as given.
	Unresolved bool `json:"unresolved,omitempty"`
	Truncated  bool `json:"truncated,omitempty"` // Path is the tail of a longer path
}

// WriteOps are the operations a file write names, in the kernel's bit order.
var WriteOps = []string{"open", "create", "truncate", "rename", "link", "symlink", "unlink", "chmod", "chown", "mknod"}

// WriteOpNames lists the WriteOps set in bits.
func WriteOpNames(bits uint32) []string {
	var out []string
	for i, name := range WriteOps {
		if bits&(1<<i) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// WriteOpBits is the inverse of WriteOpNames; unknown names are ignored.
func WriteOpBits(names []string) uint32 {
	var bits uint32
	for i, name := range WriteOps {
		if slices.Contains(names, name) {
			bits |= 1 << i
		}
	}
	return bits
}

// CapSets are the capability sets a capset call asks for.
type CapSets struct {
	Effective   uint64 `json:"effective"`
	Permitted   uint64 `json:"permitted"`
	Inheritable uint64 `json:"inheritable"`
}

// ProcessKey identifies a process across PID reuse: pid_max is often 32768, so a
// PID alone names many processes within minutes under container churn.
type ProcessKey struct {
	PID     uint32
	StartNs uint64
}

// Process is the identity of the process that caused e.
func (e Event) Process() ProcessKey { return ProcessKey{PID: e.PID, StartNs: e.ProcStartNs} }
