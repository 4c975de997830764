package profiler

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// AlertSender takes alerts (the alerts.Dispatcher).
type AlertSender interface {
	Send(a model.Alert) bool
	// Duplicate counts and reports an alert with this DedupKey that Send would
	// suppress, so a repeat is dropped before it is built.
	Duplicate(key string) bool
}

// Enforcer is the sensor's kill side.
type Enforcer interface {
	SetEnforcement(p sensor.EnforcePolicy) error
	EnforceCgroup(cgroupID uint64, on bool) error
}

// Freezer freezes a container's cgroup.
type Freezer interface {
	Freeze(cgroupPath string) error
}

// DetectorConfig are the scoring and alerting settings.
type DetectorConfig struct {
	Mode     Mode
	Budget   float64       // scoring.false_positive_budget: false alerts per container-day
	Window   time.Duration // sampling interval, to turn the budget into a probability
	Hostname string
}

// Detector applies the hard rules to events and scores windows against stable
// baselines, sending alerts and, in enforce mode, killing or freezing.
type Detector struct {
	cfg      DetectorConfig
	rules    atomic.Pointer[model.RuleSet]
	lib      *Library
	trip     *TripLog
	out      AlertSender
	enforcer Enforcer
	freezer  Freezer
	log      *slog.Logger

	mu         sync.Mutex
	thresholds map[string]cachedThreshold
	enforced   map[uint64]bool
	frozen     map[uint64]bool
	cmdlines   map[uint32]string // pid → command line, from exec events
	seenRounds map[uint64]bool   // container cgroups in the last sampling round

	// Scored is called with every scored window (metrics); may be nil.
	Scored func(w model.Window, s model.WindowScore, t model.Threshold)
	// InStartup, when set, says a window is in its container's setup seconds
	// (runc init runs in the new cgroup): those are not scored, as not learned.
	InStartup func(w model.Window) bool
}

type cachedThreshold struct {
	baseline *model.Baseline // import, promote and reset install a new one
	windows  uint64
	t        model.Threshold
}

const maxCmdlines = 1 << 16

// NewDetector builds a detector; enforcer and freezer may be nil outside enforce mode.
func NewDetector(cfg DetectorConfig, rules *model.RuleSet, lib *Library, trip *TripLog, out AlertSender,
	enforcer Enforcer, freezer Freezer, log *slog.Logger) (*Detector, error) {
	d := &Detector{cfg: cfg, lib: lib, trip: trip, out: out, enforcer: enforcer, freezer: freezer, log: log, seenRounds: map[uint64]bool{},
		thresholds: map[string]cachedThreshold{}, enforced: map[uint64]bool{}, frozen: map[uint64]bool{}, cmdlines: map[uint32]string{}}
	return d, d.SetRules(rules)
}

// SetRules swaps the rule set (SIGHUP reload) and, in enforce mode, the kernel's
// kill policy.
func (d *Detector) SetRules(rs *model.RuleSet) error {
	if d.cfg.Mode == ModeEnforce && d.enforcer != nil {
		if err := d.enforcer.SetEnforcement(KillPolicy(rs)); err != nil {
			return err
		}
	}
	d.rules.Store(rs)
	return nil
}

// Rules is the active rule set.
func (d *Detector) Rules() *model.RuleSet { return d.rules.Load() }

// KillPolicy is what the BPF program enforces for the rules with action kill: the
// first match block of each (the part the kernel can decide).
func KillPolicy(rs *model.RuleSet) sensor.EnforcePolicy {
	p := sensor.EnforcePolicy{Enabled: true, KillPrefixes: map[string]sensor.KillOpen{}, KillNames: map[string]sensor.KillOpen{}}
	for _, r := range rs.Rules {
		if r.Action != model.ActionKill {
			continue
		}
		m := r.Matchers[0]
		spec := m.Spec
		mode := sensor.KillOnAny
		if spec.OpenWrite {
			mode = sensor.KillOnWrite
		}
		for _, name := range m.Syscalls() {
			switch {
			case strings.HasPrefix(name, "open"):
				for _, prefix := range spec.PathPrefixes {
					p.KillPrefixes[prefix] = mode
				}
				for _, n := range spec.PathNames {
					p.KillNames[n] = mode
				}
			case (name == "clone" || name == "clone3" || name == "unshare") && m.Flags() != 0:
				p.KillCloneFlags |= m.Flags()
				if name == "unshare" {
					p.KillUnshareByFlags = true
				}
			default:
				p.KillSyscalls = append(p.KillSyscalls, name)
			}
		}
	}
	return p
}

func isRuntimeInit(comm string) bool { return strings.HasPrefix(comm, "runc:[") }

// OnEvent applies the hard rules to one event.
func (d *Detector) OnEvent(e model.Event) {
	c := e.Container
	if e.Kind == model.EventExec && !c.IsHost() && !isRuntimeInit(e.Comm) {
		d.rememberCmdline(e)
	}
	if c.IsHost() || c.Runtime == model.RuntimeUnknown {
		return
	}
	if d.cfg.Mode == ModeEnforce && e.Kind == model.EventExec && !isRuntimeInit(e.Comm) {
		d.enforce(e.CgroupID) // the workload started: runc's setup is over
	}
	if isRuntimeInit(e.Comm) && !d.execedInContainer(e.PID) {
		return // runc setting up (or entering) the container
	}
	rs := d.rules.Load()
	var fired []*model.Rule
	d.lib.view(c.ImageRef(), func(b *model.Baseline) { fired = rs.Match(e, b) })
	for _, r := range fired {
		if r.ID == model.RuleExecDrift && d.cfg.Mode == ModeLearn {
			continue // learn mode alerts on hard rules only
		}
		d.trip.Mark(e.CgroupID, e.Time)
		// A repeat is dropped before its alert is built, but still freezes: the
		// container may be a restarted one with the same id and a new cgroup.
		if !d.out.Duplicate(model.EventDedupKey(r, e)) {
			a := model.EventAlert(r, e, d.cmdline(e.PID), d.cfg.Hostname)
			if e.Killed {
				a.OutputFields["cagewatch.action"] = "killed"
			}
			d.out.Send(a)
		}
		if r.Action == model.ActionFreeze {
			d.freeze(r.ID, e.CgroupID, e.Container)
		}
	}
}

// OnWindows scores container windows against stable baselines.
func (d *Detector) OnWindows(ws []model.Window) {
	if d.cfg.Mode == ModeLearn {
		return
	}
	rs := d.rules.Load()
	novelRule, anomalyRule := rs.Rule(model.RuleSyscallNovel), rs.Rule(model.RuleSyscallAnomaly)
	for _, w := range ws {
		c := w.Container
		if c.IsHost() || c.Runtime == model.RuntimeUnknown || c.ImageRef() == "" {
			continue
		}
		if d.InStartup != nil && d.InStartup(w) {
			continue
		}
		var score model.WindowScore
		var threshold model.Threshold
		scored := false
		d.lib.view(c.ImageRef(), func(b *model.Baseline) {
			if b == nil || b.State != model.StateStable {
				return
			}
			threshold = d.threshold(b)
			score = model.Score(b, w.Counts, w.Duration.Seconds())
			scored = true
		})
		if !scored {
			continue
		}
		if d.Scored != nil {
			d.Scored(w, score, threshold)
		}
		if len(score.Novel) > 0 && novelRule != nil {
			d.sendWindowAlert(novelRule, w, score, threshold)
		}
		if score.Value > threshold.Value && anomalyRule != nil {
			d.sendWindowAlert(anomalyRule, w, score, threshold)
		}
	}
}

func (d *Detector) sendWindowAlert(r *model.Rule, w model.Window, s model.WindowScore, t model.Threshold) {
	d.out.Send(model.WindowAlert(r, w, s, t, d.cfg.Hostname))
	if r.Action == model.ActionFreeze {
		d.freeze(r.ID, w.CgroupID, w.Container)
	}
}

// threshold calibrates (and caches per baseline version) the alert threshold.
func (d *Detector) threshold(b *model.Baseline) model.Threshold {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := b.Key()
	if c, ok := d.thresholds[key]; ok && c.baseline == b && c.windows == b.Windows {
		return c.t
	}
	t := b.Calibrate(d.cfg.Budget, d.cfg.Window.Seconds())
	d.thresholds[key] = cachedThreshold{baseline: b, windows: b.Windows, t: t}
	return t
}

// Threshold returns the current threshold of an image, if it is stable.
func (d *Detector) Threshold(key string) (model.Threshold, bool) {
	var t model.Threshold
	ok := false
	d.lib.view(key, func(b *model.Baseline) {
		if b != nil && b.State == model.StateStable {
			t, ok = d.threshold(b), true
		}
	})
	return t, ok
}

func (d *Detector) enforce(cgroupID uint64) {
	if d.enforcer == nil {
		return
	}
	d.mu.Lock()
	done := d.enforced[cgroupID]
	d.enforced[cgroupID] = true
	d.mu.Unlock()
	if !done {
		if err := d.enforcer.EnforceCgroup(cgroupID, true); err != nil {
			d.log.Warn("enforcing container cgroup", "cgroup_id", cgroupID, "err", err)
		}
	}
}

// EnforceWindows puts container cgroups under enforcement once they have been
// seen in two sampling rounds: by then runc's setup (which unshares and mounts
// inside the new cgroup) is long over, and containers that were running before
// the agent started, or that exec nothing, are covered too.
func (d *Detector) EnforceWindows(ws []model.Window) {
	if d.cfg.Mode != ModeEnforce {
		return
	}
	d.mu.Lock()
	seen := d.seenRounds
	d.seenRounds = make(map[uint64]bool, len(ws))
	d.mu.Unlock()
	for _, w := range ws {
		if w.Container.IsHost() || w.Container.Runtime == model.RuntimeUnknown {
			continue
		}
		if seen[w.CgroupID] {
			d.enforce(w.CgroupID)
		}
		d.mu.Lock()
		d.seenRounds[w.CgroupID] = true
		d.mu.Unlock()
	}
}

func (d *Detector) freeze(rule string, cgroupID uint64, c model.Container) {
	if d.cfg.Mode != ModeEnforce || d.freezer == nil {
		return
	}
	d.mu.Lock()
	done := d.frozen[cgroupID]
	d.frozen[cgroupID] = true
	d.mu.Unlock()
	if done {
		return
	}
	if err := d.freezer.Freeze(c.CgroupPath); err != nil {
		d.log.Error("freezing container", "container", c.ID, "cgroup", c.CgroupPath, "err", err)
		return
	}
	d.log.Warn("container frozen", "rule", rule, "container", c.ID, "cgroup", c.CgroupPath)
}

// Forget drops a removed cgroup's state.
func (d *Detector) Forget(cgroupID uint64) {
	d.mu.Lock()
	delete(d.enforced, cgroupID)
	delete(d.frozen, cgroupID)
	d.mu.Unlock()
	if d.enforcer != nil && d.cfg.Mode == ModeEnforce {
		_ = d.enforcer.EnforceCgroup(cgroupID, false)
	}
}

// execedInContainer reports whether pid exec'd inside a container: such a process
// is the workload, whatever name it gives itself (runc:[2:INIT] included).
func (d *Detector) execedInContainer(pid uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.cmdlines[pid]
	return ok
}

func (d *Detector) rememberCmdline(e model.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.cmdlines) >= maxCmdlines {
		clear(d.cmdlines) // crude bound; command lines are a convenience
	}
	d.cmdlines[e.PID] = strings.Join(e.Argv, " ")
}

func (d *Detector) cmdline(pid uint32) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmdlines[pid]
}
