package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// The churn test's images (tags of the busybox test image) and what their
// containers run: a short burst in the churned containers, the same in a loop
// in the long-lived ones that learn and in the benign pass. A sleep sets the
// loop's pace: a loop paced by its own work would run at another rate once the
// churn stops loading the CPUs, which the scorer (absolute rates, #14) takes
// for an anomaly.
var churnWorkloads = []struct{ image, burst string }{
	{"churn/app:1", "ls / >/dev/null; cat /etc/passwd >/dev/null; head -c 4096 /dev/urandom | md5sum >/dev/null"},
	{"churn/job:1", "date >/dev/null; echo job | sha256sum >/dev/null; wc -l /etc/group >/dev/null"},
}

const (
	churnCycler     = "churn/cycler:1"
	churnContainers = 300 // short containers started after the PID space wrapped
	churnParallel   = 6
	churnBenign     = 10 // short containers per image in the benign pass
	// The shipped default: a container's first seconds are start-up, neither
	// learned nor scored. A short container ends within them.
	churnIgnoreFirst = 10 * time.Second
)

// TestChurn runs the agent in auto mode through container churn on a host
// whose PIDs wrap, as pid_max 32768 makes them wrap within minutes on a busy
// node: one container exec's more short processes than pid_max, so every PID
// is handed out again, then 300 containers start while their images learn, and
// a benign pass of fresh containers follows once the images are stable. The
// container runtime's own setup (runc init reusing the PIDs of earlier
// processes) must raise nothing, nothing else may alert either, and the
// agent's memory and map entries must stay flat. Run by `make churn`.
func TestChurn(t *testing.T) {
	requireRoot(t)
	dockerAvailable(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		sensortest.SkipOrFail(t, "bpftool", "it counts the kernel maps' entries (apt-get install bpftool)")
	}
	e2eWarnOtherAgents(t)
	pidMax := readProcInt(t, "/proc/sys/kernel/pid_max")
	images := []string{churnCycler}
	for _, w := range churnWorkloads {
		images = append(images, w.image)
	}
	for _, image := range images {
		if out, err := exec.Command("docker", "tag", e2eBaseImage, image).CombinedOutput(); err != nil {
			t.Fatalf("docker tag %s %s: %v\n%s", e2eBaseImage, image, err, out)
		}
	}
	t.Cleanup(func() {
		for _, image := range images {
			_ = exec.Command("docker", "rmi", image).Run() // removes the tag only
		}
	})
	rig := newE2ERig(t, "cwchurn")
	rig.buildHelper()
	names := fmt.Sprintf("cwchurn-%d", os.Getpid())
	t.Cleanup(func() { churnRemoveContainers(names) })

	dir := t.TempDir()
	// min_containers 2: the cycler's image, one container, stays learning; its
	// burst of processes is the test's tool, not a workload to score.
	agent := e2eStartAgent(t, cagewatchBinary(t), writeConfig(t, fmt.Sprintf(`mode: auto
window: 1s
store: %s/cagewatch.db
metrics: {listen: ""}
alerts: {dedup_interval: 0s, container_limit: 0}
learning: {ignore_first: %s, min_windows: 20, min_containers: 2, stable_windows: 5}
`, dir, churnIgnoreFirst)))
	pid := agent.cmd.Process.Pid
	measure := func(when string) churnCounts {
		t.Helper()
		c := churnCounts{when: when}
		c.rssKiB = readProcStatusKiB(t, pid, "VmRSS")
		c.state, _ = agent.lastWindowField("state_cgroups")
		c.procs, _ = agent.lastWindowField("state_processes")
		var err error
		if c.hist, err = e2eMapEntries(pid, "pair_slots"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var started atomic.Int64
	run := func(image, script string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		started.Add(1)
		// No network and no log: the churn is of processes and cgroups, and a
		// bridge endpoint per container would halve the rate on two CPUs.
		out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", "--log-driver", "none",
			"--label", names, image, "sh", "-c", script).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v %s", image, err, out)
		}
		return nil
	}
	churn := func(n int) {
		t.Helper()
		errs := make(chan error, n)
		sem := make(chan struct{}, churnParallel)
		var wg sync.WaitGroup
		for i := range n {
			w := churnWorkloads[i%len(churnWorkloads)]
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				errs <- run(w.image, w.burst)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("container failed: %v", err)
			}
		}
	}
	long := func(name, image, burst string) string {
		t.Helper()
		out, err := exec.Command("docker", "run", "-d", "--name", names+"-"+name, "--label", names, image,
			"sh", "-c", "while :; do "+burst+"; sleep 0.5; done").CombinedOutput()
		if err != nil {
			t.Fatalf("docker run %s: %v\n%s", image, err, out)
		}
		started.Add(1)
		return strings.TrimSpace(string(out))
	}

	// Warm up (Docker's first containers bring up its bridge), then measure.
	began := time.Now()
	churn(2 * len(churnWorkloads))
	agent.waitWindows(t, 3)
	start := measure("start")

	// 1. Learners: two long containers per image (min_containers).
	var learners []string
	for _, w := range churnWorkloads {
		for i := range 2 {
			learners = append(learners, long(fmt.Sprintf("learn-%s-%d", strings.Split(w.image, "/")[1][:3], i), w.image, w.burst))
		}
	}

	// 2. Cycle the PID space: more short exec'd processes than pid_max.
	lastPID := readProcInt(t, "/proc/sys/kernel/ns_last_pid")
	wrapped := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		prev, closed := lastPID, false
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(50 * time.Millisecond):
			}
			b, err := os.ReadFile("/proc/sys/kernel/ns_last_pid")
			if err != nil {
				continue
			}
			cur, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if cur < prev && !closed {
				close(wrapped)
				closed = true
			}
			prev = cur
		}
	}()
	defer close(stopWatch)
	cycleDone := make(chan string, 1)
	cycleStart := time.Now()
	go func() {
		out, err := exec.Command("docker", "run", "--rm", "--label", names, "-v", rig.helperDir+":/e2e-bin:ro",
			churnCycler, "/e2e-bin/e2ehelper", "spawn", strconv.Itoa(pidMax+1000)).CombinedOutput()
		if err != nil {
			out = append(out, []byte(err.Error())...)
		}
		cycleDone <- string(out)
	}()
	started.Add(1)
	var execs int
	select {
	case out := <-cycleDone:
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("PID cycle: %s", out)
		}
		execs = n
	case <-time.After(3 * time.Minute):
		t.Fatal("the PID cycle did not finish within 3 minutes")
	}
	cycleTook := time.Since(cycleStart)
	select {
	case <-wrapped:
	default:
		t.Fatalf("ns_last_pid never wrapped (from %d, pid_max %d) while %d processes ran", lastPID, pidMax, execs)
	}
	if execs < pidMax {
		t.Fatalf("the cycle exec'd %d processes, fewer than pid_max %d", execs, pidMax)
	}

	// Each image's learners leave once it is stable: their job was to teach it,
	// and a loop scored under the churn's swings of CPU load runs at rates the
	// scorer (absolute rates, #14) takes for anomalies. The benign pass below
	// is what is scored.
	learnersDone := make(chan struct{})
	stopLearners := make(chan struct{})
	go func() {
		defer close(learnersDone)
		removed := map[string]bool{}
		for len(removed) < len(churnWorkloads) {
			select {
			case <-stopLearners:
				return
			case <-time.After(250 * time.Millisecond):
			}
			log := agent.log.String()
			for i, w := range churnWorkloads {
				if !removed[w.image] && strings.Contains(log, `msg="baseline stable" profile=`+w.image) {
					removed[w.image] = true
					_ = exec.Command("docker", "rm", "-f", learners[2*i], learners[2*i+1]).Run()
				}
			}
		}
	}()

	// 3. Churn: containers start on reused PIDs while their images learn.
	churnStart := time.Now()
	churn(churnContainers / 2)
	mid := measure("middle")
	churn(churnContainers - churnContainers/2)
	churnTook := time.Since(churnStart)

	// 4. Both images stable, then a benign pass of fresh containers.
	waitFor(t, 2*time.Minute, "both images to become stable", func() bool {
		log := agent.log.String()
		for _, w := range churnWorkloads {
			if !strings.Contains(log, `msg="baseline stable" profile=`+w.image) {
				return false
			}
		}
		return true
	})
	close(stopLearners)
	<-learnersDone
	_ = exec.Command("docker", append([]string{"rm", "-f"}, learners...)...).Run()
	var benign []string
	benignStart := time.Now()
	for _, w := range churnWorkloads {
		benign = append(benign, long("benign-"+strings.Split(w.image, "/")[1][:3], w.image, w.burst))
	}
	churn(churnBenign * len(churnWorkloads))
	// The long ones past their start-up, then five scored windows of each.
	time.Sleep(time.Until(benignStart.Add(churnIgnoreFirst)))
	// Five windows of each once both run past start-up; under churn a
	// container's start-up may end a window or two later than planned.
	scoredBefore := agent.sumWindowField("scored")
	agent.waitWindows(t, 5)
	for extra := 0; extra < 5 && agent.sumWindowField("scored")-scoredBefore < 5*len(churnWorkloads); extra++ {
		agent.waitWindows(t, 1)
	}
	benignScored := agent.sumWindowField("scored") - scoredBefore
	_ = exec.Command("docker", append([]string{"rm", "-f"}, benign...)...).Run()
	if benignScored < 5*len(churnWorkloads) {
		t.Errorf("the benign pass had %d scored windows, want at least %d: it tested nothing", benignScored, 5*len(churnWorkloads))
	}

	// Let removed cgroups' final windows through, then measure.
	const slack = 8
	var end churnCounts
	deadline := time.Now().Add(20 * time.Second)
	for {
		agent.waitWindows(t, 2)
		end = measure("end")
		if (end.hist <= start.hist+slack && end.state <= start.state+slack && end.procs <= start.procs+slack) ||
			time.Now().After(deadline) {
			break
		}
	}

	alerts := agent.alerts()
	runtimeSetup := 0
	for _, a := range alerts {
		if name, _ := a.OutputFields["proc.name"].(string); strings.HasPrefix(name, "runc") {
			runtimeSetup++
		}
	}
	lost, _ := agent.lastWindowField("events_lost")
	t.Logf("churn: %d containers started in %v (the %d after the PID cycle in %v); the cycle exec'd %d processes in %v (pid_max %d); events lost %d",
		started.Load(), time.Since(began).Round(time.Second), churnContainers, churnTook.Round(time.Second),
		execs, cycleTook.Round(time.Second), pidMax, lost)
	t.Logf("alerts: %d, of them from runtime setup: %d; windows scored: %d in all, %d in the benign pass",
		len(alerts), runtimeSetup, agent.sumWindowField("scored"), benignScored)
	for _, c := range []churnCounts{start, mid, end} {
		t.Logf("%-6s agent RSS %6d KiB, histogram pair_slots entries %4d, state table cgroups %4d processes %4d",
			c.when, c.rssKiB, c.hist, c.state, c.procs)
	}
	if lost != 0 {
		t.Errorf("the agent lost %d events: a hard rule may have missed an attack", lost)
	}
	for _, a := range alerts {
		t.Errorf("false alert: %s %s (container %v, proc %v)", a.Rule, e2eExplain(a),
			a.OutputFields["container.name"], a.OutputFields["proc.name"])
	}
	for _, c := range []struct {
		what          string
		before, after int
	}{
		{"histogram pair_slots entries", start.hist, end.hist},
		{"state table cgroups", start.state, end.state},
		{"state table processes", start.procs, end.procs},
	} {
		if c.after > c.before+slack {
			t.Errorf("%s grew from %d to %d", c.what, c.before, c.after)
		}
	}
	// Flat: the second half of the churn must not need more memory than the
	// first half took (Go returns freed heap to the kernel lazily, so RSS is
	// compared against its own high-water mark, not against the idle start).
	if limit := mid.rssKiB + mid.rssKiB/5 + 4096; end.rssKiB > limit {
		t.Errorf("agent RSS grew from %d KiB halfway to %d KiB at the end (limit %d)", mid.rssKiB, end.rssKiB, limit)
	}
}

type churnCounts struct {
	when                       string
	rssKiB, hist, state, procs int
}

func churnRemoveContainers(label string) {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+label).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
	}
}

func readProcInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// readProcStatusKiB is a "kB" field of /proc/PID/status (VmRSS…).
func readProcStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
