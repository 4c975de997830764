package model

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchBaseline learns 300 windows of a service making busy syscalls.
func benchBaseline(busy int) (*Baseline, map[string]uint64) {
	rng := rand.New(rand.NewPCG(3, 4))
	window := func() map[string]uint64 {
		counts := make(map[string]uint64, busy)
		for i := range busy {
			counts[SyscallName(i)] = uint64(100*(i%7+1)) + uint64(rng.IntN(30))
		}
		return counts
	}
	b := NewBaseline("bench/app", "1", "")
	for i := range 300 {
		b.AddWindow(Window{
			Container: Container{ID: fmt.Sprintf("c%d", i%10)},
			Start:     time.Unix(int64(i*10), 0),
			Duration:  10 * time.Second,
			Counts:    window(),
		}, DefaultSampleSize)
	}
	return b, window()
}

// BenchmarkScore is the live scorer on one window; the agent scores every
// container's window with it.
func BenchmarkScore(b *testing.B) {
	for _, busy := range []int{20, 60, 150} {
		base, counts := benchBaseline(busy)
		cal := base.Calibration()
		b.Run(fmt.Sprintf("syscalls=%d", busy), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cal.Score(counts, nil, 10)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "windows/s")
		})
	}
}

// BenchmarkCalibrate is the threshold fit, run once per baseline change.
func BenchmarkCalibrate(b *testing.B) {
	base, _ := benchBaseline(60)
	b.ReportAllocs()
	for b.Loop() {
		base.Calibrate(1, 10)
	}
}
