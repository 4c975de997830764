package model

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// O_* open flags as the kernel passes them (x86_64).
const (
	testORdonly = 0o0
	testOWronly = 0o1
	testORdwr   = 0o2
	testOCreat  = 0o100
	testOTrunc  = 0o1000
	testOAppend = 0o2000
	testOCloexe = 0o2000000
)

func boolPtr(b bool) *bool { return &b }

// rulesContainer is an ordinary docker container.
var rulesContainer = Container{ID: "0123456789ab", Name: "web", Runtime: RuntimeDocker,
	Image: "docker.io/library/nginx", ImageTag: "1.27", CgroupPath: "/system.slice/docker-0123456789ab.scope"}

// syscallEvent is a syscall event of rulesContainer.
func syscallEvent(name string, mod func(e *Event)) Event {
	e := Event{Time: testT0, Kind: EventSyscall, Syscall: name, PID: 4242, TID: 4242, Comm: "sh",
		CgroupID: 77, Container: rulesContainer}
	if mod != nil {
		mod(&e)
	}
	return e
}

func execEvent(path string) Event {
	return Event{Time: testT0, Kind: EventExec, Path: path, Argv: []string{path}, PID: 4242, Comm: "sh",
		CgroupID: 77, Container: rulesContainer}
}

func mustCompile(t *testing.T, specs []RuleSpec) *RuleSet {
	t.Helper()
	rs, err := CompileRules(specs)
	if err != nil {
		t.Fatalf("CompileRules: %v", err)
	}
	return rs
}

func firedIDs(rules []*Rule) []string {
	ids := make([]string, 0, len(rules))
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// validSpec is a rule that compiles; tests break one field at a time.
func validSpec(id string) RuleSpec {
	return RuleSpec{ID: id, Priority: "Critical", Action: "alert", Match: MatchSpec{Syscalls: []string{"unshare"}}}
}

func TestCompileRulesErrors(t *testing.T) {
	tests := []struct {
		name  string
		specs []RuleSpec
		// want are substrings the error must contain (rule and field).
		want []string
	}{
		{
			name:  "bad priority",
			specs: []RuleSpec{func() RuleSpec { s := validSpec("r1"); s.Priority = "Urgent"; return s }()},
			want:  []string{`rule "r1"`, "priority", "Urgent"},
		},
		{
			name:  "missing priority",
			specs: []RuleSpec{func() RuleSpec { s := validSpec("r1"); s.Priority = ""; return s }()},
			want:  []string{`rule "r1"`, "priority"},
		},
		{
			name:  "unknown exec kind",
			specs: []RuleSpec{{ID: "r1", Priority: "Critical", Match: MatchSpec{Event: "exec", ExecFile: []string{"ghost"}}}},
			want:  []string{`rule "r1"`, "exec_file", "ghost"},
		},
		{
			name:  "exec kind on a syscall condition",
			specs: []RuleSpec{{ID: "r1", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"chmod"}, ExecFile: []string{"deleted"}}}},
			want:  []string{`rule "r1"`, "exec_file", "event: exec"},
		},
		{
			name: "unknown socket type and mode bit",
			specs: []RuleSpec{{ID: "r1", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"socket"}, SocketTypes: []string{"warp"}}},
				{ID: "r2", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"chmod"}, ModeAny: []string{"sticky"}}}},
			want: []string{`rule "r1"`, "socket_types", "warp", `rule "r2"`, "mode_any", "sticky"},
		},
		{
			name:  "kill on a memfd the kernel cannot name",
			specs: []RuleSpec{{ID: "r1", Priority: "Critical", Action: "kill", Match: MatchSpec{Event: "exec", ExecFile: []string{"memfd"}}}},
			want:  []string{`rule "r1"`, "action: kill"},
		},
		{
			name:  "kill on one mode bit the kernel does not tell apart",
			specs: []RuleSpec{{ID: "r1", Priority: "Critical", Action: "kill", Match: MatchSpec{Syscalls: []string{"chmod"}, ModeAny: []string{"setuid"}}}},
			want:  []string{`rule "r1"`, "action: kill"},
		},
		{
			name:  "bad action",
			specs: []RuleSpec{func() RuleSpec { s := validSpec("r1"); s.Action = "shoot"; return s }()},
			want:  []string{`rule "r1"`, "action", "shoot"},
		},
		{
			name: "unknown syscall",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Syscalls = []string{"unshare", "frobnicate"}
				return s
			}()},
			want: []string{`rule "r1"`, "match.syscalls", "frobnicate"},
		},
		{
			name: "bad flags_any",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.FlagsAny = []string{"CLONE_NEWBOGUS"}
				return s
			}()},
			want: []string{`rule "r1"`, "match.flags_any", "CLONE_NEWBOGUS"},
		},
		{
			name: "relative path prefix",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Syscalls = []string{"openat"}
				s.Match.PathPrefixes = []string{"etc/shadow"}
				return s
			}()},
			want: []string{`rule "r1"`, "match.path_prefixes", "etc/shadow"},
		},
		{
			name: "path name with a slash",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Syscalls = []string{"openat"}
				s.Match.PathNames = []string{"cgroup/release_agent"}
				return s
			}()},
			want: []string{`rule "r1"`, "match.path_names", "cgroup/release_agent"},
		},
		{
			name: "empty path name",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Syscalls = []string{"openat"}
				s.Match.PathNames = []string{""}
				return s
			}()},
			want: []string{`rule "r1"`, "match.path_names"},
		},
		{
			name: "bad family",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Syscalls = []string{"connect"}
				s.Match.Families = []string{"netlink"}
				return s
			}()},
			want: []string{`rule "r1"`, "match.families", "netlink"},
		},
		{
			name: "port 0",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Syscalls = []string{"connect"}
				s.Match.Ports = []int{22, 0}
				return s
			}()},
			want: []string{`rule "r1"`, "match.ports", "0"},
		},
		{
			name: "port 70000",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Syscalls = []string{"connect"}
				s.Match.Ports = []int{70000}
				return s
			}()},
			want: []string{`rule "r1"`, "match.ports", "70000"},
		},
		{
			name: "syscall rule without syscalls",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match = MatchSpec{PathPrefixes: []string{"/etc/shadow"}}
				return s
			}()},
			want: []string{`rule "r1"`, "match.syscalls"},
		},
		{
			name: "explicit syscall event without syscalls",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match = MatchSpec{Event: "syscall"}
				return s
			}()},
			want: []string{`rule "r1"`, "match.syscalls"},
		},
		{
			name:  "duplicate id",
			specs: []RuleSpec{validSpec("r1"), validSpec("r2"), validSpec("r1")},
			want:  []string{`rule "r1"`, "id", "twice"},
		},
		{
			name: "bad event",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.Match.Event = "signal"
				return s
			}()},
			want: []string{`rule "r1"`, "match.event", "signal"},
		},
		{
			name:  "rule without id is named by position",
			specs: []RuleSpec{validSpec("r1"), func() RuleSpec { s := validSpec(""); s.Priority = "nope"; return s }()},
			want:  []string{"rules[1]", "id"},
		},
		{
			name:  "id with spaces",
			specs: []RuleSpec{validSpec("my rule")},
			want:  []string{`rule "my rule"`, "id"},
		},
		{
			name: "any_of error names its index",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.AnyOf = []MatchSpec{{Syscalls: []string{"setns"}}, {Syscalls: []string{"nosuchcall"}}}
				return s
			}()},
			want: []string{`rule "r1"`, "any_of[1].syscalls", "nosuchcall"},
		},
		{
			name: "any_of bad port",
			specs: []RuleSpec{func() RuleSpec {
				s := validSpec("r1")
				s.AnyOf = []MatchSpec{{Syscalls: []string{"connect"}, Ports: []int{-1}}}
				return s
			}()},
			want: []string{`rule "r1"`, "any_of[0].ports"},
		},
		{
			name: "kill on a port condition",
			specs: []RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Syscalls: []string{"openat"}, Ports: []int{22}}}},
			want: []string{`rule "k"`, "action", "kill"},
		},
		{
			name: "kill on a family condition",
			specs: []RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Syscalls: []string{"openat"}, Families: []string{"unix"}}}},
			want: []string{`rule "k"`, "action", "kill"},
		},
		{
			name: "kill on caps_added",
			specs: []RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Syscalls: []string{"unshare"}, CapsAdded: true}}},
			want: []string{`rule "k"`, "action", "kill"},
		},
		{
			name: "kill on fstypes",
			specs: []RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Syscalls: []string{"openat"}, FsTypes: []string{"cgroup"}}}},
			want: []string{`rule "k"`, "action", "kill"},
		},
		{
			name: "kill on exec",
			specs: []RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Event: "exec", NotInBaseline: true}}},
			want: []string{`rule "k"`, "action", "kill"},
		},
		{
			name: "kill on a syscall the kernel does not decide",
			specs: []RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Syscalls: []string{"ptrace"}}}},
			want: []string{`rule "k"`, "action", "kill"},
		},
		{
			name: "kill on a statistical rule",
			specs: []RuleSpec{{ID: "k", Priority: "Warning", Action: "kill",
				Match: MatchSpec{Event: "anomaly"}}},
			want: []string{`rule "k"`, "action", "kill"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := CompileRules(tt.specs)
			if err == nil {
				t.Fatalf("CompileRules accepted %+v (%d rules)", tt.specs, len(rs.Rules))
			}
			if rs != nil {
				t.Errorf("CompileRules returned a rule set with its error")
			}
			if !errors.Is(err, ErrBadRule) {
				t.Errorf("error %q does not wrap ErrBadRule", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestCompileRulesReportsEveryError(t *testing.T) {
	specs := []RuleSpec{
		func() RuleSpec { s := validSpec("a"); s.Priority = "Loud"; return s }(),
		validSpec("fine"),
		func() RuleSpec { s := validSpec("b"); s.Match.Ports = []int{99999}; return s }(),
		func() RuleSpec { s := validSpec("c"); s.Action = "explode"; return s }(),
		validSpec("fine"),
	}
	_, err := CompileRules(specs)
	if err == nil {
		t.Fatal("CompileRules accepted four broken rules")
	}
	for _, want := range []string{`rule "a": priority`, `rule "b": match.ports`, `rule "c": action`, `rule "fine": id`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}

func TestCompileRulesAccepts(t *testing.T) {
	tests := []struct {
		name    string
		specs   []RuleSpec
		wantIDs []string
		check   func(t *testing.T, rs *RuleSet)
	}{
		{
			name: "enabled false drops the rule",
			specs: []RuleSpec{
				func() RuleSpec { s := validSpec("off"); s.Enabled = boolPtr(false); return s }(),
				func() RuleSpec { s := validSpec("on"); s.Enabled = boolPtr(true); return s }(),
				validSpec("default"),
			},
			wantIDs: []string{"on", "default"},
			check: func(t *testing.T, rs *RuleSet) {
				if rs.Rule("off") != nil {
					t.Error(`Rule("off") is not nil for a disabled rule`)
				}
				if got := firedIDs(rs.Match(syscallEvent("unshare", nil), nil)); !slices.Equal(got, []string{"default", "on"}) {
					t.Errorf("unshare fired %v, want [default on]", got)
				}
			},
		},
		{
			name: "priority is case-insensitive and spelled as Falco does",
			specs: []RuleSpec{func() RuleSpec { s := validSpec("p"); s.Priority = "critical"; return s }(),
				func() RuleSpec { s := validSpec("q"); s.Priority = "INFORMATIONAL"; return s }()},
			wantIDs: []string{"p", "q"},
			check: func(t *testing.T, rs *RuleSet) {
				if got := rs.Rule("p").Priority; got != "Critical" {
					t.Errorf("priority = %q, want Critical", got)
				}
				if got := rs.Rule("q").Priority; got != "Informational" {
					t.Errorf("priority = %q, want Informational", got)
				}
			},
		},
		{
			name:    "empty action is alert",
			specs:   []RuleSpec{func() RuleSpec { s := validSpec("a"); s.Action = ""; return s }()},
			wantIDs: []string{"a"},
			check: func(t *testing.T, rs *RuleSet) {
				if got := rs.Rule("a").Action; got != ActionAlert {
					t.Errorf("action = %q, want alert", got)
				}
			},
		},
		{
			name: "kill on kernel-decidable syscalls, any_of may be anything",
			specs: []RuleSpec{{ID: "k", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Syscalls: []string{"openat", "open"}, PathNames: []string{"release_agent"}, OpenWrite: true},
				AnyOf: []MatchSpec{{Syscalls: []string{"mount"}, FsTypes: []string{"cgroup"}}}}},
			wantIDs: []string{"k"},
			check: func(t *testing.T, rs *RuleSet) {
				r := rs.Rule("k")
				if r.Action != ActionKill || len(r.Matchers) != 2 {
					t.Errorf("action %q, %d matchers; want kill and 2", r.Action, len(r.Matchers))
				}
				if got := r.Matchers[0].Syscalls(); !slices.Equal(got, []string{"open", "openat"}) {
					t.Errorf("Syscalls() = %v, want sorted [open openat]", got)
				}
			},
		},
		{
			name: "flags_any names and numbers",
			specs: []RuleSpec{{ID: "f", Priority: "Critical", Action: "kill",
				Match: MatchSpec{Syscalls: []string{"clone"}, FlagsAny: []string{"CLONE_NEWNS", "0x40000000"}}}},
			wantIDs: []string{"f"},
			check: func(t *testing.T, rs *RuleSet) {
				if got := rs.Rule("f").Matchers[0].Flags(); got != testCloneNewNS|testCloneNewNet {
					t.Errorf("Flags() = %#x, want %#x", got, testCloneNewNS|testCloneNewNet)
				}
			},
		},
		{
			name: "freeze on statistical rules",
			specs: []RuleSpec{{ID: RuleSyscallNovel, Priority: "Warning", Action: "freeze", Match: MatchSpec{Event: "novel"}},
				{ID: RuleSyscallAnomaly, Priority: "Warning", Action: "freeze", Match: MatchSpec{Event: "anomaly"}}},
			wantIDs: []string{RuleSyscallNovel, RuleSyscallAnomaly},
			check: func(t *testing.T, rs *RuleSet) {
				for _, id := range []string{RuleSyscallNovel, RuleSyscallAnomaly} {
					if !statistical(rs.Rule(id)) {
						t.Errorf("%s: not a statistical rule", id)
					}
				}
			},
		},
		{
			name:    "ports at the edges",
			specs:   []RuleSpec{{ID: "p", Priority: "Notice", Match: MatchSpec{Syscalls: []string{"connect"}, Ports: []int{1, 65535}}}},
			wantIDs: []string{"p"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := mustCompile(t, tt.specs)
			var ids []string
			for _, r := range rs.Rules {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("rules %v, want %v (in file order)", ids, tt.wantIDs)
			}
			for _, id := range tt.wantIDs {
				if rs.Rule(id) == nil {
					t.Errorf("Rule(%q) = nil", id)
				}
			}
			if tt.check != nil {
				tt.check(t, rs)
			}
		})
	}
}

// matchRules exercise every kind of condition; the default rules file is matched
// in profiler/rules_test.go.
var matchRules = []RuleSpec{
	{ID: "ns", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"clone", "clone3", "unshare"}, FlagsAny: []string{"CLONE_NEWNS", "CLONE_NEWUSER"}}},
	{ID: "time", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"clone", "clone3", "unshare"}, FlagsAny: []string{"CLONE_NEWTIME"}}},
	{ID: "shadow", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"open", "openat"}, PathPrefixes: []string{"/etc/shadow"}, PathNames: []string{"sudoers"}}},
	{ID: "write_agent", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"openat", "openat2"}, PathNames: []string{"release_agent"}, OpenWrite: true},
		AnyOf: []MatchSpec{{Syscalls: []string{"mount"}, FsTypes: []string{"cgroup", "cgroup2"}}}},
	{ID: "ssh", Priority: "Warning", Match: MatchSpec{Syscalls: []string{"connect"}, Families: []string{"inet", "inet6"}, Ports: []int{22}}},
	{ID: "caps", Priority: "Critical", Match: MatchSpec{Syscalls: []string{"capset"}, CapsAdded: true}},
	{ID: RuleExecDrift, Priority: "Warning", Match: MatchSpec{Event: "exec", NotInBaseline: true}},
	{ID: "any_exec", Priority: "Debug", Match: MatchSpec{Event: "exec"}},
	{ID: RuleSyscallNovel, Priority: "Warning", Action: "freeze", Match: MatchSpec{Event: "novel"}},
	{ID: RuleSyscallAnomaly, Priority: "Warning", Action: "freeze", Match: MatchSpec{Event: "anomaly"}},
}

// driftBaseline is a stable baseline that knows /usr/sbin/nginx; learning is the
// same baseline still learning.
func driftBaselines() (stable, learning *Baseline) {
	stable = NewBaseline("docker.io/library/nginx", "1.27", "")
	stable.AddExec("/usr/sbin/nginx")
	stable.AddExec("/docker-entrypoint.sh")
	learning = stable.Clone()
	stable.Promote(stable.LastSeen)
	return stable, learning
}

func TestRuleSetMatch(t *testing.T) {
	rs := mustCompile(t, matchRules)
	stable, learningB := driftBaselines()
	const capsNow = 0xa80425fb // docker's default effective set
	tests := []struct {
		name     string
		ev       Event
		baseline *Baseline
		want     []string
	}{
		// Namespace flags.
		{name: "unshare CLONE_NEWUSER", ev: syscallEvent("unshare", func(e *Event) { e.Flags = testCloneNewUser }), want: []string{"ns"}},
		{name: "unshare CLONE_NEWNET only", ev: syscallEvent("unshare", func(e *Event) { e.Flags = testCloneNewNet })},
		{name: "clone CLONE_NEWNS with SIGCHLD", ev: syscallEvent("clone", func(e *Event) { e.Flags = testCloneNewNS | testSIGCHLD }), want: []string{"ns"}},
		{name: "clone of a thread", ev: syscallEvent("clone", func(e *Event) { e.Flags = 0x3d0f00 })},
		{name: "clone3 CLONE_NEWUSER", ev: syscallEvent("clone3", func(e *Event) { e.Flags = testCloneNewUser }), want: []string{"ns"}},
		// CLONE_NEWTIME is 0x80: a namespace flag for unshare and clone3, but part of
		// the exit signal (CSIGNAL, the low byte) for clone, which cannot create a
		// time namespace.
		{name: "unshare CLONE_NEWTIME", ev: syscallEvent("unshare", func(e *Event) { e.Flags = testCloneNewTime }), want: []string{"time"}},
		{name: "clone3 CLONE_NEWTIME", ev: syscallEvent("clone3", func(e *Event) { e.Flags = testCloneNewTime }), want: []string{"time"}},
		{name: "clone exit signal 0x80 is not CLONE_NEWTIME", ev: syscallEvent("clone", func(e *Event) { e.Flags = testCloneNewPID | 0x80 | testSIGCHLD })},
		// Paths: prefix or last element.
		{name: "open /etc/shadow", ev: syscallEvent("openat", func(e *Event) { e.Path = "/etc/shadow" }), want: []string{"shadow"}},
		{name: "open /etc/shadow- backup", ev: syscallEvent("open", func(e *Event) { e.Path = "/etc/shadow-" }), want: []string{"shadow"}},
		{name: "sudoers in any directory", ev: syscallEvent("openat", func(e *Event) { e.Path = "/host/etc/sudoers" }), want: []string{"shadow"}},
		{name: "relative sudoers", ev: syscallEvent("openat", func(e *Event) { e.Path = "sudoers" }), want: []string{"shadow"}},
		{name: "open /etc/passwd", ev: syscallEvent("openat", func(e *Event) { e.Path = "/etc/passwd" })},
		{name: "name is the last element only", ev: syscallEvent("openat", func(e *Event) { e.Path = "/etc/sudoers.d/app" })},
		{name: "shadow path with another syscall", ev: syscallEvent("openat2", func(e *Event) { e.Path = "/etc/shadow" })},
		// open_write: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC.
		{name: "release_agent O_WRONLY", ev: syscallEvent("openat", func(e *Event) { e.Path = "/sys/fs/cgroup/x/release_agent"; e.Flags = testOWronly }), want: []string{"write_agent"}},
		{name: "release_agent O_RDWR", ev: syscallEvent("openat", func(e *Event) { e.Path = "/sys/fs/cgroup/x/release_agent"; e.Flags = testORdwr }), want: []string{"write_agent"}},
		{name: "release_agent O_CREAT", ev: syscallEvent("openat", func(e *Event) { e.Path = "/tmp/c/release_agent"; e.Flags = testOCreat }), want: []string{"write_agent"}},
		{name: "release_agent O_TRUNC", ev: syscallEvent("openat2", func(e *Event) { e.Path = "/tmp/c/release_agent"; e.Flags = testOTrunc }), want: []string{"write_agent"}},
		{name: "release_agent O_RDONLY", ev: syscallEvent("openat", func(e *Event) { e.Path = "/sys/fs/cgroup/x/release_agent"; e.Flags = testORdonly })},
		{name: "release_agent O_RDONLY|O_CLOEXEC", ev: syscallEvent("openat", func(e *Event) { e.Path = "/sys/fs/cgroup/x/release_agent"; e.Flags = testOCloexe })},
		{name: "release_agent O_APPEND alone cannot write", ev: syscallEvent("openat", func(e *Event) { e.Path = "/sys/fs/cgroup/x/release_agent"; e.Flags = testOAppend })},
		// any_of: fstypes.
		{name: "mount cgroup (any_of)", ev: syscallEvent("mount", func(e *Event) { e.FsType = "cgroup"; e.Path = "/mnt" }), want: []string{"write_agent"}},
		{name: "mount tmpfs", ev: syscallEvent("mount", func(e *Event) { e.FsType = "tmpfs"; e.Path = "/mnt" })},
		// Families and ports.
		{name: "connect inet :22", ev: syscallEvent("connect", func(e *Event) { e.Family = "inet"; e.Addr = netip.MustParseAddr("10.0.0.1"); e.Port = 22 }), want: []string{"ssh"}},
		{name: "connect inet6 :22", ev: syscallEvent("connect", func(e *Event) { e.Family = "inet6"; e.Addr = netip.MustParseAddr("fd00::1"); e.Port = 22 }), want: []string{"ssh"}},
		{name: "connect inet :443", ev: syscallEvent("connect", func(e *Event) { e.Family = "inet"; e.Addr = netip.MustParseAddr("10.0.0.1"); e.Port = 443 })},
		{name: "connect unix", ev: syscallEvent("connect", func(e *Event) { e.Family = "unix"; e.Path = "/run/x.sock" })},
		// caps_added: requested effective has bits beyond the current effective set.
		{name: "capset adds CAP_SYS_ADMIN", ev: syscallEvent("capset", func(e *Event) {
			e.CapEff = capsNow
			e.CapsRequested = &CapSets{Effective: capsNow | 1<<21, Permitted: capsNow | 1<<21}
		}), want: []string{"caps"}},
		{name: "capset drops capabilities", ev: syscallEvent("capset", func(e *Event) {
			e.CapEff = capsNow
			e.CapsRequested = &CapSets{Effective: capsNow &^ 1, Permitted: capsNow}
		})},
		{name: "capset keeps the same set", ev: syscallEvent("capset", func(e *Event) {
			e.CapEff = capsNow
			e.CapsRequested = &CapSets{Effective: capsNow, Permitted: capsNow}
		})},
		{name: "capset raises only permitted", ev: syscallEvent("capset", func(e *Event) {
			e.CapEff = capsNow
			e.CapsRequested = &CapSets{Effective: capsNow, Permitted: capsNow | 1<<21, Inheritable: 1 << 21}
		})},
		{name: "capset without the request", ev: syscallEvent("capset", func(e *Event) { e.CapEff = capsNow })},
		// exec_drift: only against a stable baseline that lacks the binary.
		{name: "exec unknown binary, stable baseline", ev: execEvent("/tmp/xmrig"), baseline: stable, want: []string{"any_exec", RuleExecDrift}},
		{name: "exec known binary, stable baseline", ev: execEvent("/usr/sbin/nginx"), baseline: stable, want: []string{"any_exec"}},
		{name: "exec unknown binary, learning baseline", ev: execEvent("/tmp/xmrig"), baseline: learningB, want: []string{"any_exec"}},
		{name: "exec unknown binary, no baseline", ev: execEvent("/tmp/xmrig"), want: []string{"any_exec"}},
		// Kinds: statistical rules never match events, exec rules never match syscalls.
		{name: "execve as a syscall event is not an exec", ev: syscallEvent("execve", func(e *Event) { e.Path = "/tmp/xmrig" }), baseline: stable},
		{name: "cgroup removal", ev: Event{Kind: EventCgroupRemove, Container: rulesContainer, CgroupID: 77}, baseline: stable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := firedIDs(rs.Match(tt.ev, tt.baseline))
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("fired %v, want %v", got, want)
			}
			// Host processes and unresolved cgroups never match, whatever they do.
			for _, rt := range []Runtime{RuntimeHost, "", RuntimeUnknown} {
				e := tt.ev
				e.Container.Runtime = rt
				if rt == RuntimeHost || rt == "" {
					e.Container.ID = ""
				}
				if got := rs.Match(e, tt.baseline); len(got) > 0 {
					t.Errorf("runtime %q: fired %v, want nothing", rt, firedIDs(got))
				}
			}
		})
	}
}

func TestRuleSetMatchNil(t *testing.T) {
	var rs *RuleSet
	if got := rs.Match(syscallEvent("unshare", nil), nil); got != nil {
		t.Errorf("nil rule set fired %v", firedIDs(got))
	}
	if rs.Rule("ns_unshare") != nil {
		t.Error("nil rule set has a rule")
	}
}

// statistical reports whether a rule is fired by scoring (novel, anomaly).
func statistical(r *Rule) bool {
	e := r.Matchers[0].Spec.Event
	return e == "novel" || e == "anomaly"
}
