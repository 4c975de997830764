package profiler

import (
	"log/slog"
	"sync/atomic"

	"github.com/cagewatch/cagewatch/model"
)

// AlertSender takes alerts (the alerts.Dispatcher).
type AlertSender interface {
	Send(a model.Alert) bool
	// Duplicate counts and reports an alert with this DedupKey that Send would
	// suppress, so a repeat is dropped before it is built.
	Duplicate(key string) bool
}

// activeRules is the rule set in force, shared by the event and window stages
// and swapped whole on reload.
type activeRules = atomic.Pointer[model.RuleSet]

// EventRules is the hard-rule stage: it matches each container event against the
// rules and sends alerts, marks the container tripped (its window is not
// learned) and freezes for rules with action freeze.
type EventRules struct {
	mode        Mode
	hostname    string
	rules       *activeRules
	lib         *Library
	state       *Tracker
	out         AlertSender
	enforcement *Enforcement
	log         *slog.Logger
}

// Event applies the hard rules to one event.
func (r *EventRules) Event(e model.Event) {
	c := e.Container
	if !c.IsContainer() {
		return
	}
	if e.RuntimeSetup {
		return // the runtime's init setting up (or entering) the container
	}
	if e.Exe == "" {
		e.Exe = r.state.Exe(e.Process())
	}
	rs := r.rules.Load()
	var fired []*model.Rule
	learning := false
	r.lib.view(c.ProfileKey(), func(b *model.Baseline) {
		fired = rs.Match(e, b)
		var state model.BaselineState
		if b != nil {
			state = b.State
		}
		learning = c.HasBaseline() && modeLearns(r.mode, state, b != nil)
	})
	for _, rule := range fired {
		if rule.ID == model.RuleExecDrift && r.mode == ModeLearn {
			continue // learn mode alerts on hard rules only
		}
		if rule.Learnable && learning {
			// What the image does while learning is its normal: an exception,
			// not an alert, and the window still teaches.
			binary, detail := model.ExceptionBinary(e), model.ExceptionDetail(e)
			r.lib.update(c, func(b *model.Baseline) bool {
				if b.AddException(rule.ID, binary, detail) {
					r.log.Info("exception learned", "profile", c.ProfileKey(), "rule", rule.ID, "binary", binary, "detail", detail)
				}
				return true
			})
			r.lib.share(c, func(b *model.Baseline) { b.AddException(rule.ID, binary, detail) })
			continue
		}
		r.state.MarkTrip(e.CgroupID, e.Time)
		// A repeat is dropped before its alert is built, but still freezes: the
		// container may be a restarted one with the same id and a new cgroup.
		if !r.out.Duplicate(model.EventDedupKey(rule, e)) {
			a := model.EventAlert(rule, e, r.state.Cmdline(e.Process()), r.hostname)
			if e.Killed {
				a.OutputFields["cagewatch.action"] = "killed"
			}
			r.out.Send(a)
		}
		if rule.Action == model.ActionFreeze {
			r.enforcement.Freeze(rule.ID, e.CgroupID, e.Container)
		}
	}
}
