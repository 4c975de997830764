package model

import (
	"slices"
)

// SeccompProfile is the OCI/Docker seccomp profile format.
type SeccompProfile struct {
	DefaultAction   string           `json:"defaultAction"`
	DefaultErrnoRet *uint            `json:"defaultErrnoRet,omitempty"`
	Architectures   []string         `json:"architectures"`
	Syscalls        []SeccompSyscall `json:"syscalls"`
}

// SeccompSyscall is one rule of a seccomp profile.
type SeccompSyscall struct {
	Names  []string `json:"names"`
	Action string   `json:"action"`
}

// runtimeSyscalls are what runc's init process (a Go program) makes between
// installing the filter and exec'ing the entrypoint (closing inherited fds via
// /proc/self/fd, looking the binary up with faccessat2, Go runtime threads and
// signals), plus the dynamic loader's start: all in a container's first moments,
// which learning may not have seen.
var runtimeSyscalls = []string{
	"execve", "execveat", "exit", "exit_group", "futex", "rt_sigaction", "rt_sigprocmask",
	"rt_sigreturn", "sigaltstack", "close", "close_range", "fcntl", "fstat", "newfstatat", "statx",
	"fstatfs", "statfs", "faccessat", "faccessat2", "getdents64", "readlinkat", "getpid",
	"gettid", "brk", "mmap", "mprotect", "munmap", "madvise", "mincore", "arch_prctl", "set_tid_address",
	"set_robust_list", "rseq", "prlimit64", "getrandom", "read", "write", "openat", "pread64",
	"access", "capget", "capset", "prctl", "setgroups", "setgid", "setuid", "setresuid", "setresgid",
	"getuid", "geteuid", "getgid", "getegid", "getppid", "nanosleep", "clock_nanosleep", "sched_yield",
	"sched_getaffinity", "clone", "clone3", "epoll_create1", "epoll_ctl", "epoll_pwait", "pipe2", "dup3",
	"chdir", "fchdir", "getcwd", "uname", "setsid", "umask", "ioctl", "wait4", "kill", "tgkill",
	"restart_syscall",
}

// Seccomp builds an allow-list profile from a baseline: every syscall the image
// was seen making (learned or at startup) plus what the runtime needs to start it;
// anything else fails with EPERM.
func (b *Baseline) Seccomp() SeccompProfile {
	names := slices.Clone(runtimeSyscalls)
	for name := range b.Syscalls {
		names = append(names, name)
	}
	for name := range b.Startup {
		names = append(names, name)
	}
	names = slices.DeleteFunc(names, func(n string) bool {
		_, ok := SyscallNumber(n)
		return !ok || n == "other" || len(n) > 4 && n[:4] == "sys_" // numbers the runtime cannot name
	})
	slices.Sort(names)
	names = slices.Compact(names)
	eperm := uint(1)
	return SeccompProfile{
		DefaultAction:   "SCMP_ACT_ERRNO",
		DefaultErrnoRet: &eperm,
		Architectures:   []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
		Syscalls:        []SeccompSyscall{{Names: names, Action: "SCMP_ACT_ALLOW"}},
	}
}
