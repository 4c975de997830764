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
	// Consecutive pairs only one baseline has seen, the DiffPairs most
	// frequent of each, with how many there are in all. PairsCompared is false
	// when either baseline has learned no order (upgraded from format 1): every
	// pair of the other would look added or removed.
	PairsCompared     bool        `json:"pairs_compared"`
	PairsAdded        []PairCount `json:"pairs_added"`   // counts in B
	PairsRemoved      []PairCount `json:"pairs_removed"` // counts in A
	PairsAddedTotal   int         `json:"pairs_added_total"`
	PairsRemovedTotal int         `json:"pairs_removed_total"`
}

// DiffPairs is how many added and how many removed pairs a diff lists.
const DiffPairs = 10

// PairCount is a consecutive pair ("openat → execve") and how often a baseline
// learned it.
type PairCount struct {
	Pair  string `json:"pair"`
	Count uint64 `json:"count"`
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
	d.PairsAdded, d.PairsRemoved = []PairCount{}, []PairCount{}
	if a.Order.Windows > 0 && b.Order.Windows > 0 {
		d.PairsCompared = true
		pa, pb := PairCounts(a.Order.Grams), PairCounts(b.Order.Grams)
		added, removed := keyDiff(pa, pb)
		d.PairsAddedTotal, d.PairsRemovedTotal = len(added), len(removed)
		d.PairsAdded, d.PairsRemoved = topPairCounts(pb, added, DiffPairs), topPairCounts(pa, removed, DiffPairs)
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

// TopPairs are the n most frequent consecutive pairs of grams, most frequent
// first (ties by name), named with PairKey.
func TopPairs(grams map[string]uint64, n int) []PairCount {
	pairs := PairCounts(grams)
	keys := make([]string, 0, len(pairs))
	for p := range pairs {
		keys = append(keys, p)
	}
	return topPairCounts(pairs, keys, n)
}

// topPairCounts ranks the keys of counts by count, most first.
func topPairCounts(counts map[string]uint64, keys []string, n int) []PairCount {
	out := make([]PairCount, 0, len(keys))
	for _, p := range keys {
		prev, next := context(p)
		out = append(out, PairCount{Pair: PairKey(prev, next), Count: counts[p]})
	}
	slices.SortFunc(out, func(x, y PairCount) int { return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Pair, y.Pair)) })
	return out[:min(max(n, 0), len(out))]
}
