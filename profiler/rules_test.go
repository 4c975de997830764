package profiler

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// requiredRuleIDs are the rule ids issue 4 makes stable (tests and dashboards use them).
var requiredRuleIDs = []string{"ns_unshare", "ns_setns", "ns_clone", "cap_raise", "mount", "sensitive_file",
	"cgroup_escape", "runtime_socket", "ptrace", "kernel_module", "bpf_syscall", "kernel_attack_surface",
	"host_port_connect", "exec_drift", "syscall_novel", "syscall_anomaly",
	// issue 15
	"setuid_bit", "raw_socket", "fileless_exec", "reverse_shell", "binary_tamper", "fs_write_drift", "credential_read"}

// Namespace and open flag bits as the kernel passes them.
const (
	rlCloneNewTime   = 0x00000080
	rlCloneNewNS     = 0x00020000
	rlCloneNewCgroup = 0x02000000
	rlCloneNewUTS    = 0x04000000
	rlCloneNewIPC    = 0x08000000
	rlCloneNewUser   = 0x10000000
	rlCloneNewPID    = 0x20000000
	rlCloneNewNet    = 0x40000000
	rlCloneThread    = 0x3d0f00 // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
	rlCloneFS        = 0x00000200
	rlCloneFiles     = 0x00000400
	rlSIGCHLD        = 17
	rlOWronly        = 0o1
	rlORdwr          = 0o2
	rlOCreat         = 0o100
	rlOTrunc         = 0o1000
	rlOCloexec       = 0o2000000
)

func defaultRules(t *testing.T) *model.RuleSet {
	t.Helper()
	rs, err := LoadRules("")
	if err != nil {
		t.Fatalf(`LoadRules(""): %v`, err)
	}
	return rs
}

func writeRulesFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadRulesDefault(t *testing.T) {
	rs := defaultRules(t)
	for _, id := range requiredRuleIDs {
		t.Run(id, func(t *testing.T) {
			r := rs.Rule(id)
			if r == nil {
				t.Fatalf("default rules lack %q", id)
			}
			if r.Description == "" || r.Priority == "" || len(r.Matchers) == 0 {
				t.Errorf("rule %q: description %q priority %q, %d matchers", id, r.Description, r.Priority, len(r.Matchers))
			}
			statistical := id == model.RuleSyscallNovel || id == model.RuleSyscallAnomaly
			if event := r.Matchers[0].Spec.Event; (event == "novel" || event == "anomaly") != statistical {
				t.Errorf("match event %q, want a statistical rule: %v", event, statistical)
			}
			// Issue 4: kill where the kernel decides (namespace, module, cgroup_escape,
			// sensitive_file), freeze for statistical alerts.
			want := model.ActionAlert
			switch id {
			case "ns_unshare", "ns_setns", "ns_clone", "kernel_module", "cgroup_escape", "sensitive_file":
				want = model.ActionKill
			case model.RuleSyscallNovel, model.RuleSyscallAnomaly:
				want = model.ActionFreeze
			}
			if r.Action != want {
				t.Errorf("action %q, want %q", r.Action, want)
			}
		})
	}
	if len(rs.Rules) != len(requiredRuleIDs) {
		var ids []string
		for _, r := range rs.Rules {
			ids = append(ids, r.ID)
		}
		t.Logf("default rules: %v", ids)
	}
}

func TestLoadRulesFileEqualsEmbedded(t *testing.T) {
	embedded := defaultRules(t)
	file, err := LoadRules(filepath.Join("..", "configs", "rules.yaml"))
	if err != nil {
		t.Fatalf("LoadRules(configs/rules.yaml): %v", err)
	}
	if len(file.Rules) != len(embedded.Rules) {
		t.Fatalf("%d rules from the file, %d embedded", len(file.Rules), len(embedded.Rules))
	}
	for i, r := range embedded.Rules {
		if f := file.Rules[i]; f.ID != r.ID || f.Action != r.Action || f.Priority != r.Priority {
			t.Errorf("rule %d: file %s/%s/%s, embedded %s/%s/%s", i, f.ID, f.Action, f.Priority, r.ID, r.Action, r.Priority)
		}
	}
}

func TestLoadRulesErrors(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: the file does not exist
		want    []string
	}{
		{
			name: "unknown field",
			content: ptr(`rules:
  - id: x
    priority: Critical
    severity: high
    match: {syscalls: [unshare]}
`),
			want: []string{"line 4", "severity"},
		},
		{
			name: "unknown field in match",
			content: ptr(`rules:
  - id: x
    priority: Critical
    match: {syscalls: [unshare], path: /etc/shadow}
`),
			want: []string{"line 4", "path"},
		},
		{
			name: "wrong type",
			content: ptr(`rules:
  - id: x
    priority: Critical
    match:
      syscalls: [connect]
      ports: [ssh]
`),
			want: []string{"line 6", "ssh"},
		},
		{
			name: "invalid rule names rule and field",
			content: ptr(`rules:
  - id: ok
    priority: Notice
    match: {syscalls: [ptrace]}
  - id: broken
    priority: Critical
    action: kill
    match: {syscalls: [connect], ports: [22]}
`),
			want: []string{`rule "broken"`, "action", "kill"},
		},
		{
			name: "unknown syscall",
			content: ptr(`rules:
  - id: typo
    priority: Critical
    match: {syscalls: [unshar]}
`),
			want: []string{`rule "typo"`, "syscalls", "unshar"},
		},
		{name: "empty file", content: ptr(""), want: []string{"no rules"}},
		{name: "comments only", content: ptr("# nothing yet\n"), want: []string{"no rules"}},
		{name: "empty rule list", content: ptr("rules: []\n"), want: []string{"no rules"}},
		{name: "not yaml", content: ptr("rules: [\n"), want: nil},
		{name: "missing file", content: nil, want: []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "missing-rules.yaml")
			if tt.content != nil {
				path = writeRulesFile(t, *tt.content)
			}
			rs, err := LoadRules(path)
			if err == nil {
				t.Fatalf("LoadRules accepted it: %d rules", len(rs.Rules))
			}
			if rs != nil {
				t.Error("LoadRules returned rules with its error")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadRulesFile(t *testing.T) {
	path := writeRulesFile(t, `rules:
  - id: only_ptrace
    description: ptrace
    priority: warning
    tags: [x]
    match: {syscalls: [ptrace]}
  - id: disabled
    priority: Critical
    enabled: false
    match: {syscalls: [unshare]}
`)
	rs, err := LoadRules(path)
	if err != nil {
		t.Fatalf("LoadRules: %v", err)
	}
	if len(rs.Rules) != 1 || rs.Rule("only_ptrace") == nil || rs.Rule("disabled") != nil {
		t.Fatalf("rules %+v, want only only_ptrace", rs.Rules)
	}
	if r := rs.Rule("only_ptrace"); r.Priority != "Warning" || !slices.Equal(r.Tags, []string{"x"}) {
		t.Errorf("rule %+v", r)
	}
}

func ptr[T any](v T) *T { return &v }

// rlContainer is a docker container.
var rlContainer = model.Container{ID: "c0ffee000001", Name: "shop", Runtime: model.RuntimeDocker,
	Image: "docker.io/library/shop", ImageTag: "2", CgroupPath: "/system.slice/docker-c0ffee000001.scope"}

func rlSyscall(name string, mod func(e *model.Event)) model.Event {
	e := model.Event{Time: t0, Kind: model.EventSyscall, Syscall: name, PID: 300, TID: 300, Comm: "sh",
		CgroupID: 31, CapEff: 0xa80425fb, Container: rlContainer}
	if mod != nil {
		mod(&e)
	}
	return e
}

func rlOpen(name, path string, flags uint64) model.Event {
	return rlSyscall(name, func(e *model.Event) { e.Path, e.Flags = path, flags })
}

func rlConnect(family, addr string, port uint16) model.Event {
	return rlSyscall("connect", func(e *model.Event) {
		e.Family, e.Port = family, port
		e.Addr = netip.MustParseAddr(addr)
	})
}

func rlConnectUnix(path string) model.Event {
	return rlSyscall("connect", func(e *model.Event) { e.Family, e.Path = "unix", path })
}

func rlExec(path string) model.Event {
	return model.Event{Time: t0, Kind: model.EventExec, Path: path, Argv: []string{path}, PID: 301, Comm: "sh",
		CgroupID: 31, Container: rlContainer}
}

// TestDefaultRulesMatch: each required rule fires on its technique and not on a
// similar benign action.
func TestDefaultRulesMatch(t *testing.T) {
	rs := defaultRules(t)
	stable := model.NewBaseline(rlContainer.Image, rlContainer.ImageTag, "")
	stable.AddExec("/usr/local/bin/shop")
	stable.AddExec("/bin/sh")
	learning := stable.Clone()
	stable.Promote(stable.LastSeen)
	writesNginxConf := stable.Clone()
	writesNginxConf.AddException("fs_write_drift", "/bin/sed", "/etc/nginx/")
	readsToken := stable.Clone()
	readsToken.AddException("credential_read", "comm:sh", "/var/run/secrets/kubernetes.io/serviceaccount/token")

	const capsNow = 0xa80425fb
	tests := []struct {
		name     string
		ev       model.Event
		baseline *model.Baseline
		want     []string
	}{
		// ns_unshare
		{name: "unshare -Urm", ev: rlSyscall("unshare", func(e *model.Event) { e.Flags = rlCloneNewUser | rlCloneNewNS }), want: []string{"ns_unshare"}},
		{name: "unshare CLONE_NEWTIME", ev: rlSyscall("unshare", func(e *model.Event) { e.Flags = rlCloneNewTime }), want: []string{"ns_unshare"}},
		{name: "benign: unshare CLONE_FS|CLONE_FILES creates no namespace", ev: rlSyscall("unshare", func(e *model.Event) { e.Flags = rlCloneFS | rlCloneFiles })},
		// ns_setns
		{name: "setns into the host net namespace", ev: rlSyscall("setns", func(e *model.Event) { e.Flags = rlCloneNewNet }), want: []string{"ns_setns"}},
		{name: "setns any type", ev: rlSyscall("setns", nil), want: []string{"ns_setns"}},
		{name: "benign: reading /proc/self/ns/net", ev: rlOpen("openat", "/proc/self/ns/net", rlOCloexec)},
		// ns_clone: every CLONE_NEW* flag
		{name: "clone CLONE_NEWNS", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneNewNS | rlSIGCHLD }), want: []string{"ns_clone"}},
		{name: "clone CLONE_NEWCGROUP", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneNewCgroup | rlSIGCHLD }), want: []string{"ns_clone"}},
		{name: "clone CLONE_NEWUTS", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneNewUTS | rlSIGCHLD }), want: []string{"ns_clone"}},
		{name: "clone CLONE_NEWIPC", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneNewIPC | rlSIGCHLD }), want: []string{"ns_clone"}},
		{name: "clone CLONE_NEWUSER", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneNewUser | rlSIGCHLD }), want: []string{"ns_clone"}},
		{name: "clone CLONE_NEWPID", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneNewPID | rlSIGCHLD }), want: []string{"ns_clone"}},
		{name: "clone CLONE_NEWNET", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneNewNet | rlSIGCHLD }), want: []string{"ns_clone"}},
		{name: "clone3 CLONE_NEWUSER|CLONE_NEWPID", ev: rlSyscall("clone3", func(e *model.Event) { e.Flags = rlCloneNewUser | rlCloneNewPID }), want: []string{"ns_clone"}},
		{name: "clone3 CLONE_NEWTIME", ev: rlSyscall("clone3", func(e *model.Event) { e.Flags = rlCloneNewTime }), want: []string{"ns_clone"}},
		{name: "benign: clone of a thread", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlCloneThread })},
		{name: "benign: fork", ev: rlSyscall("clone", func(e *model.Event) { e.Flags = rlSIGCHLD })},
		{name: "benign: clone3 of a thread", ev: rlSyscall("clone3", func(e *model.Event) { e.Flags = rlCloneThread })},
		// cap_raise
		{name: "capset adds CAP_SYS_ADMIN", ev: rlSyscall("capset", func(e *model.Event) {
			e.CapEff = capsNow
			e.CapsRequested = &model.CapSets{Effective: capsNow | 1<<21, Permitted: capsNow | 1<<21}
		}), want: []string{"cap_raise"}},
		{name: "benign: capset drops capabilities", ev: rlSyscall("capset", func(e *model.Event) {
			e.CapEff = capsNow
			e.CapsRequested = &model.CapSets{Effective: 0, Permitted: capsNow}
		})},
		// mount
		{name: "mount proc", ev: rlSyscall("mount", func(e *model.Event) { e.Path, e.Path2, e.FsType = "/mnt", "proc", "proc" }), want: []string{"mount"}},
		{name: "pivot_root", ev: rlSyscall("pivot_root", func(e *model.Event) { e.Path, e.Path2 = "/new", "/new/old" }), want: []string{"mount"}},
		{name: "umount2", ev: rlSyscall("umount2", func(e *model.Event) { e.Path = "/proc" }), want: []string{"mount"}},
		{name: "fsopen ext4", ev: rlSyscall("fsopen", func(e *model.Event) { e.FsType = "ext4" }), want: []string{"mount"}},
		{name: "benign: reading /proc/self/mountinfo", ev: rlOpen("openat", "/proc/self/mountinfo", rlOCloexec)},
		// sensitive_file
		{name: "read /etc/shadow", ev: rlOpen("openat", "/etc/shadow", rlOCloexec), want: []string{"sensitive_file"}},
		{name: "read /etc/gshadow", ev: rlOpen("open", "/etc/gshadow", 0), want: []string{"sensitive_file"}},
		{name: "read /etc/sudoers", ev: rlOpen("openat2", "/etc/sudoers", 0), want: []string{"sensitive_file"}},
		{name: "read /proc/kcore", ev: rlOpen("openat", "/proc/kcore", 0), want: []string{"sensitive_file"}},
		{name: "write core_pattern", ev: rlOpen("openat", "/proc/sys/kernel/core_pattern", rlOWronly|rlOTrunc), want: []string{"sensitive_file"}},
		{name: "write modprobe", ev: rlOpen("openat", "/proc/sys/kernel/modprobe", rlOWronly), want: []string{"sensitive_file"}},
		{name: "write uevent_helper", ev: rlOpen("openat", "/sys/kernel/uevent_helper", rlOWronly), want: []string{"sensitive_file"}},
		{name: "write sysrq-trigger", ev: rlOpen("openat", "/proc/sysrq-trigger", rlOWronly), want: []string{"sensitive_file"}},
		{name: "read /dev/mem", ev: rlOpen("openat", "/dev/mem", 0), want: []string{"sensitive_file"}},
		{name: "host block device /dev/sda1", ev: rlOpen("openat", "/dev/sda1", rlORdwr), want: []string{"sensitive_file"}},
		{name: "host block device /dev/nvme0n1", ev: rlOpen("openat", "/dev/nvme0n1", 0), want: []string{"sensitive_file"}},
		{name: "host block device /dev/mapper/root", ev: rlOpen("openat", "/dev/mapper/root", 0), want: []string{"sensitive_file"}},
		{name: "shadow through the host root", ev: rlOpen("openat", "/proc/1/root/etc/shadow", 0), want: []string{"sensitive_file"}},
		{name: "gshadow by a doubled slash", ev: rlOpen("openat", "//etc/gshadow", 0), want: []string{"sensitive_file"}},
		{name: "gshadow by a dot segment", ev: rlOpen("openat", "/etc/./gshadow", 0), want: []string{"sensitive_file"}},
		{name: "kcore by a dot-dot segment", ev: rlOpen("openat", "/proc/self/../kcore", 0), want: []string{"sensitive_file"}},
		{name: "benign: /etc/hostname", ev: rlOpen("openat", "/etc/hostname", rlOCloexec)},
		{name: "benign: /etc/passwd", ev: rlOpen("openat", "/etc/passwd", rlOCloexec)},
		{name: "benign: /dev/null", ev: rlOpen("openat", "/dev/null", rlORdwr)},
		{name: "benign: /dev/shm", ev: rlOpen("openat", "/dev/shm/sem.x", rlORdwr|rlOCreat)},
		{name: "benign: /proc/sys/kernel/hostname", ev: rlOpen("openat", "/proc/sys/kernel/hostname", 0)},
		// cgroup_escape
		{name: "write release_agent", ev: rlOpen("openat", "/sys/fs/cgroup/rdma/release_agent", rlOWronly|rlOTrunc), want: []string{"cgroup_escape"}},
		{name: "write notify_on_release", ev: rlOpen("openat", "/tmp/cg/x/notify_on_release", rlOWronly), want: []string{"cgroup_escape"}},
		{name: "write devices.allow", ev: rlOpen("open", "/sys/fs/cgroup/devices/devices.allow", rlORdwr), want: []string{"cgroup_escape"}},
		{name: "create release_agent", ev: rlOpen("openat2", "/tmp/cg/release_agent", rlOCreat), want: []string{"cgroup_escape"}},
		{name: "mount cgroupfs", ev: rlSyscall("mount", func(e *model.Event) { e.Path, e.Path2, e.FsType = "/tmp/cg", "cgroup", "cgroup" }), want: []string{"cgroup_escape", "mount"}},
		{name: "fsopen cgroup2", ev: rlSyscall("fsopen", func(e *model.Event) { e.FsType = "cgroup2" }), want: []string{"cgroup_escape", "mount"}},
		{name: "benign: read release_agent", ev: rlOpen("openat", "/sys/fs/cgroup/rdma/release_agent", rlOCloexec)},
		{name: "benign: write cpu.max", ev: rlOpen("openat", "/sys/fs/cgroup/cpu.max", rlOWronly)},
		{name: "benign but a mount: tmpfs", ev: rlSyscall("mount", func(e *model.Event) { e.Path, e.FsType = "/tmp/x", "tmpfs" }), want: []string{"mount"}},
		// runtime_socket
		{name: "connect docker.sock", ev: rlConnectUnix("/var/run/docker.sock"), want: []string{"runtime_socket"}},
		{name: "connect containerd", ev: rlConnectUnix("/run/containerd/containerd.sock"), want: []string{"runtime_socket"}},
		{name: "connect crio", ev: rlConnectUnix("/var/run/crio/crio.sock"), want: []string{"runtime_socket"}},
		{name: "connect podman", ev: rlConnectUnix("/run/podman/podman.sock"), want: []string{"runtime_socket"}},
		{name: "open a mounted docker.sock", ev: rlOpen("openat", "/host/run/docker.sock", rlORdwr), want: []string{"runtime_socket"}},
		{name: "benign: connect nscd", ev: rlConnectUnix("/var/run/nscd/socket")},
		{name: "benign: connect an app socket", ev: rlConnectUnix("/tmp/app.sock")},
		// ptrace
		{name: "ptrace attach", ev: rlSyscall("ptrace", func(e *model.Event) { e.Flags = 16 }), want: []string{"ptrace"}},
		{name: "benign: reading /proc/1/status", ev: rlOpen("openat", "/proc/1/status", 0)},
		// kernel_module
		{name: "init_module", ev: rlSyscall("init_module", nil), want: []string{"kernel_module"}},
		{name: "finit_module", ev: rlSyscall("finit_module", nil), want: []string{"kernel_module"}},
		{name: "delete_module", ev: rlSyscall("delete_module", func(e *model.Event) { e.Path = "nf_tables" }), want: []string{"kernel_module"}},
		{name: "benign: reading /proc/modules", ev: rlOpen("openat", "/proc/modules", 0)},
		// bpf_syscall
		{name: "bpf", ev: rlSyscall("bpf", func(e *model.Event) { e.Flags = 5 }), want: []string{"bpf_syscall"}},
		{name: "benign: seccomp", ev: rlSyscall("seccomp", nil)},
		// kernel_attack_surface
		{name: "open_by_handle_at", ev: rlSyscall("open_by_handle_at", nil), want: []string{"kernel_attack_surface"}},
		{name: "keyctl", ev: rlSyscall("keyctl", nil), want: []string{"kernel_attack_surface"}},
		{name: "userfaultfd", ev: rlSyscall("userfaultfd", nil), want: []string{"kernel_attack_surface"}},
		{name: "io_uring_setup", ev: rlSyscall("io_uring_setup", nil), want: []string{"kernel_attack_surface"}},
		{name: "perf_event_open", ev: rlSyscall("perf_event_open", nil), want: []string{"kernel_attack_surface"}},
		{name: "benign: name_to_handle_at", ev: rlSyscall("name_to_handle_at", nil)},
		// host_port_connect
		{name: "connect :22", ev: rlConnect("inet", "172.17.0.1", 22), want: []string{"host_port_connect"}},
		{name: "connect :2375", ev: rlConnect("inet", "172.17.0.1", 2375), want: []string{"host_port_connect"}},
		{name: "connect :2376", ev: rlConnect("inet", "172.17.0.1", 2376), want: []string{"host_port_connect"}},
		{name: "connect :2379", ev: rlConnect("inet", "10.0.0.10", 2379), want: []string{"host_port_connect"}},
		{name: "connect [::1]:10250", ev: rlConnect("inet6", "::1", 10250), want: []string{"host_port_connect"}},
		{name: "benign: connect :443", ev: rlConnect("inet", "93.184.216.34", 443)},
		{name: "benign: connect :5432", ev: rlConnect("inet6", "fd00::5", 5432)},
		// setuid_bit
		{name: "chmod u+s", ev: rlSyscall("chmod", func(e *model.Event) { e.Path = "/tmp/sh"; e.Flags = 0o4755 }), want: []string{"setuid_bit"}},
		{name: "fchmodat g+s", ev: rlSyscall("fchmodat", func(e *model.Event) { e.Path = "x"; e.Flags = 0o2755 }), want: []string{"setuid_bit"}},
		{name: "fchmod u+s", ev: rlSyscall("fchmod", func(e *model.Event) { e.Flags = 0o6755 }), want: []string{"setuid_bit"}},
		{name: "benign: chmod 755", ev: rlSyscall("chmod", func(e *model.Event) { e.Path = "/tmp/x"; e.Flags = 0o755 })},
		{name: "benign: chmod with the sticky bit", ev: rlSyscall("fchmodat2", func(e *model.Event) { e.Flags = 0o1777 })},
		// raw_socket
		{name: "socket AF_PACKET", ev: rlSyscall("socket", func(e *model.Event) { e.Family = "packet"; e.Flags = 3 }), want: []string{"raw_socket"}},
		{name: "socket AF_PACKET SOCK_DGRAM", ev: rlSyscall("socket", func(e *model.Event) { e.Family = "packet"; e.Flags = 2 }), want: []string{"raw_socket"}},
		{name: "socket AF_INET SOCK_RAW", ev: rlSyscall("socket", func(e *model.Event) { e.Family = "inet"; e.Flags = 3 | 0o2000000 }), want: []string{"raw_socket"}},
		{name: "socket AF_INET6 SOCK_RAW", ev: rlSyscall("socket", func(e *model.Event) { e.Family = "inet6"; e.Flags = 3 }), want: []string{"raw_socket"}},
		{name: "benign: socket AF_INET SOCK_STREAM", ev: rlSyscall("socket", func(e *model.Event) { e.Family = "inet"; e.Flags = 1 })},
		// fileless_exec
		{name: "exec a memfd", ev: rlExecFile("memfd:x", model.ExecFile{Memfd: true, Deleted: true, OutsideRoot: true}), baseline: stable,
			want: []string{"exec_drift", "fileless_exec"}},
		{name: "exec a deleted file", ev: rlExecFile("/tmp/x (deleted)", model.ExecFile{Deleted: true}), want: []string{"fileless_exec"}},
		{name: "exec from /dev/shm", ev: rlExecFile("/dev/shm/x", model.ExecFile{}), want: []string{"fileless_exec"}},
		{name: "benign: exec a file on disk", ev: rlExecFile("/usr/local/bin/shop", model.ExecFile{}), baseline: stable},
		// reverse_shell
		{name: "exec with a socket on stdio", ev: rlExecFile("/bin/sh", model.ExecFile{StdioSocket: true}), baseline: stable,
			want: []string{"reverse_shell"}},
		// binary_tamper
		{name: "overwrite /bin/sh", ev: rlWrite("openat", "/bin/sh", "open", "truncate"), want: []string{"binary_tamper"}},
		{name: "replace a library by rename", ev: rlWrite("renameat", "/usr/lib/x86_64-linux-gnu/libc.so.6", "rename"), want: []string{"binary_tamper"}},
		{name: "chmod a binary", ev: rlWrite("fchmodat", "/usr/local/bin/shop", "chmod"), want: []string{"binary_tamper"}},
		{name: "unlink a binary", ev: rlWrite("unlinkat", "/sbin/init", "unlink"), want: []string{"binary_tamper"}},
		{name: "write-open of a running program (CVE-2019-5736)", ev: rlWriteFile("openat", "/proc/self/fd/3", model.FileWrite{Ops: []string{"open"}, TextBusy: true}),
			want: []string{"binary_tamper"}},
		{name: "write a host file outside the root", ev: rlWriteFile("openat", "/usr/bin/runc", model.FileWrite{Ops: []string{"open"}, OutsideRoot: true}),
			want: []string{"binary_tamper"}},
		{name: "benign: python caches bytecode", ev: rlWrite("openat", "/usr/lib/python3.11/__pycache__/os.cpython-311.pyc", "open", "create")},
		{name: "benign: write below /usr/share", ev: rlWrite("openat", "/usr/share/app/state", "open")},
		{name: "benign: read-open of /bin/sh (no write event)", ev: rlOpen("openat", "/bin/sh", rlOCloexec)},
		// fs_write_drift
		{name: "append to /etc/passwd", ev: rlWrite("openat", "/etc/passwd", "open"), want: []string{"fs_write_drift"}},
		{name: "drop a cron job", ev: rlWrite("openat", "/etc/cron.d/job", "open", "create"), want: []string{"fs_write_drift"}},
		{name: "root's authorized_keys", ev: rlWrite("openat", "/root/.ssh/authorized_keys", "open", "create"), want: []string{"fs_write_drift"}},
		{name: "a user's .bashrc", ev: rlWrite("openat", "/home/app/.bashrc", "open"), want: []string{"fs_write_drift"}},
		{name: "crontab spool", ev: rlWrite("renameat", "/var/spool/cron/crontabs/root", "rename"), want: []string{"fs_write_drift"}},
		{name: "device node in /dev", ev: rlWrite("mknodat", "/dev/sda9", "mknod", "create"), want: []string{"fs_write_drift"}},
		{name: "hidden file in /dev", ev: rlWrite("openat", "/dev/.x", "open", "create"), want: []string{"fs_write_drift"}},
		{name: "clear a log", ev: rlWrite("openat", "/var/log/auth.log", "open", "truncate"), want: []string{"fs_write_drift"}},
		{name: "delete a log", ev: rlWrite("unlinkat", "/var/log/wtmp", "unlink"), want: []string{"fs_write_drift"}},
		{name: "benign: append to a log", ev: rlWrite("openat", "/var/log/app.log", "open")},
		{name: "benign: shared memory in /dev/shm", ev: rlWrite("openat", "/dev/shm/PostgreSQL.1", "open", "create")},
		{name: "benign: write a file outside the sensitive trees", ev: rlWrite("openat", "/home/app/notes", "open")},
		{name: "benign: learned tree", ev: rlWrite("openat", "/etc/nginx/conf.d/default.conf", "open", "truncate"), baseline: writesNginxConf},
		{name: "learned tree does not cover /etc itself", ev: rlWrite("openat", "/etc/passwd", "open"), baseline: writesNginxConf, want: []string{"fs_write_drift"}},
		{name: "another binary in the learned tree", ev: rlWriteBy("/bin/busybox", "openat", "/etc/nginx/nginx.conf", "open"), baseline: writesNginxConf, want: []string{"fs_write_drift"}},
		// credential_read
		{name: "read root's ssh key", ev: rlOpen("openat", "/root/.ssh/id_rsa", rlOCloexec), want: []string{"credential_read"}},
		{name: "read a user's ssh key", ev: rlOpen("openat", "/home/dev/.ssh/id_ed25519", 0), want: []string{"credential_read"}},
		{name: "read an ssh host key", ev: rlOpen("openat", "/etc/ssh/ssh_host_ed25519_key", 0), want: []string{"credential_read"}},
		{name: "read aws credentials", ev: rlOpen("openat", "/srv/app/.aws/credentials", 0), want: []string{"credential_read"}},
		{name: "read gcloud tokens", ev: rlOpen("openat", "/root/.config/gcloud/access_tokens.db", 0), want: []string{"credential_read"}},
		{name: "read the service-account token", ev: rlOpen("openat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0), want: []string{"credential_read"}},
		{name: "benign: public host key", ev: rlOpen("openat", "/etc/ssh/ssh_host_ed25519_key.pub", 0)},
		{name: "benign: an app file named credentials", ev: rlOpen("openat", "/srv/app/credentials", 0)},
		{name: "benign: learned token read", ev: rlOpen("openat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0), baseline: readsToken},
		// io_uring: judged where the ring submits, on the name as given
		{name: "io_uring read of /etc/shadow", ev: rlSyscall("openat", func(e *model.Event) { e.Path, e.IOUring = "/etc/shadow", true }),
			want: []string{"sensitive_file"}},
		{name: "io_uring write-open of /etc/shadow", ev: rlSyscall("openat", func(e *model.Event) {
			e.Path, e.Flags, e.IOUring, e.Write, e.Exe = "/etc/shadow", rlOWronly, true, &model.FileWrite{Ops: []string{"open"}}, "/bin/sed"
		}), want: []string{"fs_write_drift", "sensitive_file"}},
		{name: "io_uring connect to the host's ssh", ev: func() model.Event { e := rlConnect("inet", "172.17.0.1", 22); e.IOUring = true; return e }(),
			want: []string{"host_port_connect"}},
		// links onto sensitive files
		{name: "symlink onto /etc/shadow", ev: rlLink("symlinkat", "/tmp/s", "/etc/shadow"), want: []string{"sensitive_file"}},
		{name: "hard link onto /etc/shadow", ev: rlLink("linkat", "/tmp/h", "/etc/shadow"), want: []string{"sensitive_file"}},
		{name: "benign: symlink onto an ordinary file", ev: rlLink("symlinkat", "/tmp/s", "/etc/hostname")},
		// fileless_exec: drift of files written after the container started
		{name: "exec a file written after start", ev: rlExecFile("/tmp/payload", model.ExecFile{UpperLayer: true}), baseline: stable,
			want: []string{"exec_drift", "fileless_exec"}},
		{name: "exec a changed image binary", ev: rlExecFile("/bin/sh", model.ExecFile{UpperLayer: true}), baseline: stable},
		{name: "benign: exec a written file while learning", ev: rlExecFile("/tmp/payload", model.ExecFile{UpperLayer: true}), baseline: learning},
		// exec_drift
		{name: "exec a dropped binary", ev: rlExec("/tmp/xmrig"), baseline: stable, want: []string{"exec_drift"}},
		{name: "benign: exec the image's binary", ev: rlExec("/usr/local/bin/shop"), baseline: stable},
		{name: "benign: exec while the baseline is learning", ev: rlExec("/tmp/xmrig"), baseline: learning},
		{name: "benign: exec without a baseline", ev: rlExec("/tmp/xmrig")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ruleIDs(rs.Match(tt.ev, tt.baseline))
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("fired %v, want %v", got, want)
			}
			for _, c := range []model.Container{{Runtime: model.RuntimeHost, CgroupPath: "/user.slice"},
				{Runtime: model.RuntimeUnknown, CgroupPath: "/gone"}} {
				e := tt.ev
				e.Container = c
				if got := rs.Match(e, tt.baseline); len(got) > 0 {
					t.Errorf("runtime %q fired %v, want nothing", c.Runtime, ruleIDs(got))
				}
			}
		})
	}
}

func rlWriteFile(name, path string, w model.FileWrite) model.Event {
	return rlSyscall(name, func(e *model.Event) { e.Path, e.Write = path, &w })
}

func rlWrite(name, path string, ops ...string) model.Event {
	return rlWriteBy("/bin/sed", name, path, ops...)
}

func rlWriteBy(exe, name, path string, ops ...string) model.Event {
	e := rlWriteFile(name, path, model.FileWrite{Ops: ops})
	e.Exe = exe
	return e
}

func rlLink(name, path, target string) model.Event {
	op := "link"
	if strings.HasPrefix(name, "symlink") {
		op = "symlink"
	}
	e := rlWriteFile(name, path, model.FileWrite{Ops: []string{op}, SourceWatched: true})
	e.Path2 = target
	return e
}

func rlExecFile(path string, f model.ExecFile) model.Event {
	e := rlExec(path)
	e.Exec = &f
	return e
}

func ruleIDs(rules []*model.Rule) []string {
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}

func TestKillPolicyDefaultRules(t *testing.T) {
	rs := defaultRules(t)
	p := KillPolicy(rs)
	if !p.Enabled {
		t.Error("policy not enabled")
	}
	ns := rs.Rule("ns_clone").Matchers[0].Flags()
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{name: "kill syscalls", check: func(t *testing.T) {
			for _, s := range []string{"setns", "init_module", "finit_module", "delete_module"} {
				if !slices.Contains(p.KillSyscalls, s) {
					t.Errorf("KillSyscalls %v lack %s", p.KillSyscalls, s)
				}
			}
			// unshare kills by its CLONE_NEW* flags, not on every call (CLONE_FILES alone is fine).
			if !p.KillUnshareByFlags {
				t.Error("unshare is not killed by its namespace flags")
			}
			for _, s := range []string{"unshare", "ptrace", "bpf", "mount", "connect", "capset", "clone", "clone3", "open", "openat", "openat2"} {
				if slices.Contains(p.KillSyscalls, s) {
					t.Errorf("KillSyscalls %v kill every %s", p.KillSyscalls, s)
				}
			}
		}},
		{name: "clone flags", check: func(t *testing.T) {
			for _, f := range []uint64{rlCloneNewNS, rlCloneNewCgroup, rlCloneNewUTS, rlCloneNewIPC, rlCloneNewUser, rlCloneNewPID, rlCloneNewNet} {
				if ns&f == 0 {
					t.Errorf("ns_clone flags %#x lack %#x", ns, f)
				}
				if p.KillCloneFlags&f == 0 {
					t.Errorf("KillCloneFlags %#x lack %#x", p.KillCloneFlags, f)
				}
			}
			if p.KillCloneFlags&ns != ns {
				t.Errorf("KillCloneFlags %#x lack some of ns_clone's %#x", p.KillCloneFlags, ns)
			}
			if p.KillCloneFlags&rlCloneThread != 0 {
				t.Errorf("KillCloneFlags %#x would kill thread creation", p.KillCloneFlags)
			}
		}},
		{name: "sensitive_file prefixes kill on any open", check: func(t *testing.T) {
			for _, prefix := range rs.Rule("sensitive_file").Matchers[0].Spec.PathPrefixes {
				if got, ok := p.KillPrefixes[prefix]; !ok || got != sensor.KillOnAny {
					t.Errorf("KillPrefixes[%q] = %v (present %v), want KillOnAny", prefix, got, ok)
				}
			}
			if got, ok := p.KillPrefixes["/etc/shadow"]; !ok || got != sensor.KillOnAny {
				t.Errorf("KillPrefixes[/etc/shadow] = %v (present %v), want KillOnAny", got, ok)
			}
			if got, ok := p.KillNames["shadow"]; !ok || got != sensor.KillOnAny {
				t.Errorf("KillNames[shadow] = %v (present %v), want KillOnAny", got, ok)
			}
		}},
		{name: "cgroup_escape names kill on write", check: func(t *testing.T) {
			for _, n := range []string{"release_agent", "notify_on_release", "devices.allow"} {
				if got, ok := p.KillNames[n]; !ok || got != sensor.KillOnWrite {
					t.Errorf("KillNames[%q] = %v (present %v), want KillOnWrite", n, got, ok)
				}
			}
		}},
		{name: "alert-only rules are not killed", check: func(t *testing.T) {
			for _, prefix := range []string{"/var/run/docker.sock", "/run/containerd/"} {
				if _, ok := p.KillPrefixes[prefix]; ok {
					t.Errorf("runtime_socket prefix %q is killed", prefix)
				}
			}
			if _, ok := p.KillNames["docker.sock"]; ok {
				t.Error("runtime_socket name docker.sock is killed")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestKillPolicy(t *testing.T) {
	tests := []struct {
		name  string
		specs []model.RuleSpec
		want  sensor.EnforcePolicy
	}{
		{
			name: "no kill rules",
			specs: []model.RuleSpec{{ID: "a", Priority: "Notice", Action: "alert", Match: model.MatchSpec{Syscalls: []string{"unshare"}}},
				{ID: "f", Priority: "Notice", Action: "freeze", Match: model.MatchSpec{Event: "anomaly"}}},
			want: sensor.EnforcePolicy{Enabled: true, KillPrefixes: map[string]sensor.KillOpen{}, KillNames: map[string]sensor.KillOpen{}},
		},
		{
			name: "only match is enforced, any_of alerts",
			specs: []model.RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: model.MatchSpec{Syscalls: []string{"openat"}, PathNames: []string{"release_agent"}, OpenWrite: true},
				AnyOf: []model.MatchSpec{{Syscalls: []string{"setns"}}, {Syscalls: []string{"openat"}, PathPrefixes: []string{"/etc/"}}}}},
			want: sensor.EnforcePolicy{Enabled: true, KillPrefixes: map[string]sensor.KillOpen{},
				KillNames: map[string]sensor.KillOpen{"release_agent": sensor.KillOnWrite}},
		},
		{
			name: "clone flags from several rules are combined",
			specs: []model.RuleSpec{
				{ID: "a", Priority: "Critical", Action: "kill", Match: model.MatchSpec{Syscalls: []string{"clone"}, FlagsAny: []string{"CLONE_NEWUSER"}}},
				{ID: "b", Priority: "Critical", Action: "kill", Match: model.MatchSpec{Syscalls: []string{"clone3"}, FlagsAny: []string{"CLONE_NEWNET"}}},
				{ID: "c", Priority: "Critical", Action: "kill", Match: model.MatchSpec{Syscalls: []string{"delete_module"}}},
			},
			want: sensor.EnforcePolicy{Enabled: true, KillSyscalls: []string{"delete_module"}, KillCloneFlags: rlCloneNewUser | rlCloneNewNet,
				KillPrefixes: map[string]sensor.KillOpen{}, KillNames: map[string]sensor.KillOpen{}},
		},
		{
			name: "exec kinds kill at exec",
			specs: []model.RuleSpec{
				{ID: "a", Priority: "Critical", Action: "kill", Match: model.MatchSpec{Event: "exec", ExecFile: []string{"deleted", "stdio_socket"}}},
				{ID: "b", Priority: "Critical", Action: "kill", Match: model.MatchSpec{Syscalls: []string{"chmod"}, ModeAny: []string{"setuid", "setgid"}}},
			},
			want: sensor.EnforcePolicy{Enabled: true, KillSyscalls: []string{"chmod"}, KillExecFile: []string{"deleted", "stdio_socket"},
				KillPrefixes: map[string]sensor.KillOpen{}, KillNames: map[string]sensor.KillOpen{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := model.CompileRules(tt.specs)
			if err != nil {
				t.Fatal(err)
			}
			got := KillPolicy(rs)
			if got.Enabled != tt.want.Enabled || got.KillCloneFlags != tt.want.KillCloneFlags ||
				!slices.Equal(got.KillSyscalls, tt.want.KillSyscalls) || !slices.Equal(got.KillExecFile, tt.want.KillExecFile) ||
				!mapsEqual(got.KillPrefixes, tt.want.KillPrefixes) || !mapsEqual(got.KillNames, tt.want.KillNames) {
				t.Errorf("KillPolicy = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func mapsEqual(a, b map[string]sensor.KillOpen) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestKernelWatchDefaultRules: the sensor's filters derived from the shipped
// rules report every path the rules judge, and only the operations that count.
func TestKernelWatchDefaultRules(t *testing.T) {
	w := defaultRules(t).KernelWatch()
	for tree, ops := range map[string][]string{
		"/etc/":     model.WriteOps,
		"/usr/bin/": model.WriteOps,
		"/lib/":     model.WriteOps,
		"/home/":    model.WriteOps,
		"/var/log/": {"truncate", "unlink"},
		"/dev/":     {"create", "link", "mknod", "rename", "symlink"},
	} {
		want := slices.Sorted(slices.Values(ops))
		if got := w.Writes[tree]; !slices.Equal(got, want) {
			t.Errorf("write tree %s: ops %v, want %v", tree, got, want)
		}
	}
	if _, ok := w.Writes["/tmp/"]; ok {
		t.Error("/tmp/ is a write tree")
	}
	for _, p := range []string{"/root/.ssh/", "/home/", "/etc/ssh/", "/etc/shadow", "/var/run/secrets/kubernetes.io/serviceaccount/"} {
		if !slices.Contains(w.OpenPrefixes, p) {
			t.Errorf("open prefixes %v lack %s", w.OpenPrefixes, p)
		}
	}
	for _, n := range []string{"credentials", "shadow", "release_agent"} {
		if !slices.Contains(w.OpenNames, n) {
			t.Errorf("open names %v lack %s", w.OpenNames, n)
		}
	}
}
