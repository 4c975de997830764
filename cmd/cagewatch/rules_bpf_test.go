package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/configs"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// Real-kernel tests of the hard rules: each technique runs in its own cgroup under
// a static-mapped parent, as a child of this test, while `cagewatch run` watches.
// The techniques are harmless: most fail on bad arguments (the sensor sees the
// attempt at syscall entry), the rest touch temp files and private mounts.

const rulesPython = "/usr/bin/python3"

// rulesPrelude is prepended to every python technique: raw syscalls through ctypes.
const rulesPrelude = `
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    return libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
def clone3(flags):
    args = (ctypes.c_uint64 * 11)()
    args[0] = flags
    args[4] = 17  # exit_signal SIGCHLD
    pid = sc(435, ctypes.byref(args), 88)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
def connect(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
    except OSError:
        pass
    s.close()
class CapHdr(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
def capget():
    hdr, data = CapHdr(0x20080522, 0), (CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        sys.exit("capget: " + os.strerror(ctypes.get_errno()))
    return hdr, data
def capset(hdr, data):
    if libc.capset(ctypes.byref(hdr), data) != 0:
        sys.exit("capset: " + os.strerror(ctypes.get_errno()))
CAP_NET_RAW = 1 << 13
`

func rulesPy(code string) []string {
	return []string{rulesPython, "-S", "-c", rulesPrelude + code}
}

// rulesRequireTools skips or fails (sensortest.SkipOrFail) without the host
// binaries the techniques use.
func rulesRequireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{rulesPython, "/bin/sh", "cat", "true", "unshare", "mount", "umount", "id"} {
		if _, err := exec.LookPath(tool); err != nil {
			sensortest.SkipOrFail(t, tool, "the techniques need it: %v", err)
		}
	}
}

// rulesAgent is `cagewatch run` as a child process, alerts (stdout) apart from logs.
type rulesAgent struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
}

// startRulesAgent starts the agent with --log-level debug (events are logged, so a
// test can tell "seen and not alerted" from "never seen") and waits until its
// control socket answers.
func startRulesAgent(t *testing.T, config, store string) *rulesAgent {
	t.Helper()
	a := &rulesAgent{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(cagewatchBinary(t), "--config", config, "--log-level", "debug", "run")
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("agent stdout (alerts):\n%s", rulesTail(a.stdout.String(), 60))
			t.Logf("agent stderr (tail, no window lines):\n%s", rulesTail(rulesWithout(a.stderr.String(), "msg=window"), 80))
		}
	})
	sock := control.SocketPath(store)
	rulesPoll(t, a, 30*time.Second, "the agent to start", func() bool {
		_, err := os.Stat(sock)
		return err == nil && strings.Contains(a.stderr.String(), `msg="agent started"`)
	})
	return a
}

func (a *rulesAgent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop ends the agent as SIGTERM would, killing it if it does not stop in time.
func (a *rulesAgent) stop() {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// rulesAlert is one Falco-format alert line.
type rulesAlert struct {
	Time         time.Time      `json:"time"`
	Rule         string         `json:"rule"`
	Priority     string         `json:"priority"`
	Output       string         `json:"output"`
	Source       string         `json:"source"`
	Tags         []string       `json:"tags"`
	OutputFields map[string]any `json:"output_fields"`
}

// field returns an output field as text ("" when absent).
func (a rulesAlert) field(key string) string {
	v, ok := a.OutputFields[key]
	if !ok || v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// alerts parses every complete stdout line; stdout must hold nothing but alerts.
func (a *rulesAgent) alerts(t *testing.T) []rulesAlert {
	t.Helper()
	lines := strings.Split(a.stdout.String(), "\n")
	var out []rulesAlert
	for _, line := range lines[:len(lines)-1] { // the last element is "" or a line being written
		var al rulesAlert
		if err := json.Unmarshal([]byte(line), &al); err != nil || al.Rule == "" || al.OutputFields == nil {
			t.Fatalf("stdout line is not a Falco JSON alert (err %v): %q", err, line)
		}
		out = append(out, al)
	}
	return out
}

// alertsOf are the alerts of one container (by name).
func (a *rulesAgent) alertsOf(t *testing.T, name string) []rulesAlert {
	t.Helper()
	var out []rulesAlert
	for _, al := range a.alerts(t) {
		if al.field("container.name") == name {
			out = append(out, al)
		}
	}
	return out
}

// waitAlert waits for an alert of rule from the named container.
func (a *rulesAgent) waitAlert(t *testing.T, name, rule string) rulesAlert {
	t.Helper()
	var found rulesAlert
	rulesPoll(t, a, 15*time.Second, fmt.Sprintf("a %s alert from %s", rule, name), func() bool {
		for _, al := range a.alertsOf(t, name) {
			if al.Rule == rule {
				found = al
				return true
			}
		}
		return false
	})
	return found
}

// sawEvent reports whether the agent logged (debug) an event of syscall from the container.
func (a *rulesAgent) sawEvent(name, syscall string) bool {
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(line, "msg=event ") && strings.Contains(line, " syscall="+syscall+" ") &&
			strings.Contains(line, " container="+name+" ") {
			return true
		}
	}
	return false
}

// rulesPoll polls cond every 100ms; it fails at timeout or when the agent exits.
func rulesPoll(t *testing.T, a *rulesAgent, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if a != nil && a.exited() {
			t.Fatalf("the agent exited (%v) while waiting for %s", a.cmd.ProcessState, what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rulesParent creates the static-mapped parent cgroup; it is removed after its
// children (cleanups run last-in first-out).
func rulesParent(t *testing.T, prefix string) (name, dir string) {
	t.Helper()
	name = fmt.Sprintf("%s-%d", prefix, os.Getpid())
	dir = filepath.Join(cgroup2Root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rulesRemoveCgroup(t, dir) })
	return name, dir
}

// rulesChild creates a child cgroup (one "container") and returns its directory.
func rulesChild(t *testing.T, parentDir, name string) string {
	t.Helper()
	dir := filepath.Join(parentDir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rulesRemoveCgroup(t, dir) })
	return dir
}

func rulesRemoveCgroup(t *testing.T, dir string) {
	for range 100 { // processes may still be exiting
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("cgroup %s not removed", dir)
}

// rulesCommand is argv ready to start directly inside the cgroup dir (clone3 with
// CLONE_INTO_CGROUP: its first instruction already runs in the container).
func rulesCommand(t *testing.T, dir string, argv []string) (*exec.Cmd, func()) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	cmd.WaitDelay = 20 * time.Second
	return cmd, func() { unix.Close(fd) }
}

// rulesRun runs argv to completion inside the cgroup dir.
func rulesRun(t *testing.T, dir string, argv ...string) (string, error) {
	t.Helper()
	cmd, closeFD := rulesCommand(t, dir, argv)
	defer closeFD()
	timer := time.AfterFunc(30*time.Second, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rulesMustRun runs argv in the cgroup and fails the test if it does not exit 0.
func rulesMustRun(t *testing.T, dir string, argv ...string) {
	t.Helper()
	if out, err := rulesRun(t, dir, argv...); err != nil {
		t.Fatalf("%q in %s: %v\n%s", argv, dir, err, out)
	}
}

// rulesConfig writes an agent config. The sensor keeps its default watch lists
// plus extraPrefixes and extraPorts, so that some benign actions do reach the rules
// (and the test proves the rules, not the kernel filter, leave them alone).
func rulesConfig(t *testing.T, body string, extraPrefixes []string, extraPorts []uint16) string {
	t.Helper()
	v, err := newViper("")
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := loadConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	prefixes, _ := json.Marshal(append(slices.Clone(defaults.Sensor.WatchPrefixes), extraPrefixes...))
	ports, _ := json.Marshal(append(slices.Clone(defaults.Sensor.WatchPorts), extraPorts...))
	return writeConfig(t, body+fmt.Sprintf(`
metrics: {listen: ""}
sensor:
  watch_prefixes: %s
  watch_ports: %s
`, prefixes, ports))
}

// rulesPriorities maps each shipped rule id to its priority.
func rulesPriorities(t *testing.T) map[string]string {
	t.Helper()
	rs, err := profiler.LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rs.Rules {
		out[r.ID] = string(r.Priority)
	}
	return out
}

// rulesSentinel runs a ptrace attempt in a fresh cgroup and waits for its alert.
// The ring buffer is read in order by one reader and alerts are written as they
// are decided, so every event of a process that exited before is handled by then.
func rulesSentinel(t *testing.T, a *rulesAgent, parentDir, name string) {
	t.Helper()
	dir := rulesChild(t, parentDir, name)
	rulesMustRun(t, dir, rulesPy("sc(101, 16, 0x3fffffff, 0, 0)")...)
	a.waitAlert(t, name, "ptrace")
	time.Sleep(200 * time.Millisecond)
}

func rulesRuleSet(as []rulesAlert) []string {
	var ids []string
	for _, a := range as {
		if !slices.Contains(ids, a.Rule) {
			ids = append(ids, a.Rule)
		}
	}
	sort.Strings(ids)
	return ids
}

func rulesTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func rulesWithout(s, substr string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, substr) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// rulesListen serves a unix socket at path until the test ends.
func rulesListen(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
}

// ruleCase is one technique (fires) or one similar benign action (!fires).
type ruleCase struct {
	rule string
	name string // subtest name and the cgroup's (container's) name
	argv []string
	// fires: rule must fire (evt, proc and fields describe its alert) and no rule
	// but rule and also; otherwise the container must raise no alert at all.
	fires  bool
	evt    string
	proc   string
	fields map[string]string
	also   []string
	// seen (benign cases): the agent must have logged an event of this syscall
	// from the container, so the rules saw the action and let it pass.
	seen string
}

// TestBPFRulesFireInStaticContainers runs, for every required hard rule, the
// techniques it must catch and similar benign actions it must not, each in its
// own static-mapped cgroup, against one agent in detect mode. The image has no
// baseline, so no exec_drift or statistical alert can blur "exactly this rule".
func TestBPFRulesFireInStaticContainers(t *testing.T) {
	requireRoot(t)
	rulesRequireTools(t)
	scratch := t.TempDir()
	store := filepath.Join(scratch, "store", "cagewatch.db")
	parent, parentDir := rulesParent(t, "cagewatch-rules")
	config := rulesConfig(t, fmt.Sprintf(`
mode: detect
window: 1s
store: %s
containers:
  static: [{cgroup: "/%s/*", image: "e2e/rules:1"}]
`, store, parent), []string{scratch + "/"}, []uint16{8080})

	for _, f := range []string{"release_agent", "notify_on_release", "devices.allow"} {
		if err := os.WriteFile(filepath.Join(scratch, f), []byte("0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rulesListen(t, filepath.Join(scratch, "docker.sock"))
	rulesListen(t, filepath.Join(scratch, "other.sock"))
	mnt := filepath.Join(scratch, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) }) // only if a case failed half-way
	releaseAgent := filepath.Join(scratch, "release_agent")
	hierarchy := fmt.Sprintf("cwrules%d", os.Getpid())
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script} }

	cases := []ruleCase{
		// ns_unshare
		{rule: "ns_unshare", name: "unshare-user", argv: []string{"unshare", "-U", "true"}, fires: true,
			evt: "unshare", proc: "unshare", fields: map[string]string{"cagewatch.flags": "CLONE_NEWUSER", "proc.cmdline": "unshare -U true"}},
		{rule: "ns_unshare", name: "plain-true", argv: []string{"true"}},
		{rule: "ns_unshare", name: "unshare-fs-no-namespace", argv: rulesPy("assert sc(272, 0x200) == 0  # CLONE_FS"), seen: "unshare"},
		// ns_setns
		{rule: "ns_setns", name: "setns-own-uts", fires: true, evt: "setns", proc: "python3",
			argv:   rulesPy("fd = os.open('/proc/self/ns/uts', os.O_RDONLY)\nassert libc.setns(fd, 0x04000000) == 0"),
			fields: map[string]string{"cagewatch.flags": "CLONE_NEWUTS"}},
		{rule: "ns_setns", name: "read-ns-links", argv: rulesPy("os.readlink('/proc/self/ns/uts'); os.close(os.open('/proc/self/ns/uts', os.O_RDONLY))")},
		// ns_clone
		{rule: "ns_clone", name: "clone-newuts", fires: true, evt: "clone", proc: "python3",
			argv:   rulesPy("pid = sc(56, 0x04000000 | 17, 0, 0, 0, 0)\nif pid == 0: os._exit(0)\nassert pid > 0\nos.waitpid(pid, 0)"),
			fields: map[string]string{"cagewatch.flags": "CLONE_NEWUTS"}},
		{rule: "ns_clone", name: "clone3-newnet", fires: true, evt: "clone3", proc: "python3",
			argv: rulesPy("clone3(0x40000000)"), fields: map[string]string{"cagewatch.flags": "CLONE_NEWNET"}},
		{rule: "ns_clone", name: "clone3-newtime", fires: true, evt: "clone3", proc: "python3",
			argv: rulesPy("clone3(0x80)"), fields: map[string]string{"cagewatch.flags": "CLONE_NEWTIME"}},
		{rule: "ns_clone", name: "plain-fork", argv: rulesPy("pid = os.fork()\nif pid == 0: os._exit(0)\nos.waitpid(pid, 0)")},
		{rule: "ns_clone", name: "clone3-no-namespace", argv: rulesPy("clone3(0)")},
		// cap_raise
		{rule: "cap_raise", name: "capset-raise", fires: true, evt: "capset", proc: "python3",
			argv: rulesPy(`hdr, d = capget()
assert d[0].effective & CAP_NET_RAW and d[0].permitted & CAP_NET_RAW
d[0].effective &= ~CAP_NET_RAW
capset(hdr, d)
d[0].effective |= CAP_NET_RAW
capset(hdr, d)`)},
		{rule: "cap_raise", name: "capset-same-sets", argv: rulesPy("hdr, d = capget()\ncapset(hdr, d)"), seen: "capset"},
		{rule: "cap_raise", name: "capset-drop", argv: rulesPy("hdr, d = capget()\nd[0].effective &= ~CAP_NET_RAW\ncapset(hdr, d)"), seen: "capset"},
		// mount
		{rule: "mount", name: "mount-tmpfs", argv: sh(fmt.Sprintf("mount -t tmpfs -o size=1m cagewatch-e2e %s && umount %s", mnt, mnt)),
			fires: true, evt: "mount", proc: "mount", fields: map[string]string{"fd.name": mnt}},
		{rule: "mount", name: "pivot-root", argv: rulesPy("sc(155, b'/nonexistent-cagewatch-new', b'/nonexistent-cagewatch-old')"),
			fires: true, evt: "pivot_root", proc: "python3", fields: map[string]string{"fd.name": "/nonexistent-cagewatch-new"}},
		{rule: "mount", name: "fsopen-tmpfs", argv: rulesPy("fd = sc(430, b'tmpfs', 0)\nassert fd >= 0\nos.close(fd)"),
			fires: true, evt: "fsopen", proc: "python3"},
		{rule: "mount", name: "read-mountinfo", argv: []string{"cat", "/proc/self/mountinfo"}},
		// sensitive_file
		{rule: "sensitive_file", name: "cat-shadow", argv: []string{"cat", "/etc/shadow"}, fires: true, evt: "openat", proc: "cat",
			fields: map[string]string{"fd.name": "/etc/shadow", "proc.cmdline": "cat /etc/shadow"}},
		{rule: "sensitive_file", name: "read-core-pattern", argv: []string{"cat", "/proc/sys/kernel/core_pattern"}, fires: true,
			evt: "openat", proc: "cat", fields: map[string]string{"fd.name": "/proc/sys/kernel/core_pattern"}},
		{rule: "sensitive_file", name: "relative-path", argv: sh("cd /etc && cat shadow"), fires: true, evt: "openat", proc: "cat",
			fields: map[string]string{"fd.name": "shadow"}},
		{rule: "sensitive_file", name: "non-canonical-path", argv: []string{"cat", "//etc/./shadow"}, fires: true, evt: "openat", proc: "cat",
			fields: map[string]string{"fd.name": "//etc/./shadow"}},
		{rule: "sensitive_file", name: "cat-hostname", argv: []string{"cat", "/etc/hostname"}},
		{rule: "sensitive_file", name: "cat-ssh-config", argv: []string{"cat", "/etc/ssh/ssh_config"}, seen: "openat"}, // watched, not sensitive
		// cgroup_escape
		{rule: "cgroup_escape", name: "release-agent-write", argv: rulesPy(fmt.Sprintf("os.close(os.open(%q, os.O_WRONLY))", releaseAgent)),
			fires: true, evt: "openat", proc: "python3", fields: map[string]string{"fd.name": releaseAgent}},
		{rule: "cgroup_escape", name: "devices-allow-write", argv: sh(fmt.Sprintf("echo a > %s/devices.allow", scratch)),
			fires: true, evt: "openat", proc: "sh", fields: map[string]string{"fd.name": scratch + "/devices.allow"}},
		{rule: "cgroup_escape", name: "notify-on-release-write", argv: sh(fmt.Sprintf("echo 1 > %s/notify_on_release", scratch)),
			fires: true, evt: "openat", proc: "sh", fields: map[string]string{"fd.name": scratch + "/notify_on_release"}},
		{rule: "cgroup_escape", name: "cgroupfs-mount", fires: true, evt: "mount", proc: "mount", also: []string{"mount"},
			// A named v1 hierarchy (no controller, nothing of the host's); a kernel
			// without cgroup v1 refuses it, and the attempt still counts.
			argv: sh(fmt.Sprintf("if mount -t cgroup -o none,name=%s cgroup %s; then umount %s; fi", hierarchy, mnt, mnt))},
		{rule: "cgroup_escape", name: "fsopen-cgroup2", argv: rulesPy("fd = sc(430, b'cgroup2', 0)\nassert fd >= 0\nos.close(fd)"),
			fires: true, evt: "fsopen", proc: "python3", also: []string{"mount"}},
		{rule: "cgroup_escape", name: "release-agent-read", argv: rulesPy(fmt.Sprintf("open(%q).read()", releaseAgent)), seen: "openat"},
		// runtime_socket
		{rule: "runtime_socket", name: "connect-docker-sock", argv: rulesPy(fmt.Sprintf("connect(socket.AF_UNIX, %q)", scratch+"/docker.sock")),
			fires: true, evt: "connect", proc: "python3", fields: map[string]string{"fd.name": scratch + "/docker.sock"}},
		{rule: "runtime_socket", name: "open-var-run-docker-sock", fires: true, evt: "openat", proc: "python3",
			argv:   rulesPy("try:\n    os.close(os.open('/var/run/docker.sock', os.O_RDONLY))\nexcept OSError:\n    pass"),
			fields: map[string]string{"fd.name": "/var/run/docker.sock"}},
		{rule: "runtime_socket", name: "connect-other-sock", argv: rulesPy(fmt.Sprintf("connect(socket.AF_UNIX, %q)", scratch+"/other.sock")), seen: "connect"},
		// ptrace
		{rule: "ptrace", name: "ptrace-attach", argv: rulesPy("sc(101, 16, 0x3fffffff, 0, 0)"), fires: true, evt: "ptrace", proc: "python3"},
		{rule: "ptrace", name: "read-proc-status", argv: rulesPy("open('/proc/self/status').read()")},
		// kernel_module
		{rule: "kernel_module", name: "finit-module", argv: rulesPy("sc(313, -1, b'', 0)"), fires: true, evt: "finit_module", proc: "python3"},
		{rule: "kernel_module", name: "init-module", argv: rulesPy("sc(175, None, 0, b'')"), fires: true, evt: "init_module", proc: "python3"},
		{rule: "kernel_module", name: "delete-module", argv: rulesPy("sc(176, b'cagewatch_nonexistent', os.O_NONBLOCK)"), fires: true,
			evt: "delete_module", proc: "python3", fields: map[string]string{"fd.name": "cagewatch_nonexistent"}},
		{rule: "kernel_module", name: "cat-proc-modules", argv: sh("cat /proc/modules || true")},
		// bpf_syscall
		{rule: "bpf_syscall", name: "bpf-bad-cmd", argv: rulesPy("sc(321, 0xffff, None, 0)"), fires: true, evt: "bpf", proc: "python3"},
		{rule: "bpf_syscall", name: "read-bpf-sysctl", argv: []string{"cat", "/proc/sys/kernel/unprivileged_bpf_disabled"}},
		// kernel_attack_surface
		{rule: "kernel_attack_surface", name: "keyctl", argv: rulesPy("sc(250, 0xffff, 0, 0, 0, 0)"), fires: true, evt: "keyctl", proc: "python3"},
		{rule: "kernel_attack_surface", name: "userfaultfd", argv: rulesPy("fd = sc(323, os.O_CLOEXEC)\nif fd >= 0: os.close(fd)"),
			fires: true, evt: "userfaultfd", proc: "python3"},
		{rule: "kernel_attack_surface", name: "io-uring-setup", argv: rulesPy("sc(425, 0, None)"), fires: true, evt: "io_uring_setup", proc: "python3"},
		{rule: "kernel_attack_surface", name: "open-by-handle-at", argv: rulesPy("sc(304, -1, None, 0)"), fires: true,
			evt: "open_by_handle_at", proc: "python3"},
		{rule: "kernel_attack_surface", name: "perf-event-open", argv: rulesPy("sc(298, None, 0, -1, -1, 0)"), fires: true,
			evt: "perf_event_open", proc: "python3"},
		{rule: "kernel_attack_surface", name: "eventfd-pipe", argv: rulesPy("r, w = os.pipe(); os.close(os.eventfd(0)); os.close(r); os.close(w)")},
		{rule: "kernel_attack_surface", name: "read-perf-sysctl", argv: []string{"cat", "/proc/sys/kernel/perf_event_paranoid"}},
		// host_port_connect
		{rule: "host_port_connect", name: "connect-ssh-port", argv: rulesPy("connect(socket.AF_INET, ('127.0.0.1', 22))"), fires: true,
			evt: "connect", proc: "python3", fields: map[string]string{"fd.rport": "22", "fd.rip": "127.0.0.1"}},
		{rule: "host_port_connect", name: "connect-kubelet-port-v6", argv: rulesPy("connect(socket.AF_INET6, ('::1', 10250))"), fires: true,
			evt: "connect", proc: "python3", fields: map[string]string{"fd.rport": "10250", "fd.rip": "::1"}},
		{rule: "host_port_connect", name: "connect-8080", argv: rulesPy("connect(socket.AF_INET, ('127.0.0.1', 8080))"), seen: "connect"},
	}

	agent := startRulesAgent(t, config, store)
	start := time.Now()
	for i := range cases {
		c := &cases[i]
		c.name = c.rule + "-" + c.name // the container name, unique across rules
		rulesMustRun(t, rulesChild(t, parentDir, c.name), c.argv...)
	}
	rulesSentinel(t, agent, parentDir, "zz-sentinel")
	end := time.Now()

	// Nothing but containers alerts, and every alert of this test's containers
	// carries the static container's identity.
	for _, al := range agent.alerts(t) {
		if al.field("container.id") == "" || al.field("cagewatch.runtime") == "host" {
			t.Errorf("alert for a host process: %s %v", al.Rule, al.OutputFields)
		}
	}

	priorities := rulesPriorities(t)
	var ruleIDs []string
	for _, c := range cases {
		if !slices.Contains(ruleIDs, c.rule) {
			ruleIDs = append(ruleIDs, c.rule)
		}
	}
	for _, rule := range ruleIDs {
		t.Run(rule, func(t *testing.T) {
			for _, c := range cases {
				if c.rule != rule {
					continue
				}
				verb := "ignores"
				if c.fires {
					verb = "fires"
				}
				t.Run(verb+"/"+strings.TrimPrefix(c.name, c.rule+"-"), func(t *testing.T) {
					got := agent.alertsOf(t, c.name)
					if !c.fires {
						for _, al := range got {
							t.Errorf("benign %q raised %s: %s", c.argv[len(c.argv)-1], al.Rule, al.Output)
						}
						if c.seen != "" && !agent.sawEvent(c.name, c.seen) {
							t.Errorf("the agent never saw the %s event of the benign action, so the rules were not tested", c.seen)
						}
						return
					}
					want := append([]string{c.rule}, c.also...)
					sort.Strings(want)
					if ids := rulesRuleSet(got); !slices.Equal(ids, want) {
						t.Errorf("rules fired %v, want exactly %v", ids, want)
					}
					i := slices.IndexFunc(got, func(al rulesAlert) bool { return al.Rule == c.rule && al.field("evt.type") == c.evt })
					if i < 0 {
						t.Fatalf("no %s alert with evt.type %s; alerts of the container: %v", c.rule, c.evt, got)
					}
					rulesCheckAlert(t, got[i], c, priorities[c.rule], parent, start, end)
				})
			}
		})
	}
}

// rulesCheckAlert checks one alert's Falco fields against the case.
func rulesCheckAlert(t *testing.T, al rulesAlert, c ruleCase, priority, parent string, start, end time.Time) {
	t.Helper()
	want := map[string]string{
		"container.id":               c.name,
		"container.name":             c.name,
		"container.image.repository": "e2e/rules",
		"container.image.tag":        "1",
		"cagewatch.runtime":          "static",
		"cagewatch.cgroup":           "/" + parent + "/" + c.name,
		"evt.type":                   c.evt,
		"proc.name":                  c.proc,
	}
	for k, v := range c.fields {
		want[k] = v
	}
	for k, v := range want {
		if got := al.field(k); got != v {
			t.Errorf("output_fields[%q] = %q, want %q", k, got, v)
		}
	}
	if pid := al.field("proc.pid"); pid == "" || pid == "0" {
		t.Errorf("proc.pid = %q", pid)
	}
	if al.Priority != priority || al.Source != "syscall" || len(al.Tags) == 0 {
		t.Errorf("priority %q source %q tags %v, want priority %q, source syscall and the rule's tags", al.Priority, al.Source, al.Tags, priority)
	}
	if al.Time.Before(start.Add(-time.Second)) || al.Time.After(end.Add(time.Second)) {
		t.Errorf("time %v outside the test's run %v..%v", al.Time, start, end)
	}
	if !strings.Contains(al.Output, "container="+c.name) || !strings.Contains(al.Output, "image=e2e/rules:1") {
		t.Errorf("output %q does not name the container and image", al.Output)
	}
}

// TestBPFRuleExecDrift learns which binaries the image runs (learn mode), promotes
// the baseline, then checks a detect-mode agent: a binary never executed while
// learning fires exec_drift, a learned one does not, and nothing drifts before
// the baseline is stable.
func TestBPFRuleExecDrift(t *testing.T) {
	requireRoot(t)
	rulesRequireTools(t)
	bin := cagewatchBinary(t)
	scratch := t.TempDir()
	store := filepath.Join(scratch, "store", "cagewatch.db")
	parent, parentDir := rulesParent(t, "cagewatch-drift")
	body := fmt.Sprintf(`
window: 1s
store: %s
learning: {ignore_first: 0s, min_windows: 1000}
containers:
  static: [{cgroup: "/%s/*", image: "e2e/rules:1"}]
`, store, parent)
	learnConfig := rulesConfig(t, "mode: learn\n"+body, nil, nil)
	detectConfig := rulesConfig(t, "mode: detect\n"+body, nil, nil)
	const image = "e2e/rules:1"
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	id, err := exec.LookPath("id")
	if err != nil {
		t.Fatal(err)
	}

	// Learn: the image runs cat and true, and a busy loop gives it windows.
	learner := startRulesAgent(t, learnConfig, store)
	learnDir := rulesChild(t, parentDir, "learn-1")
	busy, closeFD := rulesCommand(t, learnDir, []string{os.Args[0], "-test.run=^$"})
	busy.Env = append(os.Environ(), "CAGEWATCH_CLI_HELPER=getppid-loop")
	err = busy.Start()
	closeFD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Process.Kill(); _ = busy.Wait() })
	rulesMustRun(t, learnDir, cat, "/etc/hostname")
	rulesMustRun(t, learnDir, "true")
	var learned struct {
		State    string            `json:"state"`
		Windows  uint64            `json:"windows"`
		Binaries map[string]uint64 `json:"binaries"`
	}
	rulesPoll(t, learner, 20*time.Second, "the learner to record the binaries and two windows", func() bool {
		out, err := exec.Command(bin, "--config", learnConfig, "baseline", "show", image, "--json").Output()
		if err != nil || json.Unmarshal(out, &learned) != nil {
			return false
		}
		return learned.Windows >= 2 && learned.Binaries[cat] > 0
	})
	if learned.State != "learning" || learned.Binaries[id] != 0 {
		t.Fatalf("learned baseline: state %q binaries %v (want learning, without %s)", learned.State, learned.Binaries, id)
	}
	_ = busy.Process.Kill()
	learner.stop()

	detector := startRulesAgent(t, detectConfig, store)
	// Before promotion: id, then a ptrace attempt whose alert proves the
	// container's events (its execs among them) were handled.
	unstable := rulesChild(t, parentDir, "drift-unstable")
	rulesMustRun(t, unstable, id)
	rulesMustRun(t, unstable, rulesPy("sc(101, 16, 0x3fffffff, 0, 0)")...)
	detector.waitAlert(t, "drift-unstable", "ptrace")
	if out := string(cli(t, bin, "--config", detectConfig, "baseline", "promote", image)); !strings.Contains(out, "stable") {
		t.Fatalf("promote: %s", out)
	}
	newBinary := rulesChild(t, parentDir, "drift-new-binary")
	rulesMustRun(t, newBinary, id)
	learnedBinary := rulesChild(t, parentDir, "drift-learned-binary")
	rulesMustRun(t, learnedBinary, cat, "/etc/hostname")
	rulesSentinel(t, detector, parentDir, "sentinel-2")

	drift := func(name string) []rulesAlert {
		var out []rulesAlert
		for _, al := range detector.alertsOf(t, name) {
			if al.Rule == "exec_drift" {
				out = append(out, al)
			}
		}
		return out
	}
	t.Run("ignores/before-stable", func(t *testing.T) {
		if got := drift("drift-unstable"); len(got) > 0 {
			t.Errorf("exec_drift while the baseline was still learning: %s", got[0].Output)
		}
	})
	t.Run("fires/binary-not-in-baseline", func(t *testing.T) {
		got := drift("drift-new-binary")
		if len(got) != 1 {
			t.Fatalf("%d exec_drift alerts, want 1: %v", len(got), got)
		}
		al := got[0]
		for k, v := range map[string]string{
			"container.id": "drift-new-binary", "container.name": "drift-new-binary",
			"container.image.repository": "e2e/rules", "container.image.tag": "1",
			"evt.type": "execve", "proc.name": "id", "proc.exepath": id, "fd.name": id, "proc.cmdline": id,
		} {
			if g := al.field(k); g != v {
				t.Errorf("output_fields[%q] = %q, want %q", k, g, v)
			}
		}
		if al.Priority != "Warning" {
			t.Errorf("priority %q", al.Priority)
		}
	})
	t.Run("ignores/learned-binary", func(t *testing.T) {
		if got := drift("drift-learned-binary"); len(got) > 0 {
			t.Errorf("exec_drift for %s, which the baseline learned: %s", cat, got[0].Output)
		}
	})
}

// TestBPFRuncInitDoesNotAlert starts a real container: runc's own setup inside it
// (namespaces, mounts, pivot_root, keyrings, capabilities) is seen by the agent and
// must not alert, while the same agent does alert on the workload of a container.
func TestBPFRuncInitDoesNotAlert(t *testing.T) {
	requireRoot(t)
	dockerAvailable(t)
	scratch := t.TempDir()
	store := filepath.Join(scratch, "store", "cagewatch.db")
	config := rulesConfig(t, fmt.Sprintf("mode: detect\nwindow: 1s\nstore: %s\n", store), nil, nil)
	agent := startRulesAgent(t, config, store)

	name := fmt.Sprintf("cagewatch-runc-%d", os.Getpid())
	cidFile := filepath.Join(scratch, "cid")
	if out, err := exec.Command("docker", "run", "--rm", "--name", name, "--cidfile", cidFile, "cagewatch/busybox:1", "true").CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(cidFile)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(raw))
	// Control: a container trying to read /etc/shadow (the image has none: the
	// attempt counts) alerts, with the Docker identity.
	control := name + "-control"
	if out, err := exec.Command("docker", "run", "--rm", "--name", control, "cagewatch/busybox:1", "sh", "-c", "cat /etc/shadow; true").CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	al := agent.waitAlert(t, control, "sensitive_file")
	if al.field("container.image.repository") != "cagewatch/busybox" || al.field("container.image.tag") != "1" ||
		len(al.field("container.id")) != 64 || al.field("proc.name") != "cat" || al.field("cagewatch.runtime") != "docker" {
		t.Errorf("control alert fields: %v", al.OutputFields)
	}
	time.Sleep(200 * time.Millisecond)

	for _, al := range agent.alerts(t) {
		if al.field("container.id") == id || al.field("container.name") == name {
			t.Errorf("alert from the container's start: %s (proc %s): %s", al.Rule, al.field("proc.name"), al.Output)
		}
	}
	// The agent did see runc's setup in that container (so the silence is a decision).
	var runcEvents int
	for _, line := range strings.Split(agent.stderr.String(), "\n") {
		if strings.Contains(line, "msg=event ") && strings.Contains(line, "comm=runc:[") &&
			(strings.Contains(line, " container="+name+" ") || strings.Contains(line, " container="+id[:12]+" ")) {
			runcEvents++
		}
	}
	if runcEvents == 0 {
		t.Errorf("no runc init event of container %s in the agent's debug log", name)
	}
	t.Logf("%d runc init events from %s, no alert", runcEvents, name)
}

// killedBySIGKILL fails the test unless a command's err says SIGKILL ended it.
func killedBySIGKILL(t *testing.T, err error, out string) {
	t.Helper()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("not killed: err %v, output %q", err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("exit %v, want death by SIGKILL (output %q)", exit, out)
	}
}

// TestBPFEnforceKillsReleaseAgentWrite runs the agent in enforce mode: in a
// running container, opening a file named release_agent for writing is killed at
// syscall entry (the write never happens), reading it is not, and the alert says
// the process was killed.
func TestBPFEnforceKillsReleaseAgentWrite(t *testing.T) {
	requireRoot(t)
	rulesRequireTools(t)
	scratch := t.TempDir()
	store := filepath.Join(scratch, "store", "cagewatch.db")
	parent, parentDir := rulesParent(t, "cagewatch-enforce")
	config := rulesConfig(t, fmt.Sprintf(`
mode: enforce
window: 1s
store: %s
containers:
  static: [{cgroup: "/%s/*", image: "e2e/enforce:1"}]
`, store, parent), nil, nil)
	releaseAgent := filepath.Join(scratch, "release_agent")
	const original = "original content\n"
	if err := os.WriteFile(releaseAgent, []byte(original), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := startRulesAgent(t, config, store)

	// A running container: a busy process, seen in a few windows.
	app := rulesChild(t, parentDir, "app")
	busy, closeFD := rulesCommand(t, app, []string{os.Args[0], "-test.run=^$"})
	busy.Env = append(os.Environ(), "CAGEWATCH_CLI_HELPER=getppid-loop")
	err := busy.Start()
	closeFD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Process.Kill(); _ = busy.Wait() })
	windows := strings.Count(agent.stderr.String(), "msg=window")
	rulesPoll(t, agent, 10*time.Second, "two windows with the container running", func() bool {
		return strings.Count(agent.stderr.String(), "msg=window") >= windows+2
	})

	unchanged := func(t *testing.T) {
		t.Helper()
		if got, err := os.ReadFile(releaseAgent); err != nil || string(got) != original {
			t.Errorf("release_agent now holds %q (err %v), want %q unchanged", got, err, original)
			_ = os.WriteFile(releaseAgent, []byte(original), 0o600)
		}
	}

	t.Run("appending write is killed before it writes", func(t *testing.T) {
		out, err := rulesRun(t, app, "/bin/sh", "-c", fmt.Sprintf("echo pwned >> %s; echo survived", releaseAgent))
		killedBySIGKILL(t, err, out)
		if strings.Contains(out, "survived") {
			t.Errorf("the shell went on after the open: %q", out)
		}
		unchanged(t)
		al := agent.waitAlert(t, "app", "cgroup_escape")
		for k, v := range map[string]string{"cagewatch.action": "killed", "container.name": "app", "proc.name": "sh",
			"fd.name": releaseAgent, "evt.type": "openat", "container.image.repository": "e2e/enforce"} {
			if g := al.field(k); g != v {
				t.Errorf("output_fields[%q] = %q, want %q", k, g, v)
			}
		}
	})
	t.Run("truncating write to a real release_agent is killed and the agent path stays", func(t *testing.T) {
		// The CVE-2022-0492 target: release_agent of a cgroup v1 hierarchy (a named
		// one of the test's own, never the host's controllers). The open runs
		// before the kill lands, but cgroupfs ignores O_TRUNC, so the value stays.
		dir := filepath.Join(scratch, "cgv1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("cwenforce%d", os.Getpid())
		if out, err := exec.Command("mount", "-t", "cgroup", "-o", "none,name="+name, "cgroup", dir).CombinedOutput(); err != nil {
			sensortest.SkipOrFail(t, "a named cgroup v1 hierarchy", "mounting one: %v %s", err, out)
		}
		defer func() { _ = exec.Command("umount", dir).Run() }()
		agentFile := filepath.Join(dir, "release_agent")
		const safe = "/bin/true"
		if err := os.WriteFile(agentFile, []byte(safe), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := rulesRun(t, app, "/bin/sh", "-c", fmt.Sprintf("echo %s/pwned > %s; echo survived", scratch, agentFile))
		killedBySIGKILL(t, err, out)
		if got, err := os.ReadFile(agentFile); err != nil || strings.TrimSpace(string(got)) != safe {
			t.Errorf("release_agent now %q (err %v), want %q", got, err, safe)
		}
	})
	// Other kill rules: the caller dies, and what it meant to run next never runs.
	marker := filepath.Join(scratch, "marker")
	for _, k := range []struct {
		name, rule string
		argv       []string
	}{
		{name: "unshare", rule: "ns_unshare", argv: []string{"unshare", "-U", "/bin/sh", "-c", "echo ran > " + marker}},
		{name: "clone3 into a new namespace", rule: "ns_clone",
			argv: rulesPy(fmt.Sprintf("args = (ctypes.c_uint64 * 11)()\nargs[0] = 0x04000000\nargs[4] = 17\n"+
				"pid = sc(435, ctypes.byref(args), 88)\nif pid == 0:\n    open(%q, 'w').write('child ran')\n    os._exit(0)\n"+
				"open(%q, 'a').write('parent ran')", marker, marker))},
		{name: "sensitive file read", rule: "sensitive_file", argv: []string{"cat", "/etc/shadow"}},
	} {
		t.Run(k.name+" is killed", func(t *testing.T) {
			out, err := rulesRun(t, app, k.argv...)
			killedBySIGKILL(t, err, out)
			if k.rule == "sensitive_file" && strings.Contains(out, "root:") {
				t.Errorf("the shadow file was read: %q", out)
			}
			time.Sleep(100 * time.Millisecond) // a surviving child would have written by now
			if got, err := os.ReadFile(marker); err == nil {
				t.Errorf("after the kill something still ran: marker holds %q", got)
				os.Remove(marker)
			}
			if al := agent.waitAlert(t, "app", k.rule); al.field("cagewatch.action") != "killed" {
				t.Errorf("%s alert: cagewatch.action = %q, want killed", k.rule, al.field("cagewatch.action"))
			}
		})
	}
	t.Run("read is not killed", func(t *testing.T) {
		out, err := rulesRun(t, app, "cat", releaseAgent)
		if err != nil || out != original {
			t.Errorf("cat release_agent: err %v output %q, want %q", err, out, original)
		}
		unchanged(t)
	})
	t.Run("alert-only rule is not killed", func(t *testing.T) {
		before := len(agent.alertsOf(t, "app"))
		if out, err := rulesRun(t, app, rulesPy("sc(101, 16, 0x3fffffff, 0, 0)\nprint('alive')")...); err != nil || !strings.Contains(out, "alive") {
			t.Errorf("ptrace (action alert) in enforce mode: err %v output %q", err, out)
		}
		al := agent.waitAlert(t, "app", "ptrace")
		if al.field("cagewatch.action") != "" {
			t.Errorf("ptrace alert says cagewatch.action=%q", al.field("cagewatch.action"))
		}
		if after := len(agent.alertsOf(t, "app")); after <= before {
			t.Errorf("no new alert from app")
		}
	})
	t.Run("first action of a process joining a new container is killed", func(t *testing.T) {
		// The process moves itself into a fresh container cgroup and opens at once:
		// no earlier event of that cgroup can have warned user space.
		fresh := rulesChild(t, parentDir, "fresh")
		cmd := exec.Command(rulesPython, "-S", "-c", fmt.Sprintf(
			"import os\nopen(%q, 'w').write(str(os.getpid()))\nfd = os.open(%q, os.O_WRONLY)\nos.write(fd, b'pwned')\nprint('survived')",
			filepath.Join(fresh, "cgroup.procs"), releaseAgent))
		out, err := cmd.CombinedOutput()
		killedBySIGKILL(t, err, string(out))
		unchanged(t)
	})
	t.Run("docker entrypoint writing release_agent is killed", func(t *testing.T) {
		if err := exec.Command("docker", "info").Run(); err != nil {
			if os.Getenv("CAGEWATCH_REQUIRE_DOCKER") != "" {
				t.Fatalf("CAGEWATCH_REQUIRE_DOCKER is set but docker info fails: %v", err)
			}
			t.Skip("docker daemon not running")
		}
		name := fmt.Sprintf("cagewatch-enforce-%d", os.Getpid())
		out, err := exec.Command("docker", "run", "--rm", "--name", name, "cagewatch/busybox:1",
			"sh", "-c", "echo pwned > /tmp/release_agent; echo survived").CombinedOutput()
		if !strings.Contains(string(out), "survived") && err != nil {
			if exit, ok := err.(*exec.ExitError); ok && exit.ExitCode() == 137 {
				return // SIGKILL, as docker reports it
			}
		}
		t.Errorf("container not killed: err %v, output %q", err, out)
	})
}

// TestBPFRulesReloadOnSIGHUP edits the rules file under a running agent: disabling
// ptrace and sending SIGHUP silences it; broken files are refused with a message
// naming the rule and field, the previous rules stay, and the agent keeps running.
func TestBPFRulesReloadOnSIGHUP(t *testing.T) {
	requireRoot(t)
	rulesRequireTools(t)
	scratch := t.TempDir()
	store := filepath.Join(scratch, "store", "cagewatch.db")
	parent, parentDir := rulesParent(t, "cagewatch-reload")
	rulesFile := filepath.Join(scratch, "rules.yaml")
	shipped := string(configs.DefaultRulesYAML)
	if err := os.WriteFile(rulesFile, []byte(shipped), 0o600); err != nil {
		t.Fatal(err)
	}
	config := rulesConfig(t, fmt.Sprintf(`
mode: detect
window: 1s
store: %s
rules: %s
containers:
  static: [{cgroup: "/%s/*", image: "e2e/rules:1"}]
`, store, rulesFile, parent), nil, nil)
	total := len(rulesPriorities(t))
	agent := startRulesAgent(t, config, store)

	// editPtrace rewrites the ptrace rule's match line (which must exist once).
	const ptraceMatch = "    match: {syscalls: [ptrace]}\n"
	if strings.Count(shipped, ptraceMatch) != 1 {
		t.Fatalf("configs/rules.yaml no longer has the line %q once", ptraceMatch)
	}
	editPtrace := func(extra string) string { return strings.Replace(shipped, ptraceMatch, extra+ptraceMatch, 1) }
	reload := func(t *testing.T, content, wantLog string) string {
		t.Helper()
		if err := os.WriteFile(rulesFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(agent.stderr.String(), wantLog)
		if err := agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		var line string
		rulesPoll(t, agent, 10*time.Second, "the agent to log "+wantLog, func() bool {
			lines := strings.Split(agent.stderr.String(), "\n")
			n := 0
			for _, l := range lines {
				if strings.Contains(l, wantLog) {
					if n++; n > before {
						line = l
						return true
					}
				}
			}
			return false
		})
		return line
	}
	// ptraceIn tries ptrace in a new container, then reads /etc/shadow there as a
	// sentinel, and returns the container's alerts once the sentinel's is in.
	step := 0
	ptraceIn := func(t *testing.T) []rulesAlert {
		t.Helper()
		step++
		name := fmt.Sprintf("step-%d", step)
		dir := rulesChild(t, parentDir, name)
		rulesMustRun(t, dir, rulesPy("sc(101, 16, 0x3fffffff, 0, 0)")...)
		rulesMustRun(t, dir, "cat", "/etc/shadow")
		agent.waitAlert(t, name, "sensitive_file")
		time.Sleep(200 * time.Millisecond)
		return agent.alertsOf(t, name)
	}
	hasPtrace := func(as []rulesAlert) bool {
		return slices.ContainsFunc(as, func(a rulesAlert) bool { return a.Rule == "ptrace" })
	}

	t.Run("shipped rules: ptrace fires", func(t *testing.T) {
		if !hasPtrace(ptraceIn(t)) {
			t.Error("no ptrace alert with the shipped rules")
		}
	})
	t.Run("ptrace disabled and SIGHUP: silent", func(t *testing.T) {
		line := reload(t, editPtrace("    enabled: false\n"), `msg="rules reloaded"`)
		if !strings.Contains(line, fmt.Sprintf("rules=%d", total-1)) {
			t.Errorf("reload log %q, want rules=%d", line, total-1)
		}
		if hasPtrace(ptraceIn(t)) {
			t.Error("ptrace fired after it was disabled and the rules reloaded")
		}
	})
	broken := []struct {
		name    string
		content string
		field   string
	}{
		// Both re-enable ptrace: were the broken file half applied, ptrace would fire.
		{name: "unknown field", content: editPtrace("    severity: high\n"), field: "severity"},
		{name: "invalid priority", content: strings.Replace(editPtrace(""), "process used ptrace\n    priority: Warning", "process used ptrace\n    priority: Loud", 1), field: "priority"},
	}
	for _, b := range broken {
		t.Run("broken file refused: "+b.name, func(t *testing.T) {
			if b.content == shipped {
				t.Fatal("the broken file is the shipped one: the edit did not apply")
			}
			line := reload(t, b.content, "rules reload refused")
			if !strings.Contains(line, "ptrace") {
				t.Errorf("refusal does not name the rule ptrace: %s", line)
			}
			if !strings.Contains(line, b.field) {
				t.Errorf("refusal does not name the field %s: %s", b.field, line)
			}
			if agent.exited() {
				t.Fatalf("the agent exited after a broken rules file: %v", agent.cmd.ProcessState)
			}
			if hasPtrace(ptraceIn(t)) {
				t.Error("ptrace fired: the broken file replaced the rules in force (ptrace disabled)")
			}
		})
	}
	t.Run("fixed file reloads: ptrace fires again", func(t *testing.T) {
		line := reload(t, shipped, `msg="rules reloaded"`)
		if !strings.Contains(line, fmt.Sprintf("rules=%d", total)) {
			t.Errorf("reload log %q, want rules=%d", line, total)
		}
		if !hasPtrace(ptraceIn(t)) {
			t.Error("no ptrace alert after the shipped rules were reloaded")
		}
	})
}

// TestBPFEnforceFromTheFirstSyscall: static containers directly below the
// cgroup root, with no enforced parent, are under the kill policy from their
// first syscall, whether their cgroup existed before the agent started or was
// created a moment before the write, and so are their sub-cgroups. A host
// cgroup beside them is not.
func TestBPFEnforceFromTheFirstSyscall(t *testing.T) {
	requireRoot(t)
	rulesRequireTools(t)
	scratch := t.TempDir()
	store := filepath.Join(scratch, "store", "cagewatch.db")
	prefix := fmt.Sprintf("cwroot%d-", os.Getpid())
	releaseAgent := filepath.Join(scratch, "release_agent")
	const original = "original content\n"
	if err := os.WriteFile(releaseAgent, []byte(original), 0o600); err != nil {
		t.Fatal(err)
	}
	cgroup := func(name string) string { return rulesChild(t, cgroup2Root, name) }
	existing := cgroup(prefix + "old")
	config := rulesConfig(t, fmt.Sprintf(`
mode: enforce
window: 1s
store: %s
containers:
  static: [{cgroup: "/%s*", image: "e2e/enforce:1"}]
`, store, prefix), nil, nil)
	startRulesAgent(t, config, store)

	// The process moves itself into the cgroup and writes at once: no exec in
	// the cgroup, so no event can have warned user space first.
	joinAndWrite := func(dir string) (string, error) {
		cmd := exec.Command(rulesPython, "-S", "-c", fmt.Sprintf(
			"import os\nopen(%q, 'w').write(str(os.getpid()))\nfd = os.open(%q, os.O_WRONLY|os.O_APPEND)\nos.write(fd, b'pwned')\nprint('survived')",
			filepath.Join(dir, "cgroup.procs"), releaseAgent))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tt := range []struct {
		name string
		dir  func() string
	}{
		{"a container that existed before the agent", func() string { return existing }},
		{"a container created just now", func() string { return cgroup(prefix + "new") }},
		{"a sub-cgroup created just now in a container", func() string { return cgroup(filepath.Join(prefix+"old", "sub")) }},
	} {
		t.Run(tt.name+" is killed at its first write", func(t *testing.T) {
			out, err := joinAndWrite(tt.dir())
			killedBySIGKILL(t, err, out)
			if got, err := os.ReadFile(releaseAgent); err != nil || string(got) != original {
				t.Errorf("release_agent now holds %q (err %v)", got, err)
				_ = os.WriteFile(releaseAgent, []byte(original), 0o600)
			}
		})
	}
	t.Run("a host cgroup is not enforced", func(t *testing.T) {
		out, err := joinAndWrite(cgroup(fmt.Sprintf("cwhost%d", os.Getpid())))
		if err != nil || !strings.Contains(out, "survived") {
			t.Errorf("host process: err %v output %q, want it to survive", err, out)
		}
		_ = os.WriteFile(releaseAgent, []byte(original), 0o600)
	})
}
