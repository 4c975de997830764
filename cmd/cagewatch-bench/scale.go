package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensorbench"
)

// childCommand makes this binary a fake container's process (see runChild).
const childCommand = "child"

// runChild is a fake container's workload:
//
//	child tick              a syscall every 100 ms until killed (an idle service)
//	child open RATE SECONDS opens /etc/shadow RATE times a second (a rule event each)
//	child serve RATE SECONDS  RATE server-like requests a second (measureOrder)
func runChild(args []string) int {
	switch {
	case len(args) == 1 && args[0] == "tick":
		for {
			syscall.Getppid()
			time.Sleep(100 * time.Millisecond)
		}
	case len(args) == 3 && args[0] == "serve":
		rate, err1 := strconv.Atoi(args[1])
		seconds, err2 := strconv.ParseFloat(args[2], 64)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "child serve RATE SECONDS")
			return 2
		}
		serveRequests(rate, time.Duration(seconds*float64(time.Second)))
		return 0
	case len(args) == 3 && args[0] == "open":
		rate, err1 := strconv.Atoi(args[1])
		seconds, err2 := strconv.ParseFloat(args[2], 64)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "child open RATE SECONDS")
			return 2
		}
		opened := paceOpens(rate, time.Duration(seconds*float64(time.Second)))
		fmt.Println(opened)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown child command", args)
	return 2
}

// paceOpens opens a watched file rate times a second (0: as fast as it can) for d.
func paceOpens(rate int, d time.Duration) int {
	path := []byte("/etc/shadow\x00")
	start := time.Now()
	done := 0
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			return done
		}
		want := done + 64
		if rate > 0 {
			want = int(elapsed.Seconds() * float64(rate))
		}
		if done >= want {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		for ; done < want; done++ {
			fd, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(0xffffff9c), // AT_FDCWD
				uintptr(unsafe.Pointer(&path[0])), syscall.O_RDONLY, 0, 0, 0)
			if errno == 0 {
				_ = syscall.Close(int(fd))
			}
		}
	}
}

// measureSampling times one sampling round over N synthetic cgroups with 60 busy
// syscalls each, each having run on every CPU (up to 4): reading the slots and
// computing deltas.
func measureSampling(o options, r *report) error {
	sizes := []int{10, 100, 1000, 10000}
	if o.smoke {
		sizes = []int{10, 100}
	}
	cpus := min(runtime.NumCPU(), 4)
	section := fmt.Sprintf("sampling one window (mmapped slots + deltas; each cgroup on %d CPUs)", cpus)
	for _, n := range sizes {
		s, err := sensor.Load(sensor.Options{HistogramSlots: n * cpus})
		if err != nil {
			return err
		}
		if err := s.Detach(); err != nil {
			s.Close()
			return err
		}
		seed := sensorbench.SeedHistograms(s, n, 60, cpus)
		sampler := sensor.NewSampler(s, time.Now(), nil)
		var took []float64
		for i := range o.reps + 1 {
			if err := seed(); err != nil {
				s.Close()
				return err
			}
			start := time.Now()
			deltas, _, err := sampler.Sample(time.Now())
			elapsed := time.Since(start)
			if err != nil || len(deltas) < n {
				s.Close()
				return fmt.Errorf("sampling %d cgroups: %d deltas, %v", n, len(deltas), err)
			}
			if i > 0 { // the first round allocates the sampler's state
				took = append(took, elapsed.Seconds()*1000)
			}
		}
		s.Close()
		target := ""
		if n == 1000 {
			target = "<= 5"
		}
		r.add(section, fmt.Sprintf("%d cgroups", n), median(took), "ms", "", target)
	}
	return nil
}

// measureAgentAtScale runs the agent over o.containers fake containers (one
// process each, a syscall every 100 ms) and reads its CPU time per window and
// its memory.
func measureAgentAtScale(o options, r *report) error {
	const section = "agent at scale"
	f, err := startFleet(o.containers, "tick", "tick")
	if err != nil {
		return err
	}
	defer f.stop()
	window := 2 * time.Second
	// A thousand Go processes starting at once keep both cores busy for a
	// minute or more (28-96 s to get ready in five runs on the 2-core VM).
	a, err := startAgent(o, window, 3*time.Minute)
	if err != nil {
		return err
	}
	defer func() { _ = a.stop() }()
	warm, measured := 3, 5
	if o.smoke {
		warm, measured = 1, 1
	}
	time.Sleep(time.Duration(warm) * window)
	before, err := a.cpuTime()
	if err != nil {
		return err
	}
	time.Sleep(time.Duration(measured) * window)
	after, err := a.cpuTime()
	if err != nil {
		return err
	}
	tracked, err := a.metric("cagewatch_containers")
	if err != nil {
		tracked = -1
	}
	mem, err := a.memory()
	if err != nil {
		return err
	}
	perWindow := float64((after - before).Milliseconds()) / float64(measured)
	r.add(section, fmt.Sprintf("agent CPU per %s window, %d containers", window, o.containers), perWindow, "ms",
		fmt.Sprintf("%.1f%% of one core; containers seen: %.0f", 100*perWindow/float64(window.Milliseconds()), tracked), "")
	target := ""
	if o.containers >= 1000 {
		target = "<= 64"
	}
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	r.add(section, fmt.Sprintf("agent RSS without BPF map pages, %d containers", o.containers), mib(mem.own()), "MiB",
		fmt.Sprintf("VmRSS %.1f MiB (peak %.1f) counts %.1f MiB of mapped BPF map pages: kernel memory, see the slots' row",
			mib(mem.rss), mib(mem.peak), mib(mem.bpfMaps)), target)
	return nil
}

// measureScoring is Go's own benchmark of model.Score on a baseline of 60
// syscalls, the live scorer, one goroutine.
func measureScoring(o options, r *report) error {
	rng := rand.New(rand.NewPCG(3, 4))
	names := make([]string, 60)
	for i := range names {
		names[i] = model.SyscallName(i)
	}
	window := func() model.Window {
		counts := make(map[string]uint64, len(names))
		for i, n := range names {
			counts[n] = uint64(100*(i%7+1)) + uint64(rng.IntN(30))
		}
		return model.Window{Counts: counts, Duration: 10 * time.Second, Start: time.Unix(0, 0)}
	}
	b := model.NewBaseline("bench/app", "1", "")
	for i := range 300 {
		w := window()
		w.Container = model.Container{ID: fmt.Sprintf("c%d", i%10)}
		w.Start = time.Unix(int64(i*10), 0)
		b.AddWindow(w, model.DefaultSampleSize)
	}
	w := window()
	var perOp, allocs []float64
	cal := b.Calibration() // once per baseline version, as the agent's cache does
	for range max(o.reps, 3) {
		res := testing.Benchmark(func(tb *testing.B) {
			for tb.Loop() {
				cal.Score(w.Counts, w.Grams, w.Duration.Seconds())
			}
		})
		if res.NsPerOp() <= 0 {
			return fmt.Errorf("scoring benchmark measured nothing: %v", res)
		}
		perOp = append(perOp, float64(res.NsPerOp()))
		allocs = append(allocs, float64(res.AllocsPerOp()))
	}
	ns := median(perOp)
	r.add("scoring (model.Score, 60-syscall baseline, one goroutine)", "windows scored per second per core", 1e9/ns, "windows/s",
		fmt.Sprintf("%.1f µs and %.0f allocations per window", ns/1000, median(allocs)), ">= 100000")
	return nil
}

// measureEvents drives rule events (opens of /etc/shadow from a fake container)
// at fixed rates through a running agent and reads what it received and lost.
func measureEvents(o options, r *report) error {
	const section = "rule events through the agent (opens of /etc/shadow from a container)"
	rates := []int{10_000, 25_000, 50_000, 100_000, 0}
	seconds := 3.0
	if o.smoke {
		rates, seconds = []int{1000}, 0.5
	}
	a, err := startAgent(o, 10*time.Second, agentReadyWithin)
	if err != nil {
		return err
	}
	defer func() { _ = a.stop() }()
	best := 0.0
	for i, rate := range rates {
		ev0, err1 := a.metric("cagewatch_events_total")
		lost0, err2 := a.metric("cagewatch_events_lost_total")
		if err1 != nil || err2 != nil {
			return fmt.Errorf("reading event metrics: %v %v", err1, err2)
		}
		f, err := startFleet(1, fmt.Sprintf("events-%d", i), "open", strconv.Itoa(rate), fmt.Sprint(seconds))
		if err != nil {
			return err
		}
		start := time.Now()
		err = f.wait()
		elapsed := time.Since(start)
		f.stop()
		if err != nil {
			return fmt.Errorf("event generator: %w", err)
		}
		opened, err := strconv.Atoi(strings.TrimSpace(f.out[0].String()))
		if err != nil {
			return fmt.Errorf("event generator printed %q, want its open count", f.out[0].String())
		}
		time.Sleep(500 * time.Millisecond) // let the agent drain the ring buffer
		ev1, err1 := a.metric("cagewatch_events_total")
		lost1, err2 := a.metric("cagewatch_events_lost_total")
		if err1 != nil || err2 != nil {
			return fmt.Errorf("reading event metrics: %v %v", err1, err2)
		}
		got, lost := ev1-ev0, lost1-lost0
		achieved := float64(opened) / elapsed.Seconds()
		if got+lost < float64(opened) {
			return fmt.Errorf("%d opens but the agent counted %.0f events and %.0f lost: the sensor missed some", opened, got, lost)
		}
		label := fmt.Sprintf("offered %d/s", rate)
		if rate == 0 {
			label = "unpaced (as fast as one process can open)"
		}
		target := ""
		if rate == 50_000 {
			target = "0 lost"
		}
		r.add(section, label, lost, "lost", fmt.Sprintf("%.0f events/s generated, %d in all", achieved, opened), target)
		if lost == 0 && achieved > best {
			best = achieved
		}
	}
	r.add(section, "highest rate with no loss", best, "events/s", "", "")
	return nil
}
