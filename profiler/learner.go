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

// TripLog remembers, per cgroup, when hard rules fired.
type TripLog struct {
	mu    sync.Mutex
	times map[uint64][]time.Time
}

// NewTripLog returns an empty log.
func NewTripLog() *TripLog { return &TripLog{times: map[uint64][]time.Time{}} }

// tripMemory is how long a mark is kept: longer than any window (at most 1h), so
// modes that do not learn (and so never ask) cannot pile marks up.
const tripMemory = 2 * time.Hour

// Mark records that a rule fired in cgroupID at t.
func (l *TripLog) Mark(cgroupID uint64, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	marks := l.times[cgroupID]
	keep := marks[:0]
	for _, m := range marks {
		if t.Sub(m) < tripMemory {
			keep = append(keep, m)
		}
	}
	l.times[cgroupID] = append(keep, t)
}

// Tripped reports whether a rule fired in cgroupID during [from, to], and drops
// marks older than from (windows are checked in time order).
func (l *TripLog) Tripped(cgroupID uint64, from, to time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	marks := l.times[cgroupID]
	kept := marks[:0]
	tripped := false
	for _, t := range marks {
		if t.Before(from) {
			continue
		}
		kept = append(kept, t)
		if !t.After(to) {
			tripped = true
		}
	}
	if len(kept) == 0 {
		delete(l.times, cgroupID)
	} else {
		l.times[cgroupID] = kept
	}
	return tripped
}

// Forget drops a removed cgroup's marks.
func (l *TripLog) Forget(cgroupID uint64) {
	l.mu.Lock()
	delete(l.times, cgroupID)
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
