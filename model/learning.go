package model

import (
	"fmt"
	"math"
	"time"
)

// Progress says how far a learning baseline is from stable.
type Progress struct {
	Windows       uint64  `json:"windows"`
	MinWindows    uint64  `json:"min_windows"`
	Containers    int     `json:"containers"`
	MinContainers int     `json:"min_containers"`
	QuietWindows  uint64  `json:"quiet_windows"` // windows since the last new syscall or binary
	StableWindows uint64  `json:"stable_windows"`
	Drift         float64 `json:"drift"` // at the last checkpoint, in standard errors
	MaxDrift      float64 `json:"max_drift"`
}

// String is the one-line summary `cagewatch status` prints.
func (p Progress) String() string {
	return fmt.Sprintf("windows %d/%d, containers %d/%d, windows without anything new %d/%d, drift %.2f (max %.2f)",
		p.Windows, p.MinWindows, p.Containers, p.MinContainers, min(p.QuietWindows, p.StableWindows), p.StableWindows, p.Drift, p.MaxDrift)
}

// Progress reports the baseline against cfg.
func (b *Baseline) Progress(cfg LearnConfig) Progress {
	return Progress{
		Windows: b.Windows, MinWindows: cfg.MinWindows,
		Containers: len(b.Containers), MinContainers: cfg.MinContainers,
		QuietWindows: b.Windows - min(b.Convergence.LastNovelty, b.Windows), StableWindows: cfg.StableWindows,
		Drift: b.Convergence.Drift, MaxDrift: cfg.MaxDrift,
	}
}

// UpdateState advances the learning state machine after new windows and reports
// whether the baseline became stable. It is driven by the data, not a clock: every
// StableWindows windows it compares each syscall's mean rate over the newest block
// of StableWindows windows with the block before (Welch's t on the two blocks'
// means and variances). The baseline is stable once it has enough windows and
// containers, nothing new appeared during the newest block, and no syscall's
// block means differ by more than MaxDrift standard errors. Comparing cumulative
// means instead would hide a slow ramp: they move less as windows pile up.
func (b *Baseline) UpdateState(cfg LearnConfig) (becameStable bool) {
	if b.State == StateStable {
		return false
	}
	stableWindows := max(cfg.StableWindows, 1)
	conv := &b.Convergence
	if b.Windows < conv.CheckpointWindows+stableWindows {
		return false
	}
	sums := b.shareSums()
	// The empty baseline is checkpoint zero, so the first comparison comes after
	// two blocks.
	compared := conv.CheckpointWindows > 0
	if conv.CheckpointWindows > 0 {
		conv.Drift = b.blockDrift(conv.PreviousSums, conv.PreviousWindows, conv.CheckpointSums, conv.CheckpointWindows, sums)
	}
	quiet := b.Windows-min(conv.LastNovelty, b.Windows) >= stableWindows
	if compared && b.judgingPrior() {
		own := b.Windows - b.Prior.Windows
		switch {
		case !quiet:
			b.rejectPrior(fmt.Sprintf("a syscall or binary the previous tag never showed, in the first %d windows", own))
			return false
		case conv.Drift > cfg.MaxDrift:
			b.rejectPrior(fmt.Sprintf("the first %d windows' syscall mix drifted %.2f from the previous tag's (max %.2f)", own, conv.Drift, cfg.MaxDrift))
			return false
		}
		b.Prior.Outcome = PriorMatched
		b.Prior.Why = fmt.Sprintf("nothing new in the first %d windows, drift %.2f (max %.2f)", own, conv.Drift, cfg.MaxDrift)
	}
	conv.PreviousWindows, conv.PreviousSums = conv.CheckpointWindows, conv.CheckpointSums
	conv.CheckpointWindows, conv.CheckpointSums = b.Windows, sums
	if compared && quiet && conv.Drift <= cfg.MaxDrift &&
		b.Windows >= cfg.MinWindows && len(b.Containers) >= cfg.MinContainers {
		b.State, b.StableAt = StateStable, b.LastSeen
		return true
	}
	return false
}

// driftFloor is the smallest within-block standard deviation assumed, relative to
// the mean: perfectly regular rates would otherwise make any change infinite.
const driftFloor = 0.01

// minPresentForVariance is how many windows of each block must make a syscall
// before their variances are compared.
const minPresentForVariance = 5

// maxDrift caps the drift so it stays a finite, encodable number.
const maxDrift = 1e9

// blockDrift compares each syscall's rates in block A (windows prevW..midW) with
// block B (midW..now): the larger of Welch's t for the means and the log ratio of
// the variances over its standard error (a jump inside block B shows as variance
// before it moves the mean). The largest over all syscalls is returned.
func (b *Baseline) blockDrift(prev map[string]RateSums, prevW uint64, mid map[string]RateSums, midW uint64, now map[string]RateSums) float64 {
	nA, nB := float64(midW-prevW), float64(b.Windows-midW)
	if nA < 2 || nB < 2 {
		return 0
	}
	var worst float64
	for name, s := range now {
		a := blockStats(prev[name], mid[name], nA)
		bb := blockStats(mid[name], s, nB)
		floor := driftFloor * math.Max(a.mean, bb.mean)
		varA, varB := math.Max(a.variance, floor*floor), math.Max(bb.variance, floor*floor)
		if varA == 0 || varB == 0 {
			continue
		}
		meanT := math.Abs(bb.mean-a.mean) / math.Sqrt(varA/nA+varB/nB)
		worst = math.Max(worst, meanT)
		// A syscall made in a few windows of one block and none of the other
		// (a checkpoint's fsync, an allocator's madvise) has no variance to
		// compare: its log ratio against the floor read as 25 standard errors.
		if s.N-mid[name].N < minPresentForVariance || mid[name].N-prev[name].N < minPresentForVariance {
			continue
		}
		varZ := math.Abs(math.Log(varB/varA)) / math.Sqrt(2/(nA-1)+2/(nB-1))
		worst = math.Max(worst, varZ)
	}
	if math.IsNaN(worst) || worst > maxDrift {
		return maxDrift // inconsistent sums (an edited import): drift, but encodable
	}
	return worst
}

type meanVar struct{ mean, variance float64 }

// blockStats are the mean and sample variance of the n windows between two sums.
func blockStats(from, to RateSums, n float64) meanVar {
	sum, sq := to.Sum-from.Sum, to.SumSq-from.SumSq
	mean := sum / n
	return meanVar{mean: mean, variance: math.Max((sq-n*mean*mean)/(n-1), 0)}
}

// shareSums are each syscall's sums of shares and squared shares over the
// composition view's windows. Convergence watches shares, not rates: a load
// that varies while learning moves every rate, and must not keep an image
// learning for ever.
func (b *Baseline) shareSums() map[string]RateSums {
	out := make(map[string]RateSums, len(b.Composition.Shares))
	for name, m := range b.Composition.Shares {
		n := float64(m.N)
		out[name] = RateSums{Sum: m.Mean * n, SumSq: m.M2 + n*m.Mean*m.Mean, N: m.N}
	}
	return out
}

// Promote marks the baseline stable by hand at the given time.
func (b *Baseline) Promote(at time.Time) {
	if b.State != StateStable {
		b.StableAt = at
	}
	b.State = StateStable
}
