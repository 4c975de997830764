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
	// Startup: the window falls in its container's setup seconds, when the
	// runtime's init runs in the new cgroup. Such windows are neither learned as
	// behaviour nor scored.
	Startup bool `json:"startup,omitempty"`
}

// Total is the number of syscalls in the window.
func (w Window) Total() uint64 {
	var n uint64
	for _, c := range w.Counts {
		n += c
	}
	return n
}
