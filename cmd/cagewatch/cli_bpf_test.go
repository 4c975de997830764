package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

const cgroup2Root = "/sys/fs/cgroup/unified"

// TestMain doubles the test binary as a busy helper process for the CLI tests.
func TestMain(m *testing.M) {
	switch os.Getenv("CAGEWATCH_CLI_HELPER") {
	case "getppid-loop":
		for {
			for range 1000 {
				unix.Getppid()
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "getppid-getuid-loop": // the same loop with another syscall in its mix
		for {
			for range 500 {
				unix.Getppid()
				unix.Getuid()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	builtDir  string
	builtBin  string
	buildErr  error
)

// cagewatchBinary builds the command once per test run, for tests that need a
// real process (exit codes, SIGKILL).
func cagewatchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if builtDir, buildErr = os.MkdirTemp("", "cagewatch-bin-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(builtDir, "cagewatch")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// runCLI runs the cagewatch command tree in-process.
func runCLI(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errOut syncBuffer
	root := newRootCommand(&out, &errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireRoot skips or fails (sensortest.SkipOrFail) unless the test runs as
// root with cgroup v2 mounted at cgroup2Root.
func requireRoot(t *testing.T) {
	t.Helper()
	sensortest.RequireRoot(t, "BPF and cgroup creation need it")
	if _, err := os.Stat(filepath.Join(cgroup2Root, "cgroup.procs")); err != nil {
		sensortest.SkipOrFail(t, "cgroup v2", "not mounted at %s: %v", cgroup2Root, err)
	}
}

// busyCgroup starts a getppid loop in a new cgroup parent/name and returns the
// cgroup's path relative to the cgroup2 mount.
func busyCgroup(t *testing.T, parent, name string) string {
	t.Helper()
	path, _ := startBusyCgroup(t, parent, name)
	return path
}

// startBusyCgroup is busyCgroup with a stop that ends the loop before the test
// does (the cgroup stays until then).
func startBusyCgroup(t *testing.T, parent, name string) (path string, stop func()) {
	t.Helper()
	return startHelperCgroup(t, parent, name, "getppid-loop")
}

// startHelperCgroup runs the test binary as the named helper loop (TestMain)
// in a new cgroup parent/name.
func startHelperCgroup(t *testing.T, parent, name, helper string) (path string, stop func()) {
	t.Helper()
	dir := filepath.Join(cgroup2Root, parent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// One P and no preemption signals: a loop descheduled on a loaded machine
	// would otherwise make tgkill, rt_sigreturn, getpid and sched_yield now
	// and then, new syscalls that keep a baseline from converging.
	cmd.Env = append(os.Environ(), "CAGEWATCH_CLI_HELPER="+helper, "GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(func() {
		stop()
		for _, d := range []string{dir, filepath.Join(cgroup2Root, parent)} {
			for range 50 {
				if err := os.Remove(d); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	return "/" + parent + "/" + name, stop
}

func TestBPFTopOnceJSONStaticContainer(t *testing.T) {
	requireRoot(t)
	parent := fmt.Sprintf("cagewatch-e2e-%d", os.Getpid())
	cgPath := busyCgroup(t, parent, "app1")
	cfg := writeConfig(t, fmt.Sprintf("containers:\n  static:\n    - {cgroup: \"/%s/*\", image: \"e2e/app:1\"}\n", parent))

	out, stderr, err := runCLI(context.Background(), "--config", cfg, "--log-level", "warn", "top", "--once", "--json", "--window", "500ms")
	if err != nil {
		t.Fatalf("top: %v\n%s", err, stderr)
	}
	var rows []struct {
		CgroupID      uint64            `json:"cgroup_id"`
		CgroupPath    string            `json:"cgroup_path"`
		ContainerID   string            `json:"container_id"`
		ContainerName string            `json:"container_name"`
		Image         string            `json:"image"`
		Runtime       string            `json:"runtime"`
		Syscalls      map[string]uint64 `json:"syscalls"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("top --once --json is not a JSON array: %v\n%s", err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(cgroup2Root, cgPath), &st); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		if r.CgroupID != st.Ino {
			continue
		}
		found = true
		if r.CgroupPath != cgPath || r.ContainerName != "app1" || r.Image != "e2e/app:1" || r.Runtime != "static" {
			t.Errorf("row %+v, want path %s name app1 image e2e/app:1 runtime static", r, cgPath)
		}
		if r.Syscalls["getppid"] < 1000 {
			t.Errorf("getppid = %d over 500ms of a busy loop", r.Syscalls["getppid"])
		}
	}
	if !found {
		t.Fatalf("no row for cgroup %s (id %d) in %d rows", cgPath, st.Ino, len(rows))
	}
	for _, r := range rows {
		if r.Runtime == "host" && r.ContainerID != "" {
			t.Errorf("host row with a container id: %+v", r)
		}
	}
}

// dockerAvailable skips (or fails under CAGEWATCH_REQUIRE_DOCKER) without a daemon.
func dockerAvailable(t *testing.T) {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CAGEWATCH_REQUIRE_DOCKER") != "" {
			t.Fatalf("CAGEWATCH_REQUIRE_DOCKER is set but docker info fails: %v", err)
		}
		t.Skip("docker daemon not running (.ci/dockerd.sh start)")
	}
}

func TestBPFDockerContainerInTopAndEvents(t *testing.T) {
	requireRoot(t)
	dockerAvailable(t)
	name := fmt.Sprintf("cagewatch-test-%d", os.Getpid())
	run := exec.Command("docker", "run", "-d", "--name", name, "cagewatch/busybox:1",
		"sh", "-c", "while true; do cat /etc/shadow >/dev/null; sleep 0.1; done")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var events syncBuffer
	done := make(chan error, 1)
	go func() {
		root := newRootCommand(&events, &bytes.Buffer{})
		root.SetArgs([]string{"events", "--json", "--containers-only", "--log-level", "warn"})
		done <- root.ExecuteContext(ctx)
	}()

	topOut, stderr, err := runCLI(ctx, "--log-level", "warn", "top", "--once", "--json", "--window", "1s")
	if err != nil {
		t.Fatalf("top: %v\n%s", err, stderr)
	}
	var rows []topRow
	if err := json.Unmarshal([]byte(topOut), &rows); err != nil {
		t.Fatal(err)
	}
	var row *topRow
	for i := range rows {
		if rows[i].ContainerID == id {
			row = &rows[i]
		}
	}
	if row == nil {
		t.Fatalf("container %s not in top output:\n%s", id, topOut)
	}
	if row.ContainerName != name || row.Image != "cagewatch/busybox:1" || row.Runtime != model.RuntimeDocker || row.CgroupPath != "/docker/"+id {
		t.Errorf("top row %+v", *row)
	}

	// The events command sees the container's /etc/shadow reads with its identity.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ev, ok := findEvent(events.String(), func(e model.Event) bool {
			return e.Container.ID == id && e.Syscall == "openat" && e.Path == "/etc/shadow"
		}); ok {
			if ev.Container.Name != name || ev.Container.Image != "cagewatch/busybox" || ev.Container.ImageTag != "1" || !strings.HasPrefix(ev.Container.ImageID, "sha256:") {
				t.Errorf("event container %+v", ev.Container)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /etc/shadow event from the container; events output:\n%.2000s", events.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("events: %v", err)
	}
}

func findEvent(jsonLines string, match func(model.Event) bool) (model.Event, bool) {
	sc := bufio.NewScanner(strings.NewReader(jsonLines))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e model.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && match(e) {
			return e, true
		}
	}
	return model.Event{}, false
}

// TestCLIErrorsAreOneLine builds the binary and checks a user's view of bad input:
// non-zero exit, one line on stderr naming the key, before any BPF is loaded.
func TestCLIErrorsAreOneLine(t *testing.T) {
	bin := cagewatchBinary(t)
	tests := []struct {
		name string
		args []string
		yaml string
		want string
	}{
		{name: "unknown mode", args: []string{"run"}, yaml: "mode: watch\n", want: "config key mode"},
		{name: "malformed window", args: []string{"run"}, yaml: "window: 5q\n", want: "config key window"},
		{name: "mode flag", args: []string{"run", "--mode", "nope"}, want: "config key mode"},
		{name: "unknown flag", args: []string{"run", "--windwo", "1s"}, want: "unknown flag"},
		{name: "unknown command", args: []string{"runn"}, want: "unknown command"},
		{name: "no cgroup v2 at the configured root", args: []string{"top", "--once"}, yaml: "containers:\n  cgroup_root: /tmp\n", want: "not a cgroup2 filesystem"},
		{name: "missing BTF", args: []string{"top", "--once"}, yaml: "sensor:\n  kernel_btf: /nonexistent/vmlinux\n", want: "kernel BTF not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config", writeConfig(t, tt.yaml)}, args...)
			}
			cmd := exec.Command(bin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); err == nil || code == 0 {
				t.Fatalf("exit code %d, want non-zero", code)
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "cagewatch: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("stderr %q, want one line starting \"cagewatch: \" containing %q", msg, tt.want)
			}
		})
	}
}

// TestBPFRunSamplesAndStopsCleanly runs the agent for a few windows and stops it as
// SIGINT would (context cancel): it must log windows and return no error.
func TestBPFRunSamplesAndStopsCleanly(t *testing.T) {
	requireRoot(t)
	// Loading the sensor takes up to a second on a busy CI machine: allow time
	// for it beyond the two windows the test needs.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	store := filepath.Join(t.TempDir(), "cagewatch.db")
	_, stderr, err := runCLI(ctx, "run", "--window", "500ms", "--mode", "learn", "--store", store)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if n := strings.Count(stderr, "msg=window"); n < 2 {
		t.Errorf("%d window log lines in 4s at 500ms windows:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "mode=learn") || !strings.Contains(stderr, "msg=stopped") {
		t.Errorf("log lacks the mode flag or the clean stop:\n%s", stderr)
	}
}

// TestBPFDemo runs `cagewatch demo` as a newcomer would and checks it learned,
// caught the escape steps and the behaviour change, and cleaned up.
func TestBPFDemo(t *testing.T) {
	requireRoot(t)
	out, stderr, err := runCLI(context.Background(), "demo", "--log-level", "warn")
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out, stderr)
	}
	for _, want := range []string{"demo/web:1: stable", "ALERT [Critical] sensitive_file", "ALERT [Critical] ns_unshare",
		"ALERT [Critical] cgroup_escape", "syscall_", "Cleaned up"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(cgroup2Root, "cagewatch-demo-*")); len(matches) > 0 {
		t.Errorf("demo left cgroups behind: %v", matches)
	}
}
