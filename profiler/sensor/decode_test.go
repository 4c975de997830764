package sensor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/cagewatch/cagewatch/model"
)

// encodeRecord serialises e exactly as the BPF program writes struct event into the
// ring buffer: little endian, the C layout (which bpf2go mirrors field for field).
func encodeRecord(tb testing.TB, e sensorEvent) []byte {
	tb.Helper()
	buf := make([]byte, EventSize)
	n, err := binary.Encode(buf, binary.LittleEndian, &e)
	if err != nil {
		tb.Fatalf("encoding sensorEvent: %v", err)
	}
	if n != EventSize {
		tb.Fatalf("encoded %d bytes, want EventSize %d", n, EventSize)
	}
	return buf
}

// putCString copies s into a fixed C char array; the rest stays zero. s must fit.
func putCString[T int8 | uint8](dst []T, s string) {
	if len(s) > len(dst) {
		panic("putCString: " + s + " does not fit")
	}
	for i := range dst {
		dst[i] = 0
	}
	for i := range len(s) {
		dst[i] = T(s[i])
	}
}

const (
	testTsBootNs = 123_456_789_012
	testCgroupID = 0xc0ffee
)

func testBootTime() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) }

// baseRecord is a record whose task fields are all set to distinct values.
func baseRecord(kind uint32, nr int32) sensorEvent {
	e := sensorEvent{
		TsBootNs:     testTsBootNs,
		CgroupId:     testCgroupID,
		CapEffective: 0x1ffffffffff,
		Kind:         kind,
		Nr:           nr,
		Pid:          4243, // thread
		Tgid:         4242, // process
		Ppid:         4000,
		Uid:          1000,
		Gid:          1001,
		MntNs:        4026531841,
		PidNs:        4026531836,
		NetNs:        4026531840,
		UserNs:       4026531837,
		CgroupNs:     4026531835,
	}
	putCString(e.Comm[:], "runc:[2:INIT]")
	return e
}

// baseEvent is what Decode must make of baseRecord's task fields.
func baseEvent(kind model.EventKind, syscall string) model.Event {
	return model.Event{
		Time:     testBootTime().Add(testTsBootNs * time.Nanosecond),
		Kind:     kind,
		Syscall:  syscall,
		PID:      4242,
		TID:      4243,
		PPID:     4000,
		UID:      1000,
		GID:      1001,
		Comm:     "runc:[2:INIT]",
		CgroupID: testCgroupID,
		Namespaces: model.Namespaces{
			Mnt: 4026531841, PID: 4026531836, Net: 4026531840, User: 4026531837, Cgroup: 4026531835,
		},
		CapEff: 0x1ffffffffff,
	}
}

type decodeCase struct {
	name string
	rec  sensorEvent
	// edit, when set, changes the encoded record (truncate, append, …).
	edit    func([]byte) []byte
	want    model.Event
	wantErr bool
	wantIs  error // when set, the sentinel the error must match
}

func decodeCases() []decodeCase {
	const (
		oRDONLY      = 0
		oCLOEXEC     = 0x80000
		cloneNewNS   = 0x00020000
		cloneNewUser = 0x10000000
		capSysAdmin  = 1 << 21
	)
	execArgv := "sh\x00-c\x00echo hi\x00"
	fullArgv := "sh\x00" + strings.Repeat("A", 256-3) // fills path2, no final NUL

	return []decodeCase{
		{
			name: "openat",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 257)
				e.Args = [6]uint64{math.MaxUint64 - 99 /* AT_FDCWD */, 0x7ffd0000, oRDONLY | oCLOEXEC, 0, 0, 0}
				e.Flags = oRDONLY | oCLOEXEC
				putCString(e.Path[:], "/etc/shadow")
				e.PathBits = uint32(len("/etc/shadow") * 8)
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "openat")
				e.Args = [6]uint64{math.MaxUint64 - 99, 0x7ffd0000, oRDONLY | oCLOEXEC, 0, 0, 0}
				e.Flags = oRDONLY | oCLOEXEC
				e.Path = "/etc/shadow"
				return e
			}(),
		},
		{
			name: "unshare flags",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 272)
				e.Args[0] = cloneNewNS | cloneNewUser
				e.Flags = cloneNewNS | cloneNewUser
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "unshare")
				e.Args[0] = cloneNewNS | cloneNewUser
				e.Flags = cloneNewNS | cloneNewUser
				return e
			}(),
		},
		{
			name: "connect inet",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 42)
				e.Family = afInet
				e.Port = 22
				copy(e.Addr[:], []byte{127, 0, 0, 1})
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "connect")
				e.Family = "inet"
				e.Addr = netip.MustParseAddr("127.0.0.1")
				e.Port = 22
				return e
			}(),
		},
		{
			name: "cgroup mkdir enforced by the kernel",
			rec: func() sensorEvent {
				e := baseRecord(kindCgroupCreate, -1)
				e.CgroupId = 0x5678
				e.Flags = 1
				putCString(e.Path[:], "/docker/abc")
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventCgroupCreate, "")
				e.CgroupID = 0x5678
				e.Flags = 1
				e.Path = "/docker/abc"
				return e
			}(),
		},
		{
			name: "socket packet",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 41)
				e.Family = afPacket
				e.Flags = 3
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "socket")
				e.Family = "packet"
				e.Flags = 3
				return e
			}(),
		},
		{
			name: "exec with a socket on stdio",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/bin/sh")
				e.Flags = execStdioSocket | execEndsSetup
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "/bin/sh"
				e.Exec = &model.ExecFile{StdioSocket: true, EndsSetup: true}
				return e
			}(),
		},
		{
			name: "connect inet6",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 42)
				e.Family = afInet6
				e.Port = 2375
				e.Addr = netip.IPv6Loopback().As16()
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "connect")
				e.Family = "inet6"
				e.Addr = netip.MustParseAddr("::1")
				e.Port = 2375
				return e
			}(),
		},
		{
			name: "connect unix",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 42)
				e.Family = afUnix
				putCString(e.Path[:], "/var/run/docker.sock")
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "connect")
				e.Family = "unix"
				e.Path = "/var/run/docker.sock"
				return e
			}(),
		},
		{
			name: "capset requested sets",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 126)
				e.CapReqEffective = capSysAdmin
				e.CapReqPermitted = capSysAdmin | 1
				e.CapReqInheritable = 2
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "capset")
				e.CapsRequested = &model.CapSets{Effective: capSysAdmin, Permitted: capSysAdmin | 1, Inheritable: 2}
				return e
			}(),
		},
		{
			name: "mount target source fstype",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 165)
				putCString(e.Path[:], "/tmp/cgrp")
				putCString(e.Path2[:], "cgroup")
				e.Path2Len = uint32(len("cgroup") + 1)
				putCString(e.Fstype[:], "cgroup")
				e.Flags = 0
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "mount")
				e.Path = "/tmp/cgrp"
				e.Path2 = "cgroup"
				e.FsType = "cgroup"
				return e
			}(),
		},
		{
			name: "exec argv",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/bin/sh")
				putCString(e.Path2[:], execArgv)
				e.Path2Len = uint32(len(execArgv))
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "/bin/sh"
				e.Exec = &model.ExecFile{}
				e.Argv = []string{"sh", "-c", "echo hi"}
				return e
			}(),
		},
		{
			name: "exec path2_len beyond buffer is clamped",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/bin/sh")
				putCString(e.Path2[:], fullArgv)
				e.Path2Len = math.MaxUint32
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "/bin/sh"
				e.Exec = &model.ExecFile{}
				e.Argv = []string{"sh", strings.Repeat("A", 256-3)}
				return e
			}(),
		},
		{
			name: "exec path2_len shorter than argv block",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/bin/sh")
				putCString(e.Path2[:], execArgv)
				e.Path2Len = 3 // "sh\x00"
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "/bin/sh"
				e.Exec = &model.ExecFile{}
				e.Argv = []string{"sh"}
				return e
			}(),
		},
		{
			name: "exec of a memfd",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/memfd:payload")
				e.Flags = execFileDeleted | execFileOutsideRoot
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "memfd:payload"
				e.Exec = &model.ExecFile{Memfd: true, Deleted: true, OutsideRoot: true}
				return e
			}(),
		},
		{
			name: "exec of a deleted file",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/tmp/x")
				e.Flags = execFileDeleted
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "/tmp/x (deleted)"
				e.Exec = &model.ExecFile{Deleted: true}
				return e
			}(),
		},
		{
			name: "a deleted file named memfd: on a real mount is no memfd",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/memfd:x")
				e.Flags = execFileDeleted
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "/memfd:x (deleted)"
				e.Exec = &model.ExecFile{Deleted: true}
				return e
			}(),
		},
		{
			name: "exec of a script named relative to the working directory",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/app/./bin/../run.sh")
				e.Flags = execFileInterpreted
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = "/app/run.sh"
				e.Exec = &model.ExecFile{Script: true}
				return e
			}(),
		},
		{
			name: "exec of a host file outside the root, path truncated",
			rec: func() sensorEvent {
				e := baseRecord(kindExec, -1)
				putCString(e.Path[:], "/deep/bin/tool")
				e.Flags = execFileOutsideRoot | execFileTruncated
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventExec, "execve")
				e.Path = ".../deep/bin/tool"
				e.Exec = &model.ExecFile{OutsideRoot: true, Truncated: true}
				return e
			}(),
		},
		{
			name: "cgroup rmdir",
			rec: func() sensorEvent {
				e := baseRecord(kindCgroupRemove, -1)
				e.CgroupId = 0x1234
				putCString(e.Path[:], "/system.slice/docker-abc.scope")
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventCgroupRemove, "")
				e.CgroupID = 0x1234
				e.Path = "/system.slice/docker-abc.scope"
				return e
			}(),
		},
		{
			name: "stop signal to a container's init",
			rec: func() sensorEvent {
				e := baseRecord(kindStopSignal, -1)
				e.CgroupId = 0x1234
				e.Args = [6]uint64{15, 4242}
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventStopSignal, "")
				e.CgroupID = 0x1234
				e.Args = [6]uint64{15, 4242}
				e.Signal = 15
				return e
			}(),
		},
		{
			name: "comm fills all 16 bytes without NUL",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 272)
				putCString(e.Comm[:], "abcdefghijklmnop")
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "unshare")
				e.Comm = "abcdefghijklmnop"
				return e
			}(),
		},
		{
			name: "fstype and path fill their buffers without NUL",
			rec: func() sensorEvent {
				e := baseRecord(kindSyscall, 165)
				putCString(e.Fstype[:], strings.Repeat("f", 16))
				putCString(e.Path[:], strings.Repeat("p", 256))
				putCString(e.Path2[:], strings.Repeat("q", 256))
				return e
			}(),
			want: func() model.Event {
				e := baseEvent(model.EventSyscall, "mount")
				e.FsType = strings.Repeat("f", 16)
				e.Path = strings.Repeat("p", 256)
				e.Path2 = strings.Repeat("q", 256)
				return e
			}(),
		},
		{
			name: "unknown syscall number",
			rec:  baseRecord(kindSyscall, 999),
			want: baseEvent(model.EventSyscall, "sys_999"),
		},
		{
			name:    "unknown kind",
			rec:     baseRecord(9, 257),
			wantErr: true,
		},
		{
			name:    "zero kind",
			rec:     sensorEvent{},
			wantErr: true,
		},
		{
			name:    "short record",
			rec:     baseRecord(kindSyscall, 257),
			edit:    func(b []byte) []byte { return b[:EventSize-1] },
			wantErr: true,
			wantIs:  ErrShortRecord,
		},
		{
			name:    "empty record",
			edit:    func([]byte) []byte { return nil },
			wantErr: true,
			wantIs:  ErrShortRecord,
		},
		{
			name: "longer record with trailing bytes",
			rec:  baseRecord(kindSyscall, 272),
			edit: func(b []byte) []byte {
				return append(b, bytes.Repeat([]byte{0xff}, 64)...)
			},
			want: baseEvent(model.EventSyscall, "unshare"),
		},
	}
}

func TestDecode(t *testing.T) {
	dec := Decoder{BootTime: testBootTime()}
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			raw := encodeRecord(t, tc.rec)
			if tc.edit != nil {
				raw = tc.edit(raw)
			}
			got, err := dec.Decode(raw)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Decode succeeded with %+v, want an error", got)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Fatalf("Decode error = %v, want errors.Is %v", err, tc.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode mismatch\n got: %+v\nwant: %+v", got, tc.want)
				if got.CapsRequested != nil && tc.want.CapsRequested != nil {
					t.Logf("caps got %+v want %+v", *got.CapsRequested, *tc.want.CapsRequested)
				}
			}
		})
	}
}

// TestEncodeRecordMatchesMemoryLayout checks that the binary encoding the tests use
// (and Decode reads) is byte for byte the in-memory layout of sensorEvent, i.e. the C
// layout bpf2go mirrors, so no field is shifted by Go-only padding.
func TestEncodeRecordMatchesMemoryLayout(t *testing.T) {
	e := baseRecord(kindSyscall, 165)
	e.Args = [6]uint64{1, 2, 3, 4, 5, 6}
	e.Flags, e.CapReqEffective, e.CapReqPermitted, e.CapReqInheritable = 7, 8, 9, 10
	e.Path2Len, e.Family, e.Port, e.PathBits = 11, 12, 13, 14
	for i := range e.Addr {
		e.Addr[i] = byte(0xa0 + i)
	}
	putCString(e.Fstype[:], "fstype")
	putCString(e.Path[:], "/path")
	putCString(e.Path2[:], "/path2")

	if got := binary.Size(e); got != EventSize {
		t.Fatalf("binary.Size(sensorEvent) = %d, want EventSize %d", got, EventSize)
	}
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
	if enc := encodeRecord(t, e); !bytes.Equal(enc, mem) {
		for i := range enc {
			if enc[i] != mem[i] {
				t.Fatalf("encoding differs from memory layout at byte %d: %#x vs %#x", i, enc[i], mem[i])
			}
		}
	}
}

// TestEventLayoutMatchesBTF compares sensorEvent with struct event as compiled into
// the embedded object (from bpf/sensor.h): same size, same field offsets and sizes.
// It catches a Go file regenerated from a different header than the .o.
func TestEventLayoutMatchesBTF(t *testing.T) {
	spec, err := loadSensor()
	if err != nil {
		t.Fatalf("loading embedded spec: %v", err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("event", &st); err != nil {
		t.Fatalf("struct event not in the object's BTF: %v", err)
	}
	if int(st.Size) != EventSize {
		t.Errorf("C struct event is %d bytes, Go sensorEvent %d", st.Size, EventSize)
	}

	goType := reflect.TypeFor[sensorEvent]()
	var goFields []reflect.StructField
	for i := range goType.NumField() {
		if f := goType.Field(i); f.Name != "_" {
			goFields = append(goFields, f)
		}
	}
	if len(goFields) != len(st.Members) {
		t.Fatalf("C struct event has %d members, Go sensorEvent %d named fields", len(st.Members), len(goFields))
	}
	for i, m := range st.Members {
		f := goFields[i]
		t.Run(m.Name, func(t *testing.T) {
			if want := snakeToCamel(m.Name); f.Name != want {
				t.Errorf("Go field %d is %s, want %s", i, f.Name, want)
			}
			if off := m.Offset.Bytes(); uintptr(off) != f.Offset {
				t.Errorf("offset: C %d, Go %d", off, f.Offset)
			}
			size, err := btf.Sizeof(m.Type)
			if err != nil {
				t.Fatalf("sizeof %s: %v", m.Name, err)
			}
			if uintptr(size) != f.Type.Size() {
				t.Errorf("size: C %d, Go %d", size, f.Type.Size())
			}
		})
	}
}

func snakeToCamel(s string) string {
	parts := strings.Split(s, "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases() {
		raw := encodeRecord(f, tc.rec)
		if tc.edit != nil {
			raw = tc.edit(raw)
		}
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0})
	f.Add(make([]byte, EventSize-1))
	f.Add(make([]byte, EventSize))

	dec := Decoder{BootTime: testBootTime()}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := dec.Decode(raw)
		if len(raw) < EventSize {
			if !errors.Is(err, ErrShortRecord) {
				t.Fatalf("%d-byte record: error %v, want ErrShortRecord", len(raw), err)
			}
			return
		}
		if err != nil {
			return
		}
		switch ev.Kind {
		case model.EventSyscall, model.EventExec, model.EventCgroupRemove, model.EventCgroupCreate, model.EventStopSignal:
		default:
			t.Fatalf("decoded unknown kind %q", ev.Kind)
		}

		trimmed, err := dec.Decode(raw[:EventSize])
		if err != nil {
			t.Fatalf("record decodes with %d trailing bytes but not without: %v", len(raw)-EventSize, err)
		}
		if !reflect.DeepEqual(ev, trimmed) {
			t.Fatalf("trailing bytes changed the event\nwith: %+v\nwithout: %+v", ev, trimmed)
		}

		strs := append([]string{ev.Syscall, ev.Comm, ev.Path, ev.Path2, ev.FsType, ev.Family}, ev.Argv...)
		for _, s := range strs {
			if strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("decoded string %q contains NUL", s)
			}
		}
		// An exec's path may carry the decoder's marks beyond its buffer: a
		// "..." for a truncated walk and " (deleted)" for an unlinked file.
		pathMax := len(sensorEvent{}.Path)
		if ev.Kind == model.EventExec {
			pathMax += len("...") + len(" (deleted)")
		}
		if len(ev.Comm) > len(sensorEvent{}.Comm) || len(ev.FsType) > len(sensorEvent{}.Fstype) ||
			len(ev.Path) > pathMax || len(ev.Path2) > len(sensorEvent{}.Path2) {
			t.Fatalf("decoded string longer than its buffer: %+v", ev)
		}
	})
}
