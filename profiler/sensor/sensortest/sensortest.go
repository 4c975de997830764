// Package sensortest gates tests that need the kernel sensor, in the way
// net/http/httptest serves tests of net/http: one rule for every package's
// root, BTF and BPF tests (DESIGN.md, convention 6).
//
// The rule: a test that lacks what it needs fails when CAGEWATCH_REQUIRE_BPF is
// set (CI sets it), and is skipped, with a message naming what is missing, only
// when the variable is unset. A BPF program that cannot load fails either way
// unless the machine really lacks a feature loading needs.
//
// The package does not import sensor, so that sensor's own tests can use it.
package sensortest

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// requireEnv makes a missing feature a failure instead of a skip when set.
const requireEnv = "CAGEWATCH_REQUIRE_BPF"

// kernelBTF is sensor.BTFPath, which this package cannot import (see the package
// comment); a test checks they agree.
const kernelBTF = "/sys/kernel/btf/vmlinux"

// SkipOrFail skips the test, saying that feature is not available and why, or
// fails it when CAGEWATCH_REQUIRE_BPF is set. feature names what is missing: a
// kernel feature, root, a tool.
func SkipOrFail(tb testing.TB, feature, format string, args ...any) {
	tb.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) != "" {
		tb.Fatalf("%s is set but %s is not available: %s", requireEnv, feature, why)
	}
	tb.Skipf("%s not available: %s", feature, why)
}

// RequireRoot skips or fails (see SkipOrFail) unless the test runs as root; why
// says what needs it.
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(tb, "root", "%s", why)
	}
}

// RequireBPF skips or fails (see SkipOrFail) unless the test runs as root on a
// kernel with BTF, which the sensor's programs need to load.
func RequireBPF(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb, "loading BPF programs needs it (or CAP_BPF)")
	if _, err := os.Stat(kernelBTF); err != nil {
		SkipOrFail(tb, "kernel BTF", "%v (CONFIG_DEBUG_INFO_BTF=y)", err)
	}
}

// SkipOrFailLoad handles an error from loading BPF programs: the test fails,
// unless CAGEWATCH_REQUIRE_BPF is unset and the machine lacks what loading needs
// (root, kernel BTF, a program, map or attach type, permission), in which case
// it is skipped naming that. A nil error does nothing.
func SkipOrFailLoad(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	RequireBPF(tb)
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		SkipOrFail(tb, "tp_btf/raw_tp programs or ring buffers", "loading BPF programs: %v", err)
	case errors.Is(err, unix.EPERM):
		SkipOrFail(tb, "BPF permission (root or CAP_BPF)", "loading BPF programs: %v", err)
	}
	tb.Fatalf("loading BPF programs: %v", err)
}

// Fexecve runs the file open at fd with argv and env, as fexecve(3) does
// (execveat with an empty path and AT_EMPTY_PATH): the tests' and scenarios'
// way to exec a memfd or an unlinked file. It returns only on failure.
func Fexecve(fd int, argv, env []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	empty, _ := unix.BytePtrFromString("")
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return errno
}
