package sensor

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// HistogramSource is the part of the sensor the sampler needs; tests fake it.
type HistogramSource interface {
	// ReadHistograms calls fn with each cgroup's cumulative nonzero counts by
	// ascending syscall number and its cumulative gram counts by ascending
	// key, valid only during the call.
	ReadHistograms(fn func(cgroupID uint64, counts []SyscallCount, grams []GramCount)) error
	DeleteHistograms(ids []uint64) error
}

// Delta is one cgroup's syscall counts over one window.
type Delta struct {
	CgroupID uint64
	Start    time.Time
	Duration time.Duration
	Counts   []SyscallCount // nonzero only, by ascending syscall number
	Grams    []GramCount    // nonzero only, by ascending key
}

// SyscallCount is one syscall number's count in a Delta. A sorted slice rather
// than a map: sampling 1,000 cgroups spent most of its time building maps.
type SyscallCount struct {
	Nr    int
	Count uint64
}

// Count is the count of syscall nr.
func (d Delta) Count(nr int) uint64 {
	for _, c := range d.Counts {
		if c.Nr == nr {
			return c.Count
		}
	}
	return 0
}

// Window converts d to a model window keyed by syscall name.
func (d Delta) Window(c model.Container) model.Window {
	counts := make(map[string]uint64, len(d.Counts))
	for _, sc := range d.Counts {
		if sc.Nr == HistSlots-1 {
			counts["other"] += sc.Count
			continue
		}
		counts[model.SyscallName(sc.Nr)] += sc.Count
	}
	return model.Window{CgroupID: d.CgroupID, Container: c, Start: d.Start, Duration: d.Duration, Counts: counts,
		Grams: gramsByName(d.Grams)}
}

// Sampler turns the kernel's cumulative per-cgroup counts into per-window deltas and
// deletes the entries of removed cgroups after taking their final counts.
type Sampler struct {
	src HistogramSource
	// alive, when set, is asked about cgroups that were idle for a window, so entries
	// whose removal event was lost are still reclaimed.
	alive func(cgroupID uint64) bool

	mu      sync.Mutex
	removed map[uint64]struct{}

	// prev holds each cgroup's cumulative counts at the last sample, nonzero only:
	// about 1 KiB for a busy service instead of a 4 KiB array.
	prev      map[uint64][]SyscallCount
	prevGrams map[uint64][]GramCount
	tracked   atomic.Int64
	last      time.Time
}

// NewSampler starts counting windows at start (when the sensor was loaded).
func NewSampler(src HistogramSource, start time.Time, alive func(uint64) bool) *Sampler {
	return &Sampler{
		src:       src,
		alive:     alive,
		removed:   make(map[uint64]struct{}),
		prev:      make(map[uint64][]SyscallCount),
		prevGrams: make(map[uint64][]GramCount),
		last:      start,
	}
}

// CgroupRemoved marks a cgroup as gone; the next Sample reports its final counts and
// frees its kernel entry. Safe to call from the event reader's goroutine.
func (s *Sampler) CgroupRemoved(id uint64) {
	s.mu.Lock()
	s.removed[id] = struct{}{}
	s.mu.Unlock()
}

// Tracked is the number of cgroups the sampler holds counts for. Safe to call
// from any goroutine.
func (s *Sampler) Tracked() int { return int(s.tracked.Load()) }

// Sample reads the kernel map and returns the deltas since the previous call for
// every cgroup that made syscalls, and the cgroups whose entries it freed. On a
// read error nothing changes, so the next Sample covers both intervals. On a delete
// error the deltas are still valid and are returned with the error; the delete is
// retried next time.
func (s *Sampler) Sample(now time.Time) (deltas []Delta, gone []uint64, err error) {
	s.mu.Lock()
	removed := s.removed
	s.removed = make(map[uint64]struct{})
	s.mu.Unlock()
	remark := func(ids []uint64) {
		for _, id := range ids {
			s.CgroupRemoved(id)
		}
	}

	// Counts of changed cgroups, applied to s.prev only once the whole read succeeded.
	changed := make(map[uint64][]SyscallCount)
	changedGrams := make(map[uint64][]GramCount)
	var idle []uint64
	seen := make(map[uint64]struct{}, len(s.prev))
	err = s.src.ReadHistograms(func(id uint64, cur []SyscallCount, curGrams []GramCount) {
		seen[id] = struct{}{}
		prev, known := s.prev[id]
		diff := diffCounts(prev, cur)
		if known && len(diff) == 0 {
			idle = append(idle, id)
			return
		}
		changed[id] = slices.Clone(cur)
		changedGrams[id] = slices.Clone(curGrams)
		if len(diff) > 0 {
			deltas = append(deltas, Delta{CgroupID: id, Start: s.last, Duration: now.Sub(s.last), Counts: diff,
				Grams: diffGrams(s.prevGrams[id], curGrams)})
		}
	})
	if err != nil {
		remark(mapKeys(removed))
		return nil, nil, err
	}
	s.last = now
	for id, c := range changed {
		s.prev[id] = c
		s.prevGrams[id] = changedGrams[id]
	}
	for id := range s.prev {
		if _, ok := seen[id]; !ok { // deleted behind our back
			delete(s.prev, id)
			delete(s.prevGrams, id)
		}
	}

	gone = mapKeys(removed)
	if s.alive != nil {
		for _, id := range idle {
			if _, ok := removed[id]; !ok && !s.alive(id) {
				gone = append(gone, id)
			}
		}
	}
	if len(gone) > 0 {
		if err := s.src.DeleteHistograms(gone); err != nil {
			remark(gone) // keep prev too, so a surviving entry is not counted twice
			s.tracked.Store(int64(len(s.prev)))
			return deltas, nil, err
		}
		for _, id := range gone {
			delete(s.prev, id)
			delete(s.prevGrams, id)
		}
	}
	s.tracked.Store(int64(len(s.prev)))
	return deltas, gone, nil
}

// diffCounts returns cur - prev, both cumulative nonzero counts by ascending
// syscall number. A counter that went backwards (or to zero) means the kernel
// slots were released and counted again since prev was read: then every count
// is new.
func diffCounts(prev, cur []SyscallCount) []SyscallCount {
	diff := make([]SyscallCount, 0, len(cur))
	recreated := false
	j := 0
	for _, c := range cur {
		for ; j < len(prev) && prev[j].Nr < c.Nr; j++ {
			recreated = true // counted before, zero now
		}
		var p uint64
		if j < len(prev) && prev[j].Nr == c.Nr {
			p = prev[j].Count
			j++
		}
		if c.Count != p {
			recreated = recreated || c.Count < p
			diff = append(diff, SyscallCount{Nr: c.Nr, Count: c.Count - p})
		}
	}
	if recreated || j < len(prev) {
		return slices.Clone(cur)
	}
	return diff
}

func mapKeys(m map[uint64]struct{}) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
