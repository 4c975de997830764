package sensorbench

import (
	"fmt"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/profiler/sensor"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// loadTestSensor loads the sensor, or skips or fails as sensortest.SkipOrFailLoad says.
func loadTestSensor(tb testing.TB, opts sensor.Options) *sensor.Sensor {
	tb.Helper()
	s, err := sensor.Load(opts)
	sensortest.SkipOrFailLoad(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
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
// syscall, by wall clock and by the kernel's run-time statistics. Variants run
// interleaved in every round so machine noise hits them alike; the best round of
// each is reported. cmd/cagewatch-bench prints the fuller table.
func BenchmarkSysEnterOverhead(b *testing.B) {
	probes, err := LoadProbes()
	sensortest.SkipOrFailLoad(b, err)
	b.Cleanup(func() { probes.Close() })
	s := loadTestSensor(b, sensor.Options{})
	if err := s.Detach(); err != nil {
		b.Fatal(err)
	}
	stats, err := EnableRunTimeStats()
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()

	variants := []string{"none", ProbeEmpty, ProbeHistogram, ProbeEmptyRawTP, ProbeHistRawTP, ProbeHash, ProbeCgrpStorage, "sensor"}
	attach := func(name string) (io.Closer, func() (RunStats, error), error) {
		if name == "sensor" {
			if err := s.Attach(); err != nil {
				return nil, nil, err
			}
			return closerFunc(s.Detach), func() (RunStats, error) { return ProgramStats(s.SysEnterProgram()) }, nil
		}
		l, err := probes.Attach(name)
		return l, func() (RunStats, error) { return probes.Stats(name) }, err
	}
	const calls = 200_000
	best := make(map[string]float64)
	kernel := make(map[string]float64)
	for b.Loop() {
		for _, v := range variants {
			var l io.Closer
			var read func() (RunStats, error)
			var before RunStats
			if v != "none" {
				var err error
				if l, read, err = attach(v); err != nil {
					b.Fatalf("attaching %s: %v", v, err)
				}
				if before, err = read(); err != nil {
					b.Fatal(err)
				}
			}
			ns := getppidLoop(calls)
			if l != nil {
				after, err := read()
				if err != nil {
					b.Fatal(err)
				}
				l.Close()
				if cur, ok := kernel[v]; !ok || after.Sub(before).PerRun() < cur {
					kernel[v] = after.Sub(before).PerRun()
				}
			}
			if cur, ok := best[v]; !ok || ns < cur {
				best[v] = ns
			}
		}
	}
	for _, v := range variants {
		b.ReportMetric(best[v], v+"-ns/call")
	}
	for _, v := range variants[1:] {
		b.ReportMetric(kernel[v]-kernel[ProbeEmpty], v+"-kernel-added-ns/run")
	}
	b.ReportMetric(best[ProbeEmpty]-best["none"], "tp_btf-floor-ns/call")
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// BenchmarkSample measures one sampling round over N cgroups with 60 active
// syscalls each, each on two CPUs: reading the slots plus computing deltas.
func BenchmarkSample(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("cgroups=%d", n), func(b *testing.B) {
			s := loadTestSensor(b, sensor.Options{HistogramSlots: 2 * n})
			if err := s.Detach(); err != nil {
				b.Fatal(err)
			}
			seed := SeedHistograms(s, n, 60, 2)
			if err := seed(); err != nil {
				b.Fatal(err)
			}
			sampler := sensor.NewSampler(s, time.Now(), nil)
			for b.Loop() {
				b.StopTimer()
				if err := seed(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				deltas, _, err := sampler.Sample(time.Now())
				if err != nil {
					b.Fatal(err)
				}
				if len(deltas) < n {
					b.Fatalf("%d deltas, want %d", len(deltas), n)
				}
			}
		})
	}
}
