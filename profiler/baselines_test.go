package profiler

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/store"
)

// t0 is the start of every test's timeline.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// errInjected is what a failing store returns.
var errInjected = errors.New("injected store failure")

// openStore opens a real bbolt store in a fresh temporary directory.
func openStore(t *testing.T) (*store.Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "baselines.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatalf("store.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { st.Close() }) // closing twice is harmless
	return st, path
}

// reopen closes st and opens its file again, as a restarted agent would.
func reopen(t *testing.T, st *store.Bolt, path string) *store.Bolt {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatalf("closing store: %v", err)
	}
	st2, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatalf("reopening store %s: %v", path, err)
	}
	t.Cleanup(func() { st2.Close() })
	return st2
}

// recordingStore wraps a real store, records every PutBaselines batch and can be
// told to fail writes.
type recordingStore struct {
	store.Store

	mu         sync.Mutex
	batches    [][]string // keys of each PutBaselines call
	failPut    bool
	failDelete bool
}

func (r *recordingStore) PutBaselines(bs ...*model.Baseline) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, len(bs))
	for i, b := range bs {
		keys[i] = b.Key()
	}
	slices.Sort(keys)
	r.batches = append(r.batches, keys)
	if r.failPut {
		return errInjected
	}
	return r.Store.PutBaselines(bs...)
}

func (r *recordingStore) DeleteBaseline(key string) error {
	r.mu.Lock()
	fail := r.failDelete
	r.mu.Unlock()
	if fail {
		return errInjected
	}
	return r.Store.DeleteBaseline(key)
}

func (r *recordingStore) setFail(put, del bool) {
	r.mu.Lock()
	r.failPut, r.failDelete = put, del
	r.mu.Unlock()
}

// takeBatches returns the batches recorded so far and forgets them.
func (r *recordingStore) takeBatches() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.batches
	r.batches = nil
	return out
}

// appContainer is the static container of the e2e workload, or another instance
// of an image when id and image differ.
func appContainer(id, image, tag string) model.Container {
	return model.Container{ID: id, Name: id, Runtime: model.RuntimeStatic, Image: image, ImageTag: tag,
		CgroupPath: "/cagewatch-e2e/" + id}
}

var app1 = appContainer("app1", "e2e/app", "1")

const app1Key = "e2e/app:1"

// win is a 1s window of c in cgroup cg starting at t0+sec.
func win(c model.Container, cg uint64, sec int, counts map[string]uint64) model.Window {
	return model.Window{CgroupID: cg, Container: c, Start: t0.Add(time.Duration(sec) * time.Second),
		Duration: time.Second, Counts: counts}
}

// steady is the syscall mix of a steady workload in window i (small jitter).
func steady(i int) map[string]uint64 {
	return map[string]uint64{"read": 100 + uint64(i%3), "write": 50 + uint64(i%2), "futex": 10}
}

// learned builds a baseline of image:tag from n windows of container id, the
// first starting at t0+startSec.
func learned(image, tag, id string, n, startSec int, counts func(i int) map[string]uint64) *model.Baseline {
	c := appContainer(id, image, tag)
	b := model.NewBaseline(image, tag, "")
	for i := range n {
		b.AddWindow(win(c, 1, startSec+i, counts(i)), 0)
	}
	return b
}

// jsonOf is a snapshot of v that later changes to v cannot reach.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func keys(bs []*model.Baseline) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Key()
	}
	return out
}

// storedKeysWindows maps each stored baseline's key to its window count.
func storedKeysWindows(t *testing.T, st store.Store) map[string]uint64 {
	t.Helper()
	all, err := st.Baselines()
	if err != nil {
		t.Fatalf("store.Baselines: %v", err)
	}
	out := map[string]uint64{}
	for _, b := range all {
		out[b.Key()] = b.Windows
	}
	return out
}

func listAll(t *testing.T, lib *Library) []*model.Baseline {
	t.Helper()
	bs, err := lib.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return bs
}

func newLib(t *testing.T, st store.Store, mode Mode, running bool) *Library {
	t.Helper()
	lib, err := NewLibrary(st, LearnerConfig{LearnConfig: testLearnConfig()}, mode, running)
	if err != nil {
		t.Fatalf("NewLibrary: %v", err)
	}
	return lib
}

func testLearnConfig() model.LearnConfig {
	return model.LearnConfig{MinWindows: 10, MinContainers: 1, StableWindows: 5, MaxDrift: 3, SampleSize: 16}
}

func TestNewLibraryLoadsStore(t *testing.T) {
	tests := []struct {
		name   string
		stored []*model.Baseline
		want   []string
	}{
		{name: "empty store", want: []string{}},
		{
			name: "baselines of several images",
			stored: []*model.Baseline{
				learned("e2e/app", "1", "app1", 3, 0, steady),
				learned("e2e/app", "2", "app1", 2, 0, steady),
				learned("docker.io/library/nginx", "", "web", 4, 0, steady),
			},
			want: []string{"docker.io/library/nginx", "e2e/app:1", "e2e/app:2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := openStore(t)
			if err := st.PutBaselines(tt.stored...); err != nil {
				t.Fatalf("PutBaselines: %v", err)
			}
			lib := newLib(t, st, ModeLearn, false)
			got := listAll(t, lib)
			if !slices.Equal(keys(got), tt.want) {
				t.Fatalf("List keys = %q, want %q", keys(got), tt.want)
			}
			for _, want := range tt.stored {
				b, err := lib.Get(context.Background(), want.Key())
				if err != nil {
					t.Fatalf("Get(%q): %v", want.Key(), err)
				}
				if b.Windows != want.Windows || !reflect.DeepEqual(b.Syscalls, want.Syscalls) || !reflect.DeepEqual(b.Containers, want.Containers) {
					t.Errorf("Get(%q) = windows %d syscalls %v containers %v, want windows %d syscalls %v containers %v",
						want.Key(), b.Windows, b.Syscalls, b.Containers, want.Windows, want.Syscalls, want.Containers)
				}
			}
		})
	}

	t.Run("store read error is returned", func(t *testing.T) {
		st, _ := openStore(t)
		st.Close()
		if _, err := NewLibrary(st, LearnerConfig{LearnConfig: testLearnConfig()}, ModeLearn, false); err == nil {
			t.Fatal("NewLibrary on a closed store succeeded, want an error")
		}
	})
}

func TestLibraryListSortedDeepCopies(t *testing.T) {
	st, _ := openStore(t)
	// Learned through two checkpoints, so every map of the convergence state is
	// filled in and a shallow copy would share it.
	cfg := testLearnConfig()
	cfg.MinContainers = 2 // still learning
	var stored []*model.Baseline
	for _, c := range []model.Container{
		appContainer("z1", "registry:5000/z", "1"), appContainer("a1", "a/img", "10"),
		appContainer("a2", "a/img", "2"), appContainer("a3", "a/img", ""),
	} {
		b := model.NewBaseline(c.Image, c.ImageTag, "")
		for i := range 12 {
			b.AddWindow(win(c, 1, i, steady(i)), 16)
			b.UpdateState(cfg)
		}
		b.AddExec("/usr/bin/app")
		b.AddStartup(win(c, 1, 0, map[string]uint64{"execve": 1}))
		if b.Convergence.CheckpointSums == nil || b.Convergence.PreviousSums == nil {
			t.Fatalf("%s: convergence state not filled in: %+v", b.Key(), b.Convergence)
		}
		stored = append(stored, b)
	}
	if err := st.PutBaselines(stored...); err != nil {
		t.Fatal(err)
	}
	lib := newLib(t, st, ModeLearn, false)
	listed := listAll(t, lib)
	if want := []string{"a/img", "a/img:10", "a/img:2", "registry:5000/z:1"}; !slices.Equal(keys(listed), want) {
		t.Fatalf("List keys = %q, want sorted %q", keys(listed), want)
	}
	before := jsonOf(t, listed)

	mutations := []struct {
		name   string
		mutate func(b *model.Baseline)
	}{
		{"state", func(b *model.Baseline) { b.State = model.StateStable }},
		{"windows", func(b *model.Baseline) { b.Windows = 999 }},
		{"syscalls map", func(b *model.Baseline) { b.Syscalls["ptrace"] = model.Moments{N: 1, Mean: 1, Max: 1} }},
		{"containers map", func(b *model.Baseline) { b.Containers["intruder"] = 7 }},
		{"binaries map", func(b *model.Baseline) { b.Binaries["/tmp/x"] = 1 }},
		{"startup map", func(b *model.Baseline) { b.Startup["mount"] = 1 }},
		{"sample counts", func(b *model.Baseline) { b.Sample[0].Counts["read"] = 12345 }},
		{"sample slice", func(b *model.Baseline) { b.Sample[0].Container = "intruder" }},
		{"checkpoint sums", func(b *model.Baseline) { b.Convergence.CheckpointSums["read"] = model.RateSums{Sum: -1} }},
		{"previous sums", func(b *model.Baseline) { b.Convergence.PreviousSums["write"] = model.RateSums{Sum: -1} }},
	}
	for _, m := range mutations {
		t.Run("mutating "+m.name+" of a listed baseline", func(t *testing.T) {
			for _, b := range listAll(t, lib) {
				m.mutate(b)
			}
			got, err := lib.Get(context.Background(), "a/img:10")
			if err != nil {
				t.Fatal(err)
			}
			m.mutate(got)
			if after := jsonOf(t, listAll(t, lib)); after != before {
				t.Errorf("mutating %s of copies changed the library", m.name)
			}
		})
	}
}

func TestLibraryGet(t *testing.T) {
	st, _ := openStore(t)
	if err := st.PutBaselines(learned("e2e/app", "1", "app1", 4, 0, steady)); err != nil {
		t.Fatal(err)
	}
	lib := newLib(t, st, ModeLearn, false)
	tests := []struct {
		name        string
		key         string
		wantWindows uint64
		wantErr     error
	}{
		{name: "present", key: app1Key, wantWindows: 4},
		{name: "missing tag", key: "e2e/app:2", wantErr: store.ErrNotFound},
		{name: "repository without tag", key: "e2e/app", wantErr: store.ErrNotFound},
		{name: "empty key", key: "", wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := lib.Get(context.Background(), tt.key)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get(%q) error = %v, want %v", tt.key, err, tt.wantErr)
				}
				if b != nil {
					t.Errorf("Get(%q) returned a baseline with an error", tt.key)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tt.key, err)
			}
			if b.Key() != tt.key || b.Windows != tt.wantWindows {
				t.Errorf("Get(%q) = %q with %d windows, want %d windows", tt.key, b.Key(), b.Windows, tt.wantWindows)
			}
		})
	}
}

func TestLibraryImport(t *testing.T) {
	existing := func() *model.Baseline {
		b := learned("e2e/app", "1", "app1", 5, 0, steady)
		b.AddExec("/usr/bin/app")
		b.AddStartup(win(app1, 1, 0, map[string]uint64{"execve": 2}))
		return b
	}
	incoming := func() *model.Baseline {
		b := learned("e2e/app", "1", "app2", 3, 100, func(int) map[string]uint64 {
			return map[string]uint64{"read": 300, "openat": 4}
		})
		b.AddExec("/usr/bin/app")
		b.AddExec("/bin/sh")
		b.AddStartup(win(app1, 1, 0, map[string]uint64{"execve": 1, "mount": 1}))
		return b
	}
	other := func() *model.Baseline { return learned("e2e/other", "7", "o1", 2, 0, steady) }

	type want struct {
		windows    uint64
		containers map[string]uint64
		binaries   map[string]uint64
		startup    map[string]uint64
		syscalls   []string
	}
	tests := []struct {
		name  string
		merge bool
		in    []*model.Baseline
		want  map[string]want // by key, in the library and the store
	}{
		{
			name: "replace",
			in:   []*model.Baseline{incoming(), other()},
			want: map[string]want{
				app1Key: {windows: 3, containers: map[string]uint64{"app2": 3},
					binaries: map[string]uint64{"/usr/bin/app": 1, "/bin/sh": 1},
					startup:  map[string]uint64{"execve": 1, "mount": 1}, syscalls: []string{"openat", "read"}},
				"e2e/other:7": {windows: 2, containers: map[string]uint64{"o1": 2}, binaries: map[string]uint64{},
					startup: map[string]uint64{}, syscalls: []string{"futex", "read", "write"}},
			},
		},
		{
			name:  "merge",
			merge: true,
			in:    []*model.Baseline{incoming(), other()},
			want: map[string]want{
				app1Key: {windows: 8, containers: map[string]uint64{"app1": 5, "app2": 3},
					binaries: map[string]uint64{"/usr/bin/app": 2, "/bin/sh": 1},
					startup:  map[string]uint64{"execve": 3, "mount": 1}, syscalls: []string{"futex", "openat", "read", "write"}},
				"e2e/other:7": {windows: 2, containers: map[string]uint64{"o1": 2}, binaries: map[string]uint64{},
					startup: map[string]uint64{}, syscalls: []string{"futex", "read", "write"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, path := openStore(t)
			if err := st.PutBaselines(existing()); err != nil {
				t.Fatal(err)
			}
			lib := newLib(t, st, ModeLearn, false)
			in := tt.in
			if err := lib.Import(context.Background(), in, tt.merge); err != nil {
				t.Fatalf("Import(merge=%v): %v", tt.merge, err)
			}
			// The caller's baselines are not taken over by the library.
			in[0].Windows = 12345
			in[0].Binaries["/tmp/evil"] = 1

			check := func(where string, get func(key string) (*model.Baseline, error)) {
				for key, w := range tt.want {
					b, err := get(key)
					if err != nil {
						t.Fatalf("%s: %q: %v", where, key, err)
					}
					var names []string
					for name := range b.Syscalls {
						names = append(names, name)
					}
					slices.Sort(names)
					if b.Windows != w.windows || !reflect.DeepEqual(b.Containers, w.containers) ||
						!reflect.DeepEqual(b.Binaries, w.binaries) || !reflect.DeepEqual(b.Startup, w.startup) ||
						!slices.Equal(names, w.syscalls) {
						t.Errorf("%s: %q = windows %d containers %v binaries %v startup %v syscalls %v,\nwant windows %d containers %v binaries %v startup %v syscalls %v",
							where, key, b.Windows, b.Containers, b.Binaries, b.Startup, names,
							w.windows, w.containers, w.binaries, w.startup, w.syscalls)
					}
					if b.Total.N != b.Windows {
						t.Errorf("%s: %q total.n %d != windows %d", where, key, b.Total.N, b.Windows)
					}
				}
			}
			check("library", func(key string) (*model.Baseline, error) { return lib.Get(context.Background(), key) })
			check("store", st.Baseline)
			st2 := reopen(t, st, path)
			check("reopened store", st2.Baseline)
		})
	}

	t.Run("merged statistics equal the merge of the two", func(t *testing.T) {
		st, _ := openStore(t)
		if err := st.PutBaselines(existing()); err != nil {
			t.Fatal(err)
		}
		lib := newLib(t, st, ModeLearn, false)
		if err := lib.Import(context.Background(), []*model.Baseline{incoming()}, true); err != nil {
			t.Fatal(err)
		}
		got, err := lib.Get(context.Background(), app1Key)
		if err != nil {
			t.Fatal(err)
		}
		a, b := existing(), incoming()
		for _, name := range []string{"read", "write", "futex", "openat"} {
			want := a.Syscalls[name].Merge(b.Syscalls[name])
			if got.Syscalls[name] != want {
				t.Errorf("syscalls[%s] = %+v, want merged %+v", name, got.Syscalls[name], want)
			}
		}
		if want := a.Total.Merge(b.Total); got.Total != want {
			t.Errorf("total = %+v, want %+v", got.Total, want)
		}
		if got.Seconds != a.Seconds+b.Seconds {
			t.Errorf("seconds = %v, want %v", got.Seconds, a.Seconds+b.Seconds)
		}
		if !got.FirstSeen.Equal(a.FirstSeen) || !got.LastSeen.Equal(b.LastSeen) {
			t.Errorf("first/last seen = %v/%v, want %v/%v", got.FirstSeen, got.LastSeen, a.FirstSeen, b.LastSeen)
		}
		if len(got.Sample) != 8 {
			t.Errorf("sample holds %d windows, want all 8 (sample size 16)", len(got.Sample))
		}
	})

	t.Run("merge of a stable and a learning baseline is learning", func(t *testing.T) {
		st, _ := openStore(t)
		stable := existing()
		stable.Promote(stable.LastSeen)
		if err := st.PutBaselines(stable); err != nil {
			t.Fatal(err)
		}
		lib := newLib(t, st, ModeLearn, false)
		if err := lib.Import(context.Background(), []*model.Baseline{incoming()}, true); err != nil {
			t.Fatal(err)
		}
		got, err := st.Baseline(app1Key)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != model.StateLearning {
			t.Errorf("state = %q, want %q", got.State, model.StateLearning)
		}
	})

	failures := []struct {
		name  string
		merge bool
		fail  func(t *testing.T, st *store.Bolt, rec *recordingStore)
	}{
		{"replace, PutBaselines fails", false, func(_ *testing.T, _ *store.Bolt, rec *recordingStore) { rec.setFail(true, false) }},
		{"merge, PutBaselines fails", true, func(_ *testing.T, _ *store.Bolt, rec *recordingStore) { rec.setFail(true, false) }},
		{"replace, store closed", false, func(t *testing.T, st *store.Bolt, _ *recordingStore) {
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{"merge, store closed", true, func(t *testing.T, st *store.Bolt, _ *recordingStore) {
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range failures {
		t.Run("all or nothing: "+tt.name, func(t *testing.T) {
			st, path := openStore(t)
			if err := st.PutBaselines(existing()); err != nil {
				t.Fatal(err)
			}
			rec := &recordingStore{Store: st}
			lib := newLib(t, rec, ModeLearn, true)
			before := jsonOf(t, listAll(t, lib))
			statusBefore, _ := lib.Status(context.Background())
			tt.fail(t, st, rec)

			err := lib.Import(context.Background(), []*model.Baseline{incoming(), other()}, tt.merge)
			if err == nil {
				t.Fatal("Import succeeded on a failing store")
			}
			if after := jsonOf(t, listAll(t, lib)); after != before {
				t.Errorf("the cache changed after a failed import:\n%s\nwant\n%s", after, before)
			}
			if statusAfter, _ := lib.Status(context.Background()); !reflect.DeepEqual(statusAfter, statusBefore) {
				t.Errorf("status changed after a failed import")
			}
			// Nothing was written, and nothing is left dirty for a later Flush.
			rec.setFail(false, false)
			rec.takeBatches()
			if err := lib.Flush(); err != nil {
				t.Errorf("Flush after a failed import: %v", err)
			}
			if got := rec.takeBatches(); got != nil {
				t.Errorf("Flush after a failed import wrote %q, want nothing", got)
			}
			if got := storedKeysWindows(t, reopenIfClosed(t, st, path)); !reflect.DeepEqual(got, map[string]uint64{app1Key: 5}) {
				t.Errorf("store after a failed import = %v, want only %s with 5 windows", got, app1Key)
			}
		})
	}
}

// reopenIfClosed returns st, or a reopened store when st was closed.
func reopenIfClosed(t *testing.T, st *store.Bolt, path string) *store.Bolt {
	t.Helper()
	if _, err := st.Baselines(); err == nil {
		return st
	}
	return reopen(t, st, path)
}

func TestLibraryPromote(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		dirty   int // windows learned but not flushed before the promotion
		wantErr error
	}{
		{name: "learning baseline", key: app1Key},
		{name: "with unflushed windows", key: app1Key, dirty: 3},
		{name: "missing", key: "e2e/none:1", wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, path := openStore(t)
			if err := st.PutBaselines(learned("e2e/app", "1", "app1", 4, 0, steady)); err != nil {
				t.Fatal(err)
			}
			lib := newLib(t, st, ModeLearn, false)
			for i := range tt.dirty {
				lib.update(app1, func(b *model.Baseline) bool { b.AddWindow(win(app1, 1, 50+i, steady(i)), 16); return true })
			}
			err := lib.Promote(context.Background(), tt.key)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Promote(%q) error = %v, want %v", tt.key, err, tt.wantErr)
				}
				if got, _ := lib.Get(context.Background(), app1Key); got.State != model.StateLearning {
					t.Errorf("a failed promotion changed another baseline")
				}
				return
			}
			if err != nil {
				t.Fatalf("Promote(%q): %v", tt.key, err)
			}
			wantWindows := uint64(4 + tt.dirty)
			if got, _ := lib.Get(context.Background(), tt.key); got.State != model.StateStable || got.Windows != wantWindows {
				t.Errorf("library: state %q windows %d, want stable with %d", got.State, got.Windows, wantWindows)
			}
			// Persisted: a restarted agent sees it stable, and it stays stable.
			st2 := reopen(t, st, path)
			got, err := st2.Baseline(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != model.StateStable || got.Windows != wantWindows {
				t.Errorf("store after reopen: state %q windows %d, want stable with %d", got.State, got.Windows, wantWindows)
			}
			lib2 := newLib(t, st2, ModeAuto, true)
			status, _ := lib2.Status(context.Background())
			if len(status.Images) != 1 || status.Images[0].State != model.StateStable {
				t.Errorf("status after restart = %+v, want one stable image", status.Images)
			}
		})
	}

	t.Run("store failure leaves the cache unchanged", func(t *testing.T) {
		st, _ := openStore(t)
		if err := st.PutBaselines(learned("e2e/app", "1", "app1", 4, 0, steady)); err != nil {
			t.Fatal(err)
		}
		rec := &recordingStore{Store: st}
		lib := newLib(t, rec, ModeLearn, false)
		rec.setFail(true, false)
		if err := lib.Promote(context.Background(), app1Key); !errors.Is(err, errInjected) {
			t.Fatalf("Promote error = %v, want %v", err, errInjected)
		}
		if got, _ := lib.Get(context.Background(), app1Key); got.State != model.StateLearning {
			t.Errorf("state after a failed promotion = %q, want %q", got.State, model.StateLearning)
		}
	})
}

func TestLibraryReset(t *testing.T) {
	tests := []struct {
		name    string
		stored  bool // the baseline is in the store
		cached  bool // the baseline was learned in memory (dirty)
		wantErr error
	}{
		{name: "stored", stored: true},
		{name: "stored and dirty", stored: true, cached: true},
		{name: "learned but never flushed", cached: true},
		{name: "missing", wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, path := openStore(t)
			keep := learned("e2e/other", "7", "o1", 2, 0, steady)
			if err := st.PutBaselines(keep); err != nil {
				t.Fatal(err)
			}
			if tt.stored {
				if err := st.PutBaselines(learned("e2e/app", "1", "app1", 6, 0, steady)); err != nil {
					t.Fatal(err)
				}
			}
			lib := newLib(t, st, ModeLearn, false)
			if tt.cached {
				lib.update(app1, func(b *model.Baseline) bool { b.AddWindow(win(app1, 1, 60, steady(0)), 16); return true })
			}
			err := lib.Reset(context.Background(), app1Key)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Reset error = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Reset: %v", err)
			}
			if _, err := lib.Get(context.Background(), app1Key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get after Reset error = %v, want ErrNotFound", err)
			}
			// A later Flush must not bring it back.
			if err := lib.Flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Baseline(app1Key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("store after Reset error = %v, want ErrNotFound", err)
			}
			if got := storedKeysWindows(t, reopen(t, st, path)); !reflect.DeepEqual(got, map[string]uint64{"e2e/other:7": 2}) {
				t.Errorf("store after Reset and reopen = %v, want only the other image", got)
			}
		})
	}

	t.Run("a later learned window starts a fresh baseline", func(t *testing.T) {
		st, path := openStore(t)
		old := learned("e2e/app", "1", "app1", 20, 0, func(int) map[string]uint64 {
			return map[string]uint64{"read": 5, "ptrace": 1}
		})
		old.AddExec("/usr/bin/old")
		old.Promote(old.LastSeen)
		if err := st.PutBaselines(old); err != nil {
			t.Fatal(err)
		}
		lib := newLib(t, st, ModeAuto, true)
		learner := NewLearner(lib, ModeAuto, LearnerConfig{LearnConfig: testLearnConfig()}, NewTracker(), discard())
		if res, err := learner.LearnWindows([]model.Window{win(app1, 1, 100, steady(0))}); err != nil || res.Skipped != 1 {
			t.Fatalf("before reset: %+v, %v; want the stable image skipped", res, err)
		}
		if err := lib.Reset(context.Background(), app1Key); err != nil {
			t.Fatal(err)
		}
		res, err := learner.LearnWindows([]model.Window{win(app1, 1, 101, map[string]uint64{"read": 7})})
		if err != nil {
			t.Fatal(err)
		}
		if res.Learned != 1 {
			t.Fatalf("after reset: %+v, want 1 learned", res)
		}
		got, err := reopen(t, st, path).Baseline(app1Key)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != model.StateLearning || got.Windows != 1 || got.Syscalls["ptrace"].N != 0 ||
			len(got.Binaries) != 0 || got.Syscalls["read"].Mean != 7 {
			t.Errorf("baseline after reset = state %q windows %d syscalls %v binaries %v, want a fresh learning one with 1 window of read",
				got.State, got.Windows, got.Syscalls, got.Binaries)
		}
	})

	t.Run("store failure leaves the cache unchanged", func(t *testing.T) {
		st, _ := openStore(t)
		if err := st.PutBaselines(learned("e2e/app", "1", "app1", 4, 0, steady)); err != nil {
			t.Fatal(err)
		}
		rec := &recordingStore{Store: st}
		lib := newLib(t, rec, ModeLearn, false)
		rec.setFail(false, true)
		if err := lib.Reset(context.Background(), app1Key); !errors.Is(err, errInjected) {
			t.Fatalf("Reset error = %v, want %v", err, errInjected)
		}
		if _, err := lib.Get(context.Background(), app1Key); err != nil {
			t.Errorf("baseline gone from the cache after a failed reset: %v", err)
		}
	})
}

func TestLibraryStatus(t *testing.T) {
	cfg := testLearnConfig()
	stable := learned("e2e/b", "1", "b1", 12, 0, steady)
	stable.Promote(stable.LastSeen)
	stored := []*model.Baseline{
		learned("e2e/c", "1", "c1", 7, 0, steady),
		stable,
		learned("e2e/a", "3", "a1", 2, 0, steady),
	}
	tests := []struct {
		name     string
		stored   []*model.Baseline
		mode     Mode
		running  bool
		wantMode Mode
	}{
		{name: "agent, empty store", mode: ModeAuto, running: true, wantMode: ModeAuto},
		{name: "agent", stored: stored, mode: ModeLearn, running: true, wantMode: ModeLearn},
		{name: "cli without agent", stored: stored, mode: ModeLearn, running: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := openStore(t)
			if err := st.PutBaselines(tt.stored...); err != nil {
				t.Fatal(err)
			}
			lib, err := NewLibrary(st, LearnerConfig{LearnConfig: cfg}, tt.mode, tt.running)
			if err != nil {
				t.Fatal(err)
			}
			got, err := lib.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got.AgentRunning != tt.running || got.Mode != string(tt.wantMode) {
				t.Errorf("agent running %v mode %q, want %v %q", got.AgentRunning, got.Mode, tt.running, tt.wantMode)
			}
			if got.Images == nil {
				t.Fatal("Images is nil; want an empty list so JSON shows []")
			}
			var wantImages []control.ImageStatus
			for _, b := range tt.stored {
				wantImages = append(wantImages, control.ImageStatus{Image: b.Key(), State: b.State, Progress: b.Progress(cfg), Updated: b.Updated})
			}
			slices.SortFunc(wantImages, func(a, b control.ImageStatus) int { return strings.Compare(a.Image, b.Image) })
			if len(got.Images) != len(wantImages) {
				t.Fatalf("%d images, want %d", len(got.Images), len(wantImages))
			}
			for i, w := range wantImages {
				g := got.Images[i]
				if g.Image != w.Image || g.State != w.State || g.Progress != w.Progress || !g.Updated.Equal(w.Updated) {
					t.Errorf("images[%d] = %+v, want %+v", i, g, w)
				}
			}
			if len(tt.stored) > 0 {
				p := got.Images[2].Progress // e2e/c:1, 7 windows of 10
				if p.Windows != 7 || p.MinWindows != 10 || p.Containers != 1 || p.MinContainers != 1 || p.StableWindows != 5 {
					t.Errorf("progress of e2e/c:1 = %+v, want windows 7/10, containers 1/1, stable windows 5", p)
				}
			}
		})
	}
}

func TestLibraryFlush(t *testing.T) {
	images := []model.Container{
		appContainer("a1", "e2e/a", "1"),
		appContainer("b1", "e2e/b", "1"),
		appContainer("c1", "e2e/c", "1"),
	}
	tests := []struct {
		name  string
		touch []int // images changed since the last flush, by index; repeats allowed
		want  [][]string
	}{
		{name: "nothing changed", want: nil},
		{name: "one image", touch: []int{1}, want: [][]string{{"e2e/b:1"}}},
		{name: "two images, one twice", touch: []int{0, 2, 0}, want: [][]string{{"e2e/a:1", "e2e/c:1"}}},
		{name: "all images", touch: []int{2, 1, 0}, want: [][]string{{"e2e/a:1", "e2e/b:1", "e2e/c:1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, path := openStore(t)
			var seed []*model.Baseline
			for _, c := range images {
				seed = append(seed, learned(c.Image, c.ImageTag, c.ID, 3, 0, steady))
			}
			if err := st.PutBaselines(seed...); err != nil {
				t.Fatal(err)
			}
			rec := &recordingStore{Store: st}
			lib := newLib(t, rec, ModeLearn, true)
			wantWindows := map[string]uint64{"e2e/a:1": 3, "e2e/b:1": 3, "e2e/c:1": 3}
			for i, idx := range tt.touch {
				c := images[idx]
				lib.update(c, func(b *model.Baseline) bool { b.AddWindow(win(c, 1, 10+i, steady(i)), 16); return true })
				wantWindows[c.ImageRef()]++
			}
			if err := lib.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if got := rec.takeBatches(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PutBaselines batches = %q, want %q", got, tt.want)
			}
			if err := lib.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := rec.takeBatches(); got != nil {
				t.Errorf("second Flush wrote %q, want nothing", got)
			}
			if got := storedKeysWindows(t, reopen(t, st, path)); !reflect.DeepEqual(got, wantWindows) {
				t.Errorf("stored windows = %v, want %v", got, wantWindows)
			}
		})
	}

	t.Run("a failed flush keeps the changes for the next one", func(t *testing.T) {
		st, _ := openStore(t)
		rec := &recordingStore{Store: st}
		lib := newLib(t, rec, ModeLearn, true)
		c := images[0]
		lib.update(c, func(b *model.Baseline) bool { b.AddWindow(win(c, 1, 0, steady(0)), 16); return true })
		rec.setFail(true, false)
		if err := lib.Flush(); !errors.Is(err, errInjected) {
			t.Fatalf("Flush error = %v, want %v", err, errInjected)
		}
		rec.setFail(false, false)
		if err := lib.Flush(); err != nil {
			t.Fatal(err)
		}
		if got, want := rec.takeBatches(), [][]string{{"e2e/a:1"}, {"e2e/a:1"}}; !reflect.DeepEqual(got, want) {
			t.Errorf("batches = %q, want %q", got, want)
		}
		if got := storedKeysWindows(t, st); got["e2e/a:1"] != 1 {
			t.Errorf("stored = %v, want e2e/a:1 with 1 window", got)
		}
	})

	t.Run("import and promote clear the dirty mark", func(t *testing.T) {
		st, _ := openStore(t)
		rec := &recordingStore{Store: st}
		lib := newLib(t, rec, ModeLearn, true)
		for _, c := range images[:2] {
			lib.update(c, func(b *model.Baseline) bool { b.AddWindow(win(c, 1, 0, steady(0)), 16); return true })
		}
		if err := lib.Promote(context.Background(), "e2e/a:1"); err != nil {
			t.Fatal(err)
		}
		if err := lib.Import(context.Background(), []*model.Baseline{learned("e2e/b", "1", "b9", 2, 0, steady)}, false); err != nil {
			t.Fatal(err)
		}
		rec.takeBatches()
		if err := lib.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := rec.takeBatches(); got != nil {
			t.Errorf("Flush after promote and import wrote %q, want nothing", got)
		}
	})
}

// TestLibraryConcurrentUse runs the agent's learning next to CLI calls; run it
// with -race.
func TestLibraryConcurrentUse(t *testing.T) {
	st, _ := openStore(t)
	lib := newLib(t, st, ModeLearn, true)
	learner := NewLearner(lib, ModeLearn, LearnerConfig{LearnConfig: testLearnConfig()}, NewTracker(), discard())
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 50 {
			if _, err := learner.LearnWindows([]model.Window{win(app1, 1, i, steady(i))}); err != nil {
				t.Errorf("LearnWindows: %v", err)
				return
			}
			learner.ObserveExec(model.Event{Kind: model.EventExec, CgroupID: 1, Container: app1, Time: t0, Path: "/bin/app"})
		}
	})
	wg.Go(func() {
		for range 50 {
			bs, err := lib.List(ctx)
			if err != nil {
				t.Errorf("List: %v", err)
				return
			}
			for _, b := range bs {
				b.Syscalls["mutated"] = model.Moments{}
			}
			if _, err := lib.Status(ctx); err != nil {
				t.Errorf("Status: %v", err)
			}
			if b, err := lib.Get(ctx, app1Key); err == nil {
				b.Containers["x"] = 1
			}
		}
	})
	wg.Go(func() {
		for i := range 10 {
			if err := lib.Import(ctx, []*model.Baseline{learned("e2e/other", "1", "o", 2, i, steady)}, true); err != nil {
				t.Errorf("Import: %v", err)
			}
		}
	})
	wg.Wait()
	b, err := st.Baseline(app1Key)
	if err != nil {
		t.Fatal(err)
	}
	if b.Windows != 50 {
		t.Errorf("stored windows = %d, want 50", b.Windows)
	}
	if _, ok := b.Syscalls["mutated"]; ok {
		t.Error("a mutation of a listed copy reached the store")
	}
	if o, err := st.Baseline("e2e/other:1"); err != nil || o.Windows != 20 {
		t.Errorf("e2e/other:1 = %v, %v; want 20 windows from 10 merged imports", o, err)
	}
}
