package model

import (
	"cmp"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
)

// Contribution is one syscall's part in the composition view's score.
type Contribution struct {
	Syscall  string  `json:"syscall"`
	Observed float64 `json:"observed"` // share of the window's calls
	Expected float64 `json:"expected"` // learned mean share
	Spread   float64 `json:"spread"`   // learned standard deviation (with its floor)
	Score    float64 `json:"score"`    // squared standardized deviation
	Novel    bool    `json:"novel,omitempty"`
}

// WindowScore is a window scored against its image's baseline.
type WindowScore struct {
	// Value is the combined score of the composition and order views (see
	// combine); volume is in Views but never in Value.
	Value float64            `json:"score"`
	Views []ViewScore        `json:"views,omitempty"`
	Novel []string           `json:"novel,omitempty"` // syscalls never seen in learning
	Top   []Contribution     `json:"top"`             // composition: largest contributions first
	Pairs []PairContribution `json:"pairs,omitempty"` // order: pairs rare or never seen in learning
}

// Driver is the view whose part in Value is the largest: composition or
// order. An alert names it, so its reader knows where to look first. Zero when
// neither view was scored.
func (s WindowScore) Driver() ViewScore {
	var comp, order *ViewScore
	for i, v := range s.Views {
		switch v.View {
		case ViewComposition:
			comp = &s.Views[i]
		case ViewOrder:
			order = &s.Views[i]
		}
	}
	switch {
	case comp == nil && order == nil:
		return ViewScore{}
	case order == nil:
		return *comp
	case comp == nil:
		return *order
	case order.Z >= compositionWeight*comp.Z:
		return *order
	}
	return *comp
}

// Composition scoring parameters. Shares below the mean count too (a part of
// the workload that stalled), at half weight.
const (
	relativeFloor  = 0.10
	belowWeight    = 0.5
	novelPenalty   = 16.0 // per novel syscall: one novel call outweighs 4 sd
	topContributed = 5
)

// Score scores a window against b. It is a pure function of (baseline,
// window), so recorded windows replay exactly. Scoring many windows against
// one baseline version should reuse b.Calibration().
func Score(b *Baseline, w Window) WindowScore {
	return b.Calibration().Score(w.Counts, w.Grams, w.Duration.Seconds())
}

// topContributions keeps the largest contributions, ties broken by name, without
// sorting them all: scoring is on the agent's per-window path.
type topContributions struct {
	n    int
	best [topContributed]Contribution
}

func (t *topContributions) offer(c Contribution) {
	if t.n == topContributed && c.Score < t.best[t.n-1].Score { // the common case
		return
	}
	i := t.n
	for i > 0 && before(c, t.best[i-1]) {
		i--
	}
	if i >= topContributed {
		return
	}
	if t.n < topContributed {
		t.n++
	}
	copy(t.best[i+1:t.n], t.best[i:t.n-1])
	t.best[i] = c
}

func before(a, b Contribution) bool {
	return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(a.Syscall, b.Syscall)) < 0
}

func (t *topContributions) list() []Contribution {
	return slices.Clone(t.best[:t.n])
}

// remove undoes Add(x) (exactly, up to rounding); Max is kept.
func (m Moments) remove(x float64) Moments {
	if m.N <= 1 {
		return Moments{}
	}
	n := float64(m.N - 1)
	mean := (m.Mean*float64(m.N) - x) / n
	m2 := m.M2 - (x-mean)*(x-m.Mean)
	return Moments{N: m.N - 1, Mean: mean, M2: math.Max(m2, 0), Max: m.Max}
}

// Threshold is a calibrated alert threshold.
type Threshold struct {
	Value      float64 `json:"threshold"`
	Exceedance float64 `json:"exceedance"` // target probability that a normal window exceeds it
	HeldOut    int     `json:"held_out"`   // held-out windows it was fitted on
	TailScale  float64 `json:"tail_scale"` // exponential tail scale fitted to the top scores
}

// minThreshold keeps a baseline with very few or very uniform windows from
// alerting on noise: below about 4 standard deviations nothing is anomalous.
const minThreshold = 4.0

// Calibrate turns a false-positive budget (expected false alerts per container
// per day) into a score threshold. The exceedance probability is budget divided
// by the windows a container makes per day; the threshold is the quantile of the
// held-out scores at 1-exceedance, extrapolated beyond the sample by fitting an
// exponential tail (peaks over threshold) to the top 20% of held-out scores.
func (b *Baseline) Calibrate(budgetPerDay float64, window float64) Threshold {
	return b.Calibration().Threshold(budgetPerDay, window)
}

// calibrateSorted is Calibrate on held-out scores sorted in increasing order,
// which it does not modify.
func calibrateSorted(scores []float64, budgetPerDay float64, window float64) Threshold {
	windowsPerDay := 86400 / math.Max(window, 1e-3)
	p := math.Min(math.Max(budgetPerDay/windowsPerDay, 1e-12), 1)
	t := Threshold{Exceedance: p, HeldOut: len(scores), Value: minThreshold}
	if len(scores) < 10 {
		if len(scores) > 0 {
			t.Value = math.Max(minThreshold, 2*scores[len(scores)-1])
		}
		return t
	}
	u, pu, beta := tailFit(scores)
	value := u
	if p < pu && beta > 0 {
		value = u + beta*math.Log(pu/p)
	} else if p >= pu {
		value = stat.Quantile(1-p, stat.Empirical, scores, nil)
	}
	t.TailScale = beta
	// A target rarer than one in the sample cannot sit below the largest
	// held-out score: with few learning windows the fitted tail is too short.
	if p < 1/float64(len(scores)) {
		value = math.Max(value, scores[len(scores)-1])
	}
	t.Value = math.Max(value, minThreshold)
	return t
}
