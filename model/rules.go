package model

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Priority is a Falco priority, spelled as Falco writes it in JSON output.
type Priority string

// Priorities, most severe first.
var Priorities = []Priority{"Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"}

// Action is what enforce mode does when a rule fires.
type Action string

const (
	ActionAlert  Action = "alert"
	ActionKill   Action = "kill"   // SIGKILL from the BPF program at syscall entry
	ActionFreeze Action = "freeze" // freeze the container's cgroup
)

// Statistical rule ids: fired by scoring, not by events.
const (
	RuleSyscallNovel   = "syscall_novel"
	RuleSyscallAnomaly = "syscall_anomaly"
	RuleExecDrift      = "exec_drift"
)

// RuleSpec is one rule as written in the rules file.
type RuleSpec struct {
	ID          string    `yaml:"id" json:"id"`
	Description string    `yaml:"description" json:"description"`
	Priority    string    `yaml:"priority" json:"priority"`
	Action      string    `yaml:"action" json:"action"`
	Enabled     *bool     `yaml:"enabled" json:"enabled,omitempty"`
	Tags        []string  `yaml:"tags" json:"tags,omitempty"`
	Match       MatchSpec `yaml:"match" json:"match"`
	// AnyOf are further conditions, each enough on its own. With action kill, only
	// match is enforced in the kernel; any_of conditions alert.
	AnyOf []MatchSpec `yaml:"any_of" json:"any_of,omitempty"`
	// Learnable: what an image did while its baseline was learning (the same
	// binary, the same decisive detail: see ExceptionDetail) becomes a learned
	// exception, and the rule does not fire for it afterwards.
	Learnable bool `yaml:"learnable" json:"learnable,omitempty"`
}

// MatchSpec says which events a rule fires on. All given criteria must hold.
type MatchSpec struct {
	// Events are "syscall" (default), "exec" or "write" (a file write, judged
	// on the file resolved in the kernel); statistical rules use "novel" or
	// "anomaly".
	Event    string   `yaml:"event" json:"event,omitempty"`
	Syscalls []string `yaml:"syscalls" json:"syscalls,omitempty"`
	// FlagsAny: at least one of these flags (CLONE_NEW* names or numbers) is set.
	FlagsAny []string `yaml:"flags_any" json:"flags_any,omitempty"`
	// PathPrefixes / PathNames: the path starts with a prefix / its last element is a name.
	PathPrefixes []string `yaml:"path_prefixes" json:"path_prefixes,omitempty"`
	PathNames    []string `yaml:"path_names" json:"path_names,omitempty"`
	// PathGlobs: the path matches a glob ("*" within an element, "**" across
	// them). The kernel reports by the glob's literal directory, or by its
	// last element when that is literal. PathExcludes: globs that never match.
	PathGlobs    []string `yaml:"path_globs" json:"path_globs,omitempty"`
	PathExcludes []string `yaml:"path_excludes" json:"path_excludes,omitempty"`
	// WriteOps (event write): the write did any of these (WriteOps).
	WriteOps []string `yaml:"write_ops" json:"write_ops,omitempty"`
	// WriteFile (event write): the written file is any of these kinds:
	// outside_root, text_busy (a running program), source_watched.
	WriteFile []string `yaml:"write_file" json:"write_file,omitempty"`
	// LinkTarget (event write): the path conditions apply to what a link or
	// symlink points at, not to the new name.
	LinkTarget bool `yaml:"link_target" json:"link_target,omitempty"`
	// OpenWrite: only opens that can write (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC).
	OpenWrite bool     `yaml:"open_write" json:"open_write,omitempty"`
	FsTypes   []string `yaml:"fstypes" json:"fstypes,omitempty"`
	Families  []string `yaml:"families" json:"families,omitempty"`
	Ports     []int    `yaml:"ports" json:"ports,omitempty"`
	// CapsAdded: capset asks for a capability the process does not have.
	CapsAdded bool `yaml:"caps_added" json:"caps_added,omitempty"`
	// NotInBaseline: the executed binary is not in the image's baseline (exec_drift).
	NotInBaseline bool `yaml:"not_in_baseline" json:"not_in_baseline,omitempty"`
	// ExecFile (exec events): the exec is any of these kinds: memfd, deleted,
	// outside_root, stdio_socket (fd 0, 1 or 2 is a network socket),
	// upper_layer (written or changed after the container started).
	ExecFile []string `yaml:"exec_file" json:"exec_file,omitempty"`
	// SocketTypes (socket): the socket's type is one of these: raw, dgram, stream.
	SocketTypes []string `yaml:"socket_types" json:"socket_types,omitempty"`
	// ModeAny (chmod family): the mode sets any of these bits: setuid, setgid.
	ModeAny []string `yaml:"mode_any" json:"mode_any,omitempty"`
}

// WriteFileKinds are the kinds write_file names.
var WriteFileKinds = []string{"outside_root", "text_busy", "source_watched"}

func (w *FileWrite) is(kind string) bool {
	switch kind {
	case "outside_root":
		return w.OutsideRoot
	case "text_busy":
		return w.TextBusy
	case "source_watched":
		return w.SourceWatched
	}
	return false
}

// ExecFileKinds are the kinds exec_file names.
var ExecFileKinds = []string{"memfd", "deleted", "outside_root", "stdio_socket", "upper_layer"}

// Kinds lists what the exec was, beyond an ordinary file on disk: the
// ExecFileKinds that hold, then "script" and "truncated".
func (x *ExecFile) Kinds() []string {
	var out []string
	for _, k := range append(ExecFileKinds, "script", "truncated") {
		if x.is(k) {
			out = append(out, k)
		}
	}
	return out
}

func (x *ExecFile) is(kind string) bool {
	switch kind {
	case "script":
		return x.Script
	case "truncated":
		return x.Truncated
	case "memfd":
		return x.Memfd
	case "deleted":
		return x.Deleted
	case "outside_root":
		return x.OutsideRoot
	case "stdio_socket":
		return x.StdioSocket
	case "upper_layer":
		return x.UpperLayer
	}
	return false
}

var socketTypeValues = map[string]uint64{"stream": 1, "dgram": 2, "raw": 3}

var modeBitValues = map[string]uint64{"setuid": 0o4000, "setgid": 0o2000}

// Rule is a compiled, validated rule.
type Rule struct {
	ID          string
	Description string
	Priority    Priority
	Action      Action
	Tags        []string
	Learnable   bool
	// Matchers are match followed by any_of; Matchers[0] is what kill enforces.
	Matchers []*Matcher
}

// Matcher is one compiled condition.
type Matcher struct {
	Spec     MatchSpec
	syscalls map[string]bool
	flags    uint64
	ports    map[uint16]bool
	mode     uint64 // mode_any bits
}

// RuleSet is an immutable set of compiled rules.
type RuleSet struct {
	Rules []*Rule
	byID  map[string]*Rule
}

// ErrBadRule is wrapped by every rule validation error.
var ErrBadRule = errors.New("invalid rule")

const (
	oWronly = 0o1
	oRdwr   = 0o2
	oCreat  = 0o100
	oTrunc  = 0o1000
)

// namespaceFlagValues maps flag names usable in flags_any to their bits.
var namespaceFlagValues = func() map[string]uint64 {
	m := map[string]uint64{}
	for _, f := range cloneFlagNames {
		m[f.name] = f.bit
	}
	return m
}()

// kernelDecidable are the syscalls whose rules the BPF program can enforce itself.
var kernelDecidable = []string{"unshare", "setns", "clone", "clone3", "init_module", "finit_module", "delete_module",
	"open", "openat", "openat2", "chmod", "fchmod", "fchmodat", "fchmodat2"}

// CompileRules validates specs and builds a rule set. Errors name the rule (by id,
// or by position when it has none) and the field.
func CompileRules(specs []RuleSpec) (*RuleSet, error) {
	rs := &RuleSet{byID: map[string]*Rule{}}
	var errs []error
	for i, s := range specs {
		where := fmt.Sprintf("rules[%d]", i)
		if s.ID != "" {
			where = fmt.Sprintf("rule %q", s.ID)
		}
		r, err := compileRule(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %v", ErrBadRule, where, err))
			continue
		}
		if _, dup := rs.byID[r.ID]; dup {
			errs = append(errs, fmt.Errorf("%w: %s: id: defined twice", ErrBadRule, where))
			continue
		}
		if s.Enabled != nil && !*s.Enabled {
			continue
		}
		rs.byID[r.ID] = r
		rs.Rules = append(rs.Rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rs, nil
}

func compileRule(s RuleSpec) (*Rule, error) {
	if s.ID == "" || strings.ContainsAny(s.ID, " \t\n") {
		return nil, fmt.Errorf("id: %q must be a non-empty word", s.ID)
	}
	r := &Rule{ID: s.ID, Description: s.Description, Tags: s.Tags, Action: ActionAlert, Learnable: s.Learnable}
	pi := slices.IndexFunc(Priorities, func(p Priority) bool { return strings.EqualFold(string(p), s.Priority) })
	if pi < 0 {
		return nil, fmt.Errorf("priority: %q is not one of %v", s.Priority, Priorities)
	}
	r.Priority = Priorities[pi]
	switch Action(s.Action) {
	case "", ActionAlert:
	case ActionKill, ActionFreeze:
		r.Action = Action(s.Action)
	default:
		return nil, fmt.Errorf("action: %q is not alert, kill or freeze", s.Action)
	}
	specs := append([]MatchSpec{s.Match}, s.AnyOf...)
	for i, spec := range specs {
		field := "match"
		if i > 0 {
			field = fmt.Sprintf("any_of[%d]", i-1)
		}
		m, err := compileMatch(spec)
		if err != nil {
			return nil, fmt.Errorf("%s.%v", field, err)
		}
		r.Matchers = append(r.Matchers, m)
	}
	if r.Action == ActionKill && !r.Matchers[0].kernelDecidable() {
		return nil, fmt.Errorf("action: kill needs a match the kernel can decide at syscall entry (syscalls among %v, no port, family, socket type, fstype, capability or baseline condition, mode_any naming both setuid and setgid; or an exec whose only condition is exec_file among deleted, outside_root, stdio_socket); use freeze or alert", kernelDecidable)
	}
	return r, nil
}

func compileMatch(m MatchSpec) (*Matcher, error) {
	c := &Matcher{Spec: m, syscalls: map[string]bool{}, ports: map[uint16]bool{}}
	switch m.Event {
	case "", "syscall", "exec", "write", "novel", "anomaly":
	default:
		return nil, fmt.Errorf("event: %q is not syscall, exec, write, novel or anomaly", m.Event)
	}
	if err := compileWriteMatch(m); err != nil {
		return nil, err
	}
	for _, name := range m.Syscalls {
		if _, ok := SyscallNumber(name); !ok {
			return nil, fmt.Errorf("syscalls: unknown syscall %q", name)
		}
		c.syscalls[name] = true
	}
	for _, f := range m.FlagsAny {
		if v, ok := namespaceFlagValues[f]; ok {
			c.flags |= v
			continue
		}
		v, err := strconv.ParseUint(f, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("flags_any: %q is neither a CLONE_NEW* name nor a number", f)
		}
		c.flags |= v
	}
	for _, p := range m.PathPrefixes {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("path_prefixes: %q is not absolute", p)
		}
	}
	for _, n := range m.PathNames {
		if n == "" || strings.Contains(n, "/") {
			return nil, fmt.Errorf("path_names: %q is not a file name", n)
		}
	}
	for _, f := range m.Families {
		if f != "inet" && f != "inet6" && f != "unix" && f != "packet" {
			return nil, fmt.Errorf("families: %q is not inet, inet6, unix or packet", f)
		}
	}
	for _, k := range m.ExecFile {
		if !slices.Contains(ExecFileKinds, k) {
			return nil, fmt.Errorf("exec_file: %q is not one of %v", k, ExecFileKinds)
		}
	}
	if len(m.ExecFile) > 0 && m.Event != "exec" {
		return nil, errors.New("exec_file: only for event: exec")
	}
	for _, st := range m.SocketTypes {
		if _, ok := socketTypeValues[st]; !ok {
			return nil, fmt.Errorf("socket_types: %q is not raw, dgram or stream", st)
		}
	}
	for _, b := range m.ModeAny {
		v, ok := modeBitValues[b]
		if !ok {
			return nil, fmt.Errorf("mode_any: %q is not setuid or setgid", b)
		}
		c.mode |= v
	}
	for _, p := range m.Ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("ports: %d is not a port", p)
		}
		c.ports[uint16(p)] = true
	}
	statistical := m.Event == "novel" || m.Event == "anomaly"
	if !statistical && m.Event != "exec" && m.Event != "write" && len(m.Syscalls) == 0 {
		return nil, errors.New("syscalls: a syscall condition needs at least one syscall")
	}
	return c, nil
}

func (m *Matcher) kernelDecidable() bool {
	s := m.Spec
	if s.Event == "write" { // write-opens are judged when they return
		return false
	}
	if s.Event == "exec" { // judged at sched_process_exec, before the new image runs
		return len(s.ExecFile) > 0 && !slices.Contains(s.ExecFile, "memfd") && len(s.PathPrefixes) == 0 &&
			len(s.PathNames) == 0 && !s.NotInBaseline
	}
	// The kernel reports the chmod family only when the mode sets setuid or
	// setgid: mode_any must name both to mean what the kernel decides.
	if m.mode != 0 && m.mode != modeBitValues["setuid"]|modeBitValues["setgid"] {
		return false
	}
	if s.Event != "" && s.Event != "syscall" || len(s.Ports) > 0 || len(s.Families) > 0 || len(s.SocketTypes) > 0 ||
		s.CapsAdded || s.NotInBaseline || len(s.FsTypes) > 0 {
		return false
	}
	for name := range m.syscalls {
		if !slices.Contains(kernelDecidable, name) {
			return false
		}
	}
	return true
}

// Syscalls are the syscalls the condition names.
func (m *Matcher) Syscalls() []string {
	out := make([]string, 0, len(m.syscalls))
	for name := range m.syscalls {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Flags is the compiled flags_any mask.
func (m *Matcher) Flags() uint64 { return m.flags }

// Rule returns a rule by id, or nil.
func (rs *RuleSet) Rule(id string) *Rule {
	if rs == nil {
		return nil
	}
	return rs.byID[id]
}

// Match returns the rules an event fires. baseline is the image's baseline (nil
// when there is none): exec_drift and learned exceptions need it.
func (rs *RuleSet) Match(e Event, baseline *Baseline) []*Rule {
	if rs == nil || !e.Container.IsContainer() {
		return nil
	}
	var fired []*Rule
	for _, r := range rs.Rules {
		if r.matches(e, baseline) && (!r.Learnable || !baseline.Excepted(r.ID, ExceptionBinary(e), ExceptionDetail(e))) {
			fired = append(fired, r)
		}
	}
	return fired
}

func (r *Rule) matches(e Event, b *Baseline) bool {
	return slices.ContainsFunc(r.Matchers, func(m *Matcher) bool { return m.matches(e, b) })
}

func (c *Matcher) matches(e Event, b *Baseline) bool {
	m := c.Spec
	switch m.Event {
	case "novel", "anomaly":
		return false
	case "write":
		if !c.matchesWrite(e) {
			return false
		}
	case "exec":
		if e.Kind != EventExec {
			return false
		}
		if m.NotInBaseline && (b == nil || b.State != StateStable || b.Binaries[e.Path] > 0) {
			return false
		}
		if len(m.ExecFile) > 0 && (e.Exec == nil || !slices.ContainsFunc(m.ExecFile, e.Exec.is)) {
			return false
		}
	default:
		if e.Kind != EventSyscall || !c.syscalls[e.Syscall] {
			return false
		}
		if e.Write != nil && openSyscall(e.Syscall) && !e.IOUring {
			return false // the write judged when the open returned: event write's
		}
	}
	flags := e.Flags
	if e.Syscall == "clone" {
		flags &^= 0xff // clone()'s low byte is the exit signal, not CLONE_NEWTIME
	}
	if c.flags != 0 && flags&c.flags == 0 {
		return false
	}
	p := e.Path
	if m.LinkTarget {
		p = e.Path2
	}
	if !c.matchesPath(p) {
		return false
	}
	if m.OpenWrite && e.Flags&(oWronly|oRdwr|oCreat|oTrunc) == 0 {
		return false
	}
	if len(m.FsTypes) > 0 && !slices.Contains(m.FsTypes, e.FsType) {
		return false
	}
	if len(m.Families) > 0 && !slices.Contains(m.Families, e.Family) {
		return false
	}
	if len(c.ports) > 0 && !c.ports[e.Port] {
		return false
	}
	if m.CapsAdded && (e.CapsRequested == nil || e.CapsRequested.Effective&^e.CapEff == 0) {
		return false
	}
	if len(m.SocketTypes) > 0 && !slices.ContainsFunc(m.SocketTypes, func(st string) bool {
		return e.Flags&0xf == socketTypeValues[st]
	}) {
		return false
	}
	if c.mode != 0 && e.Flags&c.mode == 0 {
		return false
	}
	return true
}

// compileWriteMatch checks the fields of event: write.
func compileWriteMatch(m MatchSpec) error {
	write := m.Event == "write"
	if !write && (len(m.WriteOps) > 0 || len(m.WriteFile) > 0 || m.LinkTarget) {
		return errors.New("write_ops, write_file and link_target: only for event: write")
	}
	for _, op := range m.WriteOps {
		if !slices.Contains(WriteOps, op) {
			return fmt.Errorf("write_ops: %q is not one of %v", op, WriteOps)
		}
	}
	for _, k := range m.WriteFile {
		if !slices.Contains(WriteFileKinds, k) {
			return fmt.Errorf("write_file: %q is not one of %v", k, WriteFileKinds)
		}
	}
	for _, g := range append(slices.Clone(m.PathGlobs), m.PathExcludes...) {
		if g == "" || !strings.HasPrefix(g, "/") && !strings.HasPrefix(g, "*") {
			return fmt.Errorf("path_globs: %q is neither absolute nor starts with a wildcard", g)
		}
	}
	for _, g := range m.PathGlobs {
		if !write && len(globLiteralDir(g)) <= 1 && globLiteralName(g) == "" {
			return fmt.Errorf("path_globs: %q: the kernel needs a literal directory or file name to report it by", g)
		}
	}
	paths := len(m.PathPrefixes) + len(m.PathNames) + len(m.PathGlobs)
	if write && paths == 0 && len(m.WriteFile) == 0 {
		return errors.New("event: write needs a path or write_file condition (every write is too many)")
	}
	if write && !m.LinkTarget {
		// The kernel reports writes below literal directories only.
		for _, g := range m.PathGlobs {
			if d := globLiteralDir(g); d == "" || d == "/" {
				return fmt.Errorf("path_globs: %q: a write glob needs a literal directory before its first wildcard", g)
			}
		}
		if len(m.PathNames) > 0 {
			return errors.New("path_names: write rules are judged by directory; use path_prefixes or path_globs")
		}
	}
	if m.LinkTarget && len(m.WriteOps) > 0 && slices.ContainsFunc(m.WriteOps, func(op string) bool { return op != "link" && op != "symlink" }) {
		return errors.New("link_target: write_ops may only name link and symlink")
	}
	return nil
}

func (c *Matcher) matchesWrite(e Event) bool {
	m := c.Spec
	if e.Kind != EventSyscall || e.Write == nil {
		return false
	}
	if len(c.syscalls) > 0 && !c.syscalls[e.Syscall] {
		return false
	}
	ops := m.WriteOps
	if m.LinkTarget && len(ops) == 0 {
		ops = []string{"link", "symlink"}
	}
	if len(ops) > 0 && !slices.ContainsFunc(ops, func(op string) bool { return slices.Contains(e.Write.Ops, op) }) {
		return false
	}
	return len(m.WriteFile) == 0 || slices.ContainsFunc(m.WriteFile, e.Write.is)
}

// matchesPath checks the path conditions against p (cleaned when absolute).
func (c *Matcher) matchesPath(p string) bool {
	m := c.Spec
	if strings.HasPrefix(p, "/") {
		p = path.Clean(p) // "//etc/./shadow" is /etc/shadow
	}
	if slices.ContainsFunc(m.PathExcludes, func(g string) bool { return GlobMatch(g, p) }) {
		return false
	}
	if len(m.PathPrefixes)+len(m.PathNames)+len(m.PathGlobs) == 0 {
		return true
	}
	return slices.ContainsFunc(m.PathPrefixes, func(prefix string) bool { return strings.HasPrefix(p, prefix) }) ||
		slices.Contains(m.PathNames, path.Base(p)) ||
		slices.ContainsFunc(m.PathGlobs, func(g string) bool { return GlobMatch(g, p) })
}

// KernelWatch is what the sensor must report for the rules to see their
// events: opened paths (prefixes and file names) and, per written tree, the
// write operations that count there.
type KernelWatch struct {
	OpenPrefixes []string
	OpenNames    []string
	Writes       map[string][]string // tree prefix -> write ops
}

// KernelWatch derives the sensor's filters from the rules' path conditions.
func (rs *RuleSet) KernelWatch() KernelWatch {
	w := KernelWatch{Writes: map[string][]string{}}
	if rs == nil {
		return w
	}
	openSyscalls := []string{"open", "openat", "openat2", "connect"}
	for _, r := range rs.Rules {
		for _, c := range r.Matchers {
			m := c.Spec
			switch {
			case m.Event == "write" && !m.LinkTarget:
				ops := m.WriteOps
				if len(ops) == 0 {
					ops = WriteOps
				}
				trees := slices.Clone(m.PathPrefixes)
				for _, g := range m.PathGlobs {
					trees = append(trees, globLiteralDir(g))
				}
				for _, t := range trees {
					w.Writes[t] = mergeOps(w.Writes[t], ops)
				}
			case m.LinkTarget || (m.Event == "" || m.Event == "syscall") && slices.ContainsFunc(openSyscalls, func(s string) bool { return c.syscalls[s] }):
				w.OpenPrefixes = append(w.OpenPrefixes, m.PathPrefixes...)
				w.OpenNames = append(w.OpenNames, m.PathNames...)
				for _, g := range m.PathGlobs {
					if d := globLiteralDir(g); len(d) > 1 {
						w.OpenPrefixes = append(w.OpenPrefixes, d)
					} else if n := globLiteralName(g); n != "" {
						w.OpenNames = append(w.OpenNames, n)
					}
				}
			}
		}
	}
	slices.Sort(w.OpenPrefixes)
	slices.Sort(w.OpenNames)
	w.OpenPrefixes = slices.Compact(w.OpenPrefixes)
	w.OpenNames = slices.Compact(w.OpenNames)
	return w
}

func openSyscall(name string) bool {
	return name == "open" || name == "openat" || name == "openat2" || name == "creat"
}

func mergeOps(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
