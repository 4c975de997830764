package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func alertRule(t *testing.T, id, priority string, action Action, match MatchSpec) *Rule {
	t.Helper()
	rs := mustCompile(t, []RuleSpec{{ID: id, Description: "Test rule " + id, Priority: priority, Action: string(action),
		Tags: []string{"container", "T1611"}, Match: match}})
	return rs.Rule(id)
}

// alertContainer is a Kubernetes pod's container.
var alertContainer = Container{ID: "3f1c2a9b7d0e", Name: "api", Runtime: RuntimeContainerd,
	Image: "registry.example/shop/api", ImageTag: "v1.4.2", ImageID: "sha256:abcd",
	CgroupPath: "/kubepods/pod1/3f1c2a9b7d0e", PodName: "api-7d9f", Namespace: "shop"}

// field returns output_fields[key] as text, and whether it is there.
func field(a Alert, key string) (string, bool) {
	v, ok := a.OutputFields[key]
	if !ok {
		return "", false
	}
	return fmt.Sprint(v), true
}

func TestEventAlert(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 5, 123456789, time.UTC)
	base := Event{Time: at, Kind: EventSyscall, PID: 4321, TID: 4322, PPID: 1, UID: 0, Comm: "bash",
		CgroupID: 99, Container: alertContainer}
	tests := []struct {
		name    string
		rule    *Rule
		ev      func(e *Event)
		cmdline string
		want    map[string]string // output_fields as text
		absent  []string          // output_fields that must not be there
		output  []string          // substrings of output
	}{
		{
			name: "unshare",
			rule: alertRule(t, "ns_unshare", "Critical", ActionKill, MatchSpec{Syscalls: []string{"unshare"}}),
			ev: func(e *Event) {
				e.Syscall = "unshare"
				e.Flags = testCloneNewNS | testCloneNewUser
			},
			cmdline: "unshare -Urm sh",
			want: map[string]string{"evt.type": "unshare", "proc.name": "bash", "proc.pid": "4321",
				"proc.cmdline": "unshare -Urm sh", "cagewatch.flags": "CLONE_NEWNS|CLONE_NEWUSER",
				"k8s.pod.name": "api-7d9f", "k8s.ns.name": "shop"},
			absent: []string{"fd.name", "fd.rip", "fd.rport", "proc.exepath"},
			output: []string{"Critical", "Test rule ns_unshare", "container=api", "image=registry.example/shop/api:v1.4.2", "proc=bash", "pid=4321"},
		},
		{
			name: "clone3 names CLONE_NEWTIME, clone does not",
			rule: alertRule(t, "ns_clone", "Critical", ActionKill, MatchSpec{Syscalls: []string{"clone", "clone3"}, FlagsAny: []string{"CLONE_NEWPID"}}),
			ev: func(e *Event) {
				e.Syscall = "clone3"
				e.Flags = testCloneNewTime | testCloneNewPID
			},
			want:   map[string]string{"evt.type": "clone3", "cagewatch.flags": "CLONE_NEWTIME|CLONE_NEWPID"},
			absent: []string{"proc.cmdline"},
		},
		{
			name: "clone exit signal is not a namespace",
			rule: alertRule(t, "ns_clone", "Critical", ActionKill, MatchSpec{Syscalls: []string{"clone", "clone3"}, FlagsAny: []string{"CLONE_NEWPID"}}),
			ev: func(e *Event) {
				e.Syscall = "clone"
				e.Flags = testCloneNewPID | 0x80 | testSIGCHLD
			},
			want: map[string]string{"evt.type": "clone", "cagewatch.flags": "CLONE_NEWPID"},
		},
		{
			name: "setns",
			rule: alertRule(t, "ns_setns", "Critical", ActionKill, MatchSpec{Syscalls: []string{"setns"}}),
			ev: func(e *Event) {
				e.Syscall = "setns"
				e.Flags = testCloneNewNet
			},
			want: map[string]string{"evt.type": "setns", "cagewatch.flags": "CLONE_NEWNET"},
		},
		{
			name: "open has fd.name",
			rule: alertRule(t, "sensitive_file", "Critical", ActionKill, MatchSpec{Syscalls: []string{"openat"}, PathPrefixes: []string{"/etc/shadow"}}),
			ev: func(e *Event) {
				e.Syscall = "openat"
				e.Path = "/etc/shadow"
			},
			cmdline: "cat /etc/shadow",
			want:    map[string]string{"evt.type": "openat", "fd.name": "/etc/shadow", "proc.cmdline": "cat /etc/shadow"},
			absent:  []string{"cagewatch.flags", "fd.rip", "fd.rport"},
			output:  []string{"/etc/shadow"},
		},
		{
			name: "connect has fd.rip and fd.rport",
			rule: alertRule(t, "host_port_connect", "Warning", ActionAlert, MatchSpec{Syscalls: []string{"connect"}, Ports: []int{10250}}),
			ev: func(e *Event) {
				e.Syscall = "connect"
				e.Family = "inet"
				e.Addr = netip.MustParseAddr("10.1.2.3")
				e.Port = 10250
			},
			want:   map[string]string{"evt.type": "connect", "fd.rip": "10.1.2.3", "fd.rport": "10250"},
			absent: []string{"fd.name", "cagewatch.flags"},
			output: []string{"Warning"},
		},
		{
			name: "unix connect has fd.name",
			rule: alertRule(t, "runtime_socket", "Critical", ActionAlert, MatchSpec{Syscalls: []string{"connect"}, PathNames: []string{"docker.sock"}}),
			ev: func(e *Event) {
				e.Syscall = "connect"
				e.Family = "unix"
				e.Path = "/var/run/docker.sock"
			},
			want:   map[string]string{"evt.type": "connect", "fd.name": "/var/run/docker.sock"},
			absent: []string{"fd.rip", "fd.rport"},
		},
		{
			name: "exec takes proc.cmdline from argv",
			rule: alertRule(t, RuleExecDrift, "Warning", ActionAlert, MatchSpec{Event: "exec", NotInBaseline: true}),
			ev: func(e *Event) {
				e.Kind = EventExec
				e.Path = "/tmp/xmrig"
				e.Argv = []string{"xmrig", "--donate-level", "1"}
				e.Comm = "xmrig"
			},
			cmdline: "sh -c ./xmrig", // the parent's, remembered from an earlier exec
			// Falco reports a process start as evt.type execve.
			want: map[string]string{"proc.cmdline": "xmrig --donate-level 1", "proc.exepath": "/tmp/xmrig",
				"fd.name": "/tmp/xmrig", "proc.name": "xmrig", "evt.type": "execve"},
			output: []string{"proc=xmrig", "/tmp/xmrig"},
		},
		{
			name: "exec of a memfd says so",
			rule: alertRule(t, RuleExecDrift, "Warning", ActionAlert, MatchSpec{Event: "exec", NotInBaseline: true}),
			ev: func(e *Event) {
				e.Kind = EventExec
				e.Path = "memfd:payload"
				e.Argv = []string{"x"}
				e.Exec = &ExecFile{Memfd: true, Deleted: true, OutsideRoot: true}
			},
			want: map[string]string{"proc.exepath": "memfd:payload", "proc.is_exe_from_memfd": "true", "evt.type": "execve",
				"cagewatch.exec": "[memfd deleted outside_root]"},
		},
		{
			name: "exec of an ordinary file",
			rule: alertRule(t, RuleExecDrift, "Warning", ActionAlert, MatchSpec{Event: "exec", NotInBaseline: true}),
			ev: func(e *Event) {
				e.Kind = EventExec
				e.Path = "/usr/bin/app"
				e.Exec = &ExecFile{}
			},
			want:   map[string]string{"proc.is_exe_from_memfd": "false", "evt.type": "execve"},
			absent: []string{"cagewatch.exec"},
		},
		{
			name: "container without a name is named by id",
			rule: alertRule(t, "ptrace", "Warning", ActionAlert, MatchSpec{Syscalls: []string{"ptrace"}}),
			ev: func(e *Event) {
				e.Syscall = "ptrace"
				e.Container.Name = ""
				e.Container.PodName = ""
			},
			want:   map[string]string{"container.name": "", "container.id": "3f1c2a9b7d0e"},
			absent: []string{"k8s.pod.name", "k8s.ns.name"},
			output: []string{"container=3f1c2a9b7d0e"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			tt.ev(&e)
			a := EventAlert(tt.rule, e, tt.cmdline, "node-1")
			if !a.Time.Equal(at) || a.Rule != tt.rule.ID || a.Priority != tt.rule.Priority || a.Source != "syscall" || a.Hostname != "node-1" {
				t.Errorf("alert time %v rule %q priority %q source %q hostname %q", a.Time, a.Rule, a.Priority, a.Source, a.Hostname)
			}
			if !slices.Equal(a.Tags, tt.rule.Tags) {
				t.Errorf("tags %v, want %v", a.Tags, tt.rule.Tags)
			}
			if a.Action != tt.rule.Action || a.CgroupID != 99 || !reflect.DeepEqual(a.Container, e.Container) {
				t.Errorf("action %q cgroup %d container %+v", a.Action, a.CgroupID, a.Container)
			}
			want := map[string]string{
				"container.id": e.Container.ID, "container.name": e.Container.Name,
				"container.image.repository": "registry.example/shop/api", "container.image.tag": "v1.4.2",
				"proc.name": e.Comm, "proc.pid": "4321", "evt.type": e.Syscall,
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if got, ok := field(a, k); !ok || got != v {
					t.Errorf("output_fields[%q] = %q (present %v), want %q", k, got, ok, v)
				}
			}
			for _, k := range tt.absent {
				if v, ok := a.OutputFields[k]; ok {
					t.Errorf("output_fields[%q] = %v, want absent", k, v)
				}
			}
			for _, s := range tt.output {
				if !strings.Contains(a.Output, s) {
					t.Errorf("output %q does not contain %q", a.Output, s)
				}
			}
		})
	}
}

func TestAlertJSON(t *testing.T) {
	r := alertRule(t, "ns_unshare", "Critical", ActionKill, MatchSpec{Syscalls: []string{"unshare"}})
	e := Event{Time: testT0, Kind: EventSyscall, Syscall: "unshare", PID: 7, Comm: "sh", CgroupID: 1234567,
		Flags: testCloneNewUser, Container: alertContainer}
	stats := learnScoreBaseline(newScoreWorkload(1, 0.1), 20)
	w := Window{CgroupID: 1234567, Container: alertContainer, Start: testT0, Duration: time.Second,
		Counts: map[string]uint64{"read": 10, "ptrace": 1}}
	novel := alertRule(t, RuleSyscallNovel, "Warning", ActionFreeze, MatchSpec{Event: "novel"})
	tests := []struct {
		name     string
		alert    Alert
		wantKeys []string
	}{
		{
			name:     "event alert",
			alert:    EventAlert(r, e, "sh", "node-1"),
			wantKeys: []string{"hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"},
		},
		{
			name:     "window alert",
			alert:    WindowAlert(novel, w, Score(stats, w), stats.Calibrate(1, 1), "node-1"),
			wantKeys: []string{"hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"},
		},
		{
			name: "without tags and hostname",
			alert: func() Alert {
				a := EventAlert(r, e, "", "")
				a.Tags = nil
				return a
			}(),
			wantKeys: []string{"output", "output_fields", "priority", "rule", "source", "time"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := json.Marshal(tt.alert)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(raw, &top); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range top {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.wantKeys) {
				t.Errorf("top-level keys %v, want %v", keys, tt.wantKeys)
			}
			for _, leaked := range []string{"Action", "CgroupID", "Container", "action", "cgroup_id", "container"} {
				if _, ok := top[leaked]; ok {
					t.Errorf("internal field %q leaked into JSON: %s", leaked, raw)
				}
			}
			var back struct {
				Time         time.Time      `json:"time"`
				Rule         string         `json:"rule"`
				Priority     string         `json:"priority"`
				Source       string         `json:"source"`
				OutputFields map[string]any `json:"output_fields"`
			}
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			if !back.Time.Equal(tt.alert.Time) || back.Rule != tt.alert.Rule || back.Priority != string(tt.alert.Priority) || back.Source != tt.alert.Source {
				t.Errorf("decoded %+v from %s", back, raw)
			}
			if back.OutputFields["container.id"] != alertContainer.ID || back.OutputFields["container.image.repository"] != alertContainer.Image ||
				back.OutputFields["container.image.tag"] != alertContainer.ImageTag {
				t.Errorf("decoded output_fields %v", back.OutputFields)
			}
		})
	}
}

func TestWindowAlert(t *testing.T) {
	counts := learnScoreBaseline(newScoreWorkload(21, 0.10), 300)
	grams := learnSeqBaseline(newSeqWorkload(21), 300)
	// rare learned fstat → mmap three times, in one window.
	rare := grams.Clone()
	lw := newSeqWorkload(23).next(1)
	lw.Counts["mmap"] += 3
	lw.Grams["read,openat,fstat,mmap"] += 3
	rare.AddWindow(lw, 0)
	novel := alertRule(t, RuleSyscallNovel, "Warning", ActionFreeze, MatchSpec{Event: "novel"})
	anomaly := alertRule(t, RuleSyscallAnomaly, "Warning", ActionFreeze, MatchSpec{Event: "anomaly"})
	tests := []struct {
		name     string
		b        *Baseline
		rule     *Rule
		window   func() Window
		output   []string // substrings of the output
		notOut   []string // and what it must not say
		driver   string
		newPairs bool // a pair never seen while learning is named
		check    func(t *testing.T, a Alert, s WindowScore)
	}{
		{
			name: "syscall_novel names the novel syscalls",
			b:    counts, rule: novel,
			window: func() Window {
				w := newScoreWorkload(22, 0.10).next(1)
				w.Counts["ptrace"] = 4
				w.Counts["mount"] = 1
				return w
			},
			output: []string{"never seen while learning: mount, ptrace", "container=api", "image=registry.example/shop/api:v1.4.2",
				"(never seen)"},
			check: func(t *testing.T, a Alert, s WindowScore) {
				got, ok := a.OutputFields["cagewatch.novel_syscalls"].([]string)
				if !ok || !slices.Equal(got, []string{"mount", "ptrace"}) {
					t.Errorf("cagewatch.novel_syscalls = %#v, want [mount ptrace]", a.OutputFields["cagewatch.novel_syscalls"])
				}
			},
		},
		{
			name: "syscall_anomaly on a mix names the composition view and shares",
			b:    counts, rule: anomaly,
			window: func() Window {
				w := newScoreWorkload(22, 0.10).next(1)
				w.Counts["write"] *= 6
				return w
			},
			output: []string{"syscall mix off baseline (composition view, z ", "score", "threshold", "top: write "},
			notOut: []string{"/s (", "pairs:"},
			driver: ViewComposition,
			check: func(t *testing.T, a Alert, s WindowScore) {
				// write's share as a percentage, and the learned one.
				c := s.Top[0]
				want := fmt.Sprintf("write %s (expected %s)", percent(c.Observed), percent(c.Expected))
				if c.Syscall != "write" || !strings.Contains(a.Output, want) {
					t.Errorf("output %q does not contain %q", a.Output, want)
				}
				if c.Observed < 0.2 || c.Observed > 0.9 || !strings.HasSuffix(percent(c.Observed), "%") {
					t.Errorf("write's share %v", c.Observed)
				}
			},
		},
		{
			name: "syscall_anomaly on a new order names the order view and the new pairs",
			b:    grams, rule: anomaly,
			window: func() Window {
				wl := newSeqWorkload(22)
				wl.reverse = true
				return wl.next(1)
			},
			output:   []string{"syscall order off baseline (order view, z ", "never seen while learning", " → "},
			driver:   ViewOrder,
			newPairs: true,
			check: func(t *testing.T, a Alert, s WindowScore) {
				// The driving view's evidence comes first.
				if i, j := strings.Index(a.Output, "pairs: "), strings.Index(a.Output, "top: "); i < 0 || j < 0 || i > j {
					t.Errorf("output %q: want pairs before top", a.Output)
				}
			},
		},
		{
			name: "a rare pair says how often learning saw it",
			b:    rare, rule: anomaly,
			window: func() Window {
				w := newSeqWorkload(22).next(1)
				w.Counts["mmap"] += 200
				w.Grams["read,openat,fstat,mmap"] += 200
				return w
			},
			output: []string{"fstat → mmap seen 3 times while learning"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := tt.b.Calibrate(1, 1)
			w := tt.window()
			w.Container = alertContainer
			w.CgroupID = 55
			s := Score(tt.b, w)
			if tt.rule == anomaly && s.Value <= th.Value {
				t.Fatalf("score %.2f is not above threshold %.2f: not an anomaly", s.Value, th.Value)
			}
			a := WindowAlert(tt.rule, w, s, th, "node-2")
			if a.Rule != tt.rule.ID || a.Priority != "Warning" || a.Source == "" || a.Hostname != "node-2" {
				t.Errorf("rule %q priority %q source %q hostname %q", a.Rule, a.Priority, a.Source, a.Hostname)
			}
			if !a.Time.Equal(w.Start.Add(w.Duration)) {
				t.Errorf("time %v, want the window's end %v", a.Time, w.Start.Add(w.Duration))
			}
			if a.Action != ActionFreeze || a.CgroupID != 55 || !reflect.DeepEqual(a.Container, alertContainer) {
				t.Errorf("action %q cgroup %d container %+v", a.Action, a.CgroupID, a.Container)
			}
			if got := a.OutputFields["cagewatch.score"]; got != s.Value {
				t.Errorf("cagewatch.score = %v, want %v", got, s.Value)
			}
			if got := a.OutputFields["cagewatch.threshold"]; got != th.Value {
				t.Errorf("cagewatch.threshold = %v, want %v", got, th.Value)
			}
			for k, v := range map[string]string{"container.id": alertContainer.ID, "container.name": "api",
				"container.image.repository": alertContainer.Image, "container.image.tag": alertContainer.ImageTag} {
				if got, _ := field(a, k); got != v {
					t.Errorf("output_fields[%q] = %q, want %q", k, got, v)
				}
			}
			if tt.driver != "" {
				if d := s.Driver(); d.View != tt.driver {
					t.Errorf("driven by %+v, want %s", d, tt.driver)
				}
			}
			// cagewatch.top, .views and .pairs as a JSON consumer sees them.
			raw, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			var back struct {
				OutputFields struct {
					Top []struct {
						Syscall  *string  `json:"syscall"`
						Observed *float64 `json:"observed"`
						Expected *float64 `json:"expected"`
					} `json:"cagewatch.top"`
					Views []struct {
						View   *string  `json:"view"`
						Z      *float64 `json:"z"`
						PValue *float64 `json:"p_value"`
						Raw    *float64 `json:"raw"`
					} `json:"cagewatch.views"`
					Pairs []struct {
						Pair    *string `json:"pair"`
						Count   *uint64 `json:"count"`
						Learned *uint64 `json:"learned"`
					} `json:"cagewatch.pairs"`
				} `json:"output_fields"`
			}
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			top := back.OutputFields.Top
			if len(top) != len(s.Top) || len(top) == 0 {
				t.Fatalf("cagewatch.top has %d entries, score has %d", len(top), len(s.Top))
			}
			for i, c := range s.Top {
				e := top[i]
				if e.Syscall == nil || e.Observed == nil || e.Expected == nil {
					t.Fatalf("cagewatch.top[%d] lacks syscall, observed or expected: %s", i, raw)
				}
				if *e.Syscall != c.Syscall || *e.Observed != c.Observed || *e.Expected != c.Expected {
					t.Errorf("cagewatch.top[%d] = %s %v/%v, want %s %v/%v", i, *e.Syscall, *e.Observed, *e.Expected, c.Syscall, c.Observed, c.Expected)
				}
				if *e.Observed < 0 || *e.Observed > 1 || *e.Expected < 0 || *e.Expected > 1 {
					t.Errorf("cagewatch.top[%d] = %v/%v: not shares", i, *e.Observed, *e.Expected)
				}
				if !strings.Contains(a.Output, c.Syscall+" "+percent(c.Observed)) {
					t.Errorf("output %q does not give top syscall %s's share", a.Output, c.Syscall)
				}
			}
			views := back.OutputFields.Views
			if len(views) != len(s.Views) || len(views) == 0 {
				t.Fatalf("cagewatch.views has %d entries, score has %d: %s", len(views), len(s.Views), raw)
			}
			for i, v := range s.Views {
				e := views[i]
				if e.View == nil || e.Z == nil || e.PValue == nil || e.Raw == nil {
					t.Fatalf("cagewatch.views[%d] lacks view, z, p_value or raw: %s", i, raw)
				}
				if *e.View != v.View || *e.Z != v.Z || *e.PValue != v.PValue || *e.Raw != v.Raw {
					t.Errorf("cagewatch.views[%d] = %s %v %v %v, want %+v", i, *e.View, *e.Z, *e.PValue, *e.Raw, v)
				}
			}
			pairs := back.OutputFields.Pairs
			if len(pairs) != len(s.Pairs) {
				t.Fatalf("cagewatch.pairs has %d entries, score has %d", len(pairs), len(s.Pairs))
			}
			for i, p := range s.Pairs {
				e := pairs[i]
				if e.Pair == nil || e.Count == nil || e.Learned == nil || *e.Pair != p.Pair || *e.Count != p.Count || *e.Learned != p.Learned {
					t.Errorf("cagewatch.pairs[%d] = %s, want %+v", i, raw, p)
				}
				if !strings.Contains(a.Output, p.Pair+" ") {
					t.Errorf("output %q does not name pair %s", a.Output, p.Pair)
				}
			}
			if hasNew := slices.ContainsFunc(s.Pairs, func(p PairContribution) bool { return p.Learned == 0 }); hasNew != tt.newPairs {
				t.Errorf("pairs %+v: never-seen ones %v, want %v", s.Pairs, hasNew, tt.newPairs)
			}
			for _, want := range tt.output {
				if !strings.Contains(a.Output, want) {
					t.Errorf("output %q does not contain %q", a.Output, want)
				}
			}
			for _, not := range tt.notOut {
				if strings.Contains(a.Output, not) {
					t.Errorf("output %q contains %q", a.Output, not)
				}
			}
			if tt.check != nil {
				tt.check(t, a, s)
			}
		})
	}
}

// TestWindowAlertOutput pins the whole output line of statistical alerts.
func TestWindowAlertOutput(t *testing.T) {
	anomaly := alertRule(t, RuleSyscallAnomaly, "Warning", ActionFreeze, MatchSpec{Event: "anomaly"})
	novel := alertRule(t, RuleSyscallNovel, "Warning", ActionFreeze, MatchSpec{Event: "novel"})
	w := Window{CgroupID: 1, Container: alertContainer, Start: testT0, Duration: 10 * time.Second}
	views := func(comp, order float64) []ViewScore {
		return []ViewScore{{View: ViewComposition, Z: comp}, {View: ViewOrder, Z: order}, {View: ViewVolume, Z: 30}}
	}
	top := []Contribution{{Syscall: "read", Observed: 0.45, Expected: 0.12}, {Syscall: "ptrace", Observed: 0.004, Novel: true},
		{Syscall: "futex", Observed: 0.012, Expected: 0.0504}}
	pairs := []PairContribution{{Pair: "openat → execve", Count: 2}, {Pair: "read → mmap", Count: 40, Learned: 3},
		{Pair: "close → dup2", Count: 5, Learned: 1}}
	const prefix = "12:00:10.000000000: Warning "
	const where = " (container=api image=registry.example/shop/api:v1.4.2 "
	tests := []struct {
		name string
		rule *Rule
		s    WindowScore
		want string
	}{
		{
			name: "order drove it: pairs first",
			rule: anomaly,
			s:    WindowScore{Value: 12.04, Views: views(2, 11.4), Top: top, Pairs: pairs},
			want: prefix + "syscall order off baseline (order view, z 11.4), score 12.0 > threshold 4.5" + where +
				"pairs: openat → execve never seen while learning, read → mmap seen 3 times while learning, close → dup2 seen once while learning; " +
				"top: read 45% (expected 12%), ptrace 0.4% (never seen), futex 1.2% (expected 5.0%))",
		},
		{
			name: "composition drove it",
			rule: anomaly,
			s:    WindowScore{Value: 6.2, Views: views(20, 0.2), Top: top[:1], Pairs: pairs[1:2]},
			want: prefix + "syscall mix off baseline (composition view, z 20.0), score 6.2 > threshold 4.5" + where +
				"top: read 45% (expected 12%); pairs: read → mmap seen 3 times while learning)",
		},
		{
			name: "composition alone, no pairs",
			rule: anomaly,
			s:    WindowScore{Value: 9, Views: []ViewScore{{View: ViewComposition, Z: 9}}, Top: top[:1]},
			want: prefix + "syscall mix off baseline (composition view, z 9.0), score 9.0 > threshold 4.5" + where +
				"top: read 45% (expected 12%))",
		},
		{
			name: "no view scored",
			rule: anomaly,
			s:    WindowScore{Value: 5, Top: top[:1]},
			want: prefix + "syscalls off baseline, score 5.0 > threshold 4.5" + where + "top: read 45% (expected 12%))",
		},
		{
			name: "syscall_novel",
			rule: novel,
			s:    WindowScore{Value: 3, Views: views(3, 0), Novel: []string{"ptrace"}, Top: top[1:2]},
			want: prefix + "syscalls never seen while learning: ptrace" + where + "top: ptrace 0.4% (never seen))",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WindowAlert(tt.rule, w, tt.s, Threshold{Value: 4.5}, "node").Output; got != tt.want {
				t.Errorf("output\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPercent(t *testing.T) {
	for _, tt := range []struct {
		share float64
		want  string
	}{{0, "0%"}, {1, "100%"}, {0.454, "45%"}, {0.1, "10%"}, {0.0999, "10.0%"}, {0.05, "5.0%"}, {0.0123, "1.2%"}, {0.004, "0.4%"}, {0.00012, "0.012%"}} {
		if got := percent(tt.share); got != tt.want {
			t.Errorf("percent(%v) = %q, want %q", tt.share, got, tt.want)
		}
	}
}

func TestDedupKey(t *testing.T) {
	r := alertRule(t, "sensitive_file", "Critical", ActionKill, MatchSpec{Syscalls: []string{"openat"}, PathPrefixes: []string{"/etc/"}})
	ssh := alertRule(t, "host_port_connect", "Warning", ActionAlert, MatchSpec{Syscalls: []string{"connect"}, Ports: []int{22, 2375}})
	novel := alertRule(t, RuleSyscallNovel, "Warning", ActionFreeze, MatchSpec{Event: "novel"})
	open := func(mod func(e *Event)) Alert {
		e := Event{Time: testT0, Kind: EventSyscall, Syscall: "openat", Path: "/etc/shadow", PID: 10, Comm: "cat",
			CgroupID: 1, Container: alertContainer}
		if mod != nil {
			mod(&e)
		}
		return EventAlert(r, e, "", "node")
	}
	drift := alertRule(t, RuleExecDrift, "Warning", ActionAlert, MatchSpec{Event: "exec"})
	exec := func(ppid, pid uint32, path string) Alert {
		return EventAlert(drift, Event{Time: testT0, Kind: EventExec, Path: path, Argv: []string{path}, PID: pid, PPID: ppid,
			ProcStartNs: uint64(pid), Comm: "x", CgroupID: 1, Container: alertContainer}, "", "node")
	}
	connect := func(addr string, port uint16) Alert {
		return EventAlert(ssh, Event{Time: testT0, Kind: EventSyscall, Syscall: "connect", Family: "inet",
			Addr: netip.MustParseAddr(addr), Port: port, PID: 10, Comm: "curl", CgroupID: 1, Container: alertContainer}, "", "node")
	}
	novelAlert := func(syscall string) Alert {
		w := Window{CgroupID: 1, Container: alertContainer, Start: testT0, Duration: time.Second,
			Counts: map[string]uint64{syscall: 1}}
		s := WindowScore{Value: 5, Novel: []string{syscall}, Top: []Contribution{{Syscall: syscall, Observed: 1, Novel: true}}}
		return WindowAlert(novel, w, s, Threshold{Value: 4}, "node")
	}
	tests := []struct {
		name string
		a, b Alert
		same bool
	}{
		{name: "identical alerts", a: open(nil), b: open(nil), same: true},
		{name: "same alert later from the same process", a: open(nil), b: open(func(e *Event) {
			e.Time = e.Time.Add(time.Minute)
			e.TID = 11
		}), same: true},
		{name: "another process", a: open(nil), b: open(func(e *Event) { e.PID, e.TID, e.Comm = 99, 99, "less" })},
		{name: "a reused PID", a: open(func(e *Event) { e.ProcStartNs = 1 }), b: open(func(e *Event) { e.ProcStartNs = 2 })},
		{name: "one parent exec'ing the same file again", a: exec(7, 100, "/tmp/x"), b: exec(7, 101, "/tmp/x"), same: true},
		{name: "another parent exec'ing the same file", a: exec(7, 100, "/tmp/x"), b: exec(8, 101, "/tmp/x")},
		{name: "one parent exec'ing another file", a: exec(7, 100, "/tmp/x"), b: exec(7, 101, "/tmp/y")},
		{name: "other flags", a: open(func(e *Event) { e.Flags = 1 }), b: open(func(e *Event) { e.Flags = 0x241 })},
		{name: "another mount source", a: open(func(e *Event) { e.Path2 = "/dev/sda1" }), b: open(func(e *Event) { e.Path2 = "/dev/sda2" })},
		{name: "another container", a: open(nil), b: open(func(e *Event) {
			e.Container.ID = "ffff00001111"
			e.Container.CgroupPath = "/kubepods/pod2/ffff00001111"
		})},
		{name: "another container of the same image without an id", a: open(func(e *Event) {
			e.Container.ID = ""
			e.Container.Runtime = RuntimeStatic
		}), b: open(func(e *Event) {
			e.Container.ID = ""
			e.Container.Runtime = RuntimeStatic
			e.Container.CgroupPath = "/static/other"
		})},
		{name: "another path", a: open(nil), b: open(func(e *Event) { e.Path = "/etc/gshadow" })},
		{name: "another syscall", a: open(nil), b: open(func(e *Event) { e.Syscall = "open" })},
		{name: "another rule", a: open(nil), b: EventAlert(alertRule(t, "other", "Critical", ActionAlert,
			MatchSpec{Syscalls: []string{"openat"}}), Event{Time: testT0, Kind: EventSyscall, Syscall: "openat", Path: "/etc/shadow",
			PID: 10, Comm: "cat", CgroupID: 1, Container: alertContainer}, "", "node")},
		{name: "another destination port", a: connect("10.0.0.1", 22), b: connect("10.0.0.1", 2375)},
		{name: "another destination address", a: connect("10.0.0.1", 22), b: connect("10.0.0.2", 22)},
		{name: "same destination", a: connect("10.0.0.1", 22), b: connect("10.0.0.1", 22), same: true},
		{name: "same novel syscall", a: novelAlert("ptrace"), b: novelAlert("ptrace"), same: true},
		{name: "another novel syscall", a: novelAlert("ptrace"), b: novelAlert("mount")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := tt.a.DedupKey(), tt.b.DedupKey()
			if (ka == kb) != tt.same {
				t.Errorf("keys equal = %v, want %v (%q, %q)", ka == kb, tt.same, ka, kb)
			}
		})
	}
}

// TestEventDedupKeyMatchesAlert: the detector drops repeats by EventDedupKey before
// building alerts, so it must be exactly the built alert's DedupKey.
func TestEventDedupKeyMatchesAlert(t *testing.T) {
	c := Container{ID: "abc", CgroupPath: "/docker/abc", Name: "web", Image: "nginx", Runtime: RuntimeDocker}
	r := &Rule{ID: "sensitive_file", Priority: "Critical"}
	events := []Event{
		{Kind: EventSyscall, Syscall: "openat", Path: "/etc/shadow", Container: c},
		{Kind: EventSyscall, Syscall: "unshare", Flags: 0x10000000, Container: c},
		{Kind: EventExec, Path: "/bin/sh", Argv: []string{"sh", "-c", "id"}, Container: c},
		{Kind: EventSyscall, Syscall: "connect", Addr: netip.MustParseAddr("10.0.0.1"), Port: 22, Container: c},
		{Kind: EventSyscall, Syscall: "connect", Path: "/var/run/docker.sock", Container: c},
		{Kind: EventSyscall, Syscall: "mount", Path: "/mnt", Path2: "/dev/sda1", FsType: "ext4", Container: Container{ID: "other"}},
	}
	for _, e := range events {
		if got, want := EventDedupKey(r, e), EventAlert(r, e, "", "host").DedupKey(); got != want {
			t.Errorf("%s %s: EventDedupKey %q, alert's DedupKey %q", e.Kind, e.Syscall, got, want)
		}
	}
}
