package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentProcess is `cagewatch run` as a real child process.
type agentProcess struct {
	cmd *exec.Cmd
	log *syncBuffer
}

func startAgent(t *testing.T, bin, config string) *agentProcess {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command(bin, "--config", config, "run")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProcess{cmd: cmd, log: log}
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Kill()
			_ = a.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
	return a
}

func (a *agentProcess) kill(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
}

// cli runs the built binary and returns stdout, failing the test on error.
func cli(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cagewatch %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func listBaselines(t *testing.T, bin, config string) map[string]baselineSummary {
	t.Helper()
	var rows []baselineSummary
	if err := json.Unmarshal(cli(t, bin, "--config", config, "baseline", "list", "--json"), &rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]baselineSummary{}
	for _, r := range rows {
		out[r.Image] = r
	}
	return out
}

// waitFor polls cond every 500ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestBPFLearnUntilStableSurvivesKill: a workload in a static-mapped cgroup, the
// agent learning with 1s windows, reaches stable on its own; the CLI reads it
// through the agent's socket; after SIGKILL the store still has it (±1 window),
// and a restarted agent goes on learning from there.
func TestBPFLearnUntilStableSurvivesKill(t *testing.T) {
	requireRoot(t)
	bin := cagewatchBinary(t)
	parent := fmt.Sprintf("cagewatch-learn-%d", os.Getpid())
	busyCgroup(t, parent, "app1")
	dir := t.TempDir()
	config := writeConfig(t, fmt.Sprintf(`
mode: learn
window: 1s
store: %s/store/cagewatch.db
learning: {ignore_first: 1s, min_windows: 8, stable_windows: 4}
containers:
  static: [{cgroup: "/%s/*", image: "e2e/learn:1"}]
`, dir, parent))

	agent := startAgent(t, bin, config)
	var stable baselineSummary
	waitFor(t, 60*time.Second, "e2e/learn:1 to become stable", func() bool {
		if agent.cmd.ProcessState != nil {
			t.Fatal("agent exited")
		}
		if _, err := os.Stat(filepath.Join(dir, "store", "cagewatch.sock")); err != nil {
			return false
		}
		stable = listBaselines(t, bin, config)["e2e/learn:1"]
		return stable.State == "stable"
	})
	if stable.Windows < 8 || stable.Containers != 1 || stable.Syscalls == 0 {
		t.Errorf("stable baseline %+v: want >= 8 windows from 1 container", stable)
	}
	status := string(cli(t, bin, "--config", config, "status"))
	if !strings.Contains(status, "agent: running, mode learn") || !strings.Contains(status, "e2e/learn:1: stable") {
		t.Errorf("status:\n%s", status)
	}

	before := listBaselines(t, bin, config)["e2e/learn:1"]
	agent.kill(t)
	after := listBaselines(t, bin, config)["e2e/learn:1"] // no agent: read from the file
	if after.Windows < before.Windows || after.Windows > before.Windows+1 || after.State != "stable" {
		t.Errorf("after SIGKILL: %+v, before: %+v (want the same windows ±1, still stable)", after, before)
	}
	if !strings.Contains(string(cli(t, bin, "--config", config, "status")), "agent: not running") {
		t.Error("status does not say the agent is down")
	}

	startAgent(t, bin, config)
	waitFor(t, 30*time.Second, "the restarted agent to go on learning", func() bool {
		if _, err := os.Stat(filepath.Join(dir, "store", "cagewatch.sock")); err != nil {
			return false
		}
		return listBaselines(t, bin, config)["e2e/learn:1"].Windows >= after.Windows+3
	})
}

// TestBPFSeccompProfileFromLearnedBaseline learns a real Docker container, writes
// its seccomp profile and runs the image's workload under it with Docker.
func TestBPFSeccompProfileFromLearnedBaseline(t *testing.T) {
	requireRoot(t)
	dockerAvailable(t)
	bin := cagewatchBinary(t)
	dir := t.TempDir()
	config := writeConfig(t, fmt.Sprintf("mode: learn\nwindow: 1s\nstore: %s/cagewatch.db\nlearning: {ignore_first: 1s}\n", dir))
	startAgent(t, bin, config)
	time.Sleep(time.Second) // let the agent see the container from its start

	const workload = "cat /etc/hostname >/dev/null; echo hi > /tmp/x; ls / >/dev/null; wc -c /etc/passwd >/dev/null"
	name := fmt.Sprintf("cagewatch-seccomp-%d", os.Getpid())
	if out, err := exec.Command("docker", "run", "-d", "--name", name, "cagewatch/busybox:1",
		"sh", "-c", "while true; do "+workload+"; sleep 0.2; done").CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	waitFor(t, 30*time.Second, "windows learned from the container", func() bool {
		return listBaselines(t, bin, config)["cagewatch/busybox:1"].Windows >= 5
	})

	profile := filepath.Join(dir, "seccomp.json")
	cli(t, bin, "--config", config, "seccomp", "cagewatch/busybox:1", "-o", profile)
	var p struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names []string `json:"names"`
		} `json:"syscalls"`
	}
	raw, err := os.ReadFile(profile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.DefaultAction != "SCMP_ACT_ERRNO" || len(p.Syscalls) != 1 {
		t.Fatalf("profile: %v %+v", err, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--security-opt", "seccomp="+profile, "cagewatch/busybox:1",
		"sh", "-c", workload+"; grep Seccomp: /proc/self/status; echo workload-ok").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "workload-ok") {
		t.Fatalf("workload under the learned profile: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Seccomp:\t2") {
		t.Errorf("the container did not run under a seccomp filter:\n%s", out)
	}
	// The profile is an allow-list: a syscall the image never made is refused.
	out, _ = exec.CommandContext(ctx, "docker", "run", "--rm", "--security-opt", "seccomp="+profile, "cagewatch/busybox:1",
		"sh", "-c", "unshare -m true && echo unshare-allowed || echo unshare-refused").CombinedOutput()
	if !strings.Contains(string(out), "unshare-refused") {
		t.Errorf("unshare was not refused under the learned profile:\n%s", out)
	}
}
