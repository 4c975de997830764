package model

import (
	"sync"
	"time"
)

// VerdictInput is everything that decides whether one window alerts. The live
// agent and `cagewatch replay` fill it the same way, so a recorded window replays
// to the decision the agent made.
type VerdictInput struct {
	Baseline *Baseline // the window's image baseline; nil or not stable: not scored
	// Window carries the counts, the duration the threshold is calibrated for and
	// the start-up state (a start-up window is not scored, as it is not learned).
	Window Window
	// Budget is the false-positive budget in false alerts per container-day.
	Budget float64
	// DefaultWindow is the calibration length for windows without a duration
	// (third-party traces: counts only).
	DefaultWindow time.Duration
	// Thresholds caches calibrations, which cost a leave-one-out pass; nil
	// calibrates on every call.
	Thresholds *ThresholdCache
}

// WindowVerdict is the decision on one window.
type WindowVerdict struct {
	Scored    bool
	Score     WindowScore
	Threshold Threshold
	Novel     bool // syscalls never learned: the syscall_novel rule
	Anomalous bool // score above the calibrated threshold: the syscall_anomaly rule
}

// Alert reports whether the window alerts at all.
func (v WindowVerdict) Alert() bool { return v.Novel || v.Anomalous }

// Verdict decides whether a window alerts: it scores the window against a stable
// baseline and compares the score with the threshold the budget calibrates for
// the window's length.
func Verdict(in VerdictInput) WindowVerdict {
	b := in.Baseline
	if b == nil || b.State != StateStable || in.Window.Startup || in.Window.Stopping {
		return WindowVerdict{}
	}
	cal, t := in.Thresholds.get(b, CalibrationWindow(in.Window.Duration, in.DefaultWindow), in.Budget)
	score := cal.Score(in.Window.Counts, in.Window.Grams, in.Window.Duration.Seconds())
	// A live window of a handful of calls (a container's exit, an idle tick)
	// has shares and pairs too few to judge: it can still be novel, not
	// anomalous. Traces without a duration are whole programs and are judged.
	judged := in.Window.Duration <= 0 || in.Window.Total() >= MinJudgedCalls
	return WindowVerdict{Scored: true, Score: score, Threshold: t,
		Novel: len(score.Novel) > 0, Anomalous: judged && score.Value > t.Value}
}

// MinJudgedCalls is the fewest calls a live window needs for syscall_anomaly:
// in the e2e run a container's last window (5 calls: read, exit_group,
// rt_sigreturn) scored 20 on pairs learning never saw, because learning
// containers were killed, never exited.
const MinJudgedCalls = 20

// calibrationStep is the resolution of the window lengths thresholds are
// calibrated for: sampled windows jitter by milliseconds around the configured
// interval, and one calibration per interval is enough.
const calibrationStep = 100 * time.Millisecond

// CalibrationWindow is the window length a threshold is calibrated for: the
// window's own duration to calibrationStep, or def when it has none.
func CalibrationWindow(d, def time.Duration) time.Duration {
	if d <= 0 {
		d = def
	}
	return max(d.Round(calibrationStep), calibrationStep)
}

// ThresholdCache keeps calibrations per image: the held-out scores of the
// baseline version (the costly leave-one-out pass) and one threshold per window
// length. A baseline is a new version when it is replaced (import, promote,
// reset) or learns another window.
type ThresholdCache struct {
	mu     sync.Mutex
	images map[string]*calibration
}

type calibration struct {
	baseline *Baseline
	windows  uint64
	views    *Calibration
	byWindow map[calibrationKey]Threshold
}

type calibrationKey struct {
	window time.Duration
	budget float64
}

// NewThresholdCache returns an empty cache.
func NewThresholdCache() *ThresholdCache {
	return &ThresholdCache{images: map[string]*calibration{}}
}

func (c *ThresholdCache) get(b *Baseline, window time.Duration, budget float64) (*Calibration, Threshold) {
	if c == nil {
		views := b.Calibration()
		return views, views.Threshold(budget, window.Seconds())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cal := c.images[b.Key()]
	if cal == nil || cal.baseline != b || cal.windows != b.Windows {
		cal = &calibration{baseline: b, windows: b.Windows, views: b.Calibration(), byWindow: map[calibrationKey]Threshold{}}
		c.images[b.Key()] = cal
	}
	k := calibrationKey{window: window, budget: budget}
	t, ok := cal.byWindow[k]
	if !ok {
		t = cal.views.Threshold(budget, window.Seconds())
		cal.byWindow[k] = t
	}
	return cal.views, t
}

// Forget drops an image's calibrations (its baseline was reset or removed).
func (c *ThresholdCache) Forget(image string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.images, image)
}
