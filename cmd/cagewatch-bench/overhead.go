package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cagewatch/cagewatch/profiler/sensor"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensorbench"
)

// bpftraceOneLiner is the peer the issue compares against: the same per-cgroup,
// per-syscall count, written the obvious way.
const bpftraceOneLiner = `tracepoint:raw_syscalls:sys_enter { @[cgroup, args->id] = count(); }`

// getppidLoop returns the mean wall time of n getppid calls on one OS thread.
func getppidLoop(n int) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	for range n {
		syscall.Getppid()
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// variant is one thing attached to sys_enter while the getppid loop runs.
type variant struct {
	name  string
	setup func() (stats func() (sensorbench.RunStats, error), teardown func() error, err error)
}

// measured holds one variant's figures per repetition.
type measured struct {
	wall, kernel, workload []float64
	switchNs               []float64 // the histogram's context-switch program, per run
	switchRate             []float64 // its runs per second during the loop
	openNs                 []float64 // the agent's sys_enter on an open of an unwatched path
}

// measureOverhead runs every variant in turn, rep times, interleaved: a getppid
// loop timed by wall clock (run-time statistics off, as in production) and again
// with the kernel's statistics on, plus the file workload where it matters.
func measureOverhead(o options, r *report) error {
	probes, err := sensorbench.LoadProbes()
	if err != nil {
		return err
	}
	defer func() { _ = probes.Close() }()
	probe := func(name string) func() (func() (sensorbench.RunStats, error), func() error, error) {
		return func() (func() (sensorbench.RunStats, error), func() error, error) {
			l, err := probes.Attach(name)
			if err != nil {
				return nil, nil, err
			}
			return func() (sensorbench.RunStats, error) { return probes.Stats(name) }, l.Close, nil
		}
	}
	var agent *agentProc // the current repetition's, for the switch program's figures
	variants := []variant{
		{"none", func() (func() (sensorbench.RunStats, error), func() error, error) {
			return nil, func() error { return nil }, nil
		}},
		{sensorbench.ProbeEmpty, probe(sensorbench.ProbeEmpty)},
		{sensorbench.ProbeHistogram, probe(sensorbench.ProbeHistogram)},
		{sensorbench.ProbeHash, probe(sensorbench.ProbeHash)},
		{sensorbench.ProbeCgrpStorage, probe(sensorbench.ProbeCgrpStorage)},
		{sensorbench.ProbeCountsOnly, probe(sensorbench.ProbeCountsOnly)},
		{"agent", func() (func() (sensorbench.RunStats, error), func() error, error) {
			a, err := startAgent(o, 10*time.Second, agentReadyWithin)
			if err != nil {
				return nil, nil, err
			}
			agent = a
			time.Sleep(time.Second) // past start-up: measure the agent as it runs
			return a.perSyscallStats, a.stop, nil
		}},
	}
	// The peer is optional: a bpftrace that is missing or does not start (an old
	// or odd build) is reported as skipped rather than failing the table.
	if _, err := exec.LookPath("bpftrace"); err != nil {
		r.Skipped = append(r.Skipped, "bpftrace: not installed (apt-get install bpftrace)")
	} else if _, teardown, err := startBpftrace(); err != nil {
		r.Skipped = append(r.Skipped, fmt.Sprintf("bpftrace: %v", err))
	} else if err := teardown(); err != nil {
		r.Skipped = append(r.Skipped, fmt.Sprintf("bpftrace: stopping: %v", err))
	} else {
		variants = append(variants, variant{"bpftrace", startBpftrace})
	}

	results := make(map[string]*measured)
	for _, v := range variants {
		results[v.name] = &measured{}
	}
	workDir, err := os.MkdirTemp("", "cagewatch-bench-workload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	workloadFiles := 2000
	if o.smoke {
		workloadFiles = 100
	}
	for rep := range o.reps {
		for _, v := range variants {
			stats, teardown, err := v.setup()
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			m := results[v.name]
			m.wall = append(m.wall, getppidLoop(o.calls))
			if stats != nil {
				if err := measureKernel(m, stats, o.calls, v.name == "agent", agent); err != nil {
					_ = teardown()
					return fmt.Errorf("%s statistics: %w", v.name, err)
				}
			}
			if v.name == "none" || v.name == "agent" {
				took, err := fileWorkload(workDir, workloadFiles)
				if err != nil {
					_ = teardown()
					return err
				}
				m.workload = append(m.workload, took.Seconds()*1000)
			}
			if err := teardown(); err != nil {
				return fmt.Errorf("%s: stopping: %w", v.name, err)
			}
		}
		fmt.Fprintf(os.Stderr, "  repetition %d/%d done\n", rep+1, o.reps)
	}
	reportOverhead(r, results)
	return nil
}

// measureKernel runs the getppid loop with the kernel's run-time statistics on
// and records the per-run cost of the variant's program (and, for the agent, of
// its context-switch program).
func measureKernel(m *measured, stats func() (sensorbench.RunStats, error), calls int, isAgent bool, agent *agentProc) error {
	on, err := sensorbench.EnableRunTimeStats()
	if err != nil {
		return err
	}
	defer func() { _ = on.Close() }()
	switchStats := func() (sensorbench.RunStats, error) { return sensorbench.RunStats{}, nil }
	if isAgent {
		switchStats = func() (sensorbench.RunStats, error) { return agent.programStats(sensorbench.SwitchProgramName) }
	}
	before, err := stats()
	if err != nil {
		return err
	}
	sw0, err := switchStats()
	if err != nil {
		return err
	}
	start := time.Now()
	getppidLoop(calls)
	elapsed := time.Since(start)
	after, err := stats()
	if err != nil {
		return err
	}
	sw1, err := switchStats()
	if err != nil {
		return err
	}
	m.kernel = append(m.kernel, after.Sub(before).PerRun())
	if isAgent {
		d := sw1.Sub(sw0)
		m.switchNs = append(m.switchNs, d.PerRun())
		m.switchRate = append(m.switchRate, float64(d.Runs)/elapsed.Seconds())
		// Opens are filtered on their path in the kernel: the price of a miss.
		before, err := stats()
		if err != nil {
			return err
		}
		pairs, err := openLoop(calls / 10)
		if err != nil {
			return err
		}
		after, err := stats()
		if err != nil {
			return err
		}
		m.openNs = append(m.openNs, float64(after.Sub(before).Nanos)/float64(pairs))
	}
	return nil
}

// openLoop opens and closes a file no watch list names, n times, and returns how
// many pairs it made.
func openLoop(n int) (int, error) {
	const path = "/dev/shm/cagewatch-bench-unwatched"
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return 0, err
	}
	defer func() { _ = os.Remove(path) }()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for i := range n {
		fd, err := syscall.Open(path, syscall.O_RDONLY, 0)
		if err != nil {
			return i, err
		}
		if err := syscall.Close(fd); err != nil {
			return i, err
		}
	}
	return n, nil
}

// reportOverhead turns the repetitions into rows.
func reportOverhead(r *report, res map[string]*measured) {
	const k = "per-syscall cost, kernel BPF statistics"
	empty := res[sensorbench.ProbeEmpty]
	beyond := func(name string) float64 {
		if res[name] == nil {
			return 0
		}
		return medianDifference(res[name].kernel, empty.kernel)
	}
	r.add(k, "empty tp_btf/sys_enter program (the floor)", median(empty.kernel), "ns/run", "run time as the kernel counts it", "")
	r.add(k, "cagewatch agent's sys_enter + sys_exit beyond the floor", beyond("agent"), "ns/syscall", "PRIMARY: histogram + 4-grams + rule filter + write-open check on return, agent running", "<= 25")
	r.add(k, "ratio: agent beyond the floor ÷ the floor's own run", beyond("agent")/median(empty.kernel), "×", "#14's budget: 0.3", "")
	r.add(k, "kernel memory per (cgroup, CPU) slot", float64(sensor.SlotBytes)/1024, "KiB", fmt.Sprintf("counts + %d-entry 4-gram table", sensor.GramTableEntries), "")
	r.add(k, "histogram + 4-grams alone beyond the floor", beyond(sensorbench.ProbeHistogram), "ns/syscall", "per-CPU slots, no helper call, no atomic", "")
	r.add(k, "first design: hash by cgroup id", beyond(sensorbench.ProbeHash), "ns/syscall", "2 helper calls + hash lookup + atomic add", "")
	r.add(k, "cgroup local storage per syscall", beyond(sensorbench.ProbeCgrpStorage), "ns/syscall", "helper calls + atomic add", "")
	r.add(k, "histogram without 4-grams beyond the floor", beyond(sensorbench.ProbeCountsOnly), "ns/syscall", "the counts alone", "")
	r.add(k, "4-grams' own cost (the two rows above)", beyond(sensorbench.ProbeHistogram)-beyond(sensorbench.ProbeCountsOnly), "ns/syscall", "order view: per-CPU last three syscalls + table probe", "")
	if res["bpftrace"] != nil {
		r.add(k, "bpftrace one-liner beyond the floor", beyond("bpftrace"), "ns/syscall", "tracepoint:raw_syscalls:sys_enter @[cgroup, id] = count()", "")
		if bt := beyond("bpftrace"); bt > 0 {
			r.add(k, "ratio: cagewatch ÷ bpftrace (added in-kernel cost)", beyond("agent")/bt, "×", "", "")
		}
	}
	if a := res["agent"]; len(a.openNs) > 0 {
		r.add(k, "agent's sys_enter + sys_exit time per open+close of an unwatched file", median(a.openNs), "ns/pair", "both syscalls, floor included, plus any other syscall meanwhile; the open's path is read and matched", "")
		r.add(k, "ratio: unwatched open+close ÷ the floor's own run", median(a.openNs)/median(empty.kernel), "×", "#15's goal: at most 4", "<= 4")
	}
	if a := res["agent"]; len(a.switchNs) > 0 {
		r.add(k, "agent's sched_switch program", median(a.switchNs), "ns/switch", fmt.Sprintf("%.0f switches/s during the loop; keeps each CPU's cgroup id", median(a.switchRate)), "")
	}

	const w = "getppid loop, wall clock (statistics off)"
	none := res["none"]
	added := func(name string) float64 { return medianDifference(res[name].wall, none.wall) }
	r.add(w, "nothing attached", median(none.wall), "ns/call", "", "")
	for _, name := range []string{sensorbench.ProbeEmpty, "agent", "bpftrace"} {
		if res[name] == nil {
			continue
		}
		label := map[string]string{sensorbench.ProbeEmpty: "empty tp_btf program (floor)", "agent": "cagewatch agent running", "bpftrace": "bpftrace one-liner"}[name]
		r.add(w, label, median(res[name].wall), "ns/call", fmt.Sprintf("+%.1f ns", added(name)), "")
	}
	if f := added(sensorbench.ProbeEmpty); f > 0 {
		r.add(w, "ratio: cagewatch added ÷ floor added", added("agent")/f, "×", "", "")
	}
	if res["bpftrace"] != nil {
		if bt := added("bpftrace"); bt > 0 {
			r.add(w, "ratio: cagewatch added ÷ bpftrace added", added("agent")/bt, "×", "", "")
		}
	}

	const wl = "file workload (create, write 16 KiB, stat, read, copy, rename, delete)"
	without, with := median(none.workload), median(res["agent"].workload)
	r.add(wl, "without the agent", without, "ms", "", "")
	r.add(wl, "with the agent", with, "ms", fmt.Sprintf("%+.1f%%", 100*(with-without)/without), "")
}

// medianDifference is the median over repetitions of a[i] - base[i]: differences
// within a repetition, so slow and fast rounds do not mix.
func medianDifference(a, base []float64) float64 {
	d := make([]float64, len(a))
	for i := range a {
		d[i] = a[i] - base[i]
	}
	return median(d)
}

// startBpftrace runs the one-liner until teardown, reading its program's statistics.
func startBpftrace() (func() (sensorbench.RunStats, error), func() error, error) {
	minID, err := sensorbench.HighestProgramID()
	if err != nil {
		return nil, nil, err
	}
	// bpftrace finds tracepoints through tracefs, which a fresh machine does not
	// mount: mount it in a private mount namespace, leaving the host untouched.
	// unshare and sh exec, so the process signalled below is bpftrace itself.
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || exit 1; exec bpftrace -e "$0"`,
		bpftraceOneLiner)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting bpftrace: %w", err)
	}
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if !ok && strings.HasPrefix(sc.Text(), "Attaching") {
				ok = true
				attached <- true
			}
		}
		if !ok {
			attached <- false
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	teardown := func() error {
		_ = cmd.Process.Signal(syscall.SIGINT)
		return waitQuietly(cmd)
	}
	select {
	case ok := <-attached:
		if !ok {
			_ = waitQuietly(cmd)
			return nil, nil, fmt.Errorf("bpftrace did not attach: %s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = waitQuietly(cmd)
		return nil, nil, errors.New("bpftrace did not attach within 60s")
	}
	stats := func() (sensorbench.RunStats, error) {
		st, err := sensorbench.LoadedProgramStats("sys_enter", true, minID)
		if err == nil && st.Missing {
			err = errors.New("bpftrace's program is not loaded")
		}
		return st, err
	}
	for range 100 { // "Attaching" comes just before the attach itself
		if _, err := stats(); err == nil {
			time.Sleep(100 * time.Millisecond)
			return stats, teardown, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = teardown()
	return nil, nil, errors.New("bpftrace's program never appeared")
}

// waitQuietly waits for a process stopped on purpose; its exit status is not news.
func waitQuietly(cmd *exec.Cmd) error {
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return nil
	}
	return err
}

// fileWorkload is a syscall-heavy loop over n files of 16 KiB, like an unpack or
// a build's file churn: about a dozen syscalls per file.
func fileWorkload(dir string, n int) (time.Duration, error) {
	data := make([]byte, 16<<10)
	start := time.Now()
	for i := range n {
		a := filepath.Join(dir, fmt.Sprintf("f%d", i))
		b := a + ".copy"
		if err := os.WriteFile(a, data, 0o644); err != nil {
			return 0, err
		}
		if _, err := os.Stat(a); err != nil {
			return 0, err
		}
		got, err := os.ReadFile(a)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(b, got, 0o644); err != nil {
			return 0, err
		}
		if err := os.Rename(b, a+".moved"); err != nil {
			return 0, err
		}
		if err := os.Remove(a); err != nil {
			return 0, err
		}
		if err := os.Remove(a + ".moved"); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}
