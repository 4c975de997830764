package model

import (
	"encoding/json"
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
	for _, field := range []string{"syscalls_added", "syscalls_removed", "binaries_added", "binaries_removed", "rate_changes"} {
		if !strings.Contains(string(raw), `"`+field+`":[]`) {
			t.Errorf("JSON %s does not have %q as an empty array", raw, field)
		}
	}
}
