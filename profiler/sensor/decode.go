package sensor

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cagewatch/cagewatch/model"
)

// Values of sensorEvent.Kind, mirroring enum event_kind in bpf/sensor.h.
const (
	kindSyscall      = 1
	kindExec         = 2
	kindCgroupRemove = 3
	kindCgroupCreate = 4
	kindStopSignal   = 5
)

// Exec file flags (event.flags of exec events), mirroring enum exec_file_flag in bpf/sensor.h.
const (
	execFileDeleted     = 1
	execFileOutsideRoot = 2
	execFileTruncated   = 4
	execFileInterpreted = 8
	execEndsSetup       = 16
	execStdioSocket     = 32
	fileTextBusy        = 64
	fileSourceWatched   = 128
	fileUnresolved      = 256
	viaIOUring          = 512
	execFileUpperLayer  = 1024
)

// Address families the sensor reports, as in <sys/socket.h>.
const (
	afUnix   = 1
	afInet   = 2
	afInet6  = 10
	afPacket = 17
)

// EventSize is the size of one ring-buffer record.
const EventSize = int(unsafe.Sizeof(sensorEvent{}))

// ErrShortRecord means a ring-buffer record is smaller than struct event.
var ErrShortRecord = errors.New("short event record")

// Decoder turns ring-buffer records into model events. It is pure: the only state is
// the boot time used to turn CLOCK_BOOTTIME stamps into wall-clock time.
type Decoder struct {
	BootTime time.Time
}

// Decode decodes one record. Records longer than struct event are accepted (a newer
// program may append fields); shorter ones are an error.
func (d Decoder) Decode(raw []byte) (model.Event, error) {
	if len(raw) < EventSize {
		return model.Event{}, fmt.Errorf("%w: %d bytes, want %d", ErrShortRecord, len(raw), EventSize)
	}
	// The record is struct event byte for byte, and the bpf2go type mirrors it with
	// explicit padding on this little-endian host: a copy decodes it. (binary.Decode
	// went field by field through reflection, a third of the agent's time at
	// 50,000 events/s.)
	var e sensorEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), EventSize), raw)

	ev := model.Event{
		Time:        d.BootTime.Add(time.Duration(e.TsBootNs)),
		PID:         e.Tgid,
		TID:         e.Pid,
		PPID:        e.Ppid,
		ProcStartNs: e.ProcStartNs,
		UID:         e.Uid,
		GID:         e.Gid,
		Comm:        cString(e.Comm[:]),
		CgroupID:    e.CgroupId,
		Namespaces: model.Namespaces{
			Mnt: e.MntNs, PID: e.PidNs, Net: e.NetNs, User: e.UserNs, Cgroup: e.CgroupNs,
		},
		CapEff:       e.CapEffective,
		Args:         e.Args,
		Flags:        e.Flags,
		Path:         cString(e.Path[:]),
		FsType:       cString(e.Fstype[:]),
		Killed:       e.Killed != 0,
		RuntimeSetup: e.RuntimeSetup != 0,
	}

	switch e.Kind {
	case kindSyscall:
		ev.Kind = model.EventSyscall
		ev.Syscall = model.SyscallName(int(e.Nr))
		ev.Path2 = cString(e.Path2[:])
		decodeSyscallDetails(&e, &ev)
		if e.WriteOp != 0 {
			ev.Write = decodeFileWrite(&e)
		}
		ev.IOUring = e.FileFlags&viaIOUring != 0
	case kindExec:
		ev.Kind = model.EventExec
		ev.Syscall = "execve"
		ev.Argv = splitArgv(e.Path2[:min(int(e.Path2Len), len(e.Path2))])
		ev.Exec, ev.Path = decodeExecFile(e.Flags, ev.Path)
		ev.Flags = 0
	case kindCgroupRemove:
		ev.Kind = model.EventCgroupRemove
	case kindCgroupCreate:
		ev.Kind = model.EventCgroupCreate
	case kindStopSignal:
		ev.Kind = model.EventStopSignal
		ev.Signal = int(e.Args[0])
	default:
		return model.Event{}, fmt.Errorf("unknown event kind %d", e.Kind)
	}
	return ev, nil
}

// decodeExecFile turns the kernel's resolved path and flags into the file's
// name as model.ExecFile describes it.
func decodeExecFile(flags uint64, p string) (*model.ExecFile, string) {
	f := &model.ExecFile{
		Deleted:     flags&execFileDeleted != 0,
		OutsideRoot: flags&execFileOutsideRoot != 0,
		Truncated:   flags&execFileTruncated != 0,
		Script:      flags&execFileInterpreted != 0,
		EndsSetup:   flags&execEndsSetup != 0,
		StdioSocket: flags&execStdioSocket != 0,
		UpperLayer:  flags&execFileUpperLayer != 0,
	}
	switch {
	case f.Script:
		if strings.HasPrefix(p, "/") {
			p = path.Clean(p) // "/app/./run.sh" is /app/run.sh
		}
	// The kernel names a memfd's file "memfd:NAME" on an internal mount.
	case f.Deleted && f.OutsideRoot && strings.HasPrefix(p, "/memfd:"):
		f.Memfd = true
		p = p[1:]
	case f.Deleted:
		p += " (deleted)"
	}
	if f.Truncated {
		p = "..." + p
	}
	return f, p
}

func decodeFileWrite(e *sensorEvent) *model.FileWrite {
	return &model.FileWrite{
		Ops:           model.WriteOpNames(e.WriteOp),
		OutsideRoot:   e.FileFlags&execFileOutsideRoot != 0,
		TextBusy:      e.FileFlags&fileTextBusy != 0,
		SourceWatched: e.FileFlags&fileSourceWatched != 0,
		Unresolved:    e.FileFlags&fileUnresolved != 0,
		Truncated:     e.FileFlags&execFileTruncated != 0,
	}
}

func decodeSyscallDetails(e *sensorEvent, ev *model.Event) {
	switch ev.Syscall {
	case "capset":
		ev.CapsRequested = &model.CapSets{
			Effective: e.CapReqEffective, Permitted: e.CapReqPermitted, Inheritable: e.CapReqInheritable,
		}
	case "socket":
		ev.Family = familyName(e.Family)
	case "connect":
		switch e.Family {
		case afInet:
			ev.Family = "inet"
			ev.Addr = netip.AddrFrom4([4]byte(e.Addr[:4]))
			ev.Port = e.Port
		case afInet6:
			ev.Family = "inet6"
			ev.Addr = netip.AddrFrom16(e.Addr)
			ev.Port = e.Port
		case afUnix:
			ev.Family = "unix"
		}
	}
}

func familyName(f uint16) string {
	switch f {
	case afUnix:
		return "unix"
	case afInet:
		return "inet"
	case afInet6:
		return "inet6"
	case afPacket:
		return "packet"
	}
	return strconv.Itoa(int(f))
}

func cString[T int8 | uint8](b []T) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}

// splitArgv splits the NUL-separated argument block of a new process image.
func splitArgv(b []int8) []string {
	raw := make([]byte, len(b))
	for i, c := range b {
		raw[i] = byte(c)
	}
	raw = bytes.TrimRight(raw, "\x00")
	if len(raw) == 0 {
		return nil
	}
	return strings.Split(string(raw), "\x00")
}
