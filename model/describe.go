package model

import (
	"fmt"
	"strings"
)

var cloneFlagNames = []struct {
	bit  uint64
	name string
}{
	{0x00000080, "CLONE_NEWTIME"},
	{0x00020000, "CLONE_NEWNS"},
	{0x02000000, "CLONE_NEWCGROUP"},
	{0x04000000, "CLONE_NEWUTS"},
	{0x08000000, "CLONE_NEWIPC"},
	{0x10000000, "CLONE_NEWUSER"},
	{0x20000000, "CLONE_NEWPID"},
	{0x40000000, "CLONE_NEWNET"},
}

// NamespaceFlags names the CLONE_NEW* bits in flags, e.g. "CLONE_NEWNS|CLONE_NEWUSER".
// CLONE_NEWTIME shares its bit with clone()'s exit signal, so it is named only when
// withTime is set (unshare, setns, clone3).
func NamespaceFlags(flags uint64, withTime bool) string {
	var names []string
	for _, f := range cloneFlagNames {
		if f.bit == 0x80 && !withTime {
			continue
		}
		if flags&f.bit != 0 {
			names = append(names, f.name)
		}
	}
	return strings.Join(names, "|")
}

// Describe is a one-line human summary of the event's arguments.
func (e Event) Describe() string {
	if e.IOUring {
		ev := e
		ev.IOUring = false
		return ev.Describe() + " (via io_uring)"
	}
	switch e.Kind {
	case EventExec:
		d := strings.TrimSpace(fmt.Sprintf("exec %s %s", e.Path, strings.Join(e.Argv, " ")))
		if e.Exec != nil && e.Exec.StdioSocket {
			d += " (stdio is a network socket)"
		}
		return d
	case EventCgroupRemove:
		return "cgroup removed"
	case EventStopSignal:
		return fmt.Sprintf("signal %d to the container's init (pid %d) from %s (pid %d)", e.Signal, e.Args[1], e.Comm, e.PID)
	}
	if w := e.Write; w != nil {
		d := fmt.Sprintf("%s %s %s", e.Syscall, strings.Join(w.Ops, "+"), e.Path)
		if e.Path2 != "" {
			d += " from " + e.Path2
		}
		if w.TextBusy {
			d += " (refused: a running program)"
		}
		if w.OutsideRoot {
			d += " (outside the container's root)"
		}
		return d
	}
	switch e.Syscall {
	case "unshare", "setns", "clone3":
		return fmt.Sprintf("%s %s", e.Syscall, NamespaceFlags(e.Flags, true))
	case "clone":
		return fmt.Sprintf("clone %s", NamespaceFlags(e.Flags, false))
	case "open", "openat", "openat2":
		return fmt.Sprintf("%s %s flags=%#o", e.Syscall, e.Path, e.Flags)
	case "connect":
		if e.Family == "unix" {
			return fmt.Sprintf("connect unix:%s", e.Path)
		}
		return fmt.Sprintf("connect %s %s", e.Family, netJoin(e))
	case "mount":
		return fmt.Sprintf("mount %s on %s type %s flags=%#x", e.Path2, e.Path, e.FsType, e.Flags)
	case "umount2", "open_tree", "mount_setattr", "delete_module":
		return fmt.Sprintf("%s %s", e.Syscall, e.Path)
	case "pivot_root", "move_mount":
		return fmt.Sprintf("%s %s %s", e.Syscall, e.Path, e.Path2)
	case "fsopen":
		return fmt.Sprintf("fsopen %s", e.FsType)
	case "capset":
		if e.CapsRequested != nil {
			return fmt.Sprintf("capset effective=%#x permitted=%#x", e.CapsRequested.Effective, e.CapsRequested.Permitted)
		}
	case "ptrace":
		return fmt.Sprintf("ptrace request=%d pid=%d", e.Flags, e.Args[1])
	case "init_module", "finit_module":
		return fmt.Sprintf("%s %s", e.Syscall, e.Path2)
	case "bpf", "keyctl":
		return fmt.Sprintf("%s cmd=%d", e.Syscall, e.Flags)
	case "socket":
		return fmt.Sprintf("socket %s type=%d", e.Family, e.Flags&0xf)
	case "chmod", "fchmodat", "fchmodat2":
		return fmt.Sprintf("%s %s mode=%#o", e.Syscall, e.Path, e.Flags&0o7777)
	case "fchmod":
		return fmt.Sprintf("fchmod fd=%d mode=%#o", e.Args[0], e.Flags&0o7777)
	}
	return e.Syscall
}

func netJoin(e Event) string {
	if e.Family == "inet6" {
		return fmt.Sprintf("[%s]:%d", e.Addr, e.Port)
	}
	return fmt.Sprintf("%s:%d", e.Addr, e.Port)
}
