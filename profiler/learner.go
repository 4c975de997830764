package profiler

import (
	"log/slog"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// LearnerConfig are the learning settings from config (learning.*).
type LearnerConfig struct {
	model.LearnConfig
	IgnoreFirst time.Duration // a container's first seconds are runtime setup, not behaviour
	KeyBy       model.KeyBy   // what a baseline belongs to (learning.key)
}

// Learner feeds windows and execs of containers into their image's baseline.
type Learner struct {
	lib   *Library
	mode  Mode
	cfg   LearnerConfig
	state *Tracker // trip runs: a window in which a hard rule fired is never learned
	log   *slog.Logger
}

// NewLearner builds a learner.
func NewLearner(lib *Library, mode Mode, cfg LearnerConfig, state *Tracker, log *slog.Logger) *Learner {
	return &Learner{lib: lib, mode: mode, cfg: cfg, state: state, log: log}
}

// LearnResult summarises one batch.
type LearnResult struct {
	Learned, Startup, Stopping, Poisoned, Skipped int
	BecameStable                                  []string
}

// learnable reports whether the mode learns an image in this state.
func (l *Learner) learnable(state model.BaselineState, exists bool) bool {
	return modeLearns(l.mode, state, exists)
}

// modeLearns reports whether a mode learns an image whose baseline is in this
// state (exists false: there is none yet).
func modeLearns(mode Mode, state model.BaselineState, exists bool) bool {
	switch mode {
	case ModeLearn:
		return true
	case ModeAuto:
		return !exists || state == model.StateLearning
	}
	return false
}

// ObserveExec learns the executed binary. The runtime's init re-executing
// itself while it sets up the container is not one of the image's binaries.
func (l *Learner) ObserveExec(e model.Event) {
	c := e.Container
	if !c.HasBaseline() || e.RuntimeSetup {
		return
	}
	state, exists := l.lib.State(c.ProfileKey())
	if !l.learnable(state, exists) {
		return
	}
	l.lib.update(c, func(b *model.Baseline) bool {
		if b.AddExec(e.Path) {
			l.log.Info("new binary learned", "profile", c.ProfileKey(), "path", e.Path)
		}
		return true
	})
	l.lib.share(c, func(b *model.Baseline) { b.AddExec(e.Path) })
}

// LearnWindows learns a sampling round's container windows and persists the
// changed baselines in one transaction.
func (l *Learner) LearnWindows(ws []model.Window) (LearnResult, error) {
	var res LearnResult
	for _, w := range ws {
		c := w.Container
		if !c.HasBaseline() {
			continue
		}
		state, exists := l.lib.State(c.ProfileKey())
		if !l.learnable(state, exists) {
			res.Skipped++
			continue
		}
		if w.Stopping { // shutdown is not behaviour to learn
			res.Stopping++
			continue
		}
		end := w.Start.Add(w.Duration)
		if l.state.Tripped(w.CgroupID, w.Start, end) {
			res.Poisoned++
			l.log.Warn("window not learned: the container tripped a hard rule", "profile", c.ProfileKey(), "container", c.ID)
			continue
		}
		// The same learning goes to the local baseline and to the fleet's share.
		learn := func(b *model.Baseline) (novel []string) {
			if w.Startup {
				b.AddStartup(w)
				return nil
			}
			return b.AddWindow(w, l.cfg.SampleSize)
		}
		l.lib.update(c, func(b *model.Baseline) bool {
			novel := learn(b)
			if w.Startup {
				res.Startup++
				return true
			}
			if len(novel) > 0 && b.Windows > 1 {
				l.log.Info("new syscalls learned", "profile", c.ProfileKey(), "syscalls", novel)
			}
			res.Learned++
			judging := b.Prior != nil && b.Prior.Outcome == ""
			stable := b.UpdateState(l.cfg.LearnConfig)
			if judging && b.Prior.Outcome != "" {
				l.log.Info("new tag's prior judged", "profile", b.Key(), "from", b.Prior.From, "outcome", b.Prior.Outcome, "why", b.Prior.Why)
			}
			if stable {
				res.BecameStable = append(res.BecameStable, b.Key())
				l.log.Info("baseline stable", "profile", b.Key(), "windows", b.Windows, "containers", len(b.Containers))
			}
			return true
		})
		l.lib.share(c, func(b *model.Baseline) { learn(b) })
	}
	for _, key := range res.BecameStable {
		l.lib.LogUpgradeDiff(key)
	}
	return res, l.lib.Flush()
}
