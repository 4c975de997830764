// Command e2ehelper performs the escape techniques that busybox cannot, for the
// end-to-end scenarios in testdata/scenarios. The test builds it statically
// (CGO_ENABLED=0) and bind-mounts it into the scenario's container. Every action
// is harmless: it touches only the helper's own child processes, its own
// capabilities, or asks for something the kernel refuses.
//
//	e2ehelper ptrace             attach to (and detach from) a child it started
//	e2ehelper open-by-handle     name_to_handle_at + open_by_handle_at on /etc/hostname
//	e2ehelper capraise           drop one effective capability, then raise it again
//	e2ehelper clone-newns        start a child in a new UTS namespace (clone CLONE_NEWUTS)
//	e2ehelper bpf                a bpf(2) call with an empty attribute (EINVAL)
//	e2ehelper docker-sock PATH   GET /version on a Docker Engine API unix socket
//	e2ehelper burst SECONDS      a tight loop of getrandom and sched_yield (a miner's shape)
//	e2ehelper spawn N            exec N short processes (a minimal exit(0) binary), two at a time
//	e2ehelper memfd-exec FILE    copy FILE into a memfd and exec it with argv "busybox true" (fileless)
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2ehelper ptrace|open-by-handle|capraise|clone-newns|bpf|docker-sock PATH|burst SECONDS")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ptrace":
		err = ptraceChild()
	case "open-by-handle":
		err = openByHandle()
	case "capraise":
		err = capRaise()
	case "clone-newns":
		err = cloneNewNS()
	case "bpf":
		err = bpfCall()
	case "docker-sock":
		path := "/var/run/docker.sock"
		if len(os.Args) > 2 {
			path = os.Args[2]
		}
		err = dockerSock(path)
	case "burst":
		secs := 3.0
		if len(os.Args) > 2 {
			if secs, err = strconv.ParseFloat(os.Args[2], 64); err != nil {
				break
			}
		}
		burst(time.Duration(secs * float64(time.Second)))
	case "memfd-exec":
		file := "/bin/busybox"
		if len(os.Args) > 2 {
			file = os.Args[2]
		}
		err = memfdExec(file)
	case "spawn":
		n := 0
		if len(os.Args) > 2 {
			n, err = strconv.Atoi(os.Args[2])
		}
		if err == nil {
			err = spawn(n)
		}
	default:
		err = fmt.Errorf("unknown action %q", os.Args[1])
	}
	if err != nil {
		// The attempt is what the sensor sees; a refusal by the kernel is fine.
		fmt.Fprintf(os.Stderr, "e2ehelper %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// ptraceChild starts `sleep 30`, attaches to it with PTRACE_ATTACH, waits for
// the stop, detaches and kills it.
func ptraceChild() error {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		return err
	}
	defer func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	}()
	// ptrace requests must come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := child.Process.Pid
	if err := unix.PtraceAttach(pid); err != nil {
		return fmt.Errorf("PTRACE_ATTACH %d: %w", pid, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return fmt.Errorf("wait4 %d: %w", pid, err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fmt.Errorf("PTRACE_DETACH %d: %w", pid, err)
	}
	fmt.Printf("attached to and detached from pid %d\n", pid)
	return nil
}

// openByHandle is the first step of the "shocker" escape: it resolves a file
// handle and reopens it with open_by_handle_at (here a file of the container's
// own root; shocker brute-forces handles of the host's).
func openByHandle() error {
	h, mountID, err := unix.NameToHandleAt(unix.AT_FDCWD, "/etc/hostname", 0)
	if err != nil {
		return fmt.Errorf("name_to_handle_at: %w", err)
	}
	mfd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("open_by_handle_at (mount id %d): %w", mountID, err)
	}
	unix.Close(fd)
	fmt.Println("open_by_handle_at succeeded")
	return nil
}

// capRaise clears one capability from the effective set with capset, then asks
// for it back: the second capset raises a capability the thread does not have.
func capRaise() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	capBit := -1
	for _, c := range []int{unix.CAP_NET_RAW, unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_SETUID} {
		if data[c/32].Permitted&(1<<(c%32)) != 0 && data[c/32].Effective&(1<<(c%32)) != 0 {
			capBit = c
			break
		}
	}
	if capBit < 0 {
		return fmt.Errorf("no capability in the permitted and effective sets to drop and raise")
	}
	dropped := data
	dropped[capBit/32].Effective &^= 1 << (capBit % 32)
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		return fmt.Errorf("capset (drop %d): %w", capBit, err)
	}
	hdr.Pid = 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset (raise %d): %w", capBit, err)
	}
	fmt.Printf("dropped and raised capability %d\n", capBit)
	return nil
}

// cloneNewNS starts `true` in a new UTS namespace (clone with CLONE_NEWUTS).
func cloneNewNS() error {
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("clone CLONE_NEWUTS: %w", err)
	}
	fmt.Println("child ran in a new UTS namespace")
	return nil
}

// bpfCall issues BPF_MAP_CREATE with an all-zero attribute, which the kernel
// refuses with EINVAL (or EPERM): nothing is created.
func bpfCall() error {
	var attr [64]byte
	_, _, errno := unix.Syscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if errno == 0 {
		return fmt.Errorf("bpf(BPF_MAP_CREATE) with an empty attribute unexpectedly succeeded")
	}
	fmt.Printf("bpf refused: %v\n", errno)
	return nil
}

// dockerSock asks the Docker Engine API for its version: read-only, harmless,
// and the first step of every docker.sock escape.
func dockerSock(path string) error {
	c, err := net.DialTimeout("unix", path, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /version HTTP/1.0\r\nHost: docker\r\n\r\n"); err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(c, 4096))
	first, _, _ := strings.Cut(string(b), "\n")
	fmt.Printf("docker API answered: %s\n", strings.TrimSpace(first))
	return nil
}

// burst spins on getrandom and sched_yield for d: a syscall mix and rate no
// benign workload of the test ever makes.
func burst(d time.Duration) {
	runtime.LockOSThread()
	buf := make([]byte, 32)
	end := time.Now().Add(d)
	n := 0
	for time.Now().Before(end) {
		for range 1000 {
			_, _ = unix.Getrandom(buf, 0)
			_, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
		n += 2000
	}
	fmt.Printf("%d syscalls in %v\n", n, d)
}

// exitELF is a complete static x86-64 program that calls exit(0): an ELF
// header, one loadable segment, then mov eax, 60; xor edi, edi; syscall.
func exitELF() []byte {
	const base, ehdrSize, phdrSize = 0x400000, 64, 56
	code := []byte{0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05}
	size := uint64(ehdrSize + phdrSize + len(code))
	b := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	le := func(v uint64, n int) {
		for i := 0; i < n; i++ {
			b = append(b, byte(v>>(8*i)))
		}
	}
	le(2, 2)                      // e_type: executable
	le(0x3e, 2)                   // e_machine: x86-64
	le(1, 4)                      // e_version
	le(base+ehdrSize+phdrSize, 8) // e_entry
	le(ehdrSize, 8)               // e_phoff
	le(0, 8)                      // e_shoff
	le(0, 4)                      // e_flags
	le(ehdrSize, 2)               // e_ehsize
	le(phdrSize, 2)               // e_phentsize
	le(1, 2)                      // e_phnum
	le(0, 6)                      // e_shentsize, e_shnum, e_shstrndx
	le(1, 4)                      // p_type: PT_LOAD
	le(5, 4)                      // p_flags: R+X
	le(0, 8)                      // p_offset
	le(base, 8)                   // p_vaddr
	le(base, 8)                   // p_paddr
	le(size, 8)                   // p_filesz
	le(size, 8)                   // p_memsz
	le(0x1000, 8)                 // p_align
	return append(b, code...)
}

// spawn exec's n short processes, two at a time, and prints how many ran: it
// walks a host's PIDs round quickly (a shell loop of /bin/true is several
// times slower, as it forks the whole shell each time).
func spawn(n int) error {
	bin := "/tmp/e2e-exit"
	if err := os.WriteFile(bin, exitELF(), 0o755); err != nil {
		return err
	}
	var ran [2]int
	errs := make(chan error, 2)
	for w := range ran {
		go func() {
			for i := w; i < n; i += 2 {
				pid, err := syscall.ForkExec(bin, []string{bin}, nil)
				if err != nil {
					errs <- err
					return
				}
				var ws syscall.WaitStatus
				if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
					errs <- err
					return
				}
				ran[w]++
			}
			errs <- nil
		}()
	}
	for range ran {
		if err := <-errs; err != nil {
			return err
		}
	}
	fmt.Println(ran[0] + ran[1])
	return nil
}

// memfdExec runs a copy of file from a memfd (memfd_create, then execveat on
// the fd with AT_EMPTY_PATH, as fexecve does): nothing on the filesystem.
func memfdExec(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	fd, err := unix.MemfdCreate("payload", 0)
	if err != nil {
		return err
	}
	if _, err := unix.Write(fd, data); err != nil {
		return err
	}
	return sensortest.Fexecve(fd, []string{"busybox", "true"}, os.Environ())
}
