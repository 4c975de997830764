package model

import "time"

// Window is one cgroup's syscall counts over one sampling interval. Counts are keyed
// by syscall name so recorded windows stay meaningful across architectures and tables.
type Window struct {
	CgroupID  uint64            `json:"cgroup_id"`
	Container Container         `json:"container"`
	Start     time.Time         `json:"start"`
	Duration  time.Duration     `json:"duration"`
	Counts    map[string]uint64 `json:"syscalls"`
	// Grams counts each syscall with up to GramOrder-1 predecessors of its
	// thread (see GramKey); nil when the sensor does not count order.
	Grams map[string]uint64 `json:"grams,omitempty"`
	// Startup: the window falls in its container's setup seconds, when the
	// runtime's init runs in the new cgroup. Such windows are neither learned as
	// behaviour nor scored.
	Startup bool `json:"startup,omitempty"`
	// Stopping: the window overlaps the StopGrace after the runtime signalled
	// the container's init to stop. Shutdown (a database's checkpoint, workers
	// exiting) is not the workload's behaviour: such windows are neither
	// learned nor scored. Hard rules still apply.
	Stopping bool `json:"stopping,omitempty"`
}

// StopGrace is how long after a stop signal a container's windows count as
// shutdown: Kubernetes' default termination grace (Docker waits 10 s before
// SIGKILL, whose own signal starts the grace again). A container whose init
// ignores the signal is scored again after it.
const StopGrace = 30 * time.Second

// Total is the number of syscalls in the window.
func (w Window) Total() uint64 { return sumCounts(w.Counts) }
