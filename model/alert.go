package model

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Alert is one detection, shaped as Falco's JSON output so falcosidekick and SIEM
// pipelines built for Falco consume it unchanged.
type Alert struct {
	Time         time.Time      `json:"time"`
	Rule         string         `json:"rule"`
	Priority     Priority       `json:"priority"`
	Output       string         `json:"output"`
	Source       string         `json:"source"`
	Tags         []string       `json:"tags,omitempty"`
	Hostname     string         `json:"hostname,omitempty"`
	OutputFields map[string]any `json:"output_fields"`

	// Not part of the output: what the pipeline needs to act and deduplicate.
	Action    Action    `json:"-"`
	CgroupID  uint64    `json:"-"`
	Container Container `json:"-"`
}

// dedupFields are the output fields that tell one alert of a rule from another.
var dedupFields = []string{"evt.type", "fd.name", "proc.exepath", "fd.rip", "fd.rport", "cagewatch.novel_syscalls"}

// DedupKey identifies "the same alert again from the same container".
func (a Alert) DedupKey() string {
	parts := []string{a.Container.ID, a.Container.CgroupPath, a.Rule}
	for _, f := range dedupFields {
		parts = append(parts, fmt.Sprint(a.OutputFields[f]))
	}
	return strings.Join(parts, "\x00")
}

// EventDedupKey is EventAlert(r, e, …).DedupKey() without building the alert, so
// the event loop drops a repeat before paying for its formatting (a rule can fire
// tens of thousands of times a second).
func EventDedupKey(r *Rule, e Event) string {
	const absent = "<nil>" // fmt.Sprint of a missing field
	evtType, fdName, exePath, rip, rport := e.Syscall, absent, absent, absent, absent
	if e.Path != "" {
		fdName = e.Path
	}
	if e.Kind == EventExec {
		evtType, exePath = "execve", e.Path
	}
	if e.Port != 0 {
		rip, rport = e.Addr.String(), strconv.Itoa(int(e.Port))
	}
	return strings.Join([]string{e.Container.ID, e.Container.CgroupPath, r.ID, evtType, fdName, exePath, rip, rport, absent}, "\x00")
}

func containerFields(c Container) map[string]any {
	f := map[string]any{
		"container.id":               c.ID,
		"container.name":             c.Name,
		"container.image.repository": c.Image,
		"container.image.tag":        c.ImageTag,
		"container.image.id":         c.ImageID,
		"cagewatch.cgroup":           c.CgroupPath,
		"cagewatch.runtime":          string(c.Runtime),
	}
	if c.PodName != "" {
		f["k8s.pod.name"] = c.PodName
		f["k8s.ns.name"] = c.Namespace
	}
	return f
}

// EventAlert builds the alert for a rule fired by an event. cmdline is the
// process's command line when known ("" otherwise).
func EventAlert(r *Rule, e Event, cmdline, hostname string) Alert {
	f := containerFields(e.Container)
	f["evt.type"] = e.Syscall
	f["evt.time"] = e.Time.UnixNano()
	f["proc.name"] = e.Comm
	f["proc.pid"] = e.PID
	f["proc.tid"] = e.TID
	f["proc.ppid"] = e.PPID
	f["user.uid"] = e.UID
	f["cagewatch.detail"] = e.Describe()
	f["cagewatch.cap_effective"] = fmt.Sprintf("%#x", e.CapEff)
	if cmdline != "" {
		f["proc.cmdline"] = cmdline
	}
	if e.Path != "" {
		f["fd.name"] = e.Path
	}
	if e.Kind == EventExec {
		f["evt.type"] = "execve"
		f["proc.exepath"] = e.Path
		f["proc.cmdline"] = strings.Join(e.Argv, " ")
	}
	if e.Port != 0 {
		f["fd.rip"] = e.Addr.String()
		f["fd.rport"] = e.Port
	}
	if e.Kind == EventSyscall && (e.Syscall == "unshare" || e.Syscall == "setns" || strings.HasPrefix(e.Syscall, "clone")) {
		f["cagewatch.flags"] = NamespaceFlags(e.Flags, e.Syscall != "clone")
	}
	name := e.Container.Name
	if name == "" {
		name = e.Container.ID
	}
	output := fmt.Sprintf("%s: %s %s (container=%s image=%s proc=%s pid=%d %s)", e.Time.Format("15:04:05.000000000"),
		r.Priority, ruleSentence(r), name, e.Container.ImageRef(), e.Comm, e.PID, e.Describe())
	return Alert{Time: e.Time, Rule: r.ID, Priority: r.Priority, Output: output, Source: "syscall", Tags: r.Tags,
		Hostname: hostname, OutputFields: f, Action: r.Action, CgroupID: e.CgroupID, Container: e.Container}
}

// WindowAlert builds a statistical alert (syscall_novel, syscall_anomaly) for a window.
func WindowAlert(r *Rule, w Window, s WindowScore, t Threshold, hostname string) Alert {
	f := containerFields(w.Container)
	f["evt.type"] = "window"
	f["cagewatch.score"] = s.Value
	f["cagewatch.threshold"] = t.Value
	f["cagewatch.window_seconds"] = w.Duration.Seconds()
	f["cagewatch.novel_syscalls"] = s.Novel
	top := make([]map[string]any, 0, len(s.Top))
	var parts []string
	for _, c := range s.Top {
		top = append(top, map[string]any{"syscall": c.Syscall, "observed": c.Observed, "expected": c.Expected, "novel": c.Novel})
		parts = append(parts, fmt.Sprintf("%s %.1f/s (expected %.1f)", c.Syscall, c.Observed, c.Expected))
	}
	f["cagewatch.top"] = top
	name := w.Container.Name
	if name == "" {
		name = w.Container.ID
	}
	what := fmt.Sprintf("syscall mix off baseline, score %.1f > threshold %.1f", s.Value, t.Value)
	if r.ID == RuleSyscallNovel {
		what = "syscalls never seen while learning: " + strings.Join(s.Novel, ", ")
	}
	end := w.Start.Add(w.Duration)
	output := fmt.Sprintf("%s: %s %s (container=%s image=%s top: %s)", end.Format("15:04:05.000000000"), r.Priority, what,
		name, w.Container.ImageRef(), strings.Join(parts, "; "))
	return Alert{Time: end, Rule: r.ID, Priority: r.Priority, Output: output, Source: "cagewatch",
		Tags: r.Tags, Hostname: hostname, OutputFields: f, Action: r.Action, CgroupID: w.CgroupID, Container: w.Container}
}

func ruleSentence(r *Rule) string {
	if r.Description != "" {
		return r.Description
	}
	return r.ID
}
