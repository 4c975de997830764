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
	b.Promote()
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
				if !c.Novel || c.Observed != 3 || c.Expected != 0 {
					t.Errorf("ptrace contribution %+v, want Novel, observed 3, expected 0", c)
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
			name: "5x rate of one known syscall",
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
				mean, _ := b.SyscallStats("futex")
				c := s.Top[0]
				if c.Observed != float64(w.Counts["futex"]) || c.Expected != mean || c.Novel {
					t.Errorf("futex contribution %+v, want observed %d, expected %.3f", c, w.Counts["futex"], mean)
				}
				if math.Abs(c.Observed/c.Expected-5) > 0.25 {
					t.Errorf("observed/expected = %.2f, want about 5", c.Observed/c.Expected)
				}
				if !slices.IsSortedFunc(s.Top, func(a, b Contribution) int { return -cmpFloat(a.Score, b.Score) }) {
					t.Errorf("Top is not sorted by score: %+v", s.Top)
				}
			},
		},
		{
			name:   "stalled workload scores higher than steady",
			window: func(wl *scoreWorkload) Window { return wl.next(0.1) },
			check: func(t *testing.T, b *Baseline, w Window, s WindowScore, th Threshold, steady WindowScore) {
				if s.Value <= steady.Value {
					t.Errorf("stalled window scores %.2f, steady %.2f", s.Value, steady.Value)
				}
				t.Logf("stalled %.2f, steady %.2f, threshold %.2f", s.Value, steady.Value, th.Value)
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
			steady := Score(b, wl.next(1).Counts, 1)
			w := tt.window(wl)
			s := Score(b, w.Counts, w.Duration.Seconds())
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
	s := Score(b, w.Counts, 1)
	if !slices.Equal(s.Novel, []string{"bpf"}) {
		t.Errorf("Novel = %v, want [bpf] (execve was seen at startup)", s.Novel)
	}
}

func TestScoreIsPure(t *testing.T) {
	wl := newScoreWorkload(7, 0.10)
	b := learnScoreBaseline(wl, 100)
	w := wl.next(2)
	w.Counts["ptrace"] = 1
	before, _ := json.Marshal(b)
	countsBefore := fmt.Sprint(w.Counts)

	// Exactly the same, to the last bit: replayed windows must alert exactly as they
	// did live. Map iteration order changes from call to call, so call it often.
	first := Score(b, w.Counts, 1)
	for i := range 50 {
		if again := Score(b, w.Counts, 1); !reflect.DeepEqual(again, first) {
			t.Fatalf("call %d: Score = %.17g (top %v), first call %.17g (top %v)", i+2, again.Value, again.Top, first.Value, first.Top)
		}
		if clone := Score(b.Clone(), w.Counts, 1); !reflect.DeepEqual(clone, first) {
			t.Fatalf("Score of a clone = %.17g (top %v), of the original %.17g (top %v)", clone.Value, clone.Top, first.Value, first.Top)
		}
	}
	after, _ := json.Marshal(b)
	if string(after) != string(before) {
		t.Error("Score changed the baseline")
	}
	if got := fmt.Sprint(w.Counts); got != countsBefore {
		t.Errorf("Score changed the window counts: %s, was %s", got, countsBefore)
	}
	if first.Value <= 0 || math.IsNaN(first.Value) {
		t.Errorf("score %v of a 2x window", first.Value)
	}
}

func TestHeldOutScoresLeaveOneOut(t *testing.T) {
	// 30 windows (all sampled); window 17 alone makes ptrace.
	wl := newScoreWorkload(3, 0.10)
	var ws []Window
	b := NewBaseline(testImage, testTag, "")
	for i := range 30 {
		w := wl.next(1)
		if i == 17 {
			w.Counts["ptrace"] = 2
		}
		ws = append(ws, w)
		b.AddWindow(w, 0)
	}
	if len(b.Sample) != len(ws) {
		t.Fatalf("sample has %d windows, want all %d", len(b.Sample), len(ws))
	}
	held := b.HeldOutScores()
	if len(held) != len(b.Sample) {
		t.Fatalf("%d held-out scores for %d sampled windows", len(held), len(b.Sample))
	}
	for i, sw := range b.Sample {
		t.Run(fmt.Sprintf("window at %s", sw.Start.Format("15:04:05")), func(t *testing.T) {
			// The baseline learned from every window but this one, from scratch.
			without := NewBaseline(testImage, testTag, "")
			for _, w := range ws {
				if !w.Start.Equal(sw.Start) {
					without.AddWindow(w, 0)
				}
			}
			want := Score(without, sw.Counts, sw.Seconds)
			if math.Abs(held[i]-want.Value) > 1e-6*math.Max(1, want.Value) {
				t.Errorf("held-out score %.9f, score against the other windows %.9f", held[i], want.Value)
			}
			if sw.Counts["ptrace"] > 0 {
				if !slices.Equal(want.Novel, []string{"ptrace"}) {
					t.Errorf("ptrace is not novel without its only window: %v", want.Novel)
				}
				if held[i] < math.Sqrt(novelPenalty) {
					t.Errorf("held-out score %.2f of the only ptrace window is below a novel syscall's %.2f", held[i], math.Sqrt(novelPenalty))
				}
			}
		})
	}
	// And the in-sample score of that window does not see ptrace as novel.
	if s := Score(b, ws[17].Counts, 1); len(s.Novel) != 0 {
		t.Errorf("in-sample score has novel %v", s.Novel)
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
	tests := []struct {
		name      string
		seed      uint64
		noise     float64
		lognormal bool
	}{
		{name: "gaussian 10% noise seed 1", seed: 1, noise: 0.10},
		{name: "gaussian 10% noise seed 2", seed: 2, noise: 0.10},
		{name: "gaussian 10% noise seed 3", seed: 3, noise: 0.10},
		{name: "gaussian 30% noise", seed: 4, noise: 0.30},
		{name: "lognormal 30% noise (heavier tail)", seed: 5, noise: 0.30, lognormal: true},
	}
	budgets := []float64{1.44, 4.32, 14.4} // p = 1e-3, 3e-3, 1e-2
	if testing.Short() {
		tests = tests[:1]
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wl := newScoreWorkload(tt.seed, tt.noise)
			wl.lognormal = tt.lognormal
			b := learnScoreBaseline(wl, learnWindows)
			scores := make([]float64, freshWindows)
			for i := range scores {
				scores[i] = Score(b, wl.next(1).Counts, 1).Value
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
	s := Score(b, counts, 10)
	if len(s.Novel) != 1 || s.Novel[0] != "zzz_novel" {
		t.Errorf("novel = %v, want [zzz_novel]", s.Novel)
	}
	delete(counts, "zzz_novel")
	if s := Score(b, counts, 10); len(s.Novel) != 0 {
		t.Errorf("novel = %v with only a zero count unknown, want none", s.Novel)
	}
}
