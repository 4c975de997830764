package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// relTol is the relative tolerance for statistics that are computed in a
// different order (Welford vs two-pass vs Chan's merge): equal in exact
// arithmetic, a few ulps apart in floating point.
const relTol = 1e-9

// approxEqual reports whether a and b agree to relTol, relative to the larger
// of |a|, |b| and 1 (so values that should be 0 may carry rounding noise).
func approxEqual(a, b float64) bool {
	if a == b {
		return true
	}
	scale := math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
	return math.Abs(a-b) <= relTol*scale
}

// twoPass computes the statistics Moments keep, directly from the data.
func twoPass(xs []float64) Moments {
	if len(xs) == 0 {
		return Moments{}
	}
	var sum float64
	mx := xs[0]
	for _, x := range xs {
		sum += x
		mx = math.Max(mx, x)
	}
	mean := sum / float64(len(xs))
	var m2 float64
	for _, x := range xs {
		m2 += (x - mean) * (x - mean)
	}
	return Moments{N: uint64(len(xs)), Mean: mean, M2: m2, Max: mx}
}

func addAll(xs []float64) Moments {
	var m Moments
	for _, x := range xs {
		m.Add(x)
	}
	return m
}

// checkMoments compares got with want: N and Max exactly, Mean and M2 to relTol.
func checkMoments(t *testing.T, what string, got, want Moments) {
	t.Helper()
	if got.N != want.N {
		t.Errorf("%s: N = %d, want %d", what, got.N, want.N)
	}
	if !approxEqual(got.Mean, want.Mean) {
		t.Errorf("%s: Mean = %.17g, want %.17g", what, got.Mean, want.Mean)
	}
	if !approxEqual(got.M2, want.M2) {
		t.Errorf("%s: M2 = %.17g, want %.17g", what, got.M2, want.M2)
	}
	if got.Max != want.Max {
		t.Errorf("%s: Max = %.17g, want %.17g", what, got.Max, want.Max)
	}
}

// momentData are the data sets the moments tests run on: small and large
// magnitudes, a large offset with little spread (where a naive sum of squares
// loses everything), integers, constants and negative values.
func momentData() []struct {
	name string
	xs   []float64
} {
	r := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, f func() float64) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = f()
		}
		return xs
	}
	return []struct {
		name string
		xs   []float64
	}{
		{"single", []float64{42}},
		{"two", []float64{1, 3}},
		{"constant", gen(50, func() float64 { return 7.25 })},
		{"uniform", gen(500, func() float64 { return r.Float64() * 100 })},
		{"exponential rates", gen(1000, func() float64 { return r.ExpFloat64() * 5000 })},
		// Mean/stddev of 1e5: a naive sum of squares would lose most digits here,
		// Welford and Chan keep about 1e-11. (At 1e9 even Welford's inputs x-mean
		// carry 1e-7 relative error, which no formula can recover.)
		{"large offset small spread", gen(300, func() float64 { return 1e5 + r.NormFloat64() })},
		{"integers", gen(200, func() float64 { return float64(r.IntN(20)) })},
		{"negative", gen(100, func() float64 { return -1 - r.Float64()*10 })},
		{"tiny", gen(100, func() float64 { return r.Float64() * 1e-6 })},
	}
}

func TestMomentsAddMatchesTwoPass(t *testing.T) {
	for _, tc := range momentData() {
		t.Run(tc.name, func(t *testing.T) {
			checkMoments(t, "Add", addAll(tc.xs), twoPass(tc.xs))
		})
	}
}

func TestMomentsAddFirstValueSetsMax(t *testing.T) {
	// A zero Moments has Max 0; the first observation must replace it even when
	// it is smaller (negative), or Max would be a value never observed.
	var m Moments
	m.Add(-5)
	if m.Max != -5 {
		t.Fatalf("Max after Add(-5) = %v, want -5", m.Max)
	}
	m.Add(-7)
	if m.Max != -5 {
		t.Fatalf("Max after Add(-5), Add(-7) = %v, want -5", m.Max)
	}
	m.Add(3)
	if m.Max != 3 {
		t.Fatalf("Max after Add(3) = %v, want 3", m.Max)
	}
}

func TestMomentsMergeEqualsAddAll(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range momentData() {
		n := len(tc.xs)
		splits := []struct {
			name string
			k    int
		}{{"empty left", 0}, {"empty right", n}, {"halves", n / 2}, {"random", r.IntN(n + 1)}}
		for _, sp := range splits {
			k := sp.k
			t.Run(tc.name+"/"+sp.name, func(t *testing.T) {
				a, b := addAll(tc.xs[:k]), addAll(tc.xs[k:])
				want := twoPass(tc.xs)
				checkMoments(t, "a.Merge(b)", a.Merge(b), want)
				checkMoments(t, "b.Merge(a)", b.Merge(a), want)
			})
		}
	}
}

func TestMomentsMergeManyParts(t *testing.T) {
	// Folding many small blocks (as many nodes would) must not accumulate error.
	r := rand.New(rand.NewPCG(5, 6))
	xs := make([]float64, 0, 5000)
	var merged Moments
	for len(xs) < cap(xs) {
		block := make([]float64, r.IntN(7)) // including empty blocks
		for i := range block {
			block[i] = 1e6 + r.NormFloat64()*30
		}
		xs = append(xs, block...)
		merged = merged.Merge(addAll(block))
	}
	checkMoments(t, "merged blocks", merged, twoPass(xs))
}

func TestMomentsMergeEmpty(t *testing.T) {
	full := addAll([]float64{1, 2, 3, 10})
	tests := []struct {
		name string
		a, b Moments
		want Moments
	}{
		{"empty with empty", Moments{}, Moments{}, Moments{}},
		{"empty left", Moments{}, full, full},
		{"empty right", full, Moments{}, full},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Merge(tc.b); got != tc.want {
				t.Errorf("Merge = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMomentsOverCountsAbsentWindowsAsZeros(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tc := range momentData() {
		if tc.name == "negative" {
			continue // rates are never negative; zeros would not be "absent"
		}
		for _, extra := range []int{0, 1, 3, len(tc.xs), 10 * len(tc.xs), 1 + r.IntN(100)} {
			total := len(tc.xs) + extra
			padded := append(append([]float64(nil), tc.xs...), make([]float64, extra)...)
			t.Run(fmt.Sprintf("%s/%d zeros", tc.name, extra), func(t *testing.T) {
				want := twoPass(padded)
				wantVar := 0.0
				if total > 1 {
					wantVar = want.M2 / float64(total-1)
				}
				mean, variance := addAll(tc.xs).Over(uint64(total))
				if !approxEqual(mean, want.Mean) {
					t.Errorf("Over(%d) mean = %.17g, want %.17g", total, mean, want.Mean)
				}
				if !approxEqual(variance, wantVar) {
					t.Errorf("Over(%d) variance = %.17g, want %.17g", total, variance, wantVar)
				}
				if variance < 0 {
					t.Errorf("Over(%d) variance = %v < 0", total, variance)
				}
			})
		}
	}
}

func TestMomentsOverEdgeCases(t *testing.T) {
	three := addAll([]float64{2, 4, 6}) // mean 4, sample variance 4
	tests := []struct {
		name               string
		m                  Moments
		total              uint64
		wantMean, wantVari float64
	}{
		{"no windows", three, 0, 0, 0},
		{"never present", Moments{}, 10, 0, 0},
		{"single window", addAll([]float64{5}), 1, 5, 0},
		{"present in one of two", addAll([]float64{5}), 2, 2.5, 12.5},
		{"present in all", three, 3, 4, 4},
		// Inconsistent data (more windows with the value than windows in all) must
		// not produce a negative count of zeros: it is treated as total == N.
		{"total below n", three, 2, 4, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mean, v := tc.m.Over(tc.total)
			if !approxEqual(mean, tc.wantMean) || !approxEqual(v, tc.wantVari) {
				t.Errorf("Over(%d) = (%v, %v), want (%v, %v)", tc.total, mean, v, tc.wantMean, tc.wantVari)
			}
		})
	}
}

func TestMomentsMax(t *testing.T) {
	tests := []struct {
		name string
		a, b []float64
		want float64
	}{
		{"max in first", []float64{9, 1}, []float64{2, 3}, 9},
		{"max in second", []float64{1, 2}, []float64{3, 8, 0}, 8},
		{"max last added", []float64{1, 2, 100}, nil, 100},
		{"all negative", []float64{-3, -1}, []float64{-2}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := addAll(append(append([]float64(nil), tc.a...), tc.b...)).Max; got != tc.want {
				t.Errorf("Add: Max = %v, want %v", got, tc.want)
			}
			if got := addAll(tc.a).Merge(addAll(tc.b)).Max; got != tc.want {
				t.Errorf("Merge: Max = %v, want %v", got, tc.want)
			}
		})
	}
}
