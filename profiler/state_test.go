package profiler

import (
	"testing"

	"github.com/cagewatch/cagewatch/model"
)

func TestTrackerStaysBounded(t *testing.T) {
	tr := NewTracker()
	// Container churn: each cgroup execs, is scored, is forgotten, and a late
	// event of it arrives after.
	for id := uint64(1); id <= 3*goneMemory; id++ {
		e := model.Event{Kind: model.EventExec, PID: uint32(id), ProcStartNs: id, CgroupID: id}
		tr.Execed(e)
		tr.SetEnforced(id)
		tr.Forget(id)
		tr.Execed(e)
		tr.MarkTrip(id, t0)
		if !tr.SetEnforced(id) {
			t.Fatalf("cgroup %d: a forgotten cgroup would be enforced again", id)
		}
	}
	if cgroups, procs := tr.Tracked(); cgroups != 0 || procs != 0 {
		t.Errorf("after churn the table holds %d cgroups and %d processes, want none", cgroups, procs)
	}
	if len(tr.gone) != goneMemory {
		t.Errorf("%d forgotten cgroups remembered, want the bound %d", len(tr.gone), goneMemory)
	}

	// One long-lived cgroup that forks and execs without end.
	for pid := range uint32(maxProcesses + 100) {
		tr.Execed(model.Event{Kind: model.EventExec, PID: pid, ProcStartNs: uint64(pid), CgroupID: 99_999, Argv: []string{"newest"}})
	}
	if _, procs := tr.Tracked(); procs > maxProcesses {
		t.Errorf("%d processes kept, want at most %d", procs, maxProcesses)
	}
	if tr.Cmdline(model.ProcessKey{PID: maxProcesses + 99, StartNs: maxProcesses + 99}) != "newest" {
		t.Error("the newest process was evicted")
	}
}
