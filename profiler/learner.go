package profiler

import (
	"log/slog"
	"sync"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// Tripwire tells the learner that a container tripped a hard rule, so that window
// is never learned (poisoning guard). The rules engine implements it; TripLog is
// the default bookkeeping.
type Tripwire interface {
	Tripped(cgroupID uint64, from, to time.Time) bool
}

// TripLog remembers, per cgroup, when hard rules fired. A container can trip a
// rule tens of thousands of times a second, so marks are kept as runs: marks less
// than tripRunGap apart extend one run [first, last]. A window holding a mark
// always overlaps that mark's run, so no tripped window is ever reported clean;
// a window shorter than tripRunGap lying between two marks of a run is reported
// tripped (never learned), which errs on the safe side.
type TripLog struct {
	mu   sync.Mutex
	runs map[uint64][]tripRun
}

type tripRun struct{ first, last time.Time }

// NewTripLog returns an empty log.
func NewTripLog() *TripLog { return &TripLog{runs: map[uint64][]tripRun{}} }

const (
	// tripMemory is how long a mark is kept: longer than any window (at most 1h), so
	// modes that do not learn (and so never ask) cannot pile marks up.
	tripMemory = 2 * time.Hour
	tripRunGap = 10 * time.Millisecond
	// tripMaxRuns bounds a cgroup's runs; beyond it the oldest are merged pairwise.
	tripMaxRuns = 4096
)

// Mark records that a rule fired in cgroupID at t.
func (l *TripLog) Mark(cgroupID uint64, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	runs := l.runs[cgroupID]
	if n := len(runs); n > 0 {
		last := &runs[n-1]
		if !t.Before(last.first) && t.Sub(last.last) < tripRunGap { // events come nearly in order
			if t.After(last.last) {
				last.last = t
			}
			return
		}
	}
	// A new run: the moment to drop expired ones and keep the count bounded.
	keep := runs[:0]
	for _, r := range runs {
		if t.Sub(r.last) < tripMemory {
			keep = append(keep, r)
		}
	}
	if len(keep) >= tripMaxRuns {
		keep = mergeOldestRuns(keep)
	}
	l.runs[cgroupID] = append(keep, tripRun{first: t, last: t})
}

// mergeOldestRuns halves the older half of runs by merging neighbours: the merged
// run covers both, so it can only report more windows tripped, never fewer.
func mergeOldestRuns(runs []tripRun) []tripRun {
	half := len(runs) / 2
	out := runs[:0]
	for i := 0; i+1 < half; i += 2 {
		a, b := runs[i], runs[i+1]
		if b.first.Before(a.first) {
			a.first = b.first
		}
		if b.last.After(a.last) {
			a.last = b.last
		}
		out = append(out, a)
	}
	if half%2 == 1 {
		out = append(out, runs[half-1])
	}
	return append(out, runs[half:]...)
}

// Tripped reports whether a rule fired in cgroupID during [from, to], and drops
// runs that ended before from (windows are checked in time order).
func (l *TripLog) Tripped(cgroupID uint64, from, to time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	runs := l.runs[cgroupID]
	kept := runs[:0]
	tripped := false
	for _, r := range runs {
		if r.last.Before(from) {
			continue
		}
		kept = append(kept, r)
		if !r.first.After(to) {
			tripped = true
		}
	}
	if len(kept) == 0 {
		delete(l.runs, cgroupID)
	} else {
		l.runs[cgroupID] = kept
	}
	return tripped
}

// Forget drops a removed cgroup's marks.
func (l *TripLog) Forget(cgroupID uint64) {
	l.mu.Lock()
	delete(l.runs, cgroupID)
	l.mu.Unlock()
}

// LearnerConfig are the learning settings from config (learning.*).
type LearnerConfig struct {
	model.LearnConfig
	IgnoreFirst time.Duration // a container's first seconds are runtime setup, not behaviour
}

// Learner feeds windows and execs of containers into their image's baseline.
type Learner struct {
	lib  *Library
	mode Mode
	cfg  LearnerConfig
	trip Tripwire
	log  *slog.Logger

	mu        sync.Mutex
	firstSeen map[uint64]time.Time // cgroup id → when its container was first seen
}

// NewLearner builds a learner; trip may be nil.
func NewLearner(lib *Library, mode Mode, cfg LearnerConfig, trip Tripwire, log *slog.Logger) *Learner {
	return &Learner{lib: lib, mode: mode, cfg: cfg, trip: trip, log: log, firstSeen: map[uint64]time.Time{}}
}

// LearnResult summarises one batch.
type LearnResult struct {
	Learned, Startup, Poisoned, Skipped int
	BecameStable                        []string
}

// learnable reports whether the mode learns an image in this state.
func (l *Learner) learnable(state model.BaselineState, exists bool) bool {
	switch l.mode {
	case ModeLearn:
		return true
	case ModeAuto:
		return !exists || state == model.StateLearning
	}
	return false
}

func (l *Learner) seen(cgroupID uint64, t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	first, ok := l.firstSeen[cgroupID]
	if !ok || t.Before(first) {
		l.firstSeen[cgroupID] = t
		first = t
	}
	return first
}

// InStartup reports whether a window falls in its container's first
// IgnoreFirst (runtime setup: neither learned nor scored), noting the container's
// first sight if this is it.
func (l *Learner) InStartup(w model.Window) bool {
	first := l.seen(w.CgroupID, w.Start)
	return w.Start.Before(first.Add(l.cfg.IgnoreFirst))
}

// Forget drops a removed cgroup.
func (l *Learner) Forget(cgroupID uint64) {
	l.mu.Lock()
	delete(l.firstSeen, cgroupID)
	l.mu.Unlock()
}

// ObserveExec notes a container's start and learns the executed binary.
func (l *Learner) ObserveExec(e model.Event) {
	c := e.Container
	if c.IsHost() || c.Runtime == model.RuntimeUnknown || c.ImageRef() == "" {
		return
	}
	l.seen(e.CgroupID, e.Time)
	state, exists := l.lib.State(c.ImageRef())
	if !l.learnable(state, exists) {
		return
	}
	l.lib.update(c, func(b *model.Baseline) bool {
		if b.AddExec(e.Path) {
			l.log.Info("new binary learned", "image", c.ImageRef(), "path", e.Path)
		}
		return true
	})
}

// LearnWindows learns a sampling round's container windows and persists the
// changed baselines in one transaction.
func (l *Learner) LearnWindows(ws []model.Window) (LearnResult, error) {
	var res LearnResult
	for _, w := range ws {
		c := w.Container
		if c.IsHost() || c.Runtime == model.RuntimeUnknown || c.ImageRef() == "" {
			continue
		}
		first := l.seen(w.CgroupID, w.Start)
		state, exists := l.lib.State(c.ImageRef())
		if !l.learnable(state, exists) {
			res.Skipped++
			continue
		}
		end := w.Start.Add(w.Duration)
		if l.trip != nil && l.trip.Tripped(w.CgroupID, w.Start, end) {
			res.Poisoned++
			l.log.Warn("window not learned: the container tripped a hard rule", "image", c.ImageRef(), "container", c.ID)
			continue
		}
		startup := w.Start.Before(first.Add(l.cfg.IgnoreFirst))
		l.lib.update(c, func(b *model.Baseline) bool {
			if startup {
				b.AddStartup(w)
				res.Startup++
				return true
			}
			if novel := b.AddWindow(w, l.cfg.SampleSize); len(novel) > 0 && b.Windows > 1 {
				l.log.Info("new syscalls learned", "image", c.ImageRef(), "syscalls", novel)
			}
			res.Learned++
			if b.UpdateState(l.cfg.LearnConfig) {
				res.BecameStable = append(res.BecameStable, b.Key())
				l.log.Info("baseline stable", "image", b.Key(), "windows", b.Windows, "containers", len(b.Containers))
			}
			return true
		})
	}
	return res, l.lib.Flush()
}
