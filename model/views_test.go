package model

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// seqRoutine is something a thread of the synthetic service does, in order.
type seqRoutine struct {
	calls  []string
	weight float64
}

// seqRoutines: each routine's pairs are learned; a reversed routine makes
// pairs that none of them makes (checked in TestSeqWorkloadReversedPairsAreNew).
var seqRoutines = []seqRoutine{
	{[]string{"accept4", "read", "openat", "fstat", "pread64", "close", "write", "shutdown"}, 4},
	{[]string{"epoll_wait", "recvfrom", "sendto"}, 6},
	{[]string{"clock_gettime", "futex", "nanosleep"}, 3},
	{[]string{"mmap", "madvise", "munmap"}, 1},
}

// seqWorkload produces 1s windows with counts and grams: threads that each run
// randomly chosen routines back to back, so a window's composition varies with
// the routines drawn and its order is the routines'.
type seqWorkload struct {
	r         *rand.Rand
	weights   []float64 // per routine; seqRoutines' by default
	threads   int
	perThread float64 // routines per thread per window
	noise     float64 // relative sd of routines per thread
	reverse   bool    // run each routine backwards: known syscalls, new pairs
	container string
	i         int
}

func newSeqWorkload(seed uint64) *seqWorkload {
	wl := &seqWorkload{r: rand.New(rand.NewPCG(seed, 0x5e9)), threads: 3, perThread: 40, noise: 0.1, container: "c1"}
	for _, rt := range seqRoutines {
		wl.weights = append(wl.weights, rt.weight)
	}
	return wl
}

func (wl *seqWorkload) pick() []string {
	var sum float64
	for _, w := range wl.weights {
		sum += w
	}
	x := wl.r.Float64() * sum
	for i, w := range wl.weights {
		if x < w {
			return seqRoutines[i].calls
		}
		x -= w
	}
	return seqRoutines[len(seqRoutines)-1].calls
}

// next is the next window; scale multiplies the routines each thread runs.
func (wl *seqWorkload) next(scale float64) Window {
	counts, grams := map[string]uint64{}, map[string]uint64{}
	for range wl.threads {
		n := int(math.Round(wl.perThread * scale * (1 + wl.noise*wl.r.NormFloat64())))
		var seq []string
		for range max(n, 1) {
			calls := wl.pick()
			if wl.reverse {
				calls = slices.Clone(calls)
				slices.Reverse(calls)
			}
			seq = append(seq, calls...)
		}
		for _, name := range seq {
			counts[name]++
		}
		for g, c := range GramsOfSequence(seq) {
			grams[g] += c
		}
	}
	w := Window{
		CgroupID:  7,
		Container: Container{ID: wl.container, Runtime: RuntimeDocker, Image: testImage, ImageTag: testTag},
		Start:     testT0.Add(time.Duration(wl.i) * time.Second),
		Duration:  time.Second,
		Counts:    counts,
		Grams:     grams,
	}
	wl.i++
	return w
}

// scaled is w with every count and gram count multiplied by k: the same
// composition and order at k times the volume.
func scaled(w Window, k uint64) Window {
	w.Counts, w.Grams = maps.Clone(w.Counts), maps.Clone(w.Grams)
	for name := range w.Counts {
		w.Counts[name] *= k
	}
	for g := range w.Grams {
		w.Grams[g] *= k
	}
	return w
}

func learnSeqBaseline(wl *seqWorkload, n int) *Baseline {
	b := NewBaseline(testImage, testTag, "")
	for range n {
		b.AddWindow(wl.next(1), 0)
	}
	b.Promote(b.LastSeen)
	return b
}

func viewScore(s WindowScore, view string) (ViewScore, bool) {
	i := slices.IndexFunc(s.Views, func(v ViewScore) bool { return v.View == view })
	if i < 0 {
		return ViewScore{}, false
	}
	return s.Views[i], true
}

// onlyRoutine is a window of routine i alone, at the calls per window of
// the default mix.
func onlyRoutine(wl *seqWorkload, i int) Window {
	var calls, routines float64
	for j, rt := range seqRoutines {
		calls += rt.weight * float64(len(rt.calls))
		routines += rt.weight
		wl.weights[j] = 0
	}
	wl.weights[i] = 1
	wl.perThread *= calls / routines / float64(len(seqRoutines[i].calls))
	return wl.next(1)
}

func TestSeqWorkloadReversedPairsAreNew(t *testing.T) {
	wl := newSeqWorkload(1)
	learned := PairCounts(wl.next(1).Grams)
	for _, rt := range seqRoutines {
		for i := 1; i < len(rt.calls); i++ {
			if p := GramKey(rt.calls[i], rt.calls[i-1]); learned[p] > 0 {
				t.Errorf("reversed pair %s is made by the forward routines", p)
			}
		}
	}
}

func TestGramsOfSequence(t *testing.T) {
	tests := []struct {
		name string
		seq  []string
		want map[string]uint64
	}{
		{name: "empty", seq: nil, want: map[string]uint64{}},
		{name: "one syscall starts a run", seq: []string{"read"}, want: map[string]uint64{"read": 1}},
		{name: "two", seq: []string{"read", "write"}, want: map[string]uint64{"read": 1, "read,write": 1}},
		{
			name: "longer than GramOrder keeps GramOrder-1 predecessors",
			seq:  []string{"a", "b", "c", "d", "e", "f"},
			want: map[string]uint64{"a": 1, "a,b": 1, "a,b,c": 1, "a,b,c,d": 1, "b,c,d,e": 1, "c,d,e,f": 1},
		},
		{
			name: "repeats are counted",
			seq:  []string{"x", "x", "x", "x", "x", "x"},
			want: map[string]uint64{"x": 1, "x,x": 1, "x,x,x": 1, "x,x,x,x": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GramsOfSequence(tt.seq)
			if !maps.Equal(got, tt.want) {
				t.Errorf("GramsOfSequence(%v) = %v, want %v", tt.seq, got, tt.want)
			}
			// Each syscall is counted once, as the last of one gram.
			if n := sumCounts(got); n != uint64(len(tt.seq)) {
				t.Errorf("%d grams for %d syscalls", n, len(tt.seq))
			}
			for g := range got {
				if err := validGram(g); err != nil {
					t.Errorf("gram %q: %v", g, err)
				}
			}
		})
	}
}

func TestGramKeys(t *testing.T) {
	tests := []struct {
		name      string
		gram      string
		suffixes  []string
		ctx, last string
		pair      string // "": no predecessor
	}{
		{name: "unigram", gram: "read", suffixes: []string{"read"}, ctx: "", last: "read"},
		{name: "pair", gram: "read,write", suffixes: []string{"write", "read,write"}, ctx: "read", last: "write", pair: "read,write"},
		{name: "trigram", gram: "a,b,c", suffixes: []string{"c", "b,c", "a,b,c"}, ctx: "a,b", last: "c", pair: "b,c"},
		{
			name: "4-gram", gram: "openat,read,close,execve",
			suffixes: []string{"execve", "close,execve", "read,close,execve", "openat,read,close,execve"},
			ctx:      "openat,read,close", last: "execve", pair: "close,execve",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			suffixes(tt.gram, func(s string) bool { got = append(got, s); return true })
			if !slices.Equal(got, tt.suffixes) {
				t.Errorf("suffixes(%q) = %q, want %q", tt.gram, got, tt.suffixes)
			}
			got = got[:0]
			suffixes(tt.gram, func(s string) bool { got = append(got, s); return false })
			if !slices.Equal(got, tt.suffixes[:1]) {
				t.Errorf("suffixes(%q) stopped after the first: %q, want %q", tt.gram, got, tt.suffixes[:1])
			}
			if ctx, last := context(tt.gram); ctx != tt.ctx || last != tt.last {
				t.Errorf("context(%q) = %q, %q, want %q, %q", tt.gram, ctx, last, tt.ctx, tt.last)
			}
			pair, ok := lastPair(tt.gram)
			if pair != tt.pair || ok != (tt.pair != "") {
				t.Errorf("lastPair(%q) = %q, %v, want %q", tt.gram, pair, ok, tt.pair)
			}
			if key := GramKey(GramNames(tt.gram)...); key != tt.gram {
				t.Errorf("GramKey(GramNames(%q)) = %q", tt.gram, key)
			}
		})
	}
}

func TestPairCounts(t *testing.T) {
	tests := []struct {
		name  string
		grams map[string]uint64
		want  map[string]uint64
	}{
		{name: "none", grams: nil, want: map[string]uint64{}},
		{name: "unigrams have no pair", grams: map[string]uint64{"read": 4}, want: map[string]uint64{}},
		{
			name:  "grams sum into their last pair",
			grams: map[string]uint64{"read": 1, "read,write": 2, "openat,read,write": 3, "a,b,c,d": 4, "x,c,d": 5},
			want:  map[string]uint64{"read,write": 5, "c,d": 9},
		},
		{name: "zero counts are not calls", grams: map[string]uint64{"a,b": 0, "b,c": 1}, want: map[string]uint64{"b,c": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PairCounts(tt.grams); !maps.Equal(got, tt.want) {
				t.Errorf("PairCounts(%v) = %v, want %v", tt.grams, got, tt.want)
			}
		})
	}
}

// checkSameViews asserts that got has want's composition, order and volume views.
func checkSameViews(t *testing.T, got, want *Baseline) {
	t.Helper()
	if got.Composition.Windows != want.Composition.Windows {
		t.Errorf("Composition.Windows = %d, want %d", got.Composition.Windows, want.Composition.Windows)
	}
	if g, w := slices.Sorted(maps.Keys(got.Composition.Shares)), slices.Sorted(maps.Keys(want.Composition.Shares)); !slices.Equal(g, w) {
		t.Errorf("Composition.Shares of %v, want %v", g, w)
	}
	for name, w := range want.Composition.Shares {
		checkMoments(t, "Composition.Shares["+name+"]", got.Composition.Shares[name], w)
	}
	if got.Order.Windows != want.Order.Windows {
		t.Errorf("Order.Windows = %d, want %d", got.Order.Windows, want.Order.Windows)
	}
	if !maps.Equal(got.Order.Grams, want.Order.Grams) {
		t.Errorf("Order.Grams differ: %d grams, want %d", len(got.Order.Grams), len(want.Order.Grams))
	}
	checkMoments(t, "Volume", got.Volume, want.Volume)
}

// checkSameScore asserts two scores of one window agree up to rounding.
func checkSameScore(t *testing.T, what string, got, want WindowScore) {
	t.Helper()
	if !approxEqual(got.Value, want.Value) {
		t.Errorf("%s: score %.17g, want %.17g", what, got.Value, want.Value)
	}
	if len(got.Views) != len(want.Views) {
		t.Fatalf("%s: views %+v, want %+v", what, got.Views, want.Views)
	}
	for i, w := range want.Views {
		g := got.Views[i]
		if g.View != w.View || !approxEqual(g.Raw, w.Raw) || !approxEqual(g.Z, w.Z) || !approxEqual(g.PValue, w.PValue) {
			t.Errorf("%s: view %+v, want %+v", what, g, w)
		}
	}
	if !slices.Equal(got.Novel, want.Novel) || !slices.Equal(got.Pairs, want.Pairs) {
		t.Errorf("%s: novel %v pairs %v, want %v %v", what, got.Novel, got.Pairs, want.Novel, want.Pairs)
	}
}

func TestMergeViewsEqualLearningTogether(t *testing.T) {
	// 90 windows of three containers (every window is sampled).
	var windows []Window
	for c, seed := range []uint64{1, 2, 3} {
		wl := newSeqWorkload(seed)
		wl.container = fmt.Sprint("c", c)
		if c == 2 {
			wl.weights = []float64{1, 6, 3, 4} // another container of the image does more of the rest
		}
		for range 30 {
			windows = append(windows, wl.next(1))
		}
	}
	// Probes: what scoring must agree on.
	probe := newSeqWorkload(9)
	steady := probe.next(1)
	probe.reverse = true
	reordered := probe.next(1)
	probe.reverse, probe.weights = false, []float64{20, 1, 1, 1}
	mix := probe.next(1)
	novel := steady
	novel.Counts = maps.Clone(steady.Counts)
	novel.Counts["ptrace"] = 2

	tests := []struct {
		name  string
		inA   func(i int, w Window) bool
		nodes int // merge B in this many parts
	}{
		{name: "alternate windows", inA: func(i int, _ Window) bool { return i%2 == 0 }, nodes: 1},
		{name: "first half then second", inA: func(i int, _ Window) bool { return i < 45 }, nodes: 1},
		{name: "by container", inA: func(_ int, w Window) bool { return w.Container.ID == "c0" }, nodes: 1},
		{name: "B on three nodes", inA: func(i int, _ Window) bool { return i%5 == 0 }, nodes: 3},
		{name: "B empty", inA: func(int, Window) bool { return true }, nodes: 1},
		{name: "A empty", inA: func(int, Window) bool { return false }, nodes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := NewBaseline(testImage, testTag, "")
			a := NewBaseline(testImage, testTag, "")
			bs := make([]*Baseline, tt.nodes)
			for i := range bs {
				bs[i] = NewBaseline(testImage, testTag, "")
			}
			for i, w := range windows {
				all.AddWindow(w, 0)
				if tt.inA(i, w) {
					a.AddWindow(w, 0)
				} else {
					bs[i%tt.nodes].AddWindow(w, 0)
				}
			}
			for _, b := range bs {
				mustMerge(t, a, b, 0)
			}
			checkSameViews(t, a, all)
			checkSameSample(t, a.Sample, all.Sample)

			all.Promote(all.LastSeen)
			a.Promote(a.LastSeen)
			calAll, calA := all.Calibration(), a.Calibration()
			held, heldAll := a.HeldOutScores(), all.HeldOutScores()
			if len(held) != len(heldAll) {
				t.Fatalf("%d held-out scores, want %d", len(held), len(heldAll))
			}
			for i := range heldAll {
				if !approxEqual(held[i], heldAll[i]) {
					t.Errorf("held-out score %d = %.17g, want %.17g", i, held[i], heldAll[i])
				}
			}
			if th, want := calA.Threshold(1, 1), calAll.Threshold(1, 1); !approxEqual(th.Value, want.Value) {
				t.Errorf("threshold %+v, want %+v", th, want)
			}
			for name, w := range map[string]Window{"steady": steady, "reordered": reordered, "other mix": mix, "novel": novel, "4x": scaled(steady, 4)} {
				checkSameScore(t, name, calA.Score(w.Counts, w.Grams, 1), calAll.Score(w.Counts, w.Grams, 1))
			}
		})
	}
}

// minusGrams is counts less a window's.
func minusGrams(counts, own map[string]uint64) map[string]uint64 {
	out := maps.Clone(counts)
	for g, n := range own {
		if out[g] -= n; out[g] == 0 {
			delete(out, g)
		}
	}
	return out
}

func TestLeaveOneOutIsExact(t *testing.T) {
	// 40 windows, all sampled; window 17 alone makes ptrace (after futex, a
	// pair nothing else makes) and window 23 alone runs a routine backwards.
	wl := newSeqWorkload(3)
	var ws []Window
	b := NewBaseline(testImage, testTag, "")
	for i := range 40 {
		w := wl.next(1)
		switch i {
		case 17:
			w.Counts["ptrace"] = 1
			w.Grams["clock_gettime,futex,ptrace"] = 1
		case 23:
			wl.reverse = true
			w2 := wl.next(0.05)
			wl.reverse = false
			for name, n := range w2.Counts {
				w.Counts[name] += n
			}
			for g, n := range w2.Grams {
				w.Grams[g] += n
			}
		}
		ws = append(ws, w)
		b.AddWindow(w, 0)
	}
	if len(b.Sample) != len(ws) {
		t.Fatalf("sample holds %d windows, want all %d", len(b.Sample), len(ws))
	}
	lm := newGramTables(b.Order.Grams)
	for _, sw := range b.Sample {
		t.Run(sw.Start.Format("15:04:05"), func(t *testing.T) {
			// The baseline learned from every window but this one, from scratch.
			without := NewBaseline(testImage, testTag, "")
			for _, w := range ws {
				if !w.Start.Equal(sw.Start) {
					without.AddWindow(w, 0)
				}
			}
			if want := minusGrams(b.Order.Grams, sw.Grams); !maps.Equal(without.Order.Grams, want) {
				t.Fatalf("learning without the window is not the counts minus its grams")
			}
			total := sumCounts(sw.Counts)

			t.Run("composition", func(t *testing.T) {
				got := b.compositionScore(sw.Counts, total, &sw)
				want := without.compositionScore(sw.Counts, total, nil)
				if math.Abs(got.value-want.value) > 1e-9*math.Max(1, want.value) {
					t.Errorf("held-out composition %.12g, against the other windows %.12g", got.value, want.value)
				}
				if !slices.Equal(got.novel, want.novel) {
					t.Errorf("held-out novel %v, against the other windows %v", got.novel, want.novel)
				}
				gt, wt := got.top.list(), want.top.list()
				if len(gt) != len(wt) {
					t.Fatalf("held-out top %+v, want %+v", gt, wt)
				}
				for i := range wt {
					g, w := gt[i], wt[i]
					if g.Syscall != w.Syscall || g.Novel != w.Novel || math.Abs(g.Expected-w.Expected) > 1e-12 ||
						math.Abs(g.Spread-w.Spread) > 1e-12 || math.Abs(g.Score-w.Score) > 1e-9*math.Max(1, w.Score) {
						t.Errorf("held-out top[%d] %+v, want %+v", i, g, w)
					}
				}
				if sw.Counts["ptrace"] > 0 && !slices.Equal(got.novel, []string{"ptrace"}) {
					t.Errorf("ptrace is not novel without its only window: %v", got.novel)
				}
			})
			t.Run("order", func(t *testing.T) {
				h := lm.without(newGramTables(sw.Grams))
				fresh := newGramTables(without.Order.Grams)
				// Counts are whole numbers, so held out is exactly fresh.
				if got, want := lm.score(sw.Grams, h), fresh.score(sw.Grams, nil); got != want {
					t.Errorf("held-out order stats %+v, against the other windows %+v", got, want)
				}
				for g := range sw.Grams {
					if got, want := lm.surprisal(g, h), fresh.surprisal(g, nil); got != want {
						t.Errorf("surprisal of %s held out %.17g, against the other windows %.17g", g, got, want)
					}
				}
				if sw.Grams["clock_gettime,futex,ptrace"] > 0 {
					if st := lm.score(sw.Grams, h); st.unseen == 0 {
						t.Error("futex → ptrace is seen without its only window")
					}
				}
			})
			t.Run("volume", func(t *testing.T) {
				got, want := b.Volume.remove(logVolume(total, sw.Seconds)), without.Volume
				if got.N != want.N || !approxEqual(got.Mean, want.Mean) || !approxEqual(got.M2, want.M2) {
					t.Errorf("held-out volume %+v, against the other windows %+v (Max aside)", got, want)
				}
			})
		})
	}
	// In sample, the window's own syscalls and pairs are known.
	cal := b.Calibration()
	if s := cal.Score(ws[17].Counts, ws[17].Grams, 1); len(s.Novel) != 0 || slices.ContainsFunc(s.Pairs, func(p PairContribution) bool { return p.Learned == 0 }) {
		t.Errorf("in-sample score has novel %v, pairs %+v", s.Novel, s.Pairs)
	}
}

// TestViews: load alone cannot alert, while another mix or another order of
// the learned syscalls does, at a budget of one false alert a day.
func TestViews(t *testing.T) {
	const budget, window = 1.0, 1.0
	wl := newSeqWorkload(42)
	b := learnSeqBaseline(wl, 300)
	cal := b.Calibration()
	th := cal.Threshold(budget, window)
	if th.Value <= minThreshold {
		t.Logf("threshold %.2f is the minimum", th.Value)
	}
	learnedPairs := PairCounts(b.Order.Grams)
	// checkMix: another mix of learned routines alerts on its composition, and
	// up is a syscall whose share grew most.
	checkMix := func(up string) func(t *testing.T, s, _ WindowScore) {
		return func(t *testing.T, s, _ WindowScore) {
			if s.Value <= th.Value {
				t.Errorf("another mix scores %.2f, threshold %.2f", s.Value, th.Value)
			}
			if v, _ := viewScore(s, ViewVolume); math.Abs(v.Z) > 3 {
				t.Errorf("volume view %+v: the window is not at the learned volume", v)
			}
			if d := s.Driver(); d.View != ViewComposition {
				t.Errorf("driven by %+v, want composition (views %+v)", d, s.Views)
			}
			if len(s.Novel) != 0 || len(s.Pairs) != 0 {
				t.Errorf("novel %v, pairs %+v: every syscall and pair was learned", s.Novel, s.Pairs)
			}
			c, ok := contribution(s, up)
			if !ok || c.Observed <= c.Expected {
				t.Errorf("top %+v: want %s's share up", s.Top, up)
			}
		}
	}
	tests := []struct {
		name   string
		window func(wl *seqWorkload, steady Window) Window
		check  func(t *testing.T, s, steady WindowScore)
	}{
		{
			name:   "steady window is below the threshold",
			window: func(_ *seqWorkload, steady Window) Window { return steady },
			check: func(t *testing.T, s, _ WindowScore) {
				if s.Value >= th.Value {
					t.Errorf("steady window scores %.2f, threshold %.2f", s.Value, th.Value)
				}
				if len(s.Views) != 3 {
					t.Errorf("views %+v, want composition, order and volume", s.Views)
				}
			},
		},
		{
			name:   "4x the load: the same score, and the volume view says so",
			window: func(_ *seqWorkload, steady Window) Window { return scaled(steady, 4) },
			check: func(t *testing.T, s, steady WindowScore) {
				if math.Abs(s.Value-steady.Value) > 1e-9 {
					t.Errorf("4x window scores %.12g, the same window at 1x %.12g", s.Value, steady.Value)
				}
				if s.Value >= th.Value {
					t.Errorf("4x window scores %.2f, threshold %.2f", s.Value, th.Value)
				}
				v, ok := viewScore(s, ViewVolume)
				if !ok || v.Z < 8 || math.Abs(v.Raw-math.Log(4)) > 0.3 {
					t.Errorf("volume view %+v, want z above 8 and raw about ln 4", v)
				}
			},
		},
		{
			name:   "10x the load",
			window: func(_ *seqWorkload, steady Window) Window { return scaled(steady, 10) },
			check: func(t *testing.T, s, steady WindowScore) {
				if math.Abs(s.Value-steady.Value) > 1e-9 {
					t.Errorf("10x window scores %.12g, the same window at 1x %.12g", s.Value, steady.Value)
				}
			},
		},
		{
			name:   "only requests at the learned volume",
			window: func(wl *seqWorkload, _ Window) Window { return onlyRoutine(wl, 0) },
			check:  checkMix("accept4"),
		},
		{
			name:   "only polling at the learned volume",
			window: func(wl *seqWorkload, _ Window) Window { return onlyRoutine(wl, 1) },
			check:  checkMix("epoll_wait"),
		},
		{
			name: "the learned syscalls in a new order",
			window: func(wl *seqWorkload, _ Window) Window {
				wl.reverse = true
				return wl.next(1)
			},
			check: func(t *testing.T, s, _ WindowScore) {
				if s.Value <= th.Value {
					t.Errorf("new order scores %.2f, threshold %.2f", s.Value, th.Value)
				}
				if len(s.Novel) != 0 {
					t.Errorf("novel %v: every syscall was learned", s.Novel)
				}
				if d := s.Driver(); d.View != ViewOrder {
					t.Errorf("driven by %+v, want order (views %+v)", d, s.Views)
				}
				if len(s.Pairs) == 0 || s.Pairs[0].Learned != 0 {
					t.Fatalf("pairs %+v, want a never-seen pair first", s.Pairs)
				}
				for _, p := range s.Pairs {
					prev, next, _ := strings.Cut(p.Pair, " → ")
					if learned := learnedPairs[GramKey(prev, next)]; learned != p.Learned || p.Count == 0 {
						t.Errorf("pair %+v: learned %d times", p, learned)
					}
				}
			},
		},
		{
			name: "one foreign routine among normal ones",
			window: func(wl *seqWorkload, steady Window) Window {
				w := scaled(steady, 1)
				seq := []string{"openat", "read", "close", "mmap", "munmap", "socket", "connect", "dup2", "dup2", "execve"}
				for _, name := range seq {
					w.Counts[name]++
				}
				for g, n := range GramsOfSequence(seq) {
					w.Grams[g] += n
				}
				return w
			},
			check: func(t *testing.T, s, steady WindowScore) {
				if s.Value <= steady.Value {
					t.Errorf("scores %.2f, the steady window %.2f", s.Value, steady.Value)
				}
				if !slices.Equal(s.Novel, []string{"connect", "dup2", "execve", "socket"}) {
					t.Errorf("novel %v", s.Novel)
				}
				if !slices.ContainsFunc(s.Pairs, func(p PairContribution) bool { return p.Pair == "dup2 → execve" && p.Learned == 0 }) {
					t.Errorf("pairs %+v do not name dup2 → execve", s.Pairs)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wl := newSeqWorkload(43)
			steadyW := wl.next(1)
			steady := cal.Score(steadyW.Counts, steadyW.Grams, 1)
			w := tt.window(wl, steadyW)
			s := cal.Score(w.Counts, w.Grams, w.Duration.Seconds())
			t.Logf("score %.2f (threshold %.2f), views %+v", s.Value, th.Value, s.Views)
			// The verdict decides on the same score.
			v := Verdict(VerdictInput{Baseline: b, Window: w, Budget: budget, DefaultWindow: time.Second})
			if v.Score.Value != s.Value || v.Anomalous != (s.Value > th.Value) {
				t.Errorf("verdict score %v anomalous %v, want %v against %v", v.Score.Value, v.Anomalous, s.Value, th.Value)
			}
			tt.check(t, s, steady)
		})
	}
}

// TestZeroGramsAreNoOrder: grams that count no call (a recorded window may
// carry them) say nothing of order, in learning and in scoring.
func TestZeroGramsAreNoOrder(t *testing.T) {
	b := learnSeqBaseline(newSeqWorkload(5), 60)
	w := newSeqWorkload(6).next(1)
	want := b.Calibration().Score(w.Counts, nil, 1)
	tests := []struct {
		name  string
		grams map[string]uint64
	}{
		{name: "no grams", grams: nil},
		{name: "empty grams", grams: map[string]uint64{}},
		{name: "zero counts", grams: map[string]uint64{"read": 0, "accept4,read": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := b.Calibration().Score(w.Counts, tt.grams, 1)
			if _, ok := viewScore(s, ViewOrder); ok || !reflect.DeepEqual(s, want) {
				t.Errorf("score %+v, want the counts-only %+v", s, want)
			}
			learned := b.Clone()
			w := w
			w.Grams = tt.grams
			learned.AddWindow(w, 0)
			if learned.Order.Windows != b.Order.Windows || !maps.Equal(learned.Order.Grams, b.Order.Grams) {
				t.Errorf("order view learned from no calls: %d windows, was %d", learned.Order.Windows, b.Order.Windows)
			}
			if learned.Composition.Windows != b.Composition.Windows+1 {
				t.Errorf("composition view did not learn the window")
			}
		})
	}
}

// Composition and order: the larger of order and weighted composition; alone (no order data)
// it stands unweighted.
func TestCombine(t *testing.T) {
	tests := []struct {
		name              string
		comp, order       float64
		hasComp, hasOrder bool
		want              float64
		driver            string
	}{
		{"order stands for both when it is stronger", 4, 3, true, true, 3, ViewOrder},
		{"a large composition shift with known order is weighed, not alone", 30, 0, true, true, compositionWeight * 30, ViewComposition},
		{"composition does not add to order", 20, 5, true, true, compositionWeight * 20, ViewComposition},
		{"no order: composition alone", 5, 0, true, false, 5, ViewComposition},
		{"no composition: order alone", 0, 6, false, true, 6, ViewOrder},
		{"neither", 0, 0, false, false, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := combine(tc.comp, tc.hasComp, tc.order, tc.hasOrder); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("combine = %v, want %v", got, tc.want)
			}
			var s WindowScore
			if tc.hasComp {
				s.Views = append(s.Views, ViewScore{View: ViewComposition, Z: tc.comp})
			}
			if tc.hasOrder {
				s.Views = append(s.Views, ViewScore{View: ViewOrder, Z: tc.order})
			}
			if got := s.Driver().View; got != tc.driver {
				t.Errorf("driver %q, want %q", got, tc.driver)
			}
		})
	}
}

// TestImpliedSyscallsAreNotNovel: a thread exit is unseen but not novel in an
// image that creates threads, and a peer's address in one that accepts
// connections; in one that never does, each is novel.
func TestImpliedSyscallsAreNotNovel(t *testing.T) {
	learn := func(parent, absent string) *Baseline {
		wl := newSeqWorkload(11)
		b := NewBaseline(testImage, testTag, "")
		for range 60 {
			w := wl.next(1)
			delete(w.Counts, absent)
			if parent != "" {
				w.Counts[parent] = 1
			}
			b.AddWindow(w, 0)
		}
		b.Promote(b.LastSeen)
		return b
	}
	for _, tt := range []struct {
		name      string
		parent    string // learned in every window ("" none)
		absent    string // never made (the workload accepts connections)
		unseen    string
		wantNovel []string
	}{
		{name: "threads created while learning", parent: "clone3", unseen: "exit", wantNovel: nil},
		{name: "no thread ever created", unseen: "exit", wantNovel: []string{"exit"}},
		{name: "connections accepted while learning", parent: "accept4", unseen: "getpeername", wantNovel: nil},
		{name: "no connection ever accepted", parent: "connect", absent: "accept4", unseen: "getpeername", wantNovel: []string{"getpeername"}},
		{name: "positional writes while learning", parent: "pwrite64", unseen: "pwritev", wantNovel: nil},
		{name: "no positional write ever made", parent: "write", unseen: "pwritev", wantNovel: []string{"pwritev"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := learn(tt.parent, tt.absent)
			cal := b.Calibration()
			w := newSeqWorkload(12).next(1)
			delete(w.Counts, tt.absent)
			if tt.parent != "" {
				w.Counts[tt.parent] = 1
			}
			plain := cal.Score(w.Counts, w.Grams, 1)
			w.Counts[tt.unseen] = 2
			s := cal.Score(w.Counts, w.Grams, 1)
			if !slices.Equal(s.Novel, tt.wantNovel) {
				t.Errorf("novel %v, want %v", s.Novel, tt.wantNovel)
			}
			if s.Value <= plain.Value {
				t.Errorf("an unseen %s scores %.3f, the window without it %.3f: it must still weigh", tt.unseen, s.Value, plain.Value)
			}
		})
	}
}

// A gram repeated in a loop weighs the square root of its count: one new
// pair beside a known pair made a thousand times is a visible share, and
// the median surprisal is not the loop's alone.
func TestRepeatsAreDamped(t *testing.T) {
	lm := newGramTables(map[string]uint64{"read,write": 500, "write,read": 500})
	st := lm.score(map[string]uint64{"read,write": 1000, "write,openat": 1}, nil)
	if want := 1 / (1 + math.Sqrt(1000)); math.Abs(st.unseen-want) > 1e-12 {
		t.Errorf("unseen share %.6f, want %.6f (the loop weighs √1000, the new pair 1)", st.unseen, want)
	}
	if want := 1 + math.Sqrt(1000); math.Abs(st.pairs-want) > 1e-12 {
		t.Errorf("pair weight %.6f, want %.6f", st.pairs, want)
	}
	// Thirty distinct new grams made once each outweigh a loop of 400.
	window := map[string]uint64{"read,write": 400}
	for i := range 30 {
		window[fmt.Sprintf("write,sys%d", i)] = 1
	}
	if st := lm.score(window, nil); st.median <= lm.surprisal("read,write", nil) {
		t.Errorf("median surprisal %.3f is the loop's (%.3f): 30 new grams count less than a loop of 400",
			st.median, lm.surprisal("read,write", nil))
	}
}

func TestNovelTrigramsCountDistinct(t *testing.T) {
	lm := newGramTables(map[string]uint64{"read,write,read": 500, "write,read,write": 500})
	for _, tt := range []struct {
		gram, want string
		ok         bool
	}{
		{"a,b,c,d", "b,c,d", true}, {"a,b,c", "a,b,c", true}, {"a,b", "", false}, {"a", "", false},
	} {
		if got, ok := lastTrigram(tt.gram); got != tt.want || ok != tt.ok {
			t.Errorf("lastTrigram(%q) = %q, %v; want %q, %v", tt.gram, got, ok, tt.want, tt.ok)
		}
	}
	// One new trigram repeated 100 times is one; ten new ones made ten times
	// each are ten, in a window of the same 1,100 calls.
	loop := map[string]uint64{"read,write,read": 1000, "x,read,write,openat": 100}
	varied := map[string]uint64{"read,write,read": 1000}
	for i := range 10 {
		varied[fmt.Sprintf("x,read,write,sys%d", i)] = 10
	}
	if got, want := lm.score(loop, nil).novelTrigrams, 1.0/1100; math.Abs(got-want) > 1e-15 {
		t.Errorf("a repeated new trigram: %.6f per call, want %.6f", got, want)
	}
	if got, want := lm.score(varied, nil).novelTrigrams, 10.0/1100; math.Abs(got-want) > 1e-15 {
		t.Errorf("ten new trigrams: %.6f per call, want %.6f", got, want)
	}
	// Held out, a window's own trigrams are new to the rest.
	own := map[string]uint64{"write,read,write": 500}
	if got := lm.score(own, lm.without(newGramTables(own))).novelTrigrams; got != 1.0/500 {
		t.Errorf("held out, the only window with write,read,write: %.6f per call, want %.6f", got, 1.0/500)
	}
}
