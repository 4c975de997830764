package model

import (
	"fmt"
	"math"
)

// Progress says how far a learning baseline is from stable.
type Progress struct {
	Windows       uint64  `json:"windows"`
	MinWindows    uint64  `json:"min_windows"`
	Containers    int     `json:"containers"`
	MinContainers int     `json:"min_containers"`
	QuietWindows  uint64  `json:"quiet_windows"` // windows since the last new syscall or binary
	StableWindows uint64  `json:"stable_windows"`
	Drift         float64 `json:"drift"` // at the last checkpoint, in standard deviations
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
// StableWindows windows the means are compared with the previous checkpoint, and
// the baseline is stable once it has enough windows and containers and, over the
// last StableWindows windows, nothing new appeared and no mean moved by more than
// MaxDrift standard deviations.
func (b *Baseline) UpdateState(cfg LearnConfig) (becameStable bool) {
	if b.State == StateStable {
		return false
	}
	stableWindows := max(cfg.StableWindows, 1)
	conv := &b.Convergence
	if b.Windows < conv.CheckpointWindows+stableWindows {
		return false
	}
	means := b.means()
	conv.Drift = b.drift(conv.CheckpointMeans, means)
	quiet := b.Windows-min(conv.LastNovelty, b.Windows) >= stableWindows
	hadCheckpoint := conv.CheckpointMeans != nil
	conv.CheckpointWindows, conv.CheckpointMeans = b.Windows, means
	if hadCheckpoint && quiet && conv.Drift <= cfg.MaxDrift &&
		b.Windows >= cfg.MinWindows && len(b.Containers) >= cfg.MinContainers {
		b.State = StateStable
		return true
	}
	return false
}

// drift is the largest change of a syscall's mean rate between two checkpoints,
// in units of its current standard deviation (at least 5% of the mean, so a
// perfectly steady syscall does not make every tiny change infinite).
func (b *Baseline) drift(then, now map[string]float64) float64 {
	var worst float64
	for name, mNow := range now {
		_, std := b.SyscallStats(name)
		scale := math.Max(std, 0.05*math.Abs(mNow))
		if scale == 0 {
			continue
		}
		worst = math.Max(worst, math.Abs(mNow-then[name])/scale)
	}
	return worst
}

// Promote marks the baseline stable by hand.
func (b *Baseline) Promote() { b.State = StateStable }
