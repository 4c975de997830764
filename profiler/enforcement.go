package profiler

import (
	"log/slog"
	"strings"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// Enforcer is the sensor's kill side.
type Enforcer interface {
	SetEnforcement(p sensor.EnforcePolicy) error
	EnforceCgroup(cgroupID uint64, on bool) error
	// SetEnforcedAncestors enforces every cgroup created below these.
	SetEnforcedAncestors(ids []uint64) error
}

// CgroupControl is the cgroup filesystem as enforcement uses it.
type CgroupControl interface {
	Freeze(cgroupPath string) error
	IDOf(cgroupPath string) (uint64, error)
}

// Enforcement is the enforce-mode stage: the kernel's kill policy, which
// container cgroups it applies to, and freezing. Outside enforce mode it does
// nothing.
type Enforcement struct {
	on      bool
	kernel  Enforcer      // nil: nothing to kill with
	cgroups CgroupControl // nil: nothing to freeze with
	state   *Tracker
	log     *slog.Logger
}

// NewEnforcement builds the stage; kernel and cgroups may be nil outside enforce mode.
func NewEnforcement(mode Mode, kernel Enforcer, cgroups CgroupControl, state *Tracker, log *slog.Logger) *Enforcement {
	return &Enforcement{on: mode == ModeEnforce, kernel: kernel, cgroups: cgroups, state: state, log: log}
}

// SetRules installs the kill policy of a rule set (at start and on reload).
func (e *Enforcement) SetRules(rs *model.RuleSet) error {
	if !e.on || e.kernel == nil {
		return nil
	}
	return e.kernel.SetEnforcement(KillPolicy(rs))
}

// EnforceBelow puts every cgroup later created below these directories under
// enforcement from its first syscall (the static containers' parents).
func (e *Enforcement) EnforceBelow(dirs []string) error {
	if !e.on || e.kernel == nil || e.cgroups == nil {
		return nil
	}
	var ids []uint64
	for _, dir := range dirs {
		if id, err := e.cgroups.IDOf(dir); err == nil {
			ids = append(ids, id)
		}
	}
	return e.kernel.SetEnforcedAncestors(ids)
}

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

// Windows puts container cgroups under enforcement once they have been seen in
// two consecutive sampling rounds: by then runc's setup (which unshares and
// mounts inside the new cgroup) is long over, and containers that were running
// before the agent started, or that exec nothing, are covered too.
func (e *Enforcement) Windows(ws []model.Window, round uint64) {
	if !e.on {
		return
	}
	for _, w := range ws {
		if w.Container.IsContainer() && e.state.SeenInRound(w.CgroupID, round) {
			e.enforce(w.CgroupID)
		}
	}
}

// WorkloadStarted enforces a container once its workload exec'd: the runtime's
// setup is over.
func (e *Enforcement) WorkloadStarted(cgroupID uint64) {
	if e.on {
		e.enforce(cgroupID)
	}
}

func (e *Enforcement) enforce(cgroupID uint64) {
	if e.kernel == nil || e.state.SetEnforced(cgroupID) {
		return
	}
	if err := e.kernel.EnforceCgroup(cgroupID, true); err != nil {
		e.log.Warn("enforcing container cgroup", "cgroup_id", cgroupID, "err", err)
	}
}

// Freeze freezes a container for a rule with action freeze, once.
func (e *Enforcement) Freeze(rule string, cgroupID uint64, c model.Container) {
	if !e.on || e.cgroups == nil || e.state.SetFrozen(cgroupID) {
		return
	}
	if err := e.cgroups.Freeze(c.CgroupPath); err != nil {
		e.log.Error("freezing container", "container", c.ID, "cgroup", c.CgroupPath, "err", err)
		return
	}
	e.log.Warn("container frozen", "rule", rule, "container", c.ID, "cgroup", c.CgroupPath)
}

// Removed lifts the kernel's enforcement of a removed cgroup, so a reused map
// slot starts clean.
func (e *Enforcement) Removed(cgroupID uint64) {
	if e.on && e.kernel != nil {
		_ = e.kernel.EnforceCgroup(cgroupID, false)
	}
}
