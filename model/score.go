package model

import (
	"cmp"
	"math"
	"slices"
	"sort"

	"gonum.org/v1/gonum/stat"
)

// Contribution is one syscall's part in a window's score.
type Contribution struct {
	Syscall  string  `json:"syscall"`
	Observed float64 `json:"observed"` // rate in the window
	Expected float64 `json:"expected"` // learned mean rate
	Spread   float64 `json:"spread"`   // learned standard deviation (with its floor)
	Score    float64 `json:"score"`    // squared standardized deviation
	Novel    bool    `json:"novel,omitempty"`
}

// WindowScore is a window scored against its image's baseline.
type WindowScore struct {
	Value float64        `json:"score"`
	Novel []string       `json:"novel,omitempty"` // syscalls never seen in learning
	Top   []Contribution `json:"top"`             // largest contributions first
}

// Scoring parameters. A syscall's deviation is measured in units of its learned
// standard deviation, floored at 10% of its mean and at a one-call-per-window
// rate so steady or rare syscalls do not turn noise into huge z-scores. Rates
// below the mean count too (a stalled workload), at half weight.
const (
	relativeFloor  = 0.10
	belowWeight    = 0.5
	novelPenalty   = 16.0 // per novel syscall, plus its log-rate: one novel call outweighs 4 sd
	topContributed = 5
)

// Score scores a window's counts over seconds (0: counts per window) against b.
// It is a pure function of (baseline, window), so recorded windows replay exactly.
func Score(b *Baseline, counts map[string]uint64, seconds float64) WindowScore {
	return scoreWith(b, b.Windows, b.Syscalls, counts, seconds)
}

func scoreWith(b *Baseline, windows uint64, syscalls map[string]Moments, counts map[string]uint64, seconds float64) WindowScore {
	var top topContributions
	var novel []string
	scores := make([]float64, 0, len(syscalls)+len(counts))
	minRate := Rate(1, seconds)
	present := 0 // counts keys that are learned syscalls
	for name, m := range syscalls {
		mean, variance := m.Over(windows)
		c, ok := counts[name]
		if ok {
			present++
		}
		x := Rate(c, seconds)
		spread := max(math.Sqrt(variance), relativeFloor*mean, minRate) // no NaNs here
		z := (x - mean) / spread
		s := z * z
		if z < 0 {
			s *= belowWeight
		}
		scores = append(scores, s)
		top.offer(Contribution{Syscall: name, Observed: x, Expected: mean, Spread: spread, Score: s})
	}
	// A window syscall can be novel only if some key was not matched above.
	for name, c := range counts {
		if present == len(counts) {
			break
		}
		if c == 0 {
			continue
		}
		if _, known := syscalls[name]; known || b.Startup[name] > 0 {
			continue
		}
		x := Rate(c, seconds)
		s := novelPenalty + math.Log1p(x)
		novel = append(novel, name)
		scores = append(scores, s)
		top.offer(Contribution{Syscall: name, Observed: x, Spread: minRate, Score: s, Novel: true})
	}
	// Sum in value order: map order must not change the score's last bits.
	slices.Sort(scores)
	sum := 0.0
	for _, s := range scores {
		sum += s
	}
	slices.Sort(novel)
	// sqrt keeps the scale near "standard deviations" as syscalls add up.
	return WindowScore{Value: math.Sqrt(sum), Novel: novel, Top: top.list()}
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

// HeldOutScores scores every sampled learning window against the baseline without
// that window (leave-one-out): what normal windows score when they are not part
// of what they are compared with.
func (b *Baseline) HeldOutScores() []float64 {
	scores := make([]float64, 0, len(b.Sample))
	if b.Windows < 3 {
		return scores
	}
	for _, w := range b.Sample {
		without := make(map[string]Moments, len(b.Syscalls))
		for name, m := range b.Syscalls {
			if c, ok := w.Counts[name]; ok && c > 0 {
				m = m.remove(Rate(c, w.Seconds))
				if m.N == 0 {
					continue // only this window made it: novel when held out
				}
			}
			without[name] = m
		}
		scores = append(scores, scoreWith(b, b.Windows-1, without, w.Counts, w.Seconds).Value)
	}
	return scores
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
	scores := b.HeldOutScores()
	sort.Float64s(scores)
	return calibrateSorted(scores, budgetPerDay, window)
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
	const tailFraction = 0.2
	u := stat.Quantile(1-tailFraction, stat.Empirical, scores, nil)
	var excess []float64
	for _, s := range scores {
		if s > u {
			excess = append(excess, s-u)
		}
	}
	beta := 0.0
	if len(excess) > 0 {
		beta = stat.Mean(excess, nil)
	}
	pu := float64(len(excess)) / float64(len(scores))
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
