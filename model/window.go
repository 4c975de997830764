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
}

// Total is the number of syscalls in the window.
func (w Window) Total() uint64 { return sumCounts(w.Counts) }
