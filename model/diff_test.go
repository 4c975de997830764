package model

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// diffPair is two hand-made baselines of 10 windows each. Every syscall is in
// every window (N = Windows), so its mean over all windows is Mean and its
// variance is M2/9.
func diffPair() (a, b *Baseline) {
	mk := func(tag string, syscalls map[string]Moments, binaries ...string) *Baseline {
		bl := NewBaseline("registry.example/shop/api", tag, "")
		bl.Windows, bl.Seconds = 10, 10
		bl.Containers["c"] = 10
		bl.Total = Moments{N: 10, Mean: 1, Max: 1}
		bl.Syscalls = syscalls
		for _, p := range binaries {
			bl.Binaries[p] = 1
		}
		return bl
	}
	c := func(mean float64) Moments { return Moments{N: 10, Mean: mean, Max: mean} }
	a = mk("v1", map[string]Moments{
		"read":  c(100), // unchanged: shift 0
		"write": c(100), // 100 -> 200, no spread: scale 5% of 200 = 10, shift 10
		"readv": c(100), // same as write: ties are ordered by name
		"futex": c(50),  // 50 -> 40: scale 2.5, shift 4
		// 10 -> 30 with standard deviation 10 in both (M2 = 900 over 9 degrees of
		// freedom): pooled 10, shift 2.
		"poll":  {N: 10, Mean: 10, M2: 900, Max: 40},
		"idle":  {}, // present in both but never made: no scale, no rate change
		"clone": c(1),
	}, "/bin/sh", "/usr/bin/api")
	b = mk("v2", map[string]Moments{
		"read":    c(100),
		"write":   c(200),
		"readv":   c(200),
		"futex":   c(40),
		"poll":    {N: 10, Mean: 30, M2: 900, Max: 60},
		"idle":    {},
		"openat":  c(3),
		"connect": c(1),
	}, "/usr/bin/api", "/usr/bin/curl", "/bin/bash")
	return a, b
}

func TestDiff(t *testing.T) {
	a, b := diffPair()
	d := Diff(a, b, 100)
	if d.A != "registry.example/shop/api:v1" || d.B != "registry.example/shop/api:v2" {
		t.Errorf("A, B = %q, %q", d.A, d.B)
	}
	checks := []struct {
		name      string
		got, want []string
	}{
		{"syscalls added", d.SyscallsAdded, []string{"connect", "openat"}},
		{"syscalls removed", d.SyscallsRemoved, []string{"clone"}},
		{"binaries added", d.BinariesAdded, []string{"/bin/bash", "/usr/bin/curl"}},
		{"binaries removed", d.BinariesRemoved, []string{"/bin/sh"}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !slices.Equal(c.got, c.want) {
				t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
			}
		})
	}
	t.Run("rate changes", func(t *testing.T) {
		want := []RateChange{
			{Syscall: "readv", MeanA: 100, MeanB: 200, Shift: 10},
			{Syscall: "write", MeanA: 100, MeanB: 200, Shift: 10},
			{Syscall: "futex", MeanA: 50, MeanB: 40, Shift: 4},
			{Syscall: "poll", MeanA: 10, MeanB: 30, Shift: 2},
			{Syscall: "read", MeanA: 100, MeanB: 100, Shift: 0},
		}
		if len(d.RateChanges) != len(want) {
			t.Fatalf("RateChanges = %+v,\nwant %+v", d.RateChanges, want)
		}
		for i, w := range want {
			g := d.RateChanges[i]
			if g.Syscall != w.Syscall || !approxEqual(g.MeanA, w.MeanA) || !approxEqual(g.MeanB, w.MeanB) || !approxEqual(g.Shift, w.Shift) {
				t.Errorf("RateChanges[%d] = %+v, want %+v", i, g, w)
			}
		}
	})
}

func TestDiffRateChangesUseAllWindows(t *testing.T) {
	// A syscall made in half the windows at rate 20 has a mean of 10 over all
	// windows; in B it is made in every window at rate 10: no change.
	a, b := diffPair()
	a.Syscalls["mmap"] = Moments{N: 5, Mean: 20, Max: 20}
	b.Syscalls["mmap"] = Moments{N: 10, Mean: 10, Max: 10}
	var got *RateChange
	for _, rc := range Diff(a, b, 100).RateChanges {
		if rc.Syscall == "mmap" {
			got = &rc
		}
	}
	if got == nil {
		t.Fatal("no rate change for mmap")
	}
	if !approxEqual(got.MeanA, 10) || !approxEqual(got.MeanB, 10) || got.Shift != 0 {
		t.Errorf("mmap = %+v, want means 10 and 10, shift 0", *got)
	}
}

func TestDiffTopN(t *testing.T) {
	a, b := diffPair()
	tests := []struct {
		name string
		top  int
		want []string
	}{
		{"top 2", 2, []string{"readv", "write"}},
		{"top 3", 3, []string{"readv", "write", "futex"}},
		{"top 0", 0, []string{}},
		{"more than there are", 50, []string{"readv", "write", "futex", "poll", "read"}},
		// A negative count (a mistyped --top) must not panic; it keeps none, like 0.
		{"negative", -1, []string{}},
		{"very negative", -1000, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Diff(a, b, %d) panicked: %v", tc.top, r)
				}
			}()
			d := Diff(a, b, tc.top)
			got := []string{}
			for _, rc := range d.RateChanges {
				got = append(got, rc.Syscall)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("rate changes = %q, want %q", got, tc.want)
			}
			// The cut must not change the other parts of the diff.
			if len(d.SyscallsAdded) != 2 || len(d.BinariesAdded) != 2 {
				t.Errorf("top %d changed the added lists: %q, %q", tc.top, d.SyscallsAdded, d.BinariesAdded)
			}
		})
	}
}

func TestDiffIdentical(t *testing.T) {
	a, _ := diffPair()
	d := Diff(a, a.Clone(), 10)
	if len(d.SyscallsAdded)+len(d.SyscallsRemoved)+len(d.BinariesAdded)+len(d.BinariesRemoved) != 0 {
		t.Errorf("diff of a baseline with itself: %+v", d)
	}
	for _, rc := range d.RateChanges {
		if rc.Shift != 0 || math.IsNaN(rc.Shift) {
			t.Errorf("rate change %+v in a diff of a baseline with itself", rc)
		}
	}
	// Empty lists are JSON arrays, not null, so `diff --json` consumers can iterate.
	raw, err := json.Marshal(Diff(NewBaseline("x", "1", ""), NewBaseline("x", "2", ""), 10))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"syscalls_added", "syscalls_removed", "binaries_added", "binaries_removed", "rate_changes", "pairs_added", "pairs_removed"} {
		if !strings.Contains(string(raw), `"`+field+`":[]`) {
			t.Errorf("JSON %s does not have %q as an empty array", raw, field)
		}
	}
}

func TestDiffPairs(t *testing.T) {
	// Pair counts are summed from grams: "x,a,b" and "a,b" both count a → b.
	withGrams := func(tag string, grams map[string]uint64) *Baseline {
		b := NewBaseline("registry.example/shop/api", tag, "")
		b.Order = Order{Windows: 5, Grams: grams}
		return b
	}
	a := withGrams("v1", map[string]uint64{
		"read": 9, "read,write": 4, "x,read,write": 3, // kept
		"open,close": 7, "x,y,open,close": 1, // removed: 8
		"stat,close": 2, // removed: 2
	})
	b := withGrams("v2", map[string]uint64{
		"read,write":  1,                    // kept
		"read,execve": 5, "a,b,c,ptrace": 1, // added: 5 and 1
		"connect": 3, // no pair
	})
	d := Diff(a, b, 10)
	if !d.PairsCompared {
		t.Fatal("pairs not compared")
	}
	wantAdded := []PairCount{{Pair: "read → execve", Count: 5}, {Pair: "c → ptrace", Count: 1}}
	wantRemoved := []PairCount{{Pair: "open → close", Count: 8}, {Pair: "stat → close", Count: 2}}
	if !slices.Equal(d.PairsAdded, wantAdded) || d.PairsAddedTotal != 2 {
		t.Errorf("pairs added = %v (%d in all), want %v", d.PairsAdded, d.PairsAddedTotal, wantAdded)
	}
	if !slices.Equal(d.PairsRemoved, wantRemoved) || d.PairsRemovedTotal != 2 {
		t.Errorf("pairs removed = %v (%d in all), want %v", d.PairsRemoved, d.PairsRemovedTotal, wantRemoved)
	}

	t.Run("top DiffPairs by count", func(t *testing.T) {
		grams := map[string]uint64{}
		for i := range 25 {
			grams[GramKey("p", fmt.Sprintf("s%02d", i))] = uint64(100 - i%5) // ties ordered by name
		}
		d := Diff(withGrams("v1", map[string]uint64{"read": 1}), withGrams("v2", grams), 10)
		if len(d.PairsAdded) != DiffPairs || d.PairsAddedTotal != 25 {
			t.Fatalf("%d pairs added listed, %d in all; want %d of 25", len(d.PairsAdded), d.PairsAddedTotal, DiffPairs)
		}
		want := []string{"p → s00", "p → s05", "p → s10", "p → s15", "p → s20", "p → s01", "p → s06", "p → s11", "p → s16", "p → s21"}
		for i, p := range d.PairsAdded {
			if p.Pair != want[i] {
				t.Errorf("pairs added[%d] = %v, want %s", i, p, want[i])
			}
		}
	})
	t.Run("not compared without order", func(t *testing.T) {
		// An upgraded format 1 baseline has learned no order yet: every pair of
		// the other would show as added or removed.
		v1 := NewBaseline("registry.example/shop/api", "v0", "")
		for _, d := range []BaselineDiff{Diff(v1, b, 10), Diff(a, v1, 10)} {
			if d.PairsCompared || len(d.PairsAdded)+len(d.PairsRemoved) != 0 || d.PairsAddedTotal+d.PairsRemovedTotal != 0 {
				t.Errorf("diff with a baseline without order: %+v", d)
			}
		}
	})
}

func TestTopPairs(t *testing.T) {
	grams := map[string]uint64{"read": 50, "a,read,write": 2, "read,write": 3, "open,read": 5, "x,open,read": 1, "close,open": 6, "b,c": 0}
	got := TopPairs(grams, 2)
	want := []PairCount{{Pair: "close → open", Count: 6}, {Pair: "open → read", Count: 6}}
	if !slices.Equal(got, want) {
		t.Errorf("TopPairs(2) = %v, want %v", got, want)
	}
	if got := TopPairs(grams, 10); len(got) != 3 || got[2] != (PairCount{Pair: "read → write", Count: 5}) {
		t.Errorf("TopPairs(10) = %v", got)
	}
	if got := TopPairs(nil, 10); got == nil || len(got) != 0 {
		t.Errorf("TopPairs(nil) = %#v, want an empty list", got)
	}
	if got := TopPairs(grams, -1); len(got) != 0 {
		t.Errorf("TopPairs(-1) = %v, want none", got)
	}
}
