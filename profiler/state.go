package profiler

import (
	"strings"
	"sync"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/metrics"
)

// Tracker is the pipeline's one table of per-cgroup and per-process state: a
// container's first sighting, its hard-rule trip runs, whether it is enforced or
// frozen, the metric labels it was scored under, and the processes that exec'd
// in it. Forget drops all of it when the cgroup goes; nothing else keeps state
// per cgroup or per process, so nothing else needs telling.
type Tracker struct {
	mu      sync.Mutex
	round   uint64 // sampling rounds so far
	cgroups map[uint64]*cgroupState
	procs   map[model.ProcessKey]procState
	// gone are recently forgotten cgroups (ids are never reused): an event
	// read from the ring buffer after its cgroup was forgotten must not bring
	// the cgroup back, or the table would grow with container churn.
	gone     map[uint64]struct{}
	goneRing [goneMemory]uint64
	goneNext int
}

// goneMemory is how many forgotten cgroups are remembered: far more than
// containers end within the ring buffer's lag.
const goneMemory = 4096

type cgroupState struct {
	firstSeen time.Time
	lastSetup time.Time // the runtime last set the container up or entered it
	stopAt    time.Time // the runtime last signalled the container's init to stop
	lastRound uint64    // the sampling round it was last seen in
	trips     []tripRun
	enforced  bool
	frozen    bool
	scored    bool
	scoreAs   metrics.ScoreSeries
	procs     map[model.ProcessKey]struct{}
}

type procState struct {
	cgroupID uint64
	cmdline  string
	exe      string
}

// Forgotten is what a removed cgroup left behind that others must undo.
type Forgotten struct {
	Scored  bool                // it has an anomaly-score series: delete it
	ScoreAs metrics.ScoreSeries // that series' labels
}

// maxProcesses bounds the process table; exec'd processes are remembered until
// their cgroup goes.
const maxProcesses = 1 << 16

// NewTracker returns an empty table.
func NewTracker() *Tracker {
	return &Tracker{cgroups: map[uint64]*cgroupState{}, procs: map[model.ProcessKey]procState{}, gone: map[uint64]struct{}{}}
}

// cgroup is a cgroup's entry, created if missing; a forgotten cgroup gets a
// scratch entry that is not kept.
func (t *Tracker) cgroup(id uint64) *cgroupState {
	c := t.cgroups[id]
	if c == nil {
		c = &cgroupState{}
		if _, gone := t.gone[id]; !gone {
			t.cgroups[id] = c
		}
	}
	return c
}

// Sighted notes that a container cgroup was active at at and returns when it was
// first seen. Runtime setup happens in a container's first seconds.
func (t *Tracker) Sighted(cgroupID uint64, at time.Time) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cgroup(cgroupID).sighted(at)
}

func (c *cgroupState) sighted(at time.Time) time.Time {
	if c.firstSeen.IsZero() || at.Before(c.firstSeen) {
		c.firstSeen = at
	}
	return c.firstSeen
}

// SetupSeen notes the container runtime at work in a container's cgroup: its
// init setting the container up, or entering it for docker exec, until it
// exec's the workload.
func (t *Tracker) SetupSeen(cgroupID uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.cgroup(cgroupID); at.After(c.lastSetup) {
		c.lastSetup = at
	}
}

// StopSignalled notes the runtime signalling a container's init to stop.
func (t *Tracker) StopSignalled(cgroupID uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.cgroup(cgroupID); at.After(c.stopAt) {
		c.stopAt = at
	}
}

// MarkLifecycle sets Startup on the windows of containers within ignoreFirst
// of their first sighting or of the runtime's last setup in them, noting first
// sightings: runtime setup is not behaviour. (A container may be created long
// before it starts, and docker exec sets up again in a running container.) It
// sets Stopping on windows that overlap model.StopGrace after a stop signal.
func (t *Tracker) MarkLifecycle(ws []model.Window, ignoreFirst time.Duration) {
	for i := range ws {
		w := &ws[i]
		if !w.Container.HasBaseline() {
			continue
		}
		t.mu.Lock()
		c := t.cgroup(w.CgroupID)
		first, setup, stop := c.sighted(w.Start), c.lastSetup, c.stopAt
		t.mu.Unlock()
		w.Startup = w.Start.Before(first.Add(ignoreFirst)) || (!setup.IsZero() && w.Start.Before(setup.Add(ignoreFirst)))
		w.Stopping = !stop.IsZero() && w.Start.Add(w.Duration).After(stop) && w.Start.Before(stop.Add(model.StopGrace))
	}
}

// NextRound starts a sampling round and returns its number.
func (t *Tracker) NextRound() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.round++
	return t.round
}

// SeenInRound notes a container cgroup in a sampling round and reports whether
// it was also in the round before.
func (t *Tracker) SeenInRound(cgroupID, round uint64) (consecutive bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.cgroup(cgroupID)
	consecutive = c.lastRound != 0 && c.lastRound+1 == round
	c.lastRound = round
	return consecutive
}

// SetEnforced marks a cgroup enforced and reports whether it already was.
func (t *Tracker) SetEnforced(cgroupID uint64) (already bool) {
	return t.setFlag(cgroupID, func(c *cgroupState) *bool { return &c.enforced })
}

// SetFrozen marks a cgroup frozen and reports whether it already was.
func (t *Tracker) SetFrozen(cgroupID uint64) (already bool) {
	return t.setFlag(cgroupID, func(c *cgroupState) *bool { return &c.frozen })
}

// setFlag sets a flag and reports whether it was set; for a forgotten cgroup it
// reports true, as there is nothing left to enforce or freeze.
func (t *Tracker) setFlag(cgroupID uint64, flag func(*cgroupState) *bool) (already bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, gone := t.gone[cgroupID]; gone {
		return true
	}
	f := flag(t.cgroup(cgroupID))
	already, *f = *f, true
	return already
}

// Scored notes a cgroup's anomaly-score series.
func (t *Tracker) Scored(cgroupID uint64, series metrics.ScoreSeries) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.cgroup(cgroupID)
	c.scored, c.scoreAs = true, series
}

// Execed remembers a process that exec'd in a container, with its command line.
func (t *Tracker) Execed(e model.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, gone := t.gone[e.CgroupID]; gone {
		return
	}
	key := e.Process()
	if _, ok := t.procs[key]; !ok && len(t.procs) >= maxProcesses {
		t.evictProcesses()
	}
	c := t.cgroup(e.CgroupID)
	if c.procs == nil {
		c.procs = map[model.ProcessKey]struct{}{}
	}
	c.procs[key] = struct{}{}
	t.procs[key] = procState{cgroupID: e.CgroupID, cmdline: strings.Join(e.Argv, " "), exe: e.Path}
}

// evictProcesses drops an eighth of the process table when it is full: command
// lines are a convenience, and the table must stay bounded when cgroups live
// long and fork a lot.
func (t *Tracker) evictProcesses() {
	n := len(t.procs) / 8
	for key, p := range t.procs {
		if n == 0 {
			break
		}
		delete(t.procs, key)
		if c := t.cgroups[p.cgroupID]; c != nil {
			delete(c.procs, key)
		}
		n--
	}
}

// Cmdline is the command line of a process that exec'd in a container ("" when
// it did not, or before the agent started).
func (t *Tracker) Cmdline(key model.ProcessKey) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.procs[key].cmdline
}

// Exe is the file a process in a container last exec'd ("" when unseen).
func (t *Tracker) Exe(key model.ProcessKey) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.procs[key].exe
}

// Forget drops everything known about a removed cgroup and its processes, and
// returns what others must undo.
func (t *Tracker) Forget(cgroupID uint64) Forgotten {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, gone := t.gone[cgroupID]; !gone {
		delete(t.gone, t.goneRing[t.goneNext])
		t.goneRing[t.goneNext] = cgroupID
		t.goneNext = (t.goneNext + 1) % goneMemory
		t.gone[cgroupID] = struct{}{}
	}
	c := t.cgroups[cgroupID]
	if c == nil {
		return Forgotten{}
	}
	delete(t.cgroups, cgroupID)
	for key := range c.procs {
		delete(t.procs, key)
	}
	return Forgotten{Scored: c.scored, ScoreAs: c.scoreAs}
}

// Tracked is how many cgroups and processes the table holds.
func (t *Tracker) Tracked() (cgroups, processes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.cgroups), len(t.procs)
}

// Trip runs. A container can trip a rule tens of thousands of times a second, so
// marks are kept as runs: marks less than tripRunGap apart extend one run
// [first, last]. A window holding a mark always overlaps that mark's run, so no
// tripped window is ever reported clean; a window shorter than tripRunGap lying
// between two marks of a run is reported tripped (never learned), which errs on
// the safe side.
type tripRun struct{ first, last time.Time }

const (
	// tripMemory is how long a mark is kept: longer than any window (at most 1h), so
	// modes that do not learn (and so never ask) cannot pile marks up.
	tripMemory = 2 * time.Hour
	tripRunGap = 10 * time.Millisecond
	// tripMaxRuns bounds a cgroup's runs; beyond it the oldest are merged pairwise.
	tripMaxRuns = 4096
)

// MarkTrip records that a hard rule fired in cgroupID at at, so the window
// holding it is never learned (poisoning guard).
func (t *Tracker) MarkTrip(cgroupID uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.cgroup(cgroupID)
	runs := c.trips
	if n := len(runs); n > 0 {
		last := &runs[n-1]
		if !at.Before(last.first) && at.Sub(last.last) < tripRunGap { // events come nearly in order
			if at.After(last.last) {
				last.last = at
			}
			return
		}
	}
	// A new run: the moment to drop expired ones and keep the count bounded.
	keep := runs[:0]
	for _, r := range runs {
		if at.Sub(r.last) < tripMemory {
			keep = append(keep, r)
		}
	}
	if len(keep) >= tripMaxRuns {
		keep = mergeOldestRuns(keep)
	}
	c.trips = append(keep, tripRun{first: at, last: at})
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
func (t *Tracker) Tripped(cgroupID uint64, from, to time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.cgroups[cgroupID]
	if c == nil {
		return false
	}
	kept := c.trips[:0]
	tripped := false
	for _, r := range c.trips {
		if r.last.Before(from) {
			continue
		}
		kept = append(kept, r)
		if !r.first.After(to) {
			tripped = true
		}
	}
	c.trips = kept
	return tripped
}
