package profiler

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// Enforcer is the sensor's kill side.
type Enforcer interface {
	SetEnforcement(p sensor.EnforcePolicy) error
	EnforceCgroup(cgroupID uint64, on bool) error
	// SetEnforcedPrefixes has the kernel enforce each cgroup created below
	// these path prefixes at its mkdir.
	SetEnforcedPrefixes(prefixes []string) error
}

// CgroupControl is the cgroup filesystem as enforcement uses it.
type CgroupControl interface {
	Freeze(cgroupPath string) error
	// Walk lists every cgroup that exists, parents first.
	Walk(fn func(cgroupPath string, id uint64)) error
}

// ContainerPaths tells container cgroups by their path alone;
// container.PathClassifier is the real one.
type ContainerPaths interface {
	IsContainer(cgroupPath string) bool
	KernelPrefixes() []string
}

// Enforcement is the enforce-mode stage: the kernel's kill policy, which
// container cgroups it applies to, and freezing. Outside enforce mode it does
// nothing.
//
// A container cgroup is under the kill policy from its first syscall
// wherever its path alone says it is a container's:
//   - cgroups that exist when the agent starts, found by walking the tree
//     (Start);
//   - cgroups created below a kernel prefix (the runtimes' parents, the
//     literal part of each static glob), which the kernel enforces in the
//     mkdir itself, before any process can be moved in;
//   - any other container cgroup (a bare container id below a custom
//     parent) when the mkdir event reaches user space (CgroupCreated). That is
//     the one window left: the mkdir event's trip through the ring buffer,
//     usually well under a millisecond, against the runtime's setup before
//     the workload's first instruction (namespaces, mounts, pivot_root, exec),
//     which takes tens of milliseconds.
//
// Windows and WorkloadStarted enforce again what the path could not tell.
type Enforcement struct {
	on      bool
	kernel  Enforcer      // nil: nothing to kill with
	cgroups CgroupControl // nil: nothing to freeze or walk
	paths   ContainerPaths
	state   *Tracker
	log     *slog.Logger
}

// NewEnforcement builds the stage; kernel and cgroups may be nil outside enforce mode.
func NewEnforcement(mode Mode, kernel Enforcer, cgroups CgroupControl, paths ContainerPaths, state *Tracker,
	log *slog.Logger) *Enforcement {
	return &Enforcement{on: mode == ModeEnforce, kernel: kernel, cgroups: cgroups, paths: paths, state: state, log: log}
}

// SetRules installs the kill policy of a rule set (at start and on reload).
func (e *Enforcement) SetRules(rs *model.RuleSet) error {
	if !e.on || e.kernel == nil {
		return nil
	}
	return e.kernel.SetEnforcement(KillPolicy(rs))
}

// Start puts container cgroups under enforcement before the first event: the
// kernel prefixes first, so no cgroup created while the tree is walked is
// missed, then every container cgroup that already exists.
func (e *Enforcement) Start() error {
	if !e.on || e.kernel == nil {
		return nil
	}
	if err := e.kernel.SetEnforcedPrefixes(e.paths.KernelPrefixes()); err != nil {
		return err
	}
	if e.cgroups == nil {
		return nil
	}
	var errs []error
	err := e.cgroups.Walk(func(p string, id uint64) {
		if e.paths.IsContainer(p) {
			errs = append(errs, e.kernel.EnforceCgroup(id, true))
		}
	})
	return errors.Join(append(errs, err)...)
}

// CgroupCreated classifies a new cgroup by its path: it enforces a container
// cgroup the kernel did not already enforce at mkdir, and releases one the
// kernel enforced on its prefix that turns out to be no container's.
func (e *Enforcement) CgroupCreated(cgroupID uint64, cgroupPath string, kernelEnforced bool) {
	if !e.on || e.kernel == nil {
		return
	}
	container := e.paths.IsContainer(cgroupPath)
	if container == kernelEnforced {
		return
	}
	if err := e.kernel.EnforceCgroup(cgroupID, container); err != nil {
		e.log.Warn("classifying new cgroup", "cgroup", cgroupPath, "cgroup_id", cgroupID, "err", err)
	}
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
		if spec.Event == "exec" {
			p.KillExecFile = append(p.KillExecFile, spec.ExecFile...)
			continue
		}
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

// Removed lifts the kernel's enforcement of a removed cgroup (the kernel does
// at rmdir too; this also clears an entry CgroupCreated wrote after that).
func (e *Enforcement) Removed(cgroupID uint64) {
	if e.on && e.kernel != nil {
		_ = e.kernel.EnforceCgroup(cgroupID, false)
	}
}
