package model

import (
	"cmp"
	"math"
	"slices"
)

// BaselineDiff is what changed from baseline A to baseline B (e.g. two tags).
type BaselineDiff struct {
	A               string       `json:"a"`
	B               string       `json:"b"`
	SyscallsAdded   []string     `json:"syscalls_added"`
	SyscallsRemoved []string     `json:"syscalls_removed"`
	BinariesAdded   []string     `json:"binaries_added"`
	BinariesRemoved []string     `json:"binaries_removed"`
	RateChanges     []RateChange `json:"rate_changes"` // largest first
}

// RateChange is one syscall's mean rate in both baselines.
type RateChange struct {
	Syscall string  `json:"syscall"`
	MeanA   float64 `json:"mean_a"`
	MeanB   float64 `json:"mean_b"`
	// Shift is |MeanB-MeanA| over the pooled standard deviation (at least 5% of the
	// larger mean): how many "normal wobbles" the rate moved.
	Shift float64 `json:"shift"`
}

// Diff compares two baselines; at most topRates rate changes are kept.
func Diff(a, b *Baseline, topRates int) BaselineDiff {
	d := BaselineDiff{A: a.Key(), B: b.Key(),
		SyscallsAdded: []string{}, SyscallsRemoved: []string{}, BinariesAdded: []string{}, BinariesRemoved: []string{}, RateChanges: []RateChange{}}
	d.SyscallsAdded, d.SyscallsRemoved = keyDiff(a.Syscalls, b.Syscalls)
	d.BinariesAdded, d.BinariesRemoved = keyDiff(a.Binaries, b.Binaries)
	for name := range a.Syscalls {
		if _, ok := b.Syscalls[name]; !ok {
			continue
		}
		ma, sa := a.SyscallStats(name)
		mb, sb := b.SyscallStats(name)
		scale := math.Max(math.Sqrt((sa*sa+sb*sb)/2), 0.05*math.Max(ma, mb))
		if scale == 0 {
			continue
		}
		d.RateChanges = append(d.RateChanges, RateChange{Syscall: name, MeanA: ma, MeanB: mb, Shift: math.Abs(mb-ma) / scale})
	}
	slices.SortFunc(d.RateChanges, func(x, y RateChange) int {
		return cmp.Or(cmp.Compare(y.Shift, x.Shift), cmp.Compare(x.Syscall, y.Syscall))
	})
	topRates = max(topRates, 0)
	if len(d.RateChanges) > topRates {
		d.RateChanges = d.RateChanges[:topRates]
	}
	return d
}

func keyDiff[V any](a, b map[string]V) (added, removed []string) {
	added, removed = []string{}, []string{}
	for k := range b {
		if _, ok := a[k]; !ok {
			added = append(added, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			removed = append(removed, k)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}
