package sensor

import (
	"encoding/binary"

	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
)

// ring is the least io_uring client that submits one request at a time and
// waits for its completion (no liburing in Go's standard library).
type ring struct {
	fd        int
	sq, sqes  []byte
	sqTail    *uint32
	sqMask    uint32
	sqArray   uint32
	cqHead    *uint32
	cqTail    *uint32
	cqMask    uint32
	cqes      uint32
	submitted uint32
}

const (
	ioringOpConnect = 16
	ioringOpOpenat  = 18
	ioringOffSQEs   = 0x10000000
	ioringEnterWait = 1 // IORING_ENTER_GETEVENTS
)

func newRing() (*ring, error) {
	var p [120]byte // struct io_uring_params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p[0])), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(p[off:]) }
	sqEntries, cqEntries := u32(0), u32(4)
	sqOff, cqOff := 40, 80 // io_sqring_offsets, io_cqring_offsets
	size := max(int(u32(sqOff+24)+sqEntries*4), int(u32(cqOff+20)+cqEntries*16))
	sq, err := unix.Mmap(int(fd), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	sqes, err := unix.Mmap(int(fd), ioringOffSQEs, int(sqEntries)*64, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&sq[off])) }
	return &ring{fd: int(fd), sq: sq, sqes: sqes, sqTail: at(u32(sqOff + 4)), sqMask: *at(u32(sqOff + 8)),
		sqArray: u32(sqOff + 24), cqHead: at(u32(cqOff)), cqTail: at(u32(cqOff + 4)), cqMask: *at(u32(cqOff + 8)),
		cqes: u32(cqOff + 20)}, nil
}

// do submits one SQE (opcode, fd, addr, len, off, opFlags) and returns its result.
func (r *ring) do(opcode uint8, fd int32, addr unsafe.Pointer, length uint32, off uint64, opFlags uint32) int32 {
	idx := r.submitted & r.sqMask
	sqe := r.sqes[idx*64 : idx*64+64]
	clear(sqe)
	sqe[0] = opcode
	binary.LittleEndian.PutUint32(sqe[4:], uint32(fd))
	binary.LittleEndian.PutUint64(sqe[8:], off)
	binary.LittleEndian.PutUint64(sqe[16:], uint64(uintptr(addr)))
	binary.LittleEndian.PutUint32(sqe[24:], length)
	binary.LittleEndian.PutUint32(sqe[28:], opFlags)
	binary.LittleEndian.PutUint32(r.sq[r.sqArray+idx*4:], idx)
	r.submitted++
	atomic.StoreUint32(r.sqTail, r.submitted)
	_, _, _ = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 1, ioringEnterWait, 0, 0)
	head := atomic.LoadUint32(r.cqHead)
	res := int32(binary.LittleEndian.Uint32(r.sq[r.cqes+(head&r.cqMask)*16+8:]))
	atomic.StoreUint32(r.cqHead, head+1)
	return res
}

// ioUringCalls opens a watched file for reading, writes below a watched tree
// and connects to a watched port, all through a ring.
func ioUringCalls(dir string) error {
	r, err := newRing()
	if err != nil {
		return err
	}
	open := func(p string, flags uint32) {
		name, _ := unix.BytePtrFromString(p)
		if fd := r.do(ioringOpOpenat, unix.AT_FDCWD, unsafe.Pointer(name), 0o600, 0, flags); fd >= 0 {
			unix.Close(int(fd))
		}
	}
	open(filepath.Join(dir, "secret"), unix.O_RDONLY)
	open(filepath.Join(dir, "etc", "planted"), unix.O_WRONLY|unix.O_CREAT)
	open(filepath.Join(dir, "unwatched"), unix.O_RDONLY)
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	sa := [16]byte{unix.AF_INET, 0, 0, 22, 127, 0, 0, 1} // sockaddr_in 127.0.0.1:22
	r.do(ioringOpConnect, int32(sock), unsafe.Pointer(&sa[0]), 0, 16, 0)
	return nil
}

// TestBPFIOUringOpensAndConnects: opens and connects submitted through
// io_uring, which never pass sys_enter, meet the same filters as the syscalls.
func TestBPFIOUringOpensAndConnects(t *testing.T) {
	scratch := t.TempDir()
	if err := os.Mkdir(filepath.Join(scratch, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"secret", "unwatched"} {
		if err := os.WriteFile(filepath.Join(scratch, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := loadTestSensor(t, Options{
		WatchPrefixes: []string{filepath.Join(scratch, "secret")},
		WatchPorts:    []uint16{22},
		WriteWatch:    map[string][]string{filepath.Join(scratch, "etc") + "/": model.WriteOps},
		IgnoreTGID:    uint32(os.Getpid()),
	})
	dir, id := testCgroup(t)
	events := collectEvents(t, s, id)
	runInCgroup(t, dir, "io-uring", "CAGEWATCH_HELPER_DIR="+scratch)

	type seen struct {
		syscall, path string
		port          uint16
		ops           string
	}
	want := []seen{
		{syscall: "openat", path: filepath.Join(scratch, "secret")},
		{syscall: "openat", path: filepath.Join(scratch, "etc", "planted"), ops: "[open create]"},
		{syscall: "connect", port: 22},
	}
	var got []seen
	deadline := time.After(3 * time.Second)
	for len(got) < len(want)+1 { // one more: nothing else may come
		select {
		case e := <-events:
			if !e.IOUring {
				continue
			}
			ops := ""
			if e.Write != nil {
				ops = fmt.Sprint(e.Write.Ops)
			}
			got = append(got, seen{syscall: e.Syscall, path: e.Path, port: e.Port, ops: ops})
		case <-deadline:
			if !slices.Equal(got, want) {
				t.Fatalf("io_uring events %+v, want %+v", got, want)
			}
			return
		}
	}
	t.Fatalf("io_uring events %+v, want %+v", got, want)
}
