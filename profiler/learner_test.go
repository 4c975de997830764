package profiler

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/store"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// trackedLearner is a learner with the pipeline's bookkeeping around it: first
// sightings mark start-up windows, and the tracker holds the trip runs.
type trackedLearner struct {
	*Learner
	state *Tracker
}

func track(l *Learner) trackedLearner { return trackedLearner{l, l.state} }

func (l trackedLearner) LearnWindows(ws []model.Window) (LearnResult, error) {
	l.state.MarkLifecycle(ws, l.cfg.IgnoreFirst)
	return l.Learner.LearnWindows(ws)
}

func (l trackedLearner) ObserveExec(e model.Event) {
	if e.Container.HasBaseline() {
		l.state.Sighted(e.CgroupID, e.Time)
	}
	l.Learner.ObserveExec(e)
}

func (l trackedLearner) Forget(cgroupID uint64) { l.state.Forget(cgroupID) }

// newLearner builds a learner over a fresh real store; state may be nil.
func newLearner(t *testing.T, mode Mode, cfg LearnerConfig, state *Tracker) (trackedLearner, *Library, *store.Bolt, string) {
	t.Helper()
	st, path := openStore(t)
	lib, err := NewLibrary(st, cfg, mode, true)
	if err != nil {
		t.Fatal(err)
	}
	if state == nil {
		state = NewTracker()
	}
	return track(NewLearner(lib, mode, cfg, state, discard())), lib, st, path
}

func learnerConfig(ignoreFirst time.Duration) LearnerConfig {
	return LearnerConfig{LearnConfig: testLearnConfig(), IgnoreFirst: ignoreFirst}
}

// learnEach learns ws one window per batch, as the agent does once per sampling
// round, and sums the results.
func learnEach(t *testing.T, l trackedLearner, ws []model.Window) LearnResult {
	t.Helper()
	var sum LearnResult
	for _, w := range ws {
		res, err := l.LearnWindows([]model.Window{w})
		if err != nil {
			t.Fatalf("LearnWindows(%v): %v", w.Start, err)
		}
		sum.Learned += res.Learned
		sum.Startup += res.Startup
		sum.Stopping += res.Stopping
		sum.Poisoned += res.Poisoned
		sum.Skipped += res.Skipped
		sum.BecameStable = append(sum.BecameStable, res.BecameStable...)
	}
	return sum
}

// windows returns 1s windows of c in cgroup cg starting at t0+from, …, t0+to-1.
func windows(c model.Container, cg uint64, from, to int) []model.Window {
	var ws []model.Window
	for s := from; s < to; s++ {
		ws = append(ws, win(c, cg, s, steady(s)))
	}
	return ws
}

func mustGet(t *testing.T, lib *Library, key string) *model.Baseline {
	t.Helper()
	b, err := lib.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}

func sumCounts(ws []model.Window, name string) uint64 {
	var n uint64
	for _, w := range ws {
		n += w.Counts[name]
	}
	return n
}

func TestLearnerIgnoreFirst(t *testing.T) {
	app2 := appContainer("app2", "e2e/app", "1")
	exec := func(c model.Container, cg uint64, sec int) model.Event {
		return model.Event{Kind: model.EventExec, Time: t0.Add(time.Duration(sec) * time.Second), CgroupID: cg, Container: c, Path: "/usr/bin/app"}
	}
	tests := []struct {
		name        string
		ignoreFirst time.Duration
		execs       []model.Event
		batches     [][]model.Window
		want        LearnResult
		wantWindows uint64
		wantFrom    map[string]uint64 // learned windows by container
		startupOf   []model.Window    // the windows whose syscalls must be in Startup
	}{
		{
			name:        "first 10s of a container are startup",
			ignoreFirst: 10 * time.Second,
			batches:     [][]model.Window{windows(app1, 1, 0, 15)},
			want:        LearnResult{Learned: 5, Startup: 10},
			wantWindows: 5, wantFrom: map[string]uint64{"app1": 5},
			startupOf: windows(app1, 1, 0, 10),
		},
		{
			name:        "one window per batch",
			ignoreFirst: 10 * time.Second,
			batches:     splitEach(windows(app1, 1, 0, 15)),
			want:        LearnResult{Learned: 5, Startup: 10},
			wantWindows: 5, wantFrom: map[string]uint64{"app1": 5},
			startupOf: windows(app1, 1, 0, 10),
		},
		{
			name:        "an exec is the first sight",
			ignoreFirst: 10 * time.Second,
			execs:       []model.Event{exec(app1, 1, 0)},
			batches:     splitEach(windows(app1, 1, 8, 15)),
			want:        LearnResult{Learned: 5, Startup: 2},
			wantWindows: 5, wantFrom: map[string]uint64{"app1": 5},
			startupOf: windows(app1, 1, 8, 10),
		},
		{
			name:        "every container of the image has its own startup",
			ignoreFirst: 5 * time.Second,
			batches: [][]model.Window{
				windows(app1, 1, 0, 10),
				append(windows(app1, 1, 10, 15), windows(app2, 2, 10, 15)...),
				windows(app2, 2, 15, 17),
			},
			want:        LearnResult{Learned: 12, Startup: 10},
			wantWindows: 12, wantFrom: map[string]uint64{"app1": 10, "app2": 2},
			startupOf: append(windows(app1, 1, 0, 5), windows(app2, 2, 10, 15)...),
		},
		{
			name:        "no ignore period",
			ignoreFirst: 0,
			batches:     [][]model.Window{windows(app1, 1, 0, 4)},
			want:        LearnResult{Learned: 4},
			wantWindows: 4, wantFrom: map[string]uint64{"app1": 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, lib, st, path := newLearner(t, ModeLearn, learnerConfig(tt.ignoreFirst), nil)
			for _, e := range tt.execs {
				l.ObserveExec(e)
			}
			var got LearnResult
			for _, batch := range tt.batches {
				res, err := l.LearnWindows(batch)
				if err != nil {
					t.Fatal(err)
				}
				got.Learned += res.Learned
				got.Startup += res.Startup
				got.Poisoned += res.Poisoned
				got.Skipped += res.Skipped
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("result = %+v, want %+v", got, tt.want)
			}
			b := mustGet(t, lib, app1Key)
			if b.Windows != tt.wantWindows || !reflect.DeepEqual(b.Containers, tt.wantFrom) {
				t.Errorf("baseline windows %d from %v, want %d from %v", b.Windows, b.Containers, tt.wantWindows, tt.wantFrom)
			}
			for _, name := range []string{"read", "write", "futex"} {
				if want := sumCounts(tt.startupOf, name); b.Startup[name] != want {
					t.Errorf("startup[%s] = %d, want %d", name, b.Startup[name], want)
				}
			}
			// The learned statistics hold only the learned windows.
			if b.Total.N != tt.wantWindows || b.Syscalls["futex"].N != tt.wantWindows {
				t.Errorf("total.n %d, futex.n %d, want %d", b.Total.N, b.Syscalls["futex"].N, tt.wantWindows)
			}
			stored, err := reopen(t, st, path).Baseline(app1Key)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Windows != tt.wantWindows || !reflect.DeepEqual(stored.Startup, b.Startup) {
				t.Errorf("stored: windows %d startup %v, want %d and %v", stored.Windows, stored.Startup, tt.wantWindows, b.Startup)
			}
		})
	}

	t.Run("shutdown after a stop signal is not learned, for the grace only", func(t *testing.T) {
		l, lib, _, _ := newLearner(t, ModeLearn, learnerConfig(0), nil)
		learnEach(t, l, windows(app1, 1, 0, 9))
		l.state.StopSignalled(1, t0.Add(9500*time.Millisecond)) // inside the window at 9 s
		graceEnd := 10 + int(model.StopGrace/time.Second)       // the last window it overlaps starts at 39 s
		res := learnEach(t, l, windows(app1, 1, 9, graceEnd+3))
		if res.Learned != 3 || res.Stopping != graceEnd-9 {
			t.Errorf("after the stop signal: %+v, want %d shutdown windows, then 3 learned", res, graceEnd-9)
		}
		if b := mustGet(t, lib, app1Key); b.Windows != 9+3 {
			t.Errorf("windows = %d, want 12: the 9 before the signal and 3 after the grace", b.Windows)
		}
	})

	t.Run("a forgotten cgroup starts over", func(t *testing.T) {
		l, lib, _, _ := newLearner(t, ModeLearn, learnerConfig(5*time.Second), nil)
		learnEach(t, l, windows(app1, 1, 0, 8))
		l.Forget(1)
		res := learnEach(t, l, windows(app1, 1, 100, 102))
		if res.Startup != 2 || res.Learned != 0 {
			t.Errorf("after Forget: %+v, want 2 startup windows", res)
		}
		if b := mustGet(t, lib, app1Key); b.Windows != 3 {
			t.Errorf("windows = %d, want 3", b.Windows)
		}
	})
}

func splitEach(ws []model.Window) [][]model.Window {
	out := make([][]model.Window, len(ws))
	for i, w := range ws {
		out[i] = []model.Window{w}
	}
	return out
}

func TestLearnerNeverLearns(t *testing.T) {
	tests := []struct {
		name string
		c    model.Container
	}{
		{"host", model.Container{Runtime: model.RuntimeHost, CgroupPath: "/system.slice/sshd.service"}},
		{"host with an empty runtime", model.Container{CgroupPath: "/user.slice"}},
		{"host even with an image", model.Container{Runtime: model.RuntimeHost, Image: "e2e/app", ImageTag: "1"}},
		{"unknown runtime", model.Container{ID: "gone", Runtime: model.RuntimeUnknown, Image: "e2e/app", ImageTag: "1", CgroupPath: "/gone"}},
		{"container without an image", model.Container{ID: "noimg", Name: "noimg", Runtime: model.RuntimeStatic, CgroupPath: "/cagewatch-e2e/noimg"}},
		{"docker container without an image", model.Container{ID: "abc", Runtime: model.RuntimeDocker, ImageTag: "1", CgroupPath: "/docker/abc"}},
	}
	for _, tt := range tests {
		for _, mode := range []Mode{ModeLearn, ModeAuto} {
			t.Run(tt.name+"/"+string(mode), func(t *testing.T) {
				rec := &recordingStore{}
				st, path := openStore(t)
				rec.Store = st
				lib := newLib(t, rec, mode, true)
				l := track(NewLearner(lib, mode, learnerConfig(0), NewTracker(), discard()))
				l.ObserveExec(model.Event{Kind: model.EventExec, Time: t0, CgroupID: 7, Container: tt.c, Path: "/bin/sh"})
				res := learnEach(t, l, windows(tt.c, 7, 0, 5))
				if !reflect.DeepEqual(res, LearnResult{}) {
					t.Errorf("result = %+v, want nothing learned, skipped or counted", res)
				}
				if bs := listAll(t, lib); len(bs) != 0 {
					t.Errorf("library holds %q, want nothing", keys(bs))
				}
				if got := rec.takeBatches(); got != nil {
					t.Errorf("store writes %q, want none", got)
				}
				if got := storedKeysWindows(t, reopen(t, st, path)); len(got) != 0 {
					t.Errorf("store holds %v, want nothing", got)
				}
			})
		}
	}

	t.Run("container known only by image id is learned under it", func(t *testing.T) {
		c := model.Container{ID: "x", Runtime: model.RuntimeContainerd, ImageID: "sha256:abcd", CgroupPath: "/k8s/x"}
		l, lib, _, _ := newLearner(t, ModeLearn, learnerConfig(0), nil)
		if res := learnEach(t, l, windows(c, 3, 0, 2)); res.Learned != 2 {
			t.Fatalf("result = %+v, want 2 learned", res)
		}
		if b := mustGet(t, lib, "sha256:abcd"); b.Windows != 2 {
			t.Errorf("windows = %d, want 2", b.Windows)
		}
	})
}

func TestLearnerModes(t *testing.T) {
	type existing int
	const (
		none existing = iota
		learning
		stable
	)
	tests := []struct {
		mode        Mode
		existing    existing
		wantLearned bool // windows and execs are learned; otherwise skipped
	}{
		{ModeLearn, none, true},
		{ModeLearn, learning, true},
		{ModeLearn, stable, true},
		{ModeAuto, none, true},
		{ModeAuto, learning, true},
		{ModeAuto, stable, false},
		{ModeDetect, none, false},
		{ModeDetect, learning, false},
		{ModeDetect, stable, false},
		{ModeEnforce, none, false},
		{ModeEnforce, learning, false},
		{ModeEnforce, stable, false},
	}
	names := map[existing]string{none: "no baseline", learning: "learning baseline", stable: "stable baseline"}
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+names[tt.existing], func(t *testing.T) {
			st, path := openStore(t)
			var before uint64
			if tt.existing != none {
				b := learned("e2e/app", "1", "app1", 6, 0, steady)
				if tt.existing == stable {
					b.Promote(b.LastSeen)
				}
				before = b.Windows
				if err := st.PutBaselines(b); err != nil {
					t.Fatal(err)
				}
			}
			lib := newLib(t, st, tt.mode, true)
			l := track(NewLearner(lib, tt.mode, learnerConfig(0), NewTracker(), discard()))
			l.ObserveExec(model.Event{Kind: model.EventExec, Time: t0.Add(100 * time.Second), CgroupID: 1, Container: app1, Path: "/usr/bin/new"})
			res := learnEach(t, l, windows(app1, 1, 100, 104))

			want := LearnResult{Skipped: 4}
			wantWindows := before
			if tt.wantLearned {
				want = LearnResult{Learned: 4}
				wantWindows += 4
			}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("result = %+v, want %+v", res, want)
			}
			stored, err := reopen(t, st, path).Baseline(app1Key)
			if tt.existing == none && !tt.wantLearned {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("store: %v, %v; want no baseline created", stored, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if stored.Windows != wantWindows {
				t.Errorf("stored windows = %d, want %d", stored.Windows, wantWindows)
			}
			if _, ok := stored.Binaries["/usr/bin/new"]; ok != tt.wantLearned {
				t.Errorf("binary learned = %v, want %v", ok, tt.wantLearned)
			}
			wantState := model.StateLearning
			if tt.existing == stable {
				wantState = model.StateStable
			}
			if stored.State != wantState {
				t.Errorf("state = %q, want %q", stored.State, wantState)
			}
		})
	}
}

func TestLearnerReachesStable(t *testing.T) {
	cfg := learnerConfig(3 * time.Second) // MinWindows 10, StableWindows 5, MinContainers 1
	app2 := appContainer("app2", "e2e/app", "1")
	tests := []struct {
		name          string
		mode          Mode
		cfg           func(c LearnerConfig) LearnerConfig
		ws            []model.Window
		wantStable    bool
		wantAfter     LearnResult // windows after the one that made it stable
		minWindowsAt  uint64      // the baseline's windows when it became stable, at least…
		maxWindowsAt  uint64      // …and at most
		wantContainer int
	}{
		{
			name: "learn mode keeps learning a stable baseline", mode: ModeLearn,
			ws: windows(app1, 1, 0, 40), wantStable: true, minWindowsAt: 10, maxWindowsAt: 15,
		},
		{
			name: "auto mode stops learning once stable", mode: ModeAuto,
			ws: windows(app1, 1, 0, 40), wantStable: true, minWindowsAt: 10, maxWindowsAt: 15,
		},
		{
			name: "not before enough containers", mode: ModeAuto,
			cfg: func(c LearnerConfig) LearnerConfig { c.MinContainers = 2; return c },
			ws:  append(windows(app1, 1, 0, 30), windows(app2, 2, 30, 50)...), wantStable: true, minWindowsAt: 28, maxWindowsAt: 40,
			wantContainer: 2,
		},
		{
			name: "one container short never stabilises", mode: ModeLearn,
			cfg: func(c LearnerConfig) LearnerConfig { c.MinContainers = 2; return c },
			ws:  windows(app1, 1, 0, 60),
		},
		{
			name: "a new syscall every few windows never stabilises", mode: ModeLearn,
			ws: func() []model.Window {
				ws := windows(app1, 1, 0, 60)
				for i := range ws {
					if i%4 == 0 {
						ws[i].Counts["syscall_"+strconv.Itoa(i)] = 1
					}
				}
				return ws
			}(),
		},
		{
			name: "a slow ramp never stabilises", mode: ModeLearn,
			ws: func() []model.Window {
				var ws []model.Window
				for i := range 80 {
					ws = append(ws, win(app1, 1, i, map[string]uint64{"read": 1000 + 20*uint64(i) + uint64(i%3), "futex": 10}))
				}
				return ws
			}(),
		},
		{
			// Steady, it would be stable at 10 windows (see above); a rate that
			// jumps a hundredfold at window 8 is drift at the checkpoints after it.
			name: "a rate that jumps delays stable", mode: ModeLearn,
			ws: func() []model.Window {
				var ws []model.Window
				for i := range 80 {
					rate := uint64(10)
					if i >= 3+8 { // 3 startup windows, then 8 learned at 10/s
						rate = 1000 + uint64(i%3)
					}
					ws = append(ws, win(app1, 1, i, map[string]uint64{"read": rate, "futex": 10}))
				}
				return ws
			}(),
			wantStable: true, minWindowsAt: 15, maxWindowsAt: 70,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			if tt.cfg != nil {
				c = tt.cfg(c)
			}
			l, lib, st, path := newLearner(t, tt.mode, c, nil)
			var became []string
			var windowsAt uint64
			var after LearnResult
			for i, w := range tt.ws {
				res, err := l.LearnWindows([]model.Window{w})
				if err != nil {
					t.Fatal(err)
				}
				if len(became) > 0 {
					after.Learned += res.Learned
					after.Skipped += res.Skipped
				}
				if len(res.BecameStable) > 0 {
					became = append(became, res.BecameStable...)
					windowsAt = mustGet(t, lib, app1Key).Windows
					if st := mustGet(t, lib, app1Key).State; st != model.StateStable {
						t.Errorf("window %d reported stable, but the state is %q", i, st)
					}
				}
			}
			b := mustGet(t, lib, app1Key)
			if !tt.wantStable {
				if len(became) != 0 || b.State != model.StateLearning {
					t.Fatalf("became stable %q at %d windows (state %q), want still learning", became, windowsAt, b.State)
				}
				return
			}
			if !slices.Equal(became, []string{app1Key}) {
				t.Fatalf("BecameStable over all batches = %q, want %q once", became, app1Key)
			}
			t.Logf("stable at %d windows", windowsAt)
			if windowsAt < tt.minWindowsAt || windowsAt > tt.maxWindowsAt {
				t.Errorf("became stable at %d windows, want %d..%d", windowsAt, tt.minWindowsAt, tt.maxWindowsAt)
			}
			if p := b.Progress(c.LearnConfig); p.Windows < c.MinWindows || p.Containers < c.MinContainers {
				t.Errorf("stable with progress %v", p)
			}
			total := after.Learned + after.Skipped
			if tt.mode == ModeAuto && (after.Learned != 0 || b.Windows != windowsAt) {
				t.Errorf("auto mode after stable: %+v, windows %d → %d; want everything skipped", after, windowsAt, b.Windows)
			}
			if tt.mode == ModeLearn && (after.Skipped != 0 || b.Windows != windowsAt+uint64(total)) {
				t.Errorf("learn mode after stable: %+v, windows %d → %d; want everything learned", after, windowsAt, b.Windows)
			}
			if total == 0 {
				t.Error("no windows after the baseline became stable: the test proves nothing about them")
			}
			stored, err := reopen(t, st, path).Baseline(app1Key)
			if err != nil {
				t.Fatal(err)
			}
			if stored.State != model.StateStable || stored.Windows != b.Windows {
				t.Errorf("stored: state %q windows %d, want stable with %d", stored.State, stored.Windows, b.Windows)
			}
		})
	}
}

func TestLearnerPoisoningGuard(t *testing.T) {
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	type mark struct {
		cg uint64
		at time.Time
	}
	app2 := appContainer("app2", "e2e/app", "1")
	tests := []struct {
		name        string
		ignoreFirst time.Duration
		marks       []mark
		ws          []model.Window // learned in one batch
		want        LearnResult
		poisoned    []int // indexes into ws of the windows that must not be learned
	}{
		{
			name:     "mark inside a window",
			marks:    []mark{{1, at(3.5)}},
			ws:       windows(app1, 1, 0, 6),
			want:     LearnResult{Learned: 5, Poisoned: 1},
			poisoned: []int{3},
		},
		{
			name:     "marks in two windows",
			marks:    []mark{{1, at(1.2)}, {1, at(4.9)}},
			ws:       windows(app1, 1, 0, 6),
			want:     LearnResult{Learned: 4, Poisoned: 2},
			poisoned: []int{1, 4},
		},
		{
			name:  "mark before the windows",
			marks: []mark{{1, at(-30)}},
			ws:    windows(app1, 1, 0, 6),
			want:  LearnResult{Learned: 6},
		},
		{
			name:  "mark after the windows",
			marks: []mark{{1, at(60)}},
			ws:    windows(app1, 1, 0, 6),
			want:  LearnResult{Learned: 6},
		},
		{
			name:     "mark in another cgroup",
			marks:    []mark{{2, at(2.5)}},
			ws:       append(windows(app1, 1, 0, 6), windows(app2, 2, 0, 6)...),
			want:     LearnResult{Learned: 11, Poisoned: 1},
			poisoned: []int{6 + 2},
		},
		{
			name:        "poisoned startup window",
			ignoreFirst: 2 * time.Second,
			marks:       []mark{{1, at(0.5)}},
			ws:          windows(app1, 1, 0, 6),
			want:        LearnResult{Learned: 4, Startup: 1, Poisoned: 1},
			poisoned:    []int{0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trip := NewTracker()
			for _, m := range tt.marks {
				trip.MarkTrip(m.cg, m.at)
			}
			ws := slices.Clone(tt.ws)
			for _, i := range tt.poisoned {
				ws[i].Counts = map[string]uint64{"read": 1, "ptrace": 1} // what an attack would teach
			}
			l, lib, _, _ := newLearner(t, ModeLearn, learnerConfig(tt.ignoreFirst), trip)
			res, err := l.LearnWindows(ws)
			if err != nil {
				t.Fatal(err)
			}
			res.BecameStable = nil // not what this test is about
			if !reflect.DeepEqual(res, tt.want) {
				t.Errorf("result = %+v, want %+v", res, tt.want)
			}
			b := mustGet(t, lib, app1Key)
			if _, learned := b.Syscalls["ptrace"]; learned || b.Startup["ptrace"] > 0 {
				t.Errorf("the baseline learned ptrace from a poisoned window (syscalls %v, startup %v)", b.Syscalls, b.Startup)
			}
			if want := uint64(tt.want.Learned); b.Windows != want {
				t.Errorf("windows = %d, want %d", b.Windows, want)
			}
		})
	}

	t.Run("a mark after the batch poisons a later window", func(t *testing.T) {
		trip := NewTracker()
		trip.MarkTrip(1, at(20.5))
		l, _, _, _ := newLearner(t, ModeLearn, learnerConfig(0), trip)
		if res := learnEach(t, l, windows(app1, 1, 0, 10)); res.Poisoned != 0 || res.Learned != 10 {
			t.Fatalf("first batches: %+v, want 10 learned", res)
		}
		if res := learnEach(t, l, windows(app1, 1, 20, 22)); res.Poisoned != 1 || res.Learned != 1 {
			t.Errorf("later batch: %+v, want 1 learned, 1 poisoned", res)
		}
	})

	t.Run("forgotten marks do not poison", func(t *testing.T) {
		trip := NewTracker()
		trip.MarkTrip(1, at(1.5))
		trip.Forget(1)
		l, _, _, _ := newLearner(t, ModeLearn, learnerConfig(0), trip)
		if res := learnEach(t, l, windows(app1, 1, 0, 3)); res.Poisoned != 0 || res.Learned != 3 {
			t.Errorf("result = %+v, want 3 learned", res)
		}
	})

}

// TestTripLogBursts: a rule firing thousands of times a second stays one run, and
// with more runs than the cap no window holding a mark is ever reported clean.
func TestTripLogBursts(t *testing.T) {
	l := NewTracker()
	for i := range 100_000 { // 100 ms of marks, 1 µs apart, from t0+10s
		l.MarkTrip(1, t0.Add(10*time.Second+time.Duration(i)*time.Microsecond))
	}
	if n := len(l.cgroups[1].trips); n != 1 {
		t.Fatalf("a dense burst made %d runs, want 1", n)
	}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for _, c := range []struct {
		from, to int
		want     bool
	}{{9000, 9999, false}, {9000, 10000, true}, {10050, 10060, true}, {10099, 11000, true}, {10100, 11000, false}} {
		if got := l.Tripped(1, ms(c.from), ms(c.to)); got != c.want {
			t.Errorf("Tripped(%dms, %dms) = %v, want %v", c.from, c.to, got, c.want)
		}
	}

	l = NewTracker()
	const marks = 3 * tripMaxRuns
	for i := range marks { // 20 ms apart: every mark its own run
		l.MarkTrip(2, ms(20*i))
	}
	if n := len(l.cgroups[2].trips); n > tripMaxRuns {
		t.Errorf("%d runs kept, want at most %d", n, tripMaxRuns)
	}
	for i := range marks { // one window per mark, checked in time order
		if !l.Tripped(2, ms(20*i-5), ms(20*i+5)) {
			t.Fatalf("window around mark %d reported clean", i)
		}
	}
}

// BenchmarkTripLogMark is a rule firing continuously in one container: the
// event loop calls Mark for every event.
func BenchmarkTripLogMark(b *testing.B) {
	l := NewTracker()
	now := t0
	for b.Loop() {
		now = now.Add(20 * time.Microsecond) // 50,000 events/s
		l.MarkTrip(1, now)
	}
}

func TestTripLog(t *testing.T) {
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	type check struct {
		cg       uint64
		from, to int
		want     bool
	}
	tests := []struct {
		name      string
		marks     map[uint64][]int
		forget    []uint64
		checks    []check // in order
		wantKept  map[uint64]int
		checkKept bool
	}{
		{
			name:   "inside, at the edges, outside",
			marks:  map[uint64][]int{1: {10}},
			checks: []check{{1, 0, 9, false}, {1, 10, 11, true}, {1, 9, 10, true}, {1, 11, 12, false}},
		},
		{
			name:   "other cgroup",
			marks:  map[uint64][]int{1: {10}},
			checks: []check{{2, 0, 100, false}, {1, 0, 100, true}},
		},
		{
			name:      "marks older than the window are pruned",
			marks:     map[uint64][]int{1: {5, 6, 20}},
			checks:    []check{{1, 10, 11, false}, {1, 4, 7, false}, {1, 19, 21, true}},
			wantKept:  map[uint64]int{1: 1},
			checkKept: true,
		},
		{
			name:      "a cgroup without marks left is dropped",
			marks:     map[uint64][]int{1: {5}, 2: {50}},
			checks:    []check{{1, 10, 11, false}},
			wantKept:  map[uint64]int{2: 1},
			checkKept: true,
		},
		{
			name:      "forget",
			marks:     map[uint64][]int{1: {5, 6}, 2: {5}},
			forget:    []uint64{1, 3},
			checks:    []check{{1, 0, 10, false}, {2, 0, 10, true}},
			wantKept:  map[uint64]int{2: 1},
			checkKept: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewTracker()
			for cg, secs := range tt.marks {
				for _, s := range secs {
					l.MarkTrip(cg, at(s))
				}
			}
			for _, cg := range tt.forget {
				l.Forget(cg)
			}
			for _, c := range tt.checks {
				if got := l.Tripped(c.cg, at(c.from), at(c.to)); got != c.want {
					t.Errorf("Tripped(%d, %ds, %ds) = %v, want %v", c.cg, c.from, c.to, got, c.want)
				}
			}
			if tt.checkKept {
				got := map[uint64]int{}
				l.mu.Lock()
				for cg, c := range l.cgroups {
					if len(c.trips) > 0 {
						got[cg] = len(c.trips)
					}
				}
				l.mu.Unlock()
				if !reflect.DeepEqual(got, tt.wantKept) {
					t.Errorf("marks kept = %v, want %v", got, tt.wantKept)
				}
			}
		})
	}
}

func TestLearnerObserveExec(t *testing.T) {
	exec := func(c model.Container, cg uint64, path string) model.Event {
		return model.Event{Kind: model.EventExec, Time: t0, CgroupID: cg, Container: c, Path: path}
	}
	host := model.Container{Runtime: model.RuntimeHost}
	tests := []struct {
		name   string
		mode   Mode
		events []model.Event
		want   map[string]uint64 // binaries of e2e/app:1; nil: no baseline
	}{
		{
			name:   "learning container",
			mode:   ModeLearn,
			events: []model.Event{exec(app1, 1, "/usr/bin/app"), exec(app1, 1, "/bin/sh"), exec(app1, 1, "/usr/bin/app")},
			want:   map[string]uint64{"/usr/bin/app": 2, "/bin/sh": 1},
		},
		{
			name: "the runtime's init re-executing itself",
			mode: ModeLearn,
			events: []model.Event{exec(app1, 1, "/usr/bin/app"), func() model.Event {
				e := exec(app1, 1, "memfd:runc_cloned:/proc/self/exe")
				e.RuntimeSetup = true
				return e
			}()},
			want: map[string]uint64{"/usr/bin/app": 1},
		},
		{
			name:   "auto mode without a baseline",
			mode:   ModeAuto,
			events: []model.Event{exec(app1, 1, "/usr/bin/app")},
			want:   map[string]uint64{"/usr/bin/app": 1},
		},
		{
			name:   "host",
			mode:   ModeLearn,
			events: []model.Event{exec(host, 0, "/usr/sbin/sshd")},
		},
		{
			name:   "unknown runtime",
			mode:   ModeLearn,
			events: []model.Event{exec(model.Container{ID: "x", Runtime: model.RuntimeUnknown, Image: "e2e/app", ImageTag: "1"}, 9, "/bin/sh")},
		},
		{
			name:   "no image",
			mode:   ModeLearn,
			events: []model.Event{exec(model.Container{ID: "x", Runtime: model.RuntimeStatic}, 9, "/bin/sh")},
		},
		{
			name:   "detect mode",
			mode:   ModeDetect,
			events: []model.Event{exec(app1, 1, "/usr/bin/app")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, lib, st, path := newLearner(t, tt.mode, learnerConfig(0), nil)
			for _, e := range tt.events {
				l.ObserveExec(e)
			}
			bs := listAll(t, lib)
			if tt.want == nil {
				if len(bs) != 0 {
					t.Fatalf("library holds %q, want nothing", keys(bs))
				}
				return
			}
			if b := mustGet(t, lib, app1Key); !reflect.DeepEqual(b.Binaries, tt.want) || b.Windows != 0 {
				t.Errorf("binaries %v windows %d, want %v and 0", b.Binaries, b.Windows, tt.want)
			}
			// Persisted with the next window batch, even an empty one.
			if _, err := l.LearnWindows(nil); err != nil {
				t.Fatal(err)
			}
			stored, err := reopen(t, st, path).Baseline(app1Key)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(stored.Binaries, tt.want) {
				t.Errorf("stored binaries %v, want %v", stored.Binaries, tt.want)
			}
		})
	}
}

func TestLearnerPersistence(t *testing.T) {
	t.Run("every batch is persisted and a restart resumes", func(t *testing.T) {
		l, _, st, path := newLearner(t, ModeLearn, learnerConfig(0), nil)
		for i, w := range windows(app1, 1, 0, 7) {
			if _, err := l.LearnWindows([]model.Window{w}); err != nil {
				t.Fatal(err)
			}
			got, err := st.Baseline(app1Key)
			if err != nil {
				t.Fatal(err)
			}
			if got.Windows != uint64(i+1) {
				t.Fatalf("after batch %d the store holds %d windows, want %d", i, got.Windows, i+1)
			}
		}
		st2 := reopen(t, st, path)
		lib2 := newLib(t, st2, ModeLearn, true)
		l2 := track(NewLearner(lib2, ModeLearn, learnerConfig(0), NewTracker(), discard()))
		learnEach(t, l2, windows(app1, 1, 7, 10))
		got, err := reopen(t, st2, path).Baseline(app1Key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Windows != 10 || got.Containers["app1"] != 10 {
			t.Errorf("after restart: windows %d containers %v, want 10 from app1", got.Windows, got.Containers)
		}
	})

	t.Run("a failed flush is retried with the next batch", func(t *testing.T) {
		st, path := openStore(t)
		rec := &recordingStore{Store: st}
		lib := newLib(t, rec, ModeLearn, true)
		l := track(NewLearner(lib, ModeLearn, learnerConfig(0), NewTracker(), discard()))
		learnEach(t, l, windows(app1, 1, 0, 2))
		rec.setFail(true, false)
		res, err := l.LearnWindows(windows(app1, 1, 2, 3))
		if !errors.Is(err, errInjected) || res.Learned != 1 {
			t.Fatalf("LearnWindows on a failing store = %+v, %v; want 1 learned and the store error", res, err)
		}
		rec.setFail(false, false)
		learnEach(t, l, windows(app1, 1, 3, 4))
		got, err := reopen(t, st, path).Baseline(app1Key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Windows != 4 {
			t.Errorf("stored windows = %d, want 4", got.Windows)
		}
	})
}

const helperEnv = "CAGEWATCH_TEST_LEARNER_STORE"

// TestLearnerHelperProcess is the agent that TestLearnerSurvivesSIGKILL kills: it
// learns one window per batch and prints the persisted count after each batch.
func TestLearnerHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestLearnerSurvivesSIGKILL")
	}
	st, err := store.Open(path, time.Second)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	lib, err := NewLibrary(st, LearnerConfig{LearnConfig: testLearnConfig()}, ModeLearn, true)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	l := track(NewLearner(lib, ModeLearn, learnerConfig(0), NewTracker(), discard()))
	deadline := time.Now().Add(30 * time.Second) // never outlive a lost parent for long
	for i := 0; time.Now().Before(deadline); i++ {
		if _, err := l.LearnWindows([]model.Window{win(app1, 1, i, steady(i))}); err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		b, _ := lib.Get(context.Background(), app1Key)
		fmt.Printf("learned %d\n", b.Windows)
		time.Sleep(2 * time.Millisecond)
	}
	os.Exit(3)
}

// TestLearnerSurvivesSIGKILL kills a learning process with SIGKILL and checks
// that the store holds every batch it reported as done, plus at most the one in
// flight, and that learning resumes from there.
func TestLearnerSurvivesSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "baselines.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLearnerHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	lines := bufio.NewScanner(out)
	last := -1
	parse := func(line string) {
		n, err := strconv.Atoi(strings.TrimPrefix(line, "learned "))
		if err != nil {
			t.Fatalf("helper: %q", line)
		}
		last = n
	}
	for last < 25 && lines.Scan() {
		parse(lines.Text())
	}
	if last < 25 {
		t.Fatalf("helper stopped after %d windows: %v", last, lines.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() { // what it printed before it died
		if line := lines.Text(); strings.HasPrefix(line, "learned ") {
			parse(line)
		}
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper exit: %v, want killed", err)
	}

	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatalf("opening the store after SIGKILL: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := st.Baseline(app1Key)
	if err != nil {
		t.Fatal(err)
	}
	if b.Windows < uint64(last) || b.Windows > uint64(last)+1 {
		t.Fatalf("store holds %d windows after SIGKILL, the helper reported %d persisted: want %d or %d",
			b.Windows, last, last, last+1)
	}
	lib := newLib(t, st, ModeLearn, true)
	l := track(NewLearner(lib, ModeLearn, learnerConfig(0), NewTracker(), discard()))
	learnEach(t, l, windows(app1, 1, 1000, 1003))
	if got := mustGet(t, lib, app1Key); got.Windows != b.Windows+3 {
		t.Errorf("after resuming: %d windows, want %d", got.Windows, b.Windows+3)
	}
}

// TestLearnerKeysByWorkload: under learning.key: workload, one image run in two
// roles learns two baselines, each from its own containers; the replicas of a
// role share theirs; the status names each workload's image and the key.
func TestLearnerKeysByWorkload(t *testing.T) {
	pod := func(id, owner string) model.Container {
		c := model.Container{ID: id, Name: "main", Runtime: model.RuntimeContainerd, Image: "shop/app", ImageTag: "1",
			Namespace: "shop", PodName: owner + "-7d9f8c6b5-" + id, PodOwner: owner, CgroupPath: "/kubepods/" + id}
		c.Workload = c.WorkloadKey()
		return c
	}
	web1, web2, worker := pod("x2k4q", "web"), pod("p9z7m", "web"), pod("tz5vn", "worker")
	cfg := learnerConfig(0)
	cfg.KeyBy = model.KeyByWorkload
	l, lib, _, _ := newLearner(t, ModeLearn, cfg, nil)
	learnEach(t, l, append(append(windows(web1, 1, 0, 5), windows(web2, 2, 0, 3)...), windows(worker, 3, 0, 4)...))
	if err := lib.Flush(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]map[string]uint64{
		"k8s:shop/web/main":    {"x2k4q": 5, "p9z7m": 3},
		"k8s:shop/worker/main": {"tz5vn": 4},
	} {
		b := mustGet(t, lib, key)
		if !maps.Equal(b.Containers, want) {
			t.Errorf("%s learned from %v, want %v", key, b.Containers, want)
		}
		if b.Image != "shop/app" || b.Tag != "1" || b.Workload != key {
			t.Errorf("%s: image %s:%s workload %q", key, b.Image, b.Tag, b.Workload)
		}
	}
	if _, err := lib.Get(context.Background(), "shop/app:1"); err == nil {
		t.Error("a per-image baseline was learned too")
	}
	st, err := lib.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Key != "workload" || len(st.Images) != 2 || st.Images[0].ImageRef != "shop/app:1" {
		t.Errorf("status %+v: want key workload and two workloads of shop/app:1", st)
	}
}
