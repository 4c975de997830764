package profiler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/alerts"
	"github.com/cagewatch/cagewatch/profiler/container"
	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// recordingSink is an alert sink that keeps every alert.
type recordingSink struct {
	mu     sync.Mutex
	alerts []model.Alert
}

func (s *recordingSink) Name() string { return "test" }
func (s *recordingSink) Close() error { return nil }

func (s *recordingSink) Send(a model.Alert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
}

func (s *recordingSink) take() []model.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.alerts
	s.alerts = nil
	return out
}

type enforceCall struct {
	cgroup uint64
	on     bool
}

// fakeEnforcer records the policies and cgroups the pipeline hands the sensor.
type fakeEnforcer struct {
	mu       sync.Mutex
	policies []sensor.EnforcePolicy
	calls    []enforceCall
	prefixes []string
	failNext error // returned (once) by SetEnforcement
}

func (f *fakeEnforcer) SetEnforcedPrefixes(prefixes []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prefixes = prefixes
	return nil
}

func (f *fakeEnforcer) SetEnforcement(p sensor.EnforcePolicy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return err
	}
	f.policies = append(f.policies, p)
	return nil
}

func (f *fakeEnforcer) EnforceCgroup(cgroupID uint64, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, enforceCall{cgroupID, on})
	return nil
}

func (f *fakeEnforcer) takeCalls() []enforceCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

func (f *fakeEnforcer) takePolicies() []sensor.EnforcePolicy {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.policies
	f.policies = nil
	return out
}

// fakeFreezer records frozen cgroup paths and walks a fixed tree.
type fakeFreezer struct {
	mu    sync.Mutex
	paths []string
	tree  map[string]uint64 // the cgroups that exist: path → id
}

func (f *fakeFreezer) Freeze(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths = append(f.paths, path)
	return nil
}

func (f *fakeFreezer) Walk(fn func(path string, id uint64)) error {
	for _, p := range slices.Sorted(maps.Keys(f.tree)) {
		fn(p, f.tree[p])
	}
	return nil
}

func (f *fakeFreezer) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.paths
	f.paths = nil
	return out
}

// Containers of the pipeline tests: app (stable baseline), fresh (learning
// baseline), other (no baseline), the host and an unresolved cgroup.
const (
	cgApp     = 11
	cgApp2    = 12
	cgFresh   = 21
	cgOther   = 31
	cgHost    = 1
	cgUnknown = 2
)

var (
	detApp     = appContainer("app1", "e2e/app", "1")
	detApp2    = appContainer("app2", "e2e/app", "1")
	detFresh   = appContainer("fresh1", "e2e/fresh", "1")
	detOther   = appContainer("other1", "e2e/other", "1")
	detHost    = model.Container{Runtime: model.RuntimeHost, CgroupPath: "/user.slice/user-1000.slice"}
	detUnknown = model.Container{Runtime: model.RuntimeUnknown, Image: "e2e/app", ImageTag: "1", CgroupPath: "/gone"}
)

// existingCgroups is the cgroup tree when a test pipeline starts.
var existingCgroups = map[string]uint64{
	"/": 1, "/system.slice": 3, "/app-1": 40, "/app-1/init.scope": 41, "/apps": 50, "/apps/job-1": 51,
	"/docker/" + strings.Repeat("ab", 32): 60,
}

type pipelineEnv struct {
	p   *Pipeline
	lib *Library
	out *recordingSink
	enf *fakeEnforcer
	frz *fakeFreezer
}

// pipelineBaselines are what the library holds: e2e/app:1 stable (learned from
// the steady workload), e2e/fresh:1 still learning.
func pipelineBaselines() []*model.Baseline {
	app := learned("e2e/app", "1", "app1", 60, 0, steady)
	app.AddExec("/usr/bin/app")
	app.Promote(app.LastSeen)
	fresh := learned("e2e/fresh", "1", "fresh1", 60, 0, steady)
	return []*model.Baseline{app, fresh}
}

func newPipelineDefaults(t *testing.T, mode Mode, rs *model.RuleSet) *pipelineEnv {
	return newPipelineEnv(t, mode, rs, nil)
}

// newPipelineEnv builds a pipeline over fakes: no kernel, a real store and
// alert dispatcher. configure, when set, adjusts the config first.
func newPipelineEnv(t *testing.T, mode Mode, rs *model.RuleSet, configure func(*Config)) *pipelineEnv {
	t.Helper()
	return newPipelineEnvTree(t, mode, rs, configure, nil)
}

// newPipelineEnvTree is newPipelineEnv on a host where the cgroups of tree exist.
func newPipelineEnvTree(t *testing.T, mode Mode, rs *model.RuleSet, configure func(*Config), tree map[string]uint64) *pipelineEnv {
	t.Helper()
	st, _ := openStore(t)
	lib := newLib(t, st, mode, true)
	if err := lib.Import(context.Background(), pipelineBaselines(), false); err != nil {
		t.Fatalf("Import: %v", err)
	}
	if rs == nil {
		rs = defaultRules(t)
	}
	cfg := Config{Mode: mode, Window: time.Second, Budget: 1, Learning: learnerConfig(0)}
	if configure != nil {
		configure(&cfg)
	}
	env := &pipelineEnv{lib: lib, out: &recordingSink{}, enf: &fakeEnforcer{}, frz: &fakeFreezer{tree: tree}}
	p, err := NewPipeline(cfg, rs, Deps{Source: &fakeSource{}, Enforcer: env.enf, Cgroups: env.frz, Library: lib,
		Sinks: []alerts.Sink{env.out}, Hostname: "node-1", Log: discard()})
	if err != nil {
		t.Fatalf("NewPipeline: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	env.p = p
	return env
}

// takeScored lists the images of the windows scored since the last call.
func (env *pipelineEnv) takeScored() []string {
	tr := env.p.state
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, c := range tr.cgroups {
		if c.scored {
			out = append(out, c.scoreAs.Image)
			c.scored = false
		}
	}
	slices.Sort(out)
	return out
}

// threshold is the threshold a one-second window of the image is held to, if
// its baseline is stable.
func (env *pipelineEnv) threshold(image string) (model.Threshold, bool) {
	repo, tag := model.SplitImageRef(image)
	v := env.p.scorer.verdict(model.Window{Container: appContainer("probe", repo, tag), Duration: time.Second})
	return v.Threshold, v.Scored
}

func detEvent(c model.Container, cg uint64, sec float64, syscall string, mod func(e *model.Event)) model.Event {
	e := model.Event{Time: t0.Add(time.Duration(sec * float64(time.Second))), Kind: model.EventSyscall, Syscall: syscall,
		PID: 500, TID: 500, Comm: "sh", CgroupID: cg, Container: c}
	if mod != nil {
		mod(&e)
	}
	return e
}

func detExec(c model.Container, cg uint64, sec float64, pid uint32, path string, argv ...string) model.Event {
	return model.Event{Time: t0.Add(time.Duration(sec * float64(time.Second))), Kind: model.EventExec, Path: path,
		Argv: append([]string{path}, argv...), PID: pid, TID: pid, Comm: "sh", CgroupID: cg, Container: c}
}

// attackEvents are one event for each of several hard rules.
func attackEvents(c model.Container, cg uint64) []model.Event {
	return []model.Event{
		detEvent(c, cg, 100, "unshare", func(e *model.Event) { e.Flags = rlCloneNewUser }),
		detEvent(c, cg, 100, "openat", func(e *model.Event) { e.Path = "/etc/shadow" }),
		detEvent(c, cg, 100, "openat", func(e *model.Event) { e.Path = "/sys/fs/cgroup/release_agent"; e.Flags = rlOWronly }),
		detEvent(c, cg, 100, "init_module", nil),
		detEvent(c, cg, 100, "mount", func(e *model.Event) { e.FsType = "cgroup"; e.Path = "/mnt" }),
		detExec(c, cg, 100, 501, "/tmp/xmrig"),
	}
}

// novelWindow is a steady window plus a syscall the baseline never saw;
// anomalousWindow multiplies read tenfold.
func novelWindow(c model.Container, cg uint64, sec int) model.Window {
	counts := steady(sec)
	counts["ptrace"] = 3
	return win(c, cg, sec, counts)
}

func anomalousWindow(c model.Container, cg uint64, sec int) model.Window {
	counts := steady(sec)
	counts["read"] *= 10
	return win(c, cg, sec, counts)
}

func alertRules(as []model.Alert) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Rule)
	}
	slices.Sort(out)
	return out
}

func TestPipelineIgnoresHostAndUnknown(t *testing.T) {
	for _, mode := range []Mode{ModeLearn, ModeDetect, ModeEnforce, ModeAuto} {
		for _, c := range []struct {
			name string
			c    model.Container
			cg   uint64
		}{{"host", detHost, cgHost}, {"unknown", detUnknown, cgUnknown}} {
			t.Run(fmt.Sprintf("%s %s", mode, c.name), func(t *testing.T) {
				env := newPipelineDefaults(t, mode, nil)
				for _, e := range attackEvents(c.c, c.cg) {
					env.p.Event(e)
				}
				ws := []model.Window{novelWindow(c.c, c.cg, 100), anomalousWindow(c.c, c.cg, 101)}
				env.p.Windows(ws)
				if got := env.out.take(); len(got) > 0 {
					t.Errorf("alerts %v, want none", alertRules(got))
				}
				if got := env.enf.takeCalls(); len(got) > 0 {
					t.Errorf("EnforceCgroup calls %v, want none", got)
				}
				if got := env.frz.take(); len(got) > 0 {
					t.Errorf("froze %v", got)
				}
				if got := env.takeScored(); len(got) > 0 {
					t.Errorf("scored %v", got)
				}
				if env.p.state.Tripped(c.cg, t0, t0.Add(time.Hour)) {
					t.Error("trip log marked")
				}
			})
		}
	}
}

// TestPipelineRuntimeInit: the runtime's init is known by the kernel's fact
// (moved into its cgroup after its last exec), never by its name.
func TestPipelineRuntimeInit(t *testing.T) {
	tests := []struct {
		name         string
		comm         string
		runtimeSetup bool
		want         []string
	}{
		{name: "runc:[2:INIT] sets up the container", comm: "runc:[2:INIT]", runtimeSetup: true},
		{name: "runc:[1:CHILD]", comm: "runc:[1:CHILD]", runtimeSetup: true},
		{name: "whatever the runtime calls itself", comm: "crun", runtimeSetup: true},
		{name: "an ordinary process", comm: "sh", want: []string{"ns_unshare"}},
		// prctl(PR_SET_NAME) or /proc/self/comm set comm to anything.
		{name: "a workload named runc:[2:INIT]", comm: "runc:[2:INIT]", want: []string{"ns_unshare"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newPipelineDefaults(t, ModeDetect, nil)
			env.p.Event(detEvent(detApp, cgApp, 100, "unshare", func(e *model.Event) {
				e.Flags = rlCloneNewNS | rlCloneNewUser
				e.Comm, e.RuntimeSetup = tt.comm, tt.runtimeSetup
			}))
			if got := alertRules(env.out.take()); !slices.Equal(got, tt.want) {
				t.Errorf("alerts %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPipelineModes(t *testing.T) {
	hard := []string{"cgroup_escape", "cgroup_escape", "kernel_module", "mount", "ns_unshare", "sensitive_file"}
	tests := []struct {
		name       string
		mode       Mode
		wantEvents []string // alerts from attackEvents of app
		wantNovel  []string // alerts from a novel window of app
		wantAnom   []string // alerts from an anomalous window of app
		wantScored []string // scored cgroups' images, besides the steady window's; nil: none
	}{
		{
			name: "learn: hard rules only", mode: ModeLearn,
			wantEvents: hard,
		},
		{
			name: "detect: everything", mode: ModeDetect,
			wantEvents: append(slices.Clone(hard), "exec_drift"),
			wantNovel:  []string{"syscall_novel"},
			wantAnom:   []string{"syscall_anomaly"},
			wantScored: []string{},
		},
		{
			name: "enforce: everything", mode: ModeEnforce,
			wantEvents: append(slices.Clone(hard), "exec_drift"),
			wantNovel:  []string{"syscall_novel"},
			wantAnom:   []string{"syscall_anomaly"},
			wantScored: []string{},
		},
		{
			name: "auto: stable images are detected", mode: ModeAuto,
			wantEvents: append(slices.Clone(hard), "exec_drift"),
			wantNovel:  []string{"syscall_novel"},
			wantAnom:   []string{"syscall_anomaly"},
			wantScored: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newPipelineDefaults(t, tt.mode, nil)
			slices.Sort(tt.wantEvents)
			for _, e := range attackEvents(detApp, cgApp) {
				env.p.Event(e)
			}
			if got := alertRules(env.out.take()); !slices.Equal(got, tt.wantEvents) {
				t.Errorf("event alerts %v, want %v", got, tt.wantEvents)
			}
			// A novel syscall alone outweighs 4 standard deviations, so at the minimum
			// threshold it may fire syscall_anomaly too; syscall_novel it must fire.
			env.p.Windows([]model.Window{novelWindow(detApp, cgApp, 200)})
			got := alertRules(env.out.take())
			if tt.wantNovel == nil && len(got) > 0 {
				t.Errorf("novel window alerts %v, want none", got)
			}
			if tt.wantNovel != nil && (!slices.Contains(got, "syscall_novel") ||
				slices.ContainsFunc(got, func(r string) bool { return r != "syscall_novel" && r != "syscall_anomaly" })) {
				t.Errorf("novel window alerts %v, want syscall_novel (and perhaps syscall_anomaly)", got)
			}
			env.p.Windows([]model.Window{anomalousWindow(detApp, cgApp, 201)})
			if got := alertRules(env.out.take()); !slices.Equal(got, tt.wantAnom) {
				t.Errorf("anomalous window alerts %v, want %v", got, tt.wantAnom)
			}
			// Windows of a learning baseline, of an image without one, and a steady
			// window are not alerted; only stable baselines are scored.
			env.p.Windows([]model.Window{
				novelWindow(detFresh, cgFresh, 202), anomalousWindow(detFresh, cgFresh, 203),
				novelWindow(detOther, cgOther, 204), win(detApp, cgApp, 205, steady(205)),
			})
			if got := env.out.take(); len(got) > 0 {
				t.Errorf("alerts %v for learning, unknown-image and steady windows", alertRules(got))
			}
			scored := env.takeScored()
			if tt.wantScored != nil {
				tt.wantScored = append(tt.wantScored, "e2e/app:1") // the steady window
			}
			if !slices.Equal(scored, tt.wantScored) {
				t.Errorf("scored %v, want %v", scored, tt.wantScored)
			}
		})
	}
}

func TestPipelineWindowAlerts(t *testing.T) {
	env := newPipelineDefaults(t, ModeDetect, nil)
	th, ok := env.threshold("e2e/app:1")
	if !ok {
		t.Fatal("no threshold for the stable baseline")
	}
	if _, ok := env.threshold("e2e/fresh:1"); ok {
		t.Error("a learning baseline has a threshold")
	}
	if _, ok := env.threshold("e2e/none:1"); ok {
		t.Error("a missing baseline has a threshold")
	}
	env.p.Windows([]model.Window{novelWindow(detApp, cgApp, 300)})
	novel := env.out.take()
	if !slices.Contains(alertRules(novel), "syscall_novel") {
		t.Fatalf("novel window alerts %v", alertRules(novel))
	}
	env.p.Windows([]model.Window{anomalousWindow(detApp2, cgApp2, 301)})
	anomalous := env.out.take()
	if got := alertRules(anomalous); !slices.Equal(got, []string{"syscall_anomaly"}) {
		t.Fatalf("anomalous window alerts %v", got)
	}
	for _, a := range append(novel, anomalous...) {
		switch {
		case a.Rule == "syscall_novel":
			if a.Container.ID != "app1" || a.CgroupID != cgApp {
				t.Errorf("novel alert from %s/%d", a.Container.ID, a.CgroupID)
			}
			if got := a.OutputFields["cagewatch.novel_syscalls"]; !reflect.DeepEqual(got, []string{"ptrace"}) {
				t.Errorf("novel syscalls %v", got)
			}
		case a.Rule == "syscall_anomaly" && a.Container.ID == "app1":
			if a.CgroupID != cgApp {
				t.Errorf("anomaly alert from app1 in cgroup %d", a.CgroupID)
			}
		case a.Rule == "syscall_anomaly":
			if a.Container.ID != "app2" || a.CgroupID != cgApp2 {
				t.Errorf("anomaly alert from %s/%d", a.Container.ID, a.CgroupID)
			}
			if got := a.OutputFields["cagewatch.threshold"]; got != th.Value {
				t.Errorf("threshold %v, want %v", got, th.Value)
			}
			if s, _ := a.OutputFields["cagewatch.score"].(float64); s <= th.Value {
				t.Errorf("score %v not above threshold %v", s, th.Value)
			}
			// 10x read is a mix of shares: read's up, write's and futex's down.
			top, _ := a.OutputFields["cagewatch.top"].([]map[string]any)
			up := map[string]bool{}
			for _, c := range top {
				obs, _ := c["observed"].(float64)
				exp, _ := c["expected"].(float64)
				up[c["syscall"].(string)] = obs > exp
			}
			if want := map[string]bool{"read": true, "write": false, "futex": false}; !maps.Equal(up, want) {
				t.Errorf("top %v: shares up %v, want %v", top, up, want)
			}
			if !strings.Contains(a.Output, "syscall mix off baseline (composition view") {
				t.Errorf("output %q does not name the composition view", a.Output)
			}
		}
		if a.OutputFields["container.image.repository"] != "e2e/app" || a.OutputFields["container.image.tag"] != "1" || a.Hostname != "node-1" {
			t.Errorf("alert fields %v hostname %q", a.OutputFields, a.Hostname)
		}
	}
}

func TestPipelineMarksTripLog(t *testing.T) {
	// The learner, sharing the trip log, must not learn a window in which the
	// container tripped a hard rule, and must learn the next one.
	env := newPipelineDefaults(t, ModeLearn, nil)
	learner := track(env.p.learner)

	env.p.Event(detEvent(detFresh, cgFresh, 500.5, "unshare", func(e *model.Event) { e.Flags = rlCloneNewUser }))
	// exec_drift is not alerted in learn mode and so does not poison (fresh is
	// learning anyway; app is stable and in another cgroup).
	env.p.Event(detExec(detApp, cgApp, 500.5, 77, "/tmp/new-binary"))
	if got := alertRules(env.out.take()); !slices.Equal(got, []string{"ns_unshare"}) {
		t.Fatalf("alerts %v, want [ns_unshare]", got)
	}
	res := learnEach(t, learner, []model.Window{
		win(detFresh, cgFresh, 499, steady(499)),
		win(detFresh, cgFresh, 500, steady(500)),
		win(detFresh, cgFresh, 501, steady(501)),
	})
	if res.Poisoned != 1 || res.Learned != 2 {
		t.Errorf("learned %d, poisoned %d; want 2 and 1 (the window of the unshare)", res.Learned, res.Poisoned)
	}
	if env.p.state.Tripped(cgApp, t0.Add(500*time.Second), t0.Add(501*time.Second)) {
		t.Error("an exec learn mode does not alert marked the trip log")
	}
}

func TestPipelineEnforce(t *testing.T) {
	env := newPipelineDefaults(t, ModeEnforce, nil)
	rs := env.p.rules.Load()
	if got := env.enf.takePolicies(); len(got) != 1 || !reflect.DeepEqual(got[0], KillPolicy(rs)) {
		t.Fatalf("SetEnforcement at construction: %+v, want once with KillPolicy(rules)", got)
	}
	t.Run("cgroups enforced once each", func(t *testing.T) {
		// A cgroup is enforced once its workload execs (runc's setup is over) or
		// once it shows up in a second sampling round; host and unknown never.
		env.p.Windows([]model.Window{win(detApp, cgApp, 1, steady(1)), win(detHost, cgHost, 1, steady(1)),
			win(detUnknown, cgUnknown, 1, steady(1))})
		env.p.Event(detEvent(detApp, cgApp, 2, "openat", func(e *model.Event) { e.Path = "/etc/hostname" }))
		env.p.Event(detExec(detApp2, cgApp2, 2, 600, "/bin/app"))
		env.p.Windows([]model.Window{win(detApp, cgApp, 3, steady(3)), win(detApp2, cgApp2, 3, steady(3)),
			win(detHost, cgHost, 3, steady(3))})
		env.p.Event(detEvent(detApp2, cgApp2, 4, "unshare", func(e *model.Event) { e.Comm, e.Flags = "runc:[2:INIT]", rlCloneNewNS }))
		want := []enforceCall{{cgApp2, true}, {cgApp, true}}
		if got := env.enf.takeCalls(); !slices.Equal(got, want) {
			t.Errorf("EnforceCgroup calls %v, want %v", got, want)
		}
	})
	t.Run("freeze once per cgroup for freeze-action alerts", func(t *testing.T) {
		env.out.take()
		env.p.Event(detEvent(detApp, cgApp, 10, "unshare", func(e *model.Event) { e.Flags, e.Killed = rlCloneNewNS, true })) // kill, not freeze
		if got := env.frz.take(); len(got) > 0 {
			t.Errorf("a kill-action alert froze %v", got)
		}
		env.p.Windows([]model.Window{novelWindow(detApp, cgApp, 11)})
		env.p.Windows([]model.Window{anomalousWindow(detApp, cgApp, 12), novelWindow(detApp, cgApp, 13)})
		env.p.Windows([]model.Window{anomalousWindow(detApp2, cgApp2, 14)})
		want := []string{detApp.CgroupPath, detApp2.CgroupPath}
		if got := env.frz.take(); !slices.Equal(got, want) {
			t.Errorf("froze %v, want %v", got, want)
		}
		got := alertRules(env.out.take())
		statistical := slices.DeleteFunc(slices.Clone(got), func(r string) bool { return r != "syscall_novel" && r != "syscall_anomaly" })
		if !slices.Contains(got, "ns_unshare") || len(statistical) < 4 || len(got) != len(statistical)+1 {
			t.Errorf("alerts %v, want ns_unshare and a statistical alert per window (freezing does not silence them)", got)
		}
	})
	t.Run("forget releases the cgroup", func(t *testing.T) {
		env.p.Removed(cgApp)
		if got := env.enf.takeCalls(); !slices.Equal(got, []enforceCall{{cgApp, false}}) {
			t.Errorf("Forget: EnforceCgroup calls %v, want [{%d false}]", got, cgApp)
		}
		// Events read after the cgroup was forgotten leave nothing behind: no
		// enforcement of a dead cgroup, no state.
		cgroups, procs := env.p.state.Tracked()
		env.p.Event(detExec(detApp, cgApp, 20, 700, "/bin/app"))
		env.p.Event(detEvent(detApp, cgApp, 20, "unshare", func(e *model.Event) { e.Flags = rlCloneNewUser }))
		env.p.Windows([]model.Window{novelWindow(detApp, cgApp, 21)})
		if got := env.enf.takeCalls(); len(got) > 0 {
			t.Errorf("late events of a forgotten cgroup: EnforceCgroup calls %v", got)
		}
		if got := env.frz.take(); len(got) > 0 {
			t.Errorf("late events of a forgotten cgroup froze %v", got)
		}
		if c, p := env.p.state.Tracked(); c != cgroups || p != procs {
			t.Errorf("late events of a forgotten cgroup: the state table went from %d cgroups and %d processes to %d and %d",
				cgroups, procs, c, p)
		}
		// The container restarted in a new cgroup is enforced and can be frozen again.
		const cgRestarted = cgApp + 100
		env.p.Event(detExec(detApp, cgRestarted, 22, 701, "/bin/app"))
		if got := env.enf.takeCalls(); !slices.Equal(got, []enforceCall{{cgRestarted, true}}) {
			t.Errorf("restarted: EnforceCgroup calls %v, want [{%d true}]", got, cgRestarted)
		}
		env.p.Windows([]model.Window{novelWindow(detApp, cgRestarted, 23)})
		if got := env.frz.take(); !slices.Equal(got, []string{detApp.CgroupPath}) {
			t.Errorf("restarted: froze %v, want %v", got, detApp.CgroupPath)
		}
	})
	t.Run("SetRules sends the new kill policy", func(t *testing.T) {
		specs := []model.RuleSpec{{ID: "ns_setns", Priority: "Critical", Action: "kill", Match: model.MatchSpec{Syscalls: []string{"setns"}}}}
		next, err := model.CompileRules(specs)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.p.SetRules(next); err != nil {
			t.Fatalf("SetRules: %v", err)
		}
		got := env.enf.takePolicies()
		if len(got) != 1 || !reflect.DeepEqual(got[0], KillPolicy(next)) || !slices.Equal(got[0].KillSyscalls, []string{"setns"}) {
			t.Errorf("SetEnforcement calls %+v, want once with KillPolicy(new rules)", got)
		}
	})
	t.Run("a refused policy keeps the old rules", func(t *testing.T) {
		before := env.p.rules.Load()
		env.enf.failNext = errors.New("map update failed")
		if err := env.p.SetRules(defaultRules(t)); err == nil {
			t.Error("SetRules succeeded although the sensor refused the policy")
		}
		if env.p.rules.Load() != before {
			t.Error("rules swapped although the sensor kept the old policy")
		}
	})
}

func TestPipelineNoEnforcementOutsideEnforceMode(t *testing.T) {
	for _, mode := range []Mode{ModeLearn, ModeDetect, ModeAuto} {
		t.Run(string(mode), func(t *testing.T) {
			env := newPipelineDefaults(t, mode, nil)
			for _, e := range attackEvents(detApp, cgApp) {
				env.p.Event(e)
			}
			ws := []model.Window{novelWindow(detApp, cgApp, 100), anomalousWindow(detApp, cgApp, 101)}
			env.p.Windows(ws)
			env.p.Removed(cgApp)
			if err := env.p.SetRules(defaultRules(t)); err != nil {
				t.Fatal(err)
			}
			if got := env.enf.takePolicies(); len(got) > 0 {
				t.Errorf("SetEnforcement called %d times", len(got))
			}
			if got := env.enf.takeCalls(); len(got) > 0 {
				t.Errorf("EnforceCgroup calls %v", got)
			}
			if got := env.frz.take(); len(got) > 0 {
				t.Errorf("froze %v", got)
			}
		})
	}
}

func TestPipelineFreezeActionOnEventRule(t *testing.T) {
	rs, err := model.CompileRules([]model.RuleSpec{
		{ID: "ptrace", Priority: "Warning", Action: "freeze", Match: model.MatchSpec{Syscalls: []string{"ptrace"}}},
		{ID: "bpf_syscall", Priority: "Warning", Action: "alert", Match: model.MatchSpec{Syscalls: []string{"bpf"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := newPipelineEnv(t, ModeEnforce, rs, func(c *Config) { c.Alerts.DedupInterval = time.Minute })
	env.p.Event(detEvent(detApp2, cgApp2, 1, "bpf", nil))
	if got := env.frz.take(); len(got) > 0 {
		t.Errorf("an alert-action rule froze %v", got)
	}
	env.p.Event(detEvent(detApp2, cgApp2, 2, "ptrace", nil))
	env.p.Event(detEvent(detApp2, cgApp2, 3, "ptrace", nil))
	if got := env.frz.take(); !slices.Equal(got, []string{detApp2.CgroupPath}) {
		t.Errorf("froze %v, want %v once", got, detApp2.CgroupPath)
	}
	// The same container restarted (same id, new cgroup) repeats the attack within
	// the dedup interval: no new alert, but it is frozen again.
	env.p.Removed(cgApp2)
	env.out.take()
	env.p.Event(detEvent(detApp2, cgApp2+100, 4, "ptrace", nil))
	if got := env.out.take(); len(got) > 0 {
		t.Errorf("a duplicate was sent: %v", alertRules(got))
	}
	if got := env.frz.take(); !slices.Equal(got, []string{detApp2.CgroupPath}) {
		t.Errorf("a suppressed repeat froze %v, want %v", got, detApp2.CgroupPath)
	}
}

func TestPipelineSetRulesSwaps(t *testing.T) {
	env := newPipelineDefaults(t, ModeDetect, nil)
	unshare := detEvent(detApp, cgApp, 1, "unshare", func(e *model.Event) { e.Flags = rlCloneNewNS })
	env.p.Event(unshare)
	if got := alertRules(env.out.take()); !slices.Equal(got, []string{"ns_unshare"}) {
		t.Fatalf("before reload: %v", got)
	}
	path := writeRulesFile(t, `rules:
  - id: ns_unshare
    priority: Critical
    action: kill
    enabled: false
    match: {syscalls: [unshare]}
  - id: ptrace
    priority: Warning
    match: {syscalls: [ptrace]}
`)
	next, err := LoadRules(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.p.SetRules(next); err != nil {
		t.Fatal(err)
	}
	if env.p.rules.Load() != next {
		t.Error("Rules() is not the new set")
	}
	env.p.Event(unshare)
	env.p.Event(detEvent(detApp, cgApp, 2, "ptrace", nil))
	if got := alertRules(env.out.take()); !slices.Equal(got, []string{"ptrace"}) {
		t.Errorf("after reload: %v, want [ptrace]", got)
	}
	// Without the statistical rules, windows are scored but not alerted.
	env.p.Windows([]model.Window{novelWindow(detApp, cgApp, 3), anomalousWindow(detApp, cgApp, 4)})
	if got := env.out.take(); len(got) > 0 {
		t.Errorf("statistical alerts %v without statistical rules", alertRules(got))
	}
}

func TestPipelineAlertFields(t *testing.T) {
	tests := []struct {
		name   string
		events []model.Event
		want   map[string]any // output_fields of the last alert
		absent []string
	}{
		{
			name: "cmdline from an earlier exec",
			events: []model.Event{
				detExec(detApp, cgApp, 1, 600, "/usr/bin/app", "--serve", "8080"),
				detEvent(detApp, cgApp, 2, "unshare", func(e *model.Event) { e.PID, e.TID, e.Flags = 600, 601, rlCloneNewUser }),
			},
			want: map[string]any{"proc.cmdline": "/usr/bin/app --serve 8080", "proc.pid": uint32(600), "container.id": "app1"},
		},
		{
			name: "cmdline of another process is not used",
			events: []model.Event{
				detExec(detApp, cgApp, 1, 600, "/usr/bin/app", "--serve"),
				detEvent(detApp, cgApp, 2, "unshare", func(e *model.Event) { e.PID, e.TID, e.Flags = 700, 700, rlCloneNewNet }),
			},
			absent: []string{"proc.cmdline"},
		},
		{
			name:   "killed",
			events: []model.Event{detEvent(detApp, cgApp, 2, "init_module", func(e *model.Event) { e.Killed = true })},
			want:   map[string]any{"cagewatch.action": "killed", "evt.type": "init_module"},
		},
		{
			name:   "not killed",
			events: []model.Event{detEvent(detApp, cgApp, 2, "init_module", nil)},
			absent: []string{"cagewatch.action"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newPipelineDefaults(t, ModeLearn, nil) // learn: the exec itself does not alert
			for _, e := range tt.events {
				env.p.Event(e)
			}
			alerts := env.out.take()
			if len(alerts) != 1 {
				t.Fatalf("alerts %v, want one", alertRules(alerts))
			}
			a := alerts[0]
			for k, v := range tt.want {
				if got := a.OutputFields[k]; got != v {
					t.Errorf("output_fields[%q] = %#v, want %#v", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if got, ok := a.OutputFields[k]; ok {
					t.Errorf("output_fields[%q] = %#v, want absent", k, got)
				}
			}
		})
	}
}

// noisyCounts is a workload whose thresholds rise above the minimum, so two
// baselines calibrate to different thresholds.
func noisyCounts(seed int) func(i int) map[string]uint64 {
	return func(i int) map[string]uint64 {
		x := uint64((i*7919 + seed*104729) % 97)
		return map[string]uint64{"read": 100 + x, "write": 50 + (x*3)%41, "futex": 10 + (x*5)%13}
	}
}

func TestPipelineThresholdCache(t *testing.T) {
	env := newPipelineDefaults(t, ModeDetect, nil)
	ctx := context.Background()
	const key = "e2e/app:1"
	cfg := Config{Budget: 1, Window: time.Second}
	stable := func(n, seed int) *model.Baseline {
		b := learned("e2e/app", "1", "app1", n, 0, noisyCounts(seed))
		b.Promote(b.LastSeen)
		return b
	}
	put := func(t *testing.T, b *model.Baseline) {
		t.Helper()
		if err := env.lib.Import(ctx, []*model.Baseline{b}, false); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, b *model.Baseline) {
		t.Helper()
		want := b.Calibrate(cfg.Budget, cfg.Window.Seconds())
		got, ok := env.threshold(key)
		if !ok || !sameThreshold(got, want) {
			t.Errorf("Threshold = %+v (ok %v), want %+v (%d windows)", got, ok, want, b.Windows)
		}
	}
	b1, b2, b3 := stable(80, 1), stable(120, 2), stable(120, 3)
	if b2.Calibrate(1, 1).Value == b3.Calibrate(1, 1).Value || b1.Calibrate(1, 1).Value == b2.Calibrate(1, 1).Value {
		t.Fatalf("test setup: thresholds %v %v %v are not all different", b1.Calibrate(1, 1), b2.Calibrate(1, 1), b3.Calibrate(1, 1))
	}
	t.Run("calibrated from the baseline", func(t *testing.T) {
		put(t, b1)
		check(t, b1)
		check(t, b1) // cached: the same
	})
	t.Run("recalibrated when the windows change", func(t *testing.T) {
		put(t, b2)
		check(t, b2)
	})
	t.Run("recalibrated when the baseline is replaced", func(t *testing.T) {
		// Same window count, different data: a baseline import or a reset and
		// relearn must not keep the old baseline's threshold.
		if err := env.lib.Reset(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, ok := env.threshold(key); ok {
			t.Error("threshold for a reset baseline")
		}
		put(t, b3)
		check(t, b3)
	})
	t.Run("window alerts use the current threshold", func(t *testing.T) {
		want := b3.Calibrate(cfg.Budget, cfg.Window.Seconds())
		w := win(detApp, cgApp, 900, map[string]uint64{"read": 5000, "write": 50, "futex": 10})
		env.p.Windows([]model.Window{w})
		alerts := env.out.take()
		if th, _ := alertThreshold(alerts); len(alerts) != 1 || !sameFloat(th, want.Value) {
			var got []any
			for _, a := range alerts {
				got = append(got, a.OutputFields["cagewatch.threshold"])
			}
			t.Errorf("alerts %v with thresholds %v, want one with %v", alertRules(alerts), got, want.Value)
		}
	})
}

// sameThreshold compares thresholds up to rounding (scores sum in map order).
func sameThreshold(a, b model.Threshold) bool {
	return sameFloat(a.Value, b.Value) && sameFloat(a.TailScale, b.TailScale) && a.Exceedance == b.Exceedance && a.HeldOut == b.HeldOut
}

func sameFloat(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func alertThreshold(as []model.Alert) (float64, bool) {
	if len(as) == 0 {
		return 0, false
	}
	v, ok := as[0].OutputFields["cagewatch.threshold"].(float64)
	return v, ok
}

func TestPipelineConcurrentUse(t *testing.T) {
	env := newPipelineDefaults(t, ModeEnforce, nil)
	rs := env.p.rules.Load()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				cg := uint64(cgApp + i%3)
				switch (g + i) % 5 {
				case 0:
					env.p.Event(detExec(detApp, cg, float64(i), uint32(1000+i), "/usr/bin/app", "x"))
				case 1:
					env.p.Event(detEvent(detApp, cg, float64(i), "unshare", func(e *model.Event) { e.PID, e.Flags = uint32(1000+i), rlCloneNewUser }))
				case 2:
					ws := []model.Window{novelWindow(detApp, cg, i), win(detApp2, cg, i, steady(i))}
					env.p.Windows(ws)
				case 3:
					env.p.Removed(cg)
				case 4:
					_ = env.p.SetRules(rs)
					env.threshold("e2e/app:1")
				}
			}
		}()
	}
	wg.Wait()
	if len(env.out.take()) == 0 {
		t.Error("no alerts")
	}
}

// fakeSource replays scripted windows and events, as the sensor would deliver them.
type fakeSource struct {
	rounds [][]model.Window
	events [][]model.Event // events[i] come before rounds[i]
	gone   [][]uint64      // cgroups removed after rounds[i]
}

func (f *fakeSource) Stats() (Stats, error) { return Stats{}, nil }

func (f *fakeSource) Run(ctx context.Context, h Handlers) error {
	for i, ws := range f.rounds {
		if i < len(f.events) {
			for _, e := range f.events[i] {
				h.Event(e)
			}
		}
		h.Sampled(time.Millisecond)
		h.Windows(ws)
		if i < len(f.gone) {
			for _, id := range f.gone[i] {
				h.Removed(id)
			}
		}
	}
	return ctx.Err()
}

// TestPipelineRunThroughStages drives the whole pipeline from a source, as the
// agent runs it: events and windows reach the rules, scoring, enforcement and
// metrics, and a removed cgroup leaves nothing behind.
func TestPipelineRunThroughStages(t *testing.T) {
	env := newPipelineEnv(t, ModeEnforce, nil, nil)
	env.enf.takePolicies()
	env.p.src = &fakeSource{
		events: [][]model.Event{
			{detExec(detApp, cgApp, 0.5, 900, "/usr/bin/app", "--serve")},
			{detEvent(detApp, cgApp, 1.5, "unshare", func(e *model.Event) { e.PID, e.Flags = 900, rlCloneNewUser })},
		},
		rounds: [][]model.Window{{win(detApp, cgApp, 0, steady(0))}, {anomalousWindow(detApp, cgApp, 1)}},
		gone:   [][]uint64{nil, {cgApp}},
	}
	if err := env.p.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := env.out.take()
	if rules := alertRules(got); !slices.Equal(rules, []string{"ns_unshare", "syscall_anomaly"}) {
		t.Fatalf("alerts %v, want ns_unshare and syscall_anomaly", rules)
	}
	for _, a := range got {
		if a.Rule == "ns_unshare" && a.OutputFields["proc.cmdline"] != "/usr/bin/app --serve" {
			t.Errorf("ns_unshare alert names command line %v, want the exec'd one", a.OutputFields["proc.cmdline"])
		}
	}
	// Enforced when the workload exec'd (once, though seen in two rounds), lifted on removal.
	if calls := env.enf.takeCalls(); !slices.Equal(calls, []enforceCall{{cgApp, true}, {cgApp, false}}) {
		t.Errorf("EnforceCgroup calls %v, want on then off", calls)
	}
	if cgroups, procs := env.p.state.Tracked(); cgroups != 0 || procs != 0 {
		t.Errorf("after removal the state table holds %d cgroups and %d processes, want none", cgroups, procs)
	}
	families, err := env.p.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "cagewatch_anomaly_score" && len(f.GetMetric()) > 0 {
			t.Errorf("the removed container's anomaly score series is still exported: %v", f.GetMetric())
		}
	}
}

// TestPipelineProcessIdentitySurvivesPIDReuse: a process that exec'd in a
// container and exited leaves its PID to the next; an alert names the command
// line of the process that caused it, never of an earlier one with its PID.
func TestPipelineProcessIdentitySurvivesPIDReuse(t *testing.T) {
	env := newPipelineDefaults(t, ModeDetect, nil)
	first := detExec(detApp, cgApp, 1, 4242, "/bin/sleep", "0.1")
	first.ProcStartNs = 1_000
	env.p.Event(first)
	env.out.take() // exec_drift: sleep is not in the baseline
	unshare := func(start uint64) model.Event {
		return detEvent(detApp, cgApp, 5, "unshare", func(e *model.Event) { e.PID, e.ProcStartNs, e.Flags = 4242, start, rlCloneNewNS })
	}
	env.p.Event(unshare(9_000)) // a later process with the sleep's PID, which did not exec
	env.p.Event(unshare(1_000)) // the sleep itself
	got := env.out.take()
	if len(got) != 2 {
		t.Fatalf("alerts %v, want one per process", alertRules(got))
	}
	if cmd, ok := got[0].OutputFields["proc.cmdline"]; ok {
		t.Errorf("the PID's new process was named with command line %q", cmd)
	}
	if cmd := got[1].OutputFields["proc.cmdline"]; cmd != "/bin/sleep 0.1" {
		t.Errorf("the exec'd process was named with command line %v", cmd)
	}
}

// TestPipelineAlertsCannotMaskEachOther: a process repeating a rule is
// de-duplicated, but another process of the same container tripping the same
// rule, or the same process with another detail, still alerts.
func TestPipelineAlertsCannotMaskEachOther(t *testing.T) {
	env := newPipelineEnv(t, ModeDetect, nil, func(c *Config) { c.Alerts.DedupInterval = time.Minute })
	noisy := func(sec float64, path string) model.Event {
		return detEvent(detApp, cgApp, sec, "openat", func(e *model.Event) { e.PID, e.ProcStartNs, e.Path = 600, 6, path })
	}
	for i := range 50 {
		env.p.Event(noisy(float64(i)/10, "/etc/shadow"))
	}
	env.p.Event(detEvent(detApp, cgApp, 6, "openat", func(e *model.Event) { e.PID, e.ProcStartNs, e.Path = 700, 7, "/etc/shadow" }))
	env.p.Event(noisy(7, "/etc/gshadow"))
	got := env.out.take()
	var who []string
	for _, a := range got {
		who = append(who, fmt.Sprintf("%v %v", a.OutputFields["proc.pid"], a.OutputFields["fd.name"]))
	}
	want := []string{"600 /etc/shadow", "700 /etc/shadow", "600 /etc/gshadow"}
	if !slices.Equal(who, want) {
		t.Errorf("alerts from %v, want %v", who, want)
	}
}

// TestEnforcementFromTheFirstSyscall: in enforce mode every container cgroup is
// in the kernel's enforced set before its workload runs, whether it existed at
// start or was created later, at any depth.
func TestEnforcementFromTheFirstSyscall(t *testing.T) {
	static := func(cfg *Config) {
		cfg.Containers.Static = []container.StaticRule{{Cgroup: "/app-*", Image: "e2e/app:1"}, {Cgroup: "/apps/job-?", Image: "e2e/job:1"}}
	}
	mkdir := func(id uint64, path string, kernelEnforced bool) model.Event {
		e := model.Event{Kind: model.EventCgroupCreate, CgroupID: id, Path: path}
		if kernelEnforced {
			e.Flags = 1
		}
		return e
	}
	t.Run("enforce", func(t *testing.T) {
		env := newPipelineEnvTree(t, ModeEnforce, nil, static, existingCgroups)
		// At start: every container cgroup of the tree, sub-cgroups included.
		got := env.enf.takeCalls()
		slices.SortFunc(got, func(a, b enforceCall) int { return cmp.Compare(a.cgroup, b.cgroup) })
		want := []enforceCall{{40, true}, {41, true}, {51, true}, {60, true}}
		if !slices.Equal(got, want) {
			t.Errorf("at start enforced %v, want %v", got, want)
		}
		for _, prefix := range []string{"/app-", "/apps/job-", "/docker/"} {
			if !slices.Contains(env.enf.prefixes, prefix) {
				t.Errorf("kernel prefixes %q lack %q", env.enf.prefixes, prefix)
			}
		}
		for _, tt := range []struct {
			name string
			e    model.Event
			want []enforceCall
		}{
			{"a container the kernel enforced at mkdir", mkdir(70, "/app-2", true), nil},
			{"a kernel-prefix match that is no container", mkdir(71, "/apps/job-12", true), []enforceCall{{71, false}}},
			{"a container below no kernel prefix", mkdir(72, "/custom/"+strings.Repeat("cd", 32), false), []enforceCall{{72, true}}},
			{"a host cgroup", mkdir(73, "/system.slice/cron.service", false), nil},
			{"a removed cgroup", model.Event{Kind: model.EventCgroupRemove, CgroupID: 72}, []enforceCall{{72, false}}},
		} {
			env.p.Event(tt.e)
			if got := env.enf.takeCalls(); !slices.Equal(got, tt.want) {
				t.Errorf("%s: enforcement calls %v, want %v", tt.name, got, tt.want)
			}
		}
		if got := env.out.take(); len(got) != 0 {
			t.Errorf("cgroup events raised alerts: %v", got)
		}
	})
	t.Run("detect", func(t *testing.T) {
		env := newPipelineEnvTree(t, ModeDetect, nil, static, existingCgroups)
		env.p.Event(mkdir(72, "/custom/"+strings.Repeat("cd", 32), false))
		if got := env.enf.takeCalls(); len(got) != 0 || env.enf.prefixes != nil {
			t.Errorf("detect mode enforced %v, prefixes %q", got, env.enf.prefixes)
		}
	})
}

// TestPipelineStartupFollowsTheRuntime: the runtime's setup is never scored,
// even when the container is started long after it was created, or when docker
// exec sets up again in a running container.
func TestPipelineStartupFollowsTheRuntime(t *testing.T) {
	env := newPipelineEnv(t, ModeDetect, nil, func(c *Config) { c.Learning.IgnoreFirst = 2 * time.Second })
	setup := func(sec float64) model.Event {
		return detEvent(detApp, cgApp, sec, "mount", func(e *model.Event) { e.RuntimeSetup = true })
	}
	workload := func(sec float64) model.Event {
		e := detExec(detApp, cgApp, sec, 600, "/usr/bin/app")
		e.Exec = &model.ExecFile{EndsSetup: true}
		return e
	}
	for _, step := range []struct {
		name   string
		events []model.Event
		window int
		scored bool
	}{
		{name: "the first window of a created container", window: 100},
		{name: "within ignore_first of the first sighting", window: 101},
		{name: "once past it", window: 103, scored: true},
		{name: "started 10 s after it was created", events: []model.Event{setup(110.2), workload(110.5)}, window: 110},
		{name: "within ignore_first of the workload's start", window: 112},
		{name: "running", window: 113, scored: true},
		{name: "an exec of the workload's own", events: []model.Event{detExec(detApp, cgApp, 120.2, 601, "/usr/bin/app")}, window: 120, scored: true},
		{name: "docker exec", events: []model.Event{setup(130.3), workload(130.4)}, window: 130},
		{name: "after the exec", window: 133, scored: true},
	} {
		for _, e := range step.events {
			env.p.Event(e)
		}
		env.p.Windows([]model.Window{win(detApp, cgApp, step.window, steady(step.window))})
		if got := len(env.takeScored()) > 0; got != step.scored {
			t.Errorf("%s (window at %d s): scored %v, want %v", step.name, step.window, got, step.scored)
		}
	}
}

// TestPipelineLearnsExceptions: in auto mode, a learnable rule's hit while the
// image learns is an exception (no alert, no poisoned window), and the stable
// image stays quiet for the same binary and detail only; an absolute rule
// alerts and poisons while learning too.
func TestPipelineLearnsExceptions(t *testing.T) {
	env := newPipelineDefaults(t, ModeAuto, nil)
	learner := track(env.p.learner)
	const mariadbPID = 700
	mariadb := func(sec float64, syscall string) model.Event {
		return detEvent(detFresh, cgFresh, sec, syscall, func(e *model.Event) { e.PID, e.TID, e.Comm = mariadbPID, mariadbPID, "mariadbd" })
	}
	env.p.Event(detExec(detFresh, cgFresh, 499.5, mariadbPID, "/usr/sbin/mariadbd"))
	env.p.Event(mariadb(500.5, "io_uring_setup"))
	if got := alertRules(env.out.take()); len(got) != 0 {
		t.Fatalf("alerts %v while learning, want none: io_uring_setup is learnable", got)
	}
	res := learnEach(t, learner, []model.Window{win(detFresh, cgFresh, 500, steady(500))})
	if res.Poisoned != 0 || res.Learned != 1 {
		t.Errorf("learned %d, poisoned %d; want the window learned", res.Learned, res.Poisoned)
	}
	b, err := env.lib.Get(context.Background(), "e2e/fresh:1")
	if err != nil {
		t.Fatal(err)
	}
	if !b.Excepted("kernel_attack_surface", "/usr/sbin/mariadbd", "io_uring_setup") {
		t.Fatalf("exceptions %v, want kernel_attack_surface by /usr/sbin/mariadbd for io_uring_setup", b.Exceptions)
	}

	// An absolute rule while learning: alerted, and its window is not learned.
	env.p.Event(mariadb(501.5, "setns"))
	if got := alertRules(env.out.take()); !slices.Equal(got, []string{"ns_setns"}) {
		t.Errorf("alerts %v, want [ns_setns]", got)
	}
	if res := learnEach(t, learner, []model.Window{win(detFresh, cgFresh, 501, steady(501))}); res.Poisoned != 1 {
		t.Errorf("poisoned %d, want the setns window", res.Poisoned)
	}

	if err := env.lib.Promote(context.Background(), "e2e/fresh:1"); err != nil {
		t.Fatal(err)
	}
	env.p.Event(mariadb(600.5, "io_uring_setup"))
	if got := alertRules(env.out.take()); len(got) != 0 {
		t.Errorf("alerts %v for the learned exception, want none", got)
	}
	env.p.Event(mariadb(601.5, "userfaultfd")) // same binary, another detail
	env.p.Event(detExec(detFresh, cgFresh, 602, 701, "/usr/bin/python3"))
	env.p.Event(detEvent(detFresh, cgFresh, 602.5, "io_uring_setup", func(e *model.Event) { e.PID, e.TID = 701, 701 }))
	if got := alertRules(env.out.take()); !slices.Equal(got, []string{"exec_drift", "kernel_attack_surface", "kernel_attack_surface"}) {
		t.Errorf("alerts %v, want exec_drift and kernel_attack_surface twice (another detail, another binary)", got)
	}
}
