package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// pacedSteady does a fixed amount of work every 100ms whatever the CPU load: the
// same syscall mix and rates in every window.
const pacedSteady = `
import os, time
fd = os.open("/etc/hostname", os.O_RDONLY)
nxt = time.monotonic()
while True:
    for _ in range(20):
        f = os.open("/etc/hostname", os.O_RDONLY); os.read(f, 64); os.close(f)
    for _ in range(100):
        os.getppid()
    nxt += 0.1
    time.sleep(max(0, nxt - time.monotonic()))
`

// pacedDifferent is a workload the image never ran: socket calls and writes.
const pacedDifferent = `
import os, socket, time
nxt = time.monotonic()
while True:
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.close()
        os.write(1, b"")
    nxt += 0.1
    time.sleep(max(0, nxt - time.monotonic()))
`

// startInCgroup runs a python program inside a cgroup v2 directory.
func startInCgroup(t *testing.T, dir, program string) *exec.Cmd {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command("python3", "-c", program)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting python3: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// pacedCgroup creates /<prefix>-<pid>/<name> under the cgroup2 mount for a paced
// python workload and returns the directory and its parent's name; python3 is
// required.
func pacedCgroup(t *testing.T, prefix, name string) (dir, parent string) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("python3"); err != nil {
		sensortest.SkipOrFail(t, "python3", "the paced workloads need it (.ci/run installs it)")
	}
	parent = fmt.Sprintf("%s-%d", prefix, os.Getpid())
	dir = filepath.Join(cgroup2Root, parent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range []string{dir, filepath.Dir(dir)} {
			for range 50 {
				if os.Remove(d) == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	return dir, parent
}

// runAgentProcess starts `cagewatch run` with stdout (alerts) and stderr (log)
// captured separately; it is killed when the test ends.
func runAgentProcess(t *testing.T, bin, config string) (cmd *exec.Cmd, stdout, log *syncBuffer) {
	t.Helper()
	stdout, log = &syncBuffer{}, &syncBuffer{}
	cmd = exec.Command(bin, "--config", config, "run")
	cmd.Stdout, cmd.Stderr = stdout, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent log (tail):\n%s", tail(log.String(), 40))
		}
	})
	return cmd, stdout, log
}

type alertLine struct {
	Time         time.Time      `json:"time"`
	Rule         string         `json:"rule"`
	OutputFields map[string]any `json:"output_fields"`
}

func alertsFrom(t *testing.T, stdout string, container string) []alertLine {
	t.Helper()
	var out []alertLine
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var a alertLine
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("stdout line is not an alert: %q", sc.Text())
		}
		if a.OutputFields["container.name"] == container {
			out = append(out, a)
		}
	}
	return out
}

// TestBPFStatisticalDetection learns a steady workload until its baseline is
// stable, checks 200 more steady windows raise no alert, then switches the mix
// and expects syscall_novel or syscall_anomaly within two windows.
func TestBPFStatisticalDetection(t *testing.T) {
	dir, parent := pacedCgroup(t, "cagewatch-stats", "app1")
	bin := cagewatchBinary(t)
	store := t.TempDir()
	const window = 250 * time.Millisecond
	config := writeConfig(t, fmt.Sprintf(`
mode: auto
window: %s
store: %s/cagewatch.db
learning: {ignore_first: 2s, min_windows: 60, stable_windows: 20}
containers:
  static: [{cgroup: "/%s/*", image: "e2e/stats:1"}]
`, window, store, parent))

	startInCgroup(t, dir, pacedSteady)
	_, stdout, log := runAgentProcess(t, bin, config)
	waitFor(t, 90*time.Second, "e2e/stats:1 to become stable", func() bool {
		return strings.Contains(log.String(), `msg="baseline stable" profile=e2e/stats:1`)
	})

	steadyFrom := time.Now()
	time.Sleep(200 * window)
	if got := alertsFrom(t, stdout.String(), "app1"); len(got) > 0 {
		t.Fatalf("%d alerts during 200 steady windows after %v; first: %s %v", len(got), steadyFrom, got[0].Rule, got[0].OutputFields["cagewatch.top"])
	}

	switched := time.Now()
	startInCgroup(t, dir, pacedDifferent)
	var first alertLine
	waitFor(t, 10*time.Second, "an alert after the workload changed", func() bool {
		for _, a := range alertsFrom(t, stdout.String(), "app1") {
			if a.Rule == "syscall_novel" || a.Rule == "syscall_anomaly" {
				first = a
				return true
			}
		}
		return false
	})
	// Within two windows of the change (plus a window for the sampler's phase).
	if latency := first.Time.Sub(switched); latency > 3*window {
		t.Errorf("%s came %v after the change, more than two windows", first.Rule, latency)
	}
	if first.OutputFields["cagewatch.score"] == nil || first.OutputFields["cagewatch.threshold"] == nil || first.OutputFields["cagewatch.top"] == nil {
		t.Errorf("statistical alert lacks score, threshold or top syscalls: %v", first.OutputFields)
	}
	t.Logf("first statistical alert %s after %v: %v", first.Rule, first.Time.Sub(switched), first.OutputFields["cagewatch.top"])
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
