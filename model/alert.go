package model

import (
	"fmt"
	"slices"
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
	dedupKey  string
	Action    Action    `json:"-"`
	CgroupID  uint64    `json:"-"`
	Container Container `json:"-"`
}

// DedupKey identifies "the same alert again": the same rule, container and
// process, and the same decisive detail (syscall, paths, flags, address and
// port; the novel syscalls of a window). Anything coarser lets one alert mask
// another: a noisy process would hide a second one doing the same kind of thing
// to something else.
func (a Alert) DedupKey() string { return a.dedupKey }

// EventDedupKey is EventAlert(r, e, …).DedupKey() without building the alert, so
// the event loop drops a repeat before paying for its formatting (a rule can fire
// tens of thousands of times a second).
//
// The process of an exec is its parent, the one that forked it to run the file:
// a shell loop running the same unknown binary a hundred times is one actor
// doing one thing, and another process running it is another.
func EventDedupKey(r *Rule, e Event) string {
	var addr string
	if e.Addr.IsValid() {
		addr = e.Addr.String()
	}
	actor := []string{"pid", strconv.FormatUint(uint64(e.PID), 10), strconv.FormatUint(e.ProcStartNs, 10)}
	if e.Kind == EventExec {
		actor = []string{"ppid", strconv.FormatUint(uint64(e.PPID), 10), ""}
	}
	return strings.Join([]string{e.Container.ID, e.Container.CgroupPath, r.ID, "event", actor[0], actor[1], actor[2],
		string(e.Kind), e.Syscall, e.Path, e.Path2, e.FsType, strconv.FormatUint(e.Flags, 16),
		addr, strconv.Itoa(int(e.Port))}, "\x00")
}

func windowDedupKey(r *Rule, w Window, s WindowScore) string {
	return strings.Join(append([]string{w.Container.ID, w.Container.CgroupPath, r.ID, "window"}, s.Novel...), "\x00")
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
		for k, v := range c.PodLabels {
			f["k8s.pod.label."+k] = v // Falco's k8s.pod.label[KEY]
		}
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
		if x := e.Exec; x != nil {
			f["proc.is_exe_from_memfd"] = x.Memfd // Falco's field
			if kinds := x.Kinds(); len(kinds) > 0 {
				f["cagewatch.exec"] = kinds
			}
		}
	}
	if w := e.Write; w != nil {
		f["cagewatch.write"] = w.Ops
		if e.Path2 != "" {
			f["fs.path.source"] = e.Path2 // Falco's rename/link source field
		}
		if w.OutsideRoot {
			f["cagewatch.outside_root"] = true
		}
		if w.TextBusy {
			f["cagewatch.text_busy"] = true
		}
	}
	if e.Exe != "" && e.Kind != EventExec {
		f["proc.exepath"] = e.Exe
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
		Hostname: hostname, OutputFields: f, Action: r.Action, CgroupID: e.CgroupID, Container: e.Container,
		dedupKey: EventDedupKey(r, e)}
}

// WindowAlert builds a statistical alert (syscall_novel, syscall_anomaly) for a
// window. Its output names the view that drove the score, the syscalls whose
// share moved most and the pairs learning never or rarely saw, so the reader
// can tell an intruder's new order from a changed mix without the fields.
func WindowAlert(r *Rule, w Window, s WindowScore, t Threshold, hostname string) Alert {
	f := containerFields(w.Container)
	f["evt.type"] = "window"
	f["cagewatch.score"] = s.Value
	f["cagewatch.threshold"] = t.Value
	f["cagewatch.window_seconds"] = w.Duration.Seconds()
	f["cagewatch.novel_syscalls"] = s.Novel
	top := make([]map[string]any, 0, len(s.Top))
	shares := make([]string, 0, len(s.Top))
	for _, c := range s.Top {
		top = append(top, map[string]any{"syscall": c.Syscall, "observed": c.Observed, "expected": c.Expected, "novel": c.Novel})
		if c.Novel {
			shares = append(shares, fmt.Sprintf("%s %s (never seen)", c.Syscall, percent(c.Observed)))
		} else {
			shares = append(shares, fmt.Sprintf("%s %s (expected %s)", c.Syscall, percent(c.Observed), percent(c.Expected)))
		}
	}
	f["cagewatch.top"] = top
	views := make([]map[string]any, 0, len(s.Views))
	for _, v := range s.Views {
		views = append(views, map[string]any{"view": v.View, "z": v.Z, "p_value": v.PValue, "raw": v.Raw})
	}
	f["cagewatch.views"] = views
	pairs := make([]map[string]any, 0, len(s.Pairs))
	pairParts := make([]string, 0, len(s.Pairs))
	for _, p := range s.Pairs {
		pairs = append(pairs, map[string]any{"pair": p.Pair, "count": p.Count, "learned": p.Learned})
		pairParts = append(pairParts, p.Pair+" "+seenWhileLearning(p.Learned))
	}
	f["cagewatch.pairs"] = pairs
	name := w.Container.Name
	if name == "" {
		name = w.Container.ID
	}
	driver := s.Driver()
	var what string
	switch {
	case r.ID == RuleSyscallNovel:
		what = "syscalls never seen while learning: " + strings.Join(s.Novel, ", ")
	case driver.View == ViewOrder:
		what = fmt.Sprintf("syscall order off baseline (order view, z %.1f), score %.1f > threshold %.1f", driver.Z, s.Value, t.Value)
	case driver.View == ViewComposition:
		what = fmt.Sprintf("syscall mix off baseline (composition view, z %.1f), score %.1f > threshold %.1f", driver.Z, s.Value, t.Value)
	default:
		what = fmt.Sprintf("syscalls off baseline, score %.1f > threshold %.1f", s.Value, t.Value)
	}
	// The driving view's evidence first.
	details := []string{"top: " + strings.Join(shares, ", ")}
	if len(pairParts) > 0 {
		details = append(details, "pairs: "+strings.Join(pairParts, ", "))
		if driver.View == ViewOrder {
			details[0], details[1] = details[1], details[0]
		}
	}
	end := w.Start.Add(w.Duration)
	output := fmt.Sprintf("%s: %s %s (container=%s image=%s %s)", end.Format("15:04:05.000000000"), r.Priority, what,
		name, w.Container.ImageRef(), strings.Join(details, "; "))
	return Alert{Time: end, Rule: r.ID, Priority: r.Priority, Output: output, Source: "cagewatch",
		Tags: r.Tags, Hostname: hostname, OutputFields: f, Action: r.Action, CgroupID: w.CgroupID, Container: w.Container,
		dedupKey: windowDedupKey(r, w, s)}
}

// percent writes a share so that small ones keep a digit that tells them apart.
func percent(share float64) string {
	p := 100 * share
	switch {
	case p == 0 || p >= 10:
		return fmt.Sprintf("%.0f%%", p)
	case p >= 1:
		return fmt.Sprintf("%.1f%%", p)
	}
	return fmt.Sprintf("%.2g%%", p)
}

func seenWhileLearning(n uint64) string {
	switch n {
	case 0:
		return "never seen while learning"
	case 1:
		return "seen once while learning"
	}
	return fmt.Sprintf("seen %d times while learning", n)
}

// RuleAlertsHeldBack is the summary alert of a container past its alert cap.
const RuleAlertsHeldBack = "alerts_held_back"

// HeldBackAlert summarises the alerts held back from one container in
// [from, to] because rules passed their cap of limit alerts: how many, of which.
func HeldBackAlert(c Container, cgroupID uint64, held map[string]uint64, from, to time.Time, limit int, hostname string) Alert {
	f := containerFields(c)
	f["evt.type"] = "summary"
	rules := make([]string, 0, len(held))
	var total uint64
	counts := make(map[string]uint64, len(held))
	for rule, n := range held {
		rules = append(rules, rule)
		counts[rule] = n
		total += n
	}
	slices.Sort(rules)
	parts := make([]string, len(rules))
	for i, rule := range rules {
		parts[i] = fmt.Sprintf("%s %d", rule, held[rule])
	}
	f["cagewatch.held_back"] = counts
	f["cagewatch.held_back_total"] = total
	f["cagewatch.alert_limit"] = limit
	f["cagewatch.window_seconds"] = to.Sub(from).Seconds()
	name := c.Name
	if name == "" {
		name = c.ID
	}
	output := fmt.Sprintf("%s: Warning %d alerts held back: the container passed %d alerts of a rule in %.0fs (container=%s image=%s held: %s)",
		to.Format("15:04:05.000000000"), total, limit, to.Sub(from).Seconds(), name, c.ImageRef(), strings.Join(parts, ", "))
	return Alert{Time: to, Rule: RuleAlertsHeldBack, Priority: "Warning", Output: output, Source: "cagewatch",
		Hostname: hostname, OutputFields: f, Action: ActionAlert, CgroupID: cgroupID, Container: c,
		dedupKey: strings.Join([]string{c.ID, c.CgroupPath, RuleAlertsHeldBack, to.String()}, "\x00")}
}

func ruleSentence(r *Rule) string {
	if r.Description != "" {
		return r.Description
	}
	return r.ID
}
