package sensor

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// openBenchObjects loads bpf/bench.bpf.c, failing or skipping like loadTestSensor.
func openBenchObjects(b *testing.B) *benchObjects {
	b.Helper()
	if err := rlimit.RemoveMemlock(); err != nil {
		b.Fatal(err)
	}
	var objs benchObjects
	if err := loadBenchObjects(&objs, nil); err != nil {
		failOrSkipLoad(b, err)
	}
	b.Cleanup(func() { objs.Close() })
	return &objs
}

// getppidLoop makes n getppid calls and returns the mean time per call.
func getppidLoop(n int) float64 {
	start := time.Now()
	for range n {
		unix.Getppid()
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// BenchmarkSysEnterOverhead measures what each sys_enter program adds to a cheap
// syscall. Variants run interleaved in every round so machine noise hits them
// alike; the best round of each is reported, and the added cost relative to the
// empty tp_btf program (the attach-type floor) is the figure that matters.
func BenchmarkSysEnterOverhead(b *testing.B) {
	objs := openBenchObjects(b)
	s := loadTestSensor(b, Options{})
	// The full sensor is attached by Load; detach it so each variant runs alone.
	for _, l := range s.links {
		l.Close()
	}
	s.links = nil

	type variant struct {
		name   string
		attach func() (link.Link, error)
	}
	tracing := func(p *ebpf.Program) func() (link.Link, error) {
		return func() (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p}) }
	}
	raw := func(p *ebpf.Program) func() (link.Link, error) {
		return func() (link.Link, error) {
			return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: p})
		}
	}
	variants := []variant{
		{"none", nil},
		{"empty_tp_btf", tracing(objs.EmptyTpBtf)},
		{"hist_tp_btf", tracing(objs.HistTpBtf)},
		{"empty_raw_tp", raw(objs.EmptyRawTp)},
		{"hist_raw_tp", raw(objs.HistRawTp)},
		{"sensor_tp_btf", tracing(s.objs.SysEnter)},
		{"cgid_tp_btf", tracing(objs.CgidTpBtf)},
		{"lookup_tp_btf", tracing(objs.LookupTpBtf)},
		{"plainadd_tp_btf", tracing(objs.PlainaddTpBtf)},
	}
	const calls = 200_000
	best := make(map[string]float64)
	for b.Loop() {
		for _, v := range variants {
			var l link.Link
			if v.attach != nil {
				var err error
				if l, err = v.attach(); err != nil {
					b.Fatalf("attaching %s: %v", v.name, err)
				}
			}
			ns := getppidLoop(calls)
			if l != nil {
				l.Close()
			}
			if cur, ok := best[v.name]; !ok || ns < cur {
				best[v.name] = ns
			}
		}
	}
	for _, v := range variants {
		b.ReportMetric(best[v.name], v.name+"-ns/call")
	}
	b.ReportMetric(best["hist_tp_btf"]-best["empty_tp_btf"], "hist-added-ns/call")
	b.ReportMetric(best["hist_raw_tp"]-best["empty_raw_tp"], "hist-raw-added-ns/call")
	b.ReportMetric(best["sensor_tp_btf"]-best["empty_tp_btf"], "sensor-added-ns/call")
	b.ReportMetric(best["empty_tp_btf"]-best["none"], "tp_btf-floor-ns/call")
	b.ReportMetric(best["empty_raw_tp"]-best["none"], "raw_tp-floor-ns/call")
}

// BenchmarkSample1000Cgroups measures one sampling round over 1,000 cgroups with
// ~60 active syscalls each: batch map read plus delta computation.
func BenchmarkSample1000Cgroups(b *testing.B) {
	s := loadTestSensor(b, Options{})
	for _, l := range s.links { // keep the map to what the benchmark writes
		l.Close()
	}
	s.links = nil
	const cgroups = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, cgroups)
	vals := make([]sensorHist, cgroups)
	for i := range keys {
		keys[i] = uint64(1_000_000 + i)
		for range 60 {
			vals[i].Counts[rng.IntN(460)] = uint64(rng.IntN(1000))
		}
	}
	bump := func() {
		for i := range vals {
			for nr, c := range vals[i].Counts {
				if c > 0 {
					vals[i].Counts[nr] = c + uint64(rng.IntN(50))
				}
			}
		}
		if _, err := s.objs.SyscallHist.BatchUpdate(keys, vals, nil); err != nil {
			b.Fatal(err)
		}
	}
	bump()
	sampler := NewSampler(s, time.Now(), nil)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		bump()
		b.StartTimer()
		deltas, _, err := sampler.Sample(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if len(deltas) < cgroups {
			b.Fatalf("%d deltas, want %d", len(deltas), cgroups)
		}
	}
}
