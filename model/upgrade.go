package model

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Prior records that a baseline started from another tag's (an image
// upgrade): a new tag of a repository runs mostly the old tag's code, so it
// need not learn from nothing.
type Prior struct {
	From    string    `json:"from"`    // the old tag's profile key
	Windows uint64    `json:"windows"` // the old tag's sampled windows carried over
	At      time.Time `json:"at"`
	// Outcome of comparing the new tag's first block of windows with the
	// prior: "" until then, PriorMatched, or PriorRejected.
	Outcome string `json:"outcome,omitempty"`
	// Why is what decided the outcome, for the log and status.
	Why string `json:"why,omitempty"`
	// Syscalls are every syscall the old tag was known to make, sorted: its
	// sampled windows miss the rare ones, which are not new in the new tag.
	Syscalls []string `json:"syscalls,omitempty"`
	// Baseline is the prior's own statistics, so that a rejected prior can be
	// taken out again and a merge of two baselines that both carry it counts
	// it once.
	Baseline *Baseline `json:"baseline"`
}

// Prior outcomes.
const (
	// PriorMatched: the new tag behaved as the old one; the prior stays.
	PriorMatched = "matched"
	// PriorRejected: the new tag did something new or its mix drifted from
	// the prior's; the prior's statistics were taken out and the tag learns
	// as if from nothing.
	PriorRejected = "rejected"
)

// counted reports whether the prior's statistics are in the baseline.
func (p *Prior) counted() bool { return p != nil && p.Outcome != PriorRejected }

func (p *Prior) clone() *Prior {
	if p == nil {
		return nil
	}
	c := *p
	c.Syscalls = slices.Clone(p.Syscalls)
	if p.Baseline != nil {
		c.Baseline = p.Baseline.Clone()
	}
	return &c
}

// UpgradeFamily names what a profile's tags have in common: its repository,
// or, for an image started as one executable (learning.key: workload under
// Docker), the repository and the executable. Empty for profiles an upgrade
// does not rename (Kubernetes workloads keep their key across image tags) and
// for images known by id only.
func (b *Baseline) UpgradeFamily() string {
	if b.Image == "" || b.Tag == "" || strings.HasPrefix(b.Workload, workloadKeyPrefix) {
		return ""
	}
	if _, exe, ok := strings.Cut(b.Workload, entrypointSep); ok {
		return b.Image + entrypointSep + exe
	}
	return b.Image
}

// PriorSource picks the baseline a new profile (fresh, not learned yet)
// starts from: among the stable baselines of the same family with another
// tag, the one that became stable most recently (older files without a
// stable time count from their last learned window). Nil when there is none.
func PriorSource(fresh *Baseline, known []*Baseline) *Baseline {
	family := fresh.UpgradeFamily()
	if family == "" {
		return nil
	}
	stableSince := func(b *Baseline) time.Time {
		if b.StableAt.IsZero() {
			return b.LastSeen
		}
		return b.StableAt
	}
	var best *Baseline
	for _, b := range known {
		if b.State != StateStable || b.Tag == fresh.Tag || b.UpgradeFamily() != family || b.Windows == 0 {
			continue
		}
		if best == nil || cmp.Or(stableSince(b).Compare(stableSince(best)), strings.Compare(b.Tag, best.Tag)) > 0 {
			best = b
		}
	}
	return best
}

// NewPriorBaseline starts fresh's profile from old, weighted as cfg's
// PriorWindows windows: that many of old's sampled windows (a uniform sample:
// the sample is bottom-k by a hash) are learned into it, with old's binaries,
// startup syscalls and learned exceptions as known. Nil when old has no
// sampled window or cfg carries none.
//
// Convergence then compares the new tag's first stable_windows windows with
// the prior as one block. A tag that behaves as the old one did (nothing new,
// no drift) keeps the prior and is stable once min_windows are reached:
// stable_windows of its own with the defaults. Otherwise the prior is taken
// out again and the tag learns as if from nothing. The result merges exactly,
// and a fleet adds the prior once (profiler/fleet).
func NewPriorBaseline(fresh *Baseline, old *Baseline, cfg LearnConfig, at time.Time) *Baseline {
	sample := old.Sample[:min(max(cfg.PriorWindows, 0), len(old.Sample))]
	if len(sample) == 0 {
		return nil
	}
	p := NewBaseline(fresh.Image, fresh.Tag, fresh.ImageID)
	p.Workload = fresh.Workload
	for _, sw := range sample {
		w := Window{Container: Container{ID: sw.Container}, Start: sw.Start,
			Duration: time.Duration(sw.Seconds * float64(time.Second)), Counts: sw.Counts, Grams: sw.Grams}
		p.AddWindow(w, cfg.SampleSize)
	}
	p.Startup = cloneCounts(old.Startup)
	p.Binaries = cloneCounts(old.Binaries)
	p.Exceptions = old.Exceptions.clone()
	// The new tag has not been seen yet: its first and last windows are its own.
	p.FirstSeen, p.LastSeen, p.Updated = time.Time{}, time.Time{}, time.Time{}
	p.Convergence = Convergence{}

	known := slices.Collect(maps.Keys(old.Syscalls))
	for name := range old.Startup {
		known = append(known, name)
	}
	slices.Sort(known)
	return startFrom(&Prior{From: old.Key(), Windows: p.Windows, At: at, Syscalls: slices.Compact(known), Baseline: p})
}

// startFrom is a new tag's baseline before any window of its own: the prior
// as one block, so the next checkpoint compares the tag's own first block
// with it, and only what the tag does is new.
func startFrom(prior *Prior) *Baseline {
	b := prior.Baseline.Clone()
	b.Convergence = Convergence{CheckpointWindows: b.Windows, CheckpointSums: b.shareSums(), LastNovelty: b.Windows}
	b.Prior = prior.clone()
	b.Prior.Outcome, b.Prior.Why = "", ""
	return b
}

// PriorStart is the baseline b's tag started from (NewPriorBaseline), without
// anything learned since; nil when b has no prior or rejected it. A fleet
// starts a tag's aggregate from it.
func (b *Baseline) PriorStart() *Baseline {
	if !b.Prior.counted() || b.Prior.Baseline == nil {
		return nil
	}
	return startFrom(b.Prior)
}

func (p *Prior) validate(key string, windows uint64) error {
	switch {
	case p == nil:
		return nil
	case p.From == "" || p.From == key:
		return fmt.Errorf("prior from %q: not another profile's", p.From)
	case p.Outcome != "" && p.Outcome != PriorMatched && p.Outcome != PriorRejected:
		return fmt.Errorf("prior outcome %q is not %q or %q", p.Outcome, PriorMatched, PriorRejected)
	case p.Baseline == nil || p.Baseline.Windows != p.Windows:
		return fmt.Errorf("prior from %q: its statistics are missing or are not of its %d windows", p.From, p.Windows)
	case p.counted() && p.Windows > windows:
		return fmt.Errorf("prior from %q of %d windows: more than the baseline's %d", p.From, p.Windows, windows)
	case !slices.IsSorted(p.Syscalls) || slices.Contains(p.Syscalls, ""):
		return fmt.Errorf("prior from %q: its syscalls are not sorted names", p.From)
	case p.Baseline.Prior != nil:
		return fmt.Errorf("prior from %q carries a prior of its own", p.From)
	}
	if err := p.Baseline.Validate(); err != nil {
		return fmt.Errorf("prior from %q: %w", p.From, err)
	}
	return nil
}

// Knows reports whether the baseline knows a syscall: learned, made at
// start-up, or made by the old tag of a prior it kept.
func (b *Baseline) Knows(name string) bool {
	if _, ok := b.Syscalls[name]; ok || b.Startup[name] > 0 {
		return true
	}
	return b.knownByPrior(name)
}

func (b *Baseline) knownByPrior(name string) bool {
	if !b.Prior.counted() {
		return false
	}
	_, found := slices.BinarySearch(b.Prior.Syscalls, name)
	return found
}

// judgingPrior reports whether the checkpoint being passed compares the new
// tag's first block with its prior.
func (b *Baseline) judgingPrior() bool {
	conv := b.Convergence
	return b.Prior != nil && b.Prior.Outcome == "" && conv.PreviousWindows == 0 && conv.CheckpointWindows == b.Prior.Windows
}

// rejectPrior takes the prior's statistics out again: the baseline is then
// what learning the new tag's own windows from nothing made, but for each
// syscall's Max (an upper bound) and a calibration sample of the own windows
// below the prior's place in it (still a uniform sample, merging exactly).
// Convergence restarts as if the own windows were the first block.
func (b *Baseline) rejectPrior(why string) {
	p := b.Prior.Baseline
	b.subtract(p)
	b.Sample = withoutSampled(b.Sample, p.Sample)
	novelty := b.Convergence.LastNovelty - min(b.Convergence.LastNovelty, b.Prior.Windows)
	b.Convergence = Convergence{CheckpointWindows: b.Windows, CheckpointSums: b.shareSums(), LastNovelty: novelty}
	b.Prior.Outcome, b.Prior.Why = PriorRejected, why
}

// subtract undoes Merge(p) for statistics p is part of, but for the sample.
func (b *Baseline) subtract(p *Baseline) {
	unmergeAll(b.Syscalls, p.Syscalls)
	b.Total = b.Total.unmerge(p.Total)
	b.Composition.Windows -= min(b.Composition.Windows, p.Composition.Windows)
	unmergeAll(b.Composition.Shares, p.Composition.Shares)
	b.Order.Windows -= min(b.Order.Windows, p.Order.Windows)
	subtractCounts(b.Order.Grams, p.Order.Grams)
	b.Volume = b.Volume.unmerge(p.Volume)
	b.Windows -= min(b.Windows, p.Windows)
	b.Seconds = max(b.Seconds-p.Seconds, 0)
	subtractCounts(b.Containers, p.Containers)
	subtractCounts(b.Startup, p.Startup)
	subtractCounts(b.Binaries, p.Binaries)
	b.Exceptions.subtract(p.Exceptions)
}

// withoutSampled is ws without the windows of sampled (the same windows by
// identity).
func withoutSampled(ws, sampled []SampledWindow) []SampledWindow {
	return slices.DeleteFunc(slices.Clone(ws), func(s SampledWindow) bool {
		return slices.ContainsFunc(sampled, func(ps SampledWindow) bool {
			return ps.Priority == s.Priority && ps.Start.Equal(s.Start) && ps.Container == s.Container
		})
	})
}

func unmergeAll(into, part map[string]Moments) {
	for k, m := range part {
		if left := into[k].unmerge(m); left.N > 0 {
			into[k] = left
		} else {
			delete(into, k)
		}
	}
}

func subtractCounts(into, part map[string]uint64) {
	for k, n := range part {
		if into[k] > n {
			into[k] -= n
		} else {
			delete(into, k)
		}
	}
}
