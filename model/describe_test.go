package model

import (
	"net/netip"
	"strconv"
	"testing"
)

const (
	testCloneNewTime   = 0x00000080
	testCloneNewNS     = 0x00020000
	testCloneNewCgroup = 0x02000000
	testCloneNewUTS    = 0x04000000
	testCloneNewIPC    = 0x08000000
	testCloneNewUser   = 0x10000000
	testCloneNewPID    = 0x20000000
	testCloneNewNet    = 0x40000000
	testSIGCHLD        = 0x11
)

func TestDescribe(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "unshare",
			ev:   Event{Kind: EventSyscall, Syscall: "unshare", Flags: testCloneNewNS | testCloneNewUser},
			want: "unshare CLONE_NEWNS|CLONE_NEWUSER",
		},
		{
			name: "unshare names CLONE_NEWTIME",
			ev:   Event{Kind: EventSyscall, Syscall: "unshare", Flags: testCloneNewTime | testCloneNewNet},
			want: "unshare CLONE_NEWTIME|CLONE_NEWNET",
		},
		{
			name: "setns",
			ev:   Event{Kind: EventSyscall, Syscall: "setns", Flags: testCloneNewNet},
			want: "setns CLONE_NEWNET",
		},
		{
			name: "clone3 names CLONE_NEWTIME",
			ev:   Event{Kind: EventSyscall, Syscall: "clone3", Flags: testCloneNewTime | testCloneNewPID},
			want: "clone3 CLONE_NEWTIME|CLONE_NEWPID",
		},
		{
			name: "clone with SIGCHLD exit signal",
			ev:   Event{Kind: EventSyscall, Syscall: "clone", Flags: testSIGCHLD | testCloneNewPID},
			want: "clone CLONE_NEWPID",
		},
		{
			// The low byte of clone's flags is the exit signal; bit 0x80 there is not
			// CLONE_NEWTIME.
			name: "clone never names CLONE_NEWTIME",
			ev:   Event{Kind: EventSyscall, Syscall: "clone", Flags: 0xff | testCloneNewPID},
			want: "clone CLONE_NEWPID",
		},
		{
			name: "openat",
			ev:   Event{Kind: EventSyscall, Syscall: "openat", Path: "/etc/shadow", Flags: 0o2000000 /* O_RDONLY|O_CLOEXEC */},
			want: "openat /etc/shadow flags=02000000",
		},
		{
			name: "connect inet",
			ev: Event{Kind: EventSyscall, Syscall: "connect", Family: "inet",
				Addr: netip.MustParseAddr("127.0.0.1"), Port: 22},
			want: "connect inet 127.0.0.1:22",
		},
		{
			name: "connect inet6",
			ev: Event{Kind: EventSyscall, Syscall: "connect", Family: "inet6",
				Addr: netip.MustParseAddr("::1"), Port: 2375},
			want: "connect inet6 [::1]:2375",
		},
		{
			name: "connect unix",
			ev:   Event{Kind: EventSyscall, Syscall: "connect", Family: "unix", Path: "/var/run/docker.sock"},
			want: "connect unix:/var/run/docker.sock",
		},
		{
			name: "mount",
			ev: Event{Kind: EventSyscall, Syscall: "mount", Path: "/tmp/cgrp", Path2: "cgroup",
				FsType: "cgroup", Flags: 0x3 /* MS_RDONLY|MS_NOSUID */},
			want: "mount cgroup on /tmp/cgrp type cgroup flags=0x3",
		},
		{
			name: "pivot_root",
			ev:   Event{Kind: EventSyscall, Syscall: "pivot_root", Path: "/new", Path2: "/new/old"},
			want: "pivot_root /new /new/old",
		},
		{
			name: "exec",
			ev:   Event{Kind: EventExec, Syscall: "execve", Path: "/bin/sh", Argv: []string{"sh", "-c", "echo hi"}},
			want: "exec /bin/sh sh -c echo hi",
		},
		{
			name: "capset",
			ev: Event{Kind: EventSyscall, Syscall: "capset",
				CapsRequested: &CapSets{Effective: 1 << 21, Permitted: 1<<21 | 1, Inheritable: 4}},
			want: "capset effective=0x200000 permitted=0x200001",
		},
		{
			name: "capset without requested sets",
			ev:   Event{Kind: EventSyscall, Syscall: "capset"},
			want: "capset",
		},
		{
			name: "ptrace",
			ev:   Event{Kind: EventSyscall, Syscall: "ptrace", Flags: 16 /* PTRACE_ATTACH */, Args: [6]uint64{16, 4242}},
			want: "ptrace request=16 pid=4242",
		},
		{
			name: "bpf",
			ev:   Event{Kind: EventSyscall, Syscall: "bpf", Flags: 5},
			want: "bpf cmd=5",
		},
		{
			name: "fsopen",
			ev:   Event{Kind: EventSyscall, Syscall: "fsopen", FsType: "cgroup2"},
			want: "fsopen cgroup2",
		},
		{
			name: "cgroup removed",
			ev:   Event{Kind: EventCgroupRemove, CgroupID: 42},
			want: "cgroup removed",
		},
		{
			name: "other syscall is its name",
			ev:   Event{Kind: EventSyscall, Syscall: "sys_999"},
			want: "sys_999",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ev.Describe(); got != tc.want {
				t.Errorf("Describe() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNamespaceFlags(t *testing.T) {
	all := uint64(testCloneNewTime | testCloneNewNS | testCloneNewCgroup | testCloneNewUTS |
		testCloneNewIPC | testCloneNewUser | testCloneNewPID | testCloneNewNet)
	tests := []struct {
		name     string
		flags    uint64
		withTime bool
		want     string
	}{
		{name: "none", flags: 0, withTime: true, want: ""},
		{name: "non-namespace bits only", flags: 0x100 | 0x200 | testSIGCHLD /* CLONE_VM|CLONE_FS */, withTime: false, want: ""},
		{name: "single", flags: testCloneNewUser, want: "CLONE_NEWUSER"},
		{name: "time with time", flags: testCloneNewTime, withTime: true, want: "CLONE_NEWTIME"},
		{name: "time without time", flags: testCloneNewTime, withTime: false, want: ""},
		{
			name: "all with time", flags: all, withTime: true,
			want: "CLONE_NEWTIME|CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET",
		},
		{
			name: "all without time", flags: all, withTime: false,
			want: "CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NamespaceFlags(tc.flags, tc.withTime); got != tc.want {
				t.Errorf("NamespaceFlags(%#x, %v) = %q, want %q", tc.flags, tc.withTime, got, tc.want)
			}
		})
	}
}

func TestSplitImageRef(t *testing.T) {
	tests := []struct {
		ref, repo, tag string
	}{
		{ref: "nginx", repo: "nginx", tag: ""},
		{ref: "nginx:1.27", repo: "nginx", tag: "1.27"},
		{ref: "docker.io/library/nginx:latest", repo: "docker.io/library/nginx", tag: "latest"},
		{ref: "registry:5000/team/app:2.1", repo: "registry:5000/team/app", tag: "2.1"},
		{ref: "registry:5000/app", repo: "registry:5000/app", tag: ""},
		{ref: "app@sha256:abc", repo: "app", tag: ""},
		{ref: "app:1@sha256:abc", repo: "app", tag: "1"},
		{ref: "registry:5000/app:1@sha256:abc", repo: "registry:5000/app", tag: "1"},
		{ref: "", repo: "", tag: ""},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.ref), func(t *testing.T) {
			repo, tag := SplitImageRef(tc.ref)
			if repo != tc.repo || tag != tc.tag {
				t.Errorf("SplitImageRef(%q) = (%q, %q), want (%q, %q)", tc.ref, repo, tag, tc.repo, tc.tag)
			}
		})
	}
}

func TestContainerImageRef(t *testing.T) {
	tests := []struct {
		name string
		c    Container
		want string
	}{
		{name: "repository and tag", c: Container{Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: "sha256:aa"}, want: "docker.io/library/nginx:1.27"},
		{name: "repository only", c: Container{Image: "docker.io/library/nginx", ImageID: "sha256:aa"}, want: "docker.io/library/nginx"},
		{name: "image id only", c: Container{ImageID: "sha256:aa"}, want: "sha256:aa"},
		{name: "tag without repository falls back to id", c: Container{ImageTag: "1.27", ImageID: "sha256:aa"}, want: "sha256:aa"},
		{name: "nothing known", c: Container{}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.ImageRef(); got != tc.want {
				t.Errorf("ImageRef() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestContainerImageRefRoundTrip(t *testing.T) {
	for _, ref := range []string{"nginx", "nginx:1.27", "registry:5000/team/app:2.1", "registry:5000/app"} {
		t.Run(ref, func(t *testing.T) {
			repo, tag := SplitImageRef(ref)
			if got := (Container{Image: repo, ImageTag: tag}).ImageRef(); got != ref {
				t.Errorf("ImageRef of SplitImageRef(%q) = %q", ref, got)
			}
		})
	}
}

func TestContainerIsHost(t *testing.T) {
	tests := []struct {
		runtime Runtime
		want    bool
	}{
		{RuntimeHost, true},
		{"", true},
		{RuntimeDocker, false},
		{RuntimeContainerd, false},
		{RuntimeCRIO, false},
		{RuntimePodman, false},
		{RuntimeStatic, false},
		{RuntimeUnknown, false},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(string(tc.runtime)), func(t *testing.T) {
			if got := (Container{Runtime: tc.runtime}).IsHost(); got != tc.want {
				t.Errorf("Container{Runtime: %q}.IsHost() = %v, want %v", tc.runtime, got, tc.want)
			}
		})
	}
}

func TestSyscallNameNumberRoundTrip(t *testing.T) {
	if len(x86_64SyscallNumbers) != len(x86_64SyscallNames) {
		t.Fatalf("syscall table has %d numbers but %d distinct names", len(x86_64SyscallNames), len(x86_64SyscallNumbers))
	}
	for nr, name := range x86_64SyscallNames {
		if got := SyscallName(nr); got != name {
			t.Errorf("SyscallName(%d) = %q, want %q", nr, got, name)
		}
		if got, ok := SyscallNumber(name); !ok || got != nr {
			t.Errorf("SyscallNumber(%q) = %d, %v, want %d, true", name, got, ok, nr)
		}
	}
}

func TestSyscallNameNumber(t *testing.T) {
	tests := []struct {
		name   string
		nr     int
		sc     string
		wantOK bool
		// nameOnly: only check SyscallNumber(sc), not SyscallName(nr).
		nameOnly bool
	}{
		{name: "openat", nr: 257, sc: "openat", wantOK: true},
		{name: "read is zero", nr: 0, sc: "read", wantOK: true},
		{name: "unknown number", nr: 999, sc: "sys_999", wantOK: true},
		{name: "gap in the table", nr: 400, sc: "sys_400", wantOK: true},
		{name: "unknown name", sc: "not_a_syscall", nameOnly: true},
		{name: "empty name", sc: "", nameOnly: true},
		{name: "sys_ without number", sc: "sys_", nameOnly: true},
		{name: "sys_ with letters", sc: "sys_abc", nameOnly: true},
		{name: "sys_ negative", sc: "sys_-1", nameOnly: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.nameOnly {
				if got := SyscallName(tc.nr); got != tc.sc {
					t.Errorf("SyscallName(%d) = %q, want %q", tc.nr, got, tc.sc)
				}
			}
			nr, ok := SyscallNumber(tc.sc)
			if ok != tc.wantOK || (ok && nr != tc.nr) {
				t.Errorf("SyscallNumber(%q) = %d, %v, want %d, %v", tc.sc, nr, ok, tc.nr, tc.wantOK)
			}
		})
	}
}
