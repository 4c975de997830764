package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// scoreSyscalls are the syscalls of the synthetic scoring workload; their rates
// fall from 2000/s to about 3/s.
var scoreSyscalls = []string{"read", "write", "openat", "close", "futex", "epoll_wait", "mmap", "munmap",
	"recvfrom", "sendto", "clock_gettime", "getpid", "nanosleep", "accept4", "fstat"}

// scoreWorkload produces 1s windows of one container: every syscall at its rate
// with multiplicative noise (gaussian: sd = noise; lognormal: sigma = noise), and
// every burstEvery-th window (when set) at burst times all rates.
type scoreWorkload struct {
	r          *rand.Rand
	rates      map[string]float64
	noise      float64
	lognormal  bool
	burstEvery int
	burst      float64
	i          int
}

func newScoreWorkload(seed uint64, noise float64) *scoreWorkload {
	rates := map[string]float64{}
	for i, name := range scoreSyscalls {
		rates[name] = 2000 / math.Pow(1.6, float64(i))
	}
	return &scoreWorkload{r: rand.New(rand.NewPCG(seed, 0xca1)), rates: rates, noise: noise}
}

// next is the next window; scale multiplies every rate (1: normal).
func (wl *scoreWorkload) next(scale float64) Window {
	if wl.burstEvery > 0 && wl.i%wl.burstEvery == wl.burstEvery-1 {
		scale *= wl.burst
	}
	counts := make(map[string]uint64, len(scoreSyscalls))
	for _, name := range scoreSyscalls { // fixed order: the same seed, the same windows
		f := 1 + wl.noise*wl.r.NormFloat64()
		if wl.lognormal {
			f = math.Exp(wl.noise*wl.r.NormFloat64() - wl.noise*wl.noise/2)
		}
		if x := math.Round(wl.rates[name] * scale * f); x > 0 {
			counts[name] = uint64(x)
		}
	}
	w := Window{
		CgroupID:  9,
		Container: Container{ID: "c1", Runtime: RuntimeDocker, Image: testImage, ImageTag: testTag},
		Start:     testT0.Add(time.Duration(wl.i) * time.Second),
		Duration:  time.Second,
		Counts:    counts,
	}
	wl.i++
	return w
}

// learnScoreBaseline learns n windows of wl.
func learnScoreBaseline(wl *scoreWorkload, n int) *Baseline {
	b := NewBaseline(testImage, testTag, "")
	for range n {
		b.AddWindow(wl.next(1), 0)
	}
	b.Promote(b.LastSeen)
	return b
}

func contribution(s WindowScore, name string) (Contribution, bool) {
	i := slices.IndexFunc(s.Top, func(c Contribution) bool { return c.Syscall == name })
	if i < 0 {
		return Contribution{}, false
	}
	return s.Top[i], true
}

func TestScore(t *testing.T) {
	const budget, window = 1.0, 1.0 // one false alert per container-day of 1s windows
	tests := []struct {
		name  string
		burst bool // learning includes every 10th window at 3x all rates
		// window builds the scored window from a fresh steady one.
		window func(wl *scoreWorkload) Window
		check  func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, steady WindowScore)
	}{
		{
			name:   "steady window is below the threshold",
			window: func(wl *scoreWorkload) Window { return wl.next(1) },
			check: func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, _ WindowScore) {
				if s.Value >= th.Value {
					t.Errorf("steady window scores %.2f, threshold %.2f", s.Value, th.Value)
				}
				if len(s.Novel) != 0 {
					t.Errorf("steady window has novel syscalls %v", s.Novel)
				}
			},
		},
		{
			name: "never-seen syscall is novel and a top contribution",
			window: func(wl *scoreWorkload) Window {
				w := wl.next(1)
				w.Counts["ptrace"] = 3
				w.Counts["mount"] = 0 // a zero count is not a call
				return w
			},
			check: func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, steady WindowScore) {
				if !slices.Equal(s.Novel, []string{"ptrace"}) {
					t.Errorf("Novel = %v, want [ptrace]", s.Novel)
				}
				c, ok := contribution(s, "ptrace")
				if !ok {
					t.Fatalf("ptrace not among the top contributions %+v", s.Top)
				}
				if share := 3 / float64(w.Total()); !c.Novel || c.Observed != share || c.Expected != 0 {
					t.Errorf("ptrace contribution %+v, want Novel, observed share %v, expected 0", c, share)
				}
				if s.Top[0].Syscall != "ptrace" {
					t.Errorf("top contribution is %s, want ptrace: %+v", s.Top[0].Syscall, s.Top)
				}
				// A novel syscall raises the score (syscall_novel alerts on it on its own).
				if s.Value <= steady.Value {
					t.Errorf("window with a novel syscall scores %.2f, a steady one %.2f", s.Value, steady.Value)
				}
			},
		},
		{
			name: "5x rate of one known syscall: its share is off",
			window: func(wl *scoreWorkload) Window {
				w := wl.next(1)
				w.Counts["futex"] = uint64(math.Round(5 * wl.rates["futex"]))
				return w
			},
			check: func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, _ WindowScore) {
				if s.Value <= th.Value {
					t.Errorf("5x futex scores %.2f, threshold %.2f", s.Value, th.Value)
				}
				if len(s.Novel) != 0 {
					t.Errorf("Novel = %v, want none", s.Novel)
				}
				if len(s.Top) == 0 || s.Top[0].Syscall != "futex" {
					t.Fatalf("top contributions %+v, want futex first", s.Top)
				}
				// Observed and expected are shares: the window's, and the mean learned one.
				mean, _ := b.Composition.Shares["futex"].Over(b.Composition.Windows)
				c := s.Top[0]
				if share := float64(w.Counts["futex"]) / float64(w.Total()); c.Observed != share || c.Expected != mean || c.Novel {
					t.Errorf("futex contribution %+v, want observed %.4f, expected %.4f", c, share, mean)
				}
				// Five times the calls of a syscall with share f is 5/(1+4f) times its share.
				if want := 5 / (1 + 4*mean); math.Abs(c.Observed/c.Expected-want) > 0.25 {
					t.Errorf("observed/expected = %.2f, want about %.2f", c.Observed/c.Expected, want)
				}
				if d := s.Driver(); d.View != ViewComposition {
					t.Errorf("driven by %+v, want composition", d)
				}
				if !slices.IsSortedFunc(s.Top, func(a, b Contribution) int { return -cmpFloat(a.Score, b.Score) }) {
					t.Errorf("Top is not sorted by score: %+v", s.Top)
				}
			},
		},
		{
			// Load must not alert, down as well as up: the volume view reports it.
			name:   "stalled workload is below the threshold, and its volume is off",
			window: func(wl *scoreWorkload) Window { return wl.next(0.1) },
			check: func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, steady WindowScore) {
				if s.Value >= th.Value {
					t.Errorf("stalled window scores %.2f, threshold %.2f", s.Value, th.Value)
				}
				v, ok := viewScore(s, ViewVolume)
				if !ok || v.Z < 10 || math.Abs(v.Raw-math.Log(10)) > 0.3 {
					t.Errorf("volume view %+v, want z above 10 and raw about ln 10", v)
				}
				if sv, _ := viewScore(steady, ViewVolume); sv.Z >= 3 {
					t.Errorf("steady volume view %+v, want z below 3", sv)
				}
			},
		},
		{
			name:   "bursty but normal: a learned 3x burst is below the threshold",
			burst:  true,
			window: func(wl *scoreWorkload) Window { return wl.next(3) },
			check: func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, steady WindowScore) {
				if s.Value >= th.Value {
					t.Errorf("3x burst scores %.2f, threshold %.2f", s.Value, th.Value)
				}
				if steady.Value >= th.Value {
					t.Errorf("steady window scores %.2f, threshold %.2f", steady.Value, th.Value)
				}
			},
		},
		{
			name:  "bursty baseline still sees a novel syscall",
			burst: true,
			window: func(wl *scoreWorkload) Window {
				w := wl.next(1)
				w.Counts["init_module"] = 1
				return w
			},
			check: func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, _ WindowScore) {
				if !slices.Equal(s.Novel, []string{"init_module"}) {
					t.Errorf("Novel = %v, want [init_module]", s.Novel)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wl := newScoreWorkload(42, 0.10)
			if tt.burst {
				wl.burstEvery, wl.burst = 10, 3
			}
			b := learnScoreBaseline(wl, 300)
			wl.burstEvery = 0 // scored windows are exactly what the test builds
			th := b.Calibrate(budget, window)
			steady := Score(b, wl.next(1))
			w := tt.window(wl)
			s := Score(b, w)
			if len(s.Top) > 5 {
				t.Errorf("%d top contributions, want at most 5", len(s.Top))
			}
			tt.check(t, b, w, s, th, steady)
		})
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestScoreStartupSyscallsAreNotNovel(t *testing.T) {
	wl := newScoreWorkload(1, 0.10)
	b := learnScoreBaseline(wl, 50)
	b.AddStartup(Window{Counts: map[string]uint64{"execve": 2, "prctl": 1}})
	w := wl.next(1)
	w.Counts["execve"] = 1
	w.Counts["bpf"] = 1
	s := Score(b, w)
	if !slices.Equal(s.Novel, []string{"bpf"}) {
		t.Errorf("Novel = %v, want [bpf] (execve was seen at startup)", s.Novel)
	}
}

func TestScoreIsPure(t *testing.T) {
	tests := []struct {
		name  string
		learn func() (*Baseline, Window)
	}{
		{name: "counts", learn: func() (*Baseline, Window) {
			wl := newScoreWorkload(7, 0.10)
			return learnScoreBaseline(wl, 100), wl.next(2)
		}},
		{name: "counts and grams", learn: func() (*Baseline, Window) {
			wl := newSeqWorkload(7)
			b := learnSeqBaseline(wl, 100)
			wl.reverse = true // new pairs too
			return b, wl.next(2)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, w := tt.learn()
			w.Counts["ptrace"] = 1
			before, _ := json.Marshal(b)
			windowBefore := fmt.Sprint(w.Counts, w.Grams)

			// Exactly the same, to the last bit: replayed windows must alert exactly as they
			// did live. Map iteration order changes from call to call, so call it often.
			first := Score(b, w)
			for i := range 50 {
				if again := Score(b, w); !reflect.DeepEqual(again, first) {
					t.Fatalf("call %d: Score = %+v, first call %+v", i+2, again, first)
				}
				if clone := Score(b.Clone(), w); !reflect.DeepEqual(clone, first) {
					t.Fatalf("Score of a clone = %+v, of the original %+v", clone, first)
				}
			}
			after, _ := json.Marshal(b)
			if string(after) != string(before) {
				t.Error("Score changed the baseline")
			}
			if got := fmt.Sprint(w.Counts, w.Grams); got != windowBefore {
				t.Errorf("Score changed the window: %s, was %s", got, windowBefore)
			}
			if first.Value <= 0 || math.IsNaN(first.Value) {
				t.Errorf("score %v of a 2x window with a novel syscall", first.Value)
			}
		})
	}
}

func TestHeldOutScoresFewWindows(t *testing.T) {
	for n := range 4 {
		t.Run(fmt.Sprintf("%d windows", n), func(t *testing.T) {
			b := learnScoreBaseline(newScoreWorkload(5, 0.1), n)
			got := b.HeldOutScores()
			want := 0
			if n >= 3 {
				want = n
			}
			if len(got) != want {
				t.Errorf("%d held-out scores, want %d", len(got), want)
			}
		})
	}
}

func TestCalibrate(t *testing.T) {
	tests := []struct {
		name    string
		windows int
		check   func(t *testing.T, b *Baseline)
	}{
		{
			name: "no windows", windows: 0,
			check: func(t *testing.T, b *Baseline) {
				th := b.Calibrate(1, 10)
				if th.Value != minThreshold || th.HeldOut != 0 {
					t.Errorf("threshold %+v, want %v from 0 windows", th, minThreshold)
				}
			},
		},
		{
			name: "two windows", windows: 2,
			check: func(t *testing.T, b *Baseline) {
				th := b.Calibrate(1, 10)
				if th.Value != minThreshold || th.HeldOut != 0 {
					t.Errorf("threshold %+v, want %v from 2 windows", th, minThreshold)
				}
			},
		},
		{
			name: "fewer than 10 windows: twice the largest held-out score", windows: 6,
			check: func(t *testing.T, b *Baseline) {
				th := b.Calibrate(1, 10)
				want := math.Max(minThreshold, 2*slices.Max(b.HeldOutScores()))
				if math.Abs(th.Value-want) > 1e-9*want || th.HeldOut != 6 {
					t.Errorf("threshold %+v, want %v from 6 held-out windows", th, want)
				}
			},
		},
		{
			name: "exceedance is the budget over the windows per day", windows: 300,
			check: func(t *testing.T, b *Baseline) {
				for _, c := range []struct{ budget, window, p float64 }{
					{1, 1, 1.0 / 86400}, {1.44, 60, 1e-3}, {14.4, 60, 1e-2}, {2, 10, 2.0 / 8640},
				} {
					th := b.Calibrate(c.budget, c.window)
					if math.Abs(th.Exceedance-c.p) > 1e-12 {
						t.Errorf("budget %v, window %vs: exceedance %v, want %v", c.budget, c.window, th.Exceedance, c.p)
					}
					if th.HeldOut != len(b.Sample) {
						t.Errorf("held out %d, want the %d sampled windows", th.HeldOut, len(b.Sample))
					}
				}
			},
		},
		{
			name: "threshold grows as the budget shrinks", windows: 300,
			check: func(t *testing.T, b *Baseline) {
				prev := Threshold{}
				budgets := []float64{80000, 40000, 10000, 1000, 100, 10, 1, 0.1, 0.01, 0.001}
				for i, budget := range budgets {
					th := b.Calibrate(budget, 1)
					if th.Value < minThreshold {
						t.Errorf("budget %v: threshold %.3f below the minimum", budget, th.Value)
					}
					if i > 0 && th.Value < prev.Value {
						t.Errorf("budget %v: threshold %.3f, lower than %.3f for budget %v", budget, th.Value, prev.Value, budgets[i-1])
					}
					prev = th
				}
				if lo, hi := b.Calibrate(budgets[0], 1).Value, b.Calibrate(budgets[len(budgets)-1], 1).Value; hi <= lo {
					t.Errorf("threshold %.3f at the smallest budget is not above %.3f at the largest", hi, lo)
				}
			},
		},
		{
			name: "calibration is deterministic", windows: 300,
			check: func(t *testing.T, b *Baseline) {
				a := b.Calibrate(1, 10)
				for range 20 {
					if c := b.Clone().Calibrate(1, 10); c != a {
						t.Fatalf("Calibrate = %.17g, on a clone %.17g (%+v, %+v)", a.Value, c.Value, a, c)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Wider noise than the steady tests so thresholds rise above the minimum.
			b := learnScoreBaseline(newScoreWorkload(11, 0.3), tt.windows)
			tt.check(t, b)
		})
	}
}

// TestCalibrateHonoursBudget checks the promise behind the threshold: fresh
// normal windows exceed it about as often as the budget allows. The budget is
// per container-day; with 60s windows, 1.44 a day is p = 1e-3.
func TestCalibrateHonoursBudget(t *testing.T) {
	const (
		learnWindows = 300
		freshWindows = 20000
		window       = 60.0 // seconds, to turn budgets into probabilities
		maxRatio     = 3.0  // observed exceedance may be at most this times the target
	)
	counts := func(seed uint64, noise float64, lognormal bool) func() func() Window {
		return func() func() Window {
			wl := newScoreWorkload(seed, noise)
			wl.lognormal = lognormal
			return func() Window { return wl.next(1) }
		}
	}
	tests := []struct {
		name     string
		workload func() func() Window // a fresh workload's next window
		// Counts only: with grams, normal synthetic windows all stay below
		// minThreshold, and there is nothing to measure.
	}{
		{name: "gaussian 10% noise seed 1", workload: counts(1, 0.10, false)},
		{name: "gaussian 10% noise seed 2", workload: counts(2, 0.10, false)},
		{name: "gaussian 10% noise seed 3", workload: counts(3, 0.10, false)},
		{name: "gaussian 30% noise", workload: counts(4, 0.30, false)},
		{name: "lognormal 30% noise (heavier tail)", workload: counts(5, 0.30, true)},
	}
	budgets := []float64{1.44, 4.32, 14.4} // p = 1e-3, 3e-3, 1e-2
	if testing.Short() {
		tests = tests[:1]
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := tt.workload()
			b := NewBaseline(testImage, testTag, "")
			for range learnWindows {
				b.AddWindow(next(), 0)
			}
			b.Promote(b.LastSeen)
			cal := b.Calibration()
			scores := make([]float64, freshWindows)
			for i := range scores {
				scores[i] = cal.Score(next().Counts, nil, 1).Value
			}
			for _, budget := range budgets {
				th := b.Calibrate(budget, window)
				exceed := 0
				for _, s := range scores {
					if s > th.Value {
						exceed++
					}
				}
				rate := float64(exceed) / freshWindows
				t.Logf("budget %5.2f/day: target p %.4f, threshold %.2f, observed %.5f (%d of %d), ratio %.2f",
					budget, th.Exceedance, th.Value, rate, exceed, freshWindows, rate/th.Exceedance)
				if rate > maxRatio*th.Exceedance {
					t.Errorf("budget %v/day: %d of %d fresh normal windows (%.4f) exceed threshold %.2f, target %.4f (at most %.0fx)",
						budget, exceed, freshWindows, rate, th.Value, th.Exceedance, maxRatio)
				}
			}
		})
	}
}

// TestScoreNovelAmongZeroCounts: zero counts of unknown syscalls are not novel,
// and do not hide a real novel syscall next to them.
func TestScoreNovelAmongZeroCounts(t *testing.T) {
	b, counts := benchBaseline(20)
	counts["zzz_zero"] = 0
	counts["zzz_novel"] = 5
	s := Score(b, Window{Counts: counts, Duration: 10 * time.Second})
	if len(s.Novel) != 1 || s.Novel[0] != "zzz_novel" {
		t.Errorf("novel = %v, want [zzz_novel]", s.Novel)
	}
	delete(counts, "zzz_novel")
	if s := Score(b, Window{Counts: counts, Duration: 10 * time.Second}); len(s.Novel) != 0 {
		t.Errorf("novel = %v with only a zero count unknown, want none", s.Novel)
	}
}
