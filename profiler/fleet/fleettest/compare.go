package fleettest

import (
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/cagewatch/cagewatch/model"
)

// Tolerance is the relative difference a merged statistic may show against
// the same statistic learned window by window: Chan's merge of moments and
// Welford's one-at-a-time update round differently.
const Tolerance = 1e-9

// relDiff is |a-b| relative to the larger magnitude (0 when equal).
func relDiff(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

// comparer reports differences and keeps the largest relative one seen.
type comparer struct {
	t       testing.TB
	maxDiff float64
}

func (c *comparer) near(a, b float64) bool {
	d := relDiff(a, b)
	c.maxDiff = max(c.maxDiff, d)
	return d <= Tolerance
}

func (c *comparer) moments(what string, got, want model.Moments) {
	c.t.Helper()
	if got.N != want.N || !c.near(got.Mean, want.Mean) || !c.near(got.M2, want.M2) || got.Max != want.Max {
		c.t.Errorf("%s: got %+v, want %+v", what, got, want)
	}
}

// SameStatistics compares everything a baseline learns (not its convergence
// checkpoints, which a fleet takes per publish rather than per window): what
// one baseline learned window by window must equal what the fleet merged,
// within Tolerance. It returns the largest relative difference of the float
// statistics, for the test's report.
func SameStatistics(t testing.TB, got, want *model.Baseline) (maxDiff float64) {
	t.Helper()
	c := &comparer{t: t}
	if got.Windows != want.Windows || !c.near(got.Seconds, want.Seconds) {
		t.Fatalf("windows %d (%.0f s), want %d (%.0f s)", got.Windows, got.Seconds, want.Windows, want.Seconds)
	}
	if len(got.Syscalls) != len(want.Syscalls) {
		t.Errorf("%d syscalls, want %d", len(got.Syscalls), len(want.Syscalls))
	}
	for name, m := range want.Syscalls {
		c.moments("syscall "+name, got.Syscalls[name], m)
	}
	c.moments("total", got.Total, want.Total)
	c.moments("volume", got.Volume, want.Volume)
	if got.Composition.Windows != want.Composition.Windows || len(got.Composition.Shares) != len(want.Composition.Shares) {
		t.Errorf("composition: %d windows %d shares, want %d %d", got.Composition.Windows, len(got.Composition.Shares),
			want.Composition.Windows, len(want.Composition.Shares))
	}
	for name, m := range want.Composition.Shares {
		c.moments("share "+name, got.Composition.Shares[name], m)
	}
	if got.Order.Windows != want.Order.Windows || !maps.Equal(got.Order.Grams, want.Order.Grams) {
		t.Errorf("order: %d windows %d grams, want %d %d", got.Order.Windows, len(got.Order.Grams), want.Order.Windows, len(want.Order.Grams))
	}
	if !maps.Equal(got.Containers, want.Containers) || !maps.Equal(got.Binaries, want.Binaries) || !maps.Equal(got.Startup, want.Startup) {
		t.Errorf("containers/binaries/startup differ: %v %v %v, want %v %v %v", got.Containers, got.Binaries, got.Startup,
			want.Containers, want.Binaries, want.Startup)
	}
	prio := func(b *model.Baseline) []uint64 {
		var p []uint64
		for _, s := range b.Sample {
			p = append(p, s.Priority)
		}
		return p
	}
	if !slices.Equal(prio(got), prio(want)) {
		t.Errorf("calibration sample differs: %d windows, want %d", len(got.Sample), len(want.Sample))
	}
	if !got.FirstSeen.Equal(want.FirstSeen) || !got.LastSeen.Equal(want.LastSeen) {
		t.Errorf("seen %v..%v, want %v..%v", got.FirstSeen, got.LastSeen, want.FirstSeen, want.LastSeen)
	}
	return c.maxDiff
}
