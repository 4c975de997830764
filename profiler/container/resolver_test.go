package container

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// fakePaths is a PathFinder over a fixed table; unknown ids are gone cgroups.
type fakePaths struct {
	paths map[uint64]string
	errs  map[uint64]error // errors other than "gone", by id

	mu    sync.Mutex
	calls int
}

func (f *fakePaths) PathOf(id uint64) (string, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if err, ok := f.errs[id]; ok {
		return "", err
	}
	p, ok := f.paths[id]
	if !ok {
		return "", fmt.Errorf("cgroup id %d: %w", id, ErrCgroupGone)
	}
	return p, nil
}

func (f *fakePaths) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fakeInspector records the ids it is asked about and answers from a table, or
// fails with err.
type fakeInspector struct {
	mu    sync.Mutex
	md    map[string]Metadata
	err   error
	calls []string
}

func (f *fakeInspector) Inspect(_ context.Context, id string) (Metadata, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, id)
	if f.err != nil {
		return Metadata{}, f.err
	}
	md, ok := f.md[id]
	if !ok {
		return Metadata{}, ErrNotFound
	}
	return md, nil
}

func (f *fakeInspector) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeInspector) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// fakeClock is an injectable Resolver.now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)}
}

var busyboxMD = Metadata{
	Name: "cw1", Image: "cagewatch/busybox", ImageTag: "1", ImageID: "sha256:" + imageID,
}

func TestResolverResolve(t *testing.T) {
	dockerPath := "/system.slice/docker-" + ctrID + ".scope"
	kubePath := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSystemd + ".slice/cri-containerd-" + ctrID2 + ".scope"
	podmanPath := "/machine.slice/libpod-" + ctrID + ".scope/container"
	tests := []struct {
		name       string
		paths      map[uint64]string
		pathErrs   map[uint64]error
		static     []StaticRule
		docker     *fakeInspector
		containerd *fakeInspector
		id         uint64
		want       model.Container
		wantHost   bool
		wantCached int
		wantDocker []string // ids the docker inspector was asked about
	}{
		{
			name:   "static rule on a plain cgroup",
			paths:  map[uint64]string{10: "/cagewatch-e2e/web"},
			static: []StaticRule{{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"}},
			docker: &fakeInspector{},
			id:     10,
			want: model.Container{
				ID: "web", Name: "web", Runtime: model.RuntimeStatic,
				Image: "e2e/app", ImageTag: "1", CgroupPath: "/cagewatch-e2e/web",
			},
			wantCached: 1,
		},
		{
			name:   "static rule wins over a docker classification",
			paths:  map[uint64]string{10: "/docker/" + ctrID},
			static: []StaticRule{{Cgroup: "/docker/*", Image: "registry:5000/team/app:2.1"}},
			docker: &fakeInspector{md: map[string]Metadata{ctrID: busyboxMD}},
			id:     10,
			want: model.Container{
				ID: ctrID, Name: ctrID, Runtime: model.RuntimeStatic,
				Image: "registry:5000/team/app", ImageTag: "2.1", CgroupPath: "/docker/" + ctrID,
			},
			wantCached: 1,
			wantDocker: nil,
		},
		{
			name:   "static rule image without tag",
			paths:  map[uint64]string{10: "/batch/job-7"},
			static: []StaticRule{{Cgroup: "/batch/*", Image: "batch/job"}},
			id:     10,
			want: model.Container{
				ID: "job-7", Name: "job-7", Runtime: model.RuntimeStatic,
				Image: "batch/job", ImageTag: "", CgroupPath: "/batch/job-7",
			},
			wantCached: 1,
		},
		{
			name:   "docker path merges inspector metadata",
			paths:  map[uint64]string{20: dockerPath},
			docker: &fakeInspector{md: map[string]Metadata{ctrID: busyboxMD}},
			id:     20,
			want: model.Container{
				ID: ctrID, Name: "cw1", Runtime: model.RuntimeDocker,
				Image: "cagewatch/busybox", ImageTag: "1", ImageID: "sha256:" + imageID,
				CgroupPath: dockerPath,
			},
			wantCached: 1,
			wantDocker: []string{ctrID},
		},
		{
			name:   "containerd path merges pod metadata, the image named as Docker names it",
			paths:  map[uint64]string{21: kubePath},
			docker: &fakeInspector{},
			containerd: &fakeInspector{md: map[string]Metadata{ctrID2: {
				Name: "web", Image: "docker.io/library/nginx", ImageTag: "1.27", ImageID: "sha256:" + imageID,
				PodName: "web-7d9f8c6b5-x2k4q", PodNS: "prod", PodLabels: map[string]string{"app.kubernetes.io/name": "web"},
			}}},
			id: 21,
			want: model.Container{
				ID: ctrID2, Name: "web", Runtime: model.RuntimeContainerd,
				Image: "nginx", ImageTag: "1.27", ImageID: "sha256:" + imageID,
				CgroupPath: kubePath, PodName: "web-7d9f8c6b5-x2k4q", Namespace: "prod",
				PodLabels: map[string]string{"app.kubernetes.io/name": "web"},
			},
			wantCached: 1,
		},
		{
			name:       "host path",
			paths:      map[uint64]string{30: "/system.slice/sshd.service"},
			static:     []StaticRule{{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"}},
			docker:     &fakeInspector{},
			id:         30,
			want:       model.Container{Runtime: model.RuntimeHost, CgroupPath: "/system.slice/sshd.service"},
			wantHost:   true,
			wantCached: 1,
		},
		{
			name:       "root cgroup is host",
			paths:      map[uint64]string{1: "/"},
			id:         1,
			want:       model.Container{Runtime: model.RuntimeHost, CgroupPath: "/"},
			wantHost:   true,
			wantCached: 1,
		},
		{
			name:       "gone cgroup is unknown and not cached",
			paths:      map[uint64]string{},
			docker:     &fakeInspector{},
			id:         40,
			want:       model.Container{Runtime: model.RuntimeUnknown},
			wantHost:   false,
			wantCached: 0,
		},
		{
			name:       "path lookup failure is unknown and not cached",
			pathErrs:   map[uint64]error{41: fmt.Errorf("resolving cgroup id 41: %w", syscall.EPERM)},
			docker:     &fakeInspector{},
			id:         41,
			want:       model.Container{Runtime: model.RuntimeUnknown},
			wantHost:   false,
			wantCached: 0,
		},
		{
			name:       "inspector error keeps the id without an image",
			paths:      map[uint64]string{50: dockerPath},
			docker:     &fakeInspector{err: errors.New("docker API: connection refused")},
			id:         50,
			want:       model.Container{ID: ctrID, Runtime: model.RuntimeDocker, CgroupPath: dockerPath},
			wantCached: 1,
			wantDocker: []string{ctrID},
		},
		{
			name:       "container unknown to its runtime keeps the id",
			paths:      map[uint64]string{51: dockerPath},
			docker:     &fakeInspector{md: map[string]Metadata{}},
			id:         51,
			want:       model.Container{ID: ctrID, Runtime: model.RuntimeDocker, CgroupPath: dockerPath},
			wantCached: 1,
			wantDocker: []string{ctrID},
		},
		{
			name:       "runtime without an inspector yields the id only",
			paths:      map[uint64]string{60: podmanPath},
			docker:     &fakeInspector{},
			id:         60,
			want:       model.Container{ID: ctrID, Runtime: model.RuntimePodman, CgroupPath: podmanPath},
			wantCached: 1,
		},
		{
			name:       "bare id unknown to docker is asked of containerd",
			paths:      map[uint64]string{12: "/kubepods/besteffort/pod" + podUID + "/" + ctrID},
			docker:     &fakeInspector{md: map[string]Metadata{}},
			containerd: &fakeInspector{md: map[string]Metadata{}},
			id:         12,
			want: model.Container{
				ID: ctrID, Runtime: model.RuntimeContainerd, CgroupPath: "/kubepods/besteffort/pod" + podUID + "/" + ctrID,
			},
			wantCached: 1,
			wantDocker: []string{ctrID},
		},
		{
			name:       "bare id under kubepods owned by docker (cri-dockerd)",
			paths:      map[uint64]string{13: "/kubepods/besteffort/pod" + podUID + "/" + ctrID},
			docker:     &fakeInspector{md: map[string]Metadata{ctrID: busyboxMD}},
			containerd: &fakeInspector{md: map[string]Metadata{}},
			id:         13,
			want: model.Container{
				ID: ctrID, Name: busyboxMD.Name, Runtime: model.RuntimeDocker, Image: busyboxMD.Image, ImageTag: busyboxMD.ImageTag,
				ImageID: busyboxMD.ImageID, CgroupPath: "/kubepods/besteffort/pod" + podUID + "/" + ctrID,
			},
			wantCached: 1,
			wantDocker: []string{ctrID},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inspectors := map[model.Runtime]Inspector{}
			if tt.docker != nil {
				inspectors[model.RuntimeDocker] = tt.docker
			}
			if tt.containerd != nil {
				inspectors[model.RuntimeContainerd] = tt.containerd
			}
			r := NewResolver(&fakePaths{paths: tt.paths, errs: tt.pathErrs}, tt.static, inspectors, model.KeyByImage, nil)
			got := r.Resolve(context.Background(), tt.id)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve(%d) = %+v\nwant         %+v", tt.id, got, tt.want)
			}
			if got.IsHost() != tt.wantHost {
				t.Errorf("Resolve(%d).IsHost() = %v, want %v", tt.id, got.IsHost(), tt.wantHost)
			}
			if n := r.Cached(); n != tt.wantCached {
				t.Errorf("Cached() = %d, want %d", n, tt.wantCached)
			}
			if tt.docker != nil {
				tt.docker.mu.Lock()
				calls := tt.docker.calls
				tt.docker.mu.Unlock()
				if fmt.Sprint(calls) != fmt.Sprint(tt.wantDocker) {
					t.Errorf("docker inspector calls = %q, want %q", calls, tt.wantDocker)
				}
			}
		})
	}
}

func TestResolverCaching(t *testing.T) {
	dockerPath := "/docker/" + ctrID
	full := model.Container{
		ID: ctrID, Name: "cw1", Runtime: model.RuntimeDocker,
		Image: "cagewatch/busybox", ImageTag: "1", ImageID: "sha256:" + imageID, CgroupPath: dockerPath,
	}
	partial := model.Container{ID: ctrID, Runtime: model.RuntimeDocker, CgroupPath: dockerPath}

	// step is one Resolve after advancing the clock, and what it must have cost.
	type step struct {
		advance   time.Duration
		down      bool // the runtime fails to answer during this step
		want      model.Container
		wantPaths int // cumulative PathOf calls
		wantCalls int // cumulative Inspect calls
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "complete answer cached for good",
			steps: []step{
				{want: full, wantPaths: 1, wantCalls: 1},
				{want: full, wantPaths: 1, wantCalls: 1},
				{advance: retryIncomplete, want: full, wantPaths: 1, wantCalls: 1},
				{advance: 24 * time.Hour, want: full, wantPaths: 1, wantCalls: 1},
			},
		},
		{
			name: "incomplete answer retried only after retryIncomplete",
			steps: []step{
				{down: true, want: partial, wantPaths: 1, wantCalls: 1},
				{want: partial, wantPaths: 1, wantCalls: 1},
				{advance: retryIncomplete - time.Nanosecond, want: partial, wantPaths: 1, wantCalls: 1},
				{advance: time.Nanosecond, want: full, wantPaths: 2, wantCalls: 2},
				{advance: retryIncomplete, want: full, wantPaths: 2, wantCalls: 2},
			},
		},
		{
			name: "failed retry waits a full retryIncomplete again",
			steps: []step{
				{down: true, want: partial, wantPaths: 1, wantCalls: 1},
				{advance: retryIncomplete, down: true, want: partial, wantPaths: 2, wantCalls: 2},
				{advance: retryIncomplete - time.Second, want: partial, wantPaths: 2, wantCalls: 2},
				{advance: time.Second, want: full, wantPaths: 3, wantCalls: 3},
				{want: full, wantPaths: 3, wantCalls: 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths := &fakePaths{paths: map[uint64]string{7: dockerPath}}
			ins := &fakeInspector{md: map[string]Metadata{ctrID: busyboxMD}}
			clk := newFakeClock()
			r := NewResolver(paths, nil, map[model.Runtime]Inspector{model.RuntimeDocker: ins}, model.KeyByImage, nil)
			r.now = clk.now
			for i, s := range tt.steps {
				clk.advance(s.advance)
				if s.down {
					ins.setErr(errors.New("docker API: connection refused"))
				} else {
					ins.setErr(nil)
				}
				got := r.Resolve(context.Background(), 7)
				if !reflect.DeepEqual(got, s.want) {
					t.Errorf("step %d: Resolve = %+v\nwant           %+v", i, got, s.want)
				}
				if n := paths.count(); n != s.wantPaths {
					t.Errorf("step %d: PathOf calls = %d, want %d", i, n, s.wantPaths)
				}
				if n := ins.count(); n != s.wantCalls {
					t.Errorf("step %d: Inspect calls = %d, want %d", i, n, s.wantCalls)
				}
				if n := r.Cached(); n != 1 {
					t.Errorf("step %d: Cached() = %d, want 1", i, n)
				}
			}
		})
	}
}

func TestResolverUncachedResults(t *testing.T) {
	tests := []struct {
		name        string
		paths       *fakePaths
		id          uint64
		wantRuntime model.Runtime
		wantCall    int // PathOf calls after three Resolves
		wantCached  int
	}{
		{
			name:        "gone cgroup asked every time",
			paths:       &fakePaths{},
			id:          9,
			wantRuntime: model.RuntimeUnknown,
			wantCall:    3,
			wantCached:  0,
		},
		{
			name:        "failed path lookup asked every time",
			paths:       &fakePaths{errs: map[uint64]error{9: syscall.EACCES}},
			id:          9,
			wantRuntime: model.RuntimeUnknown,
			wantCall:    3,
			wantCached:  0,
		},
		{
			name:        "host cgroup asked once",
			paths:       &fakePaths{paths: map[uint64]string{9: "/system.slice/sshd.service"}},
			id:          9,
			wantRuntime: model.RuntimeHost,
			wantCall:    1,
			wantCached:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResolver(tt.paths, nil, nil, model.KeyByImage, nil)
			for range 3 {
				if c := r.Resolve(context.Background(), tt.id); c.Runtime != tt.wantRuntime {
					t.Fatalf("Resolve(%d) = %+v, want runtime %q", tt.id, c, tt.wantRuntime)
				}
			}
			if n := r.Cached(); n != tt.wantCached {
				t.Errorf("Cached() = %d, want %d", n, tt.wantCached)
			}
			if n := tt.paths.count(); n != tt.wantCall {
				t.Errorf("PathOf calls = %d, want %d", n, tt.wantCall)
			}
		})
	}
}

func TestResolverForget(t *testing.T) {
	paths := &fakePaths{paths: map[uint64]string{
		1: "/docker/" + ctrID,
		2: "/docker/" + ctrID2,
		3: "/system.slice/sshd.service",
	}}
	ins := &fakeInspector{md: map[string]Metadata{ctrID: busyboxMD, ctrID2: {Name: "cw2", Image: "busybox", ImageTag: "latest"}}}
	r := NewResolver(paths, nil, map[model.Runtime]Inspector{model.RuntimeDocker: ins}, model.KeyByImage, nil)
	ctx := context.Background()

	for _, id := range []uint64{1, 2, 3} {
		r.Resolve(ctx, id)
	}
	if n := r.Cached(); n != 3 {
		t.Fatalf("Cached() = %d after three cgroups, want 3", n)
	}
	if n := ins.count(); n != 2 {
		t.Fatalf("Inspect calls = %d, want 2", n)
	}

	steps := []struct {
		name       string
		forget     []uint64
		resolve    uint64
		wantCached int // after forgetting
		wantCalls  int // cumulative Inspect calls after resolving again
		wantName   string
	}{
		{name: "forget drops one entry", forget: []uint64{1}, resolve: 1, wantCached: 2, wantCalls: 3, wantName: "cw1"},
		{name: "forget unknown id is a no-op", forget: []uint64{99}, resolve: 2, wantCached: 3, wantCalls: 3, wantName: "cw2"},
		{name: "forget twice is a no-op", forget: []uint64{2, 2}, resolve: 2, wantCached: 2, wantCalls: 4, wantName: "cw2"},
		{name: "forget host entry", forget: []uint64{3}, resolve: 1, wantCached: 2, wantCalls: 4, wantName: "cw1"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			for _, id := range s.forget {
				r.Forget(id)
			}
			if n := r.Cached(); n != s.wantCached {
				t.Errorf("Cached() after Forget(%v) = %d, want %d", s.forget, n, s.wantCached)
			}
			got := r.Resolve(ctx, s.resolve)
			if got.Name != s.wantName {
				t.Errorf("Resolve(%d).Name = %q, want %q", s.resolve, got.Name, s.wantName)
			}
			if n := ins.count(); n != s.wantCalls {
				t.Errorf("Inspect calls = %d, want %d", n, s.wantCalls)
			}
		})
	}
}

func TestResolverConcurrent(t *testing.T) {
	paths := &fakePaths{paths: map[uint64]string{
		1: "/docker/" + ctrID,
		2: "/system.slice/docker-" + ctrID2 + ".scope",
		3: "/system.slice/sshd.service",
	}}
	ins := &fakeInspector{md: map[string]Metadata{ctrID: busyboxMD, ctrID2: {Name: "cw2"}}}
	r := NewResolver(paths, nil, map[model.Runtime]Inspector{model.RuntimeDocker: ins}, model.KeyByImage, nil)
	want := map[uint64]string{1: "cw1", 2: "cw2", 3: ""}

	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := uint64((g+i)%3 + 1)
				if got := r.Resolve(context.Background(), id).Name; got != want[id] {
					errs <- fmt.Sprintf("Resolve(%d).Name = %q, want %q", id, got, want[id])
					return
				}
				if i%50 == 0 {
					r.Forget(id)
				}
				_ = r.Cached()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := r.Cached(); n > 3 {
		t.Errorf("Cached() = %d, want at most 3", n)
	}
}

// TestResolverProfileKey: the resolver sets each container's profile key as
// learning.key says, from what its runtime reported.
func TestResolverProfileKey(t *testing.T) {
	paths := &fakePaths{paths: map[uint64]string{1: "/docker/" + ctrID, 2: "/docker/" + ctrID2, 3: "/system.slice/sshd.service"}}
	ins := &fakeInspector{md: map[string]Metadata{
		ctrID:  {Name: "main", Image: "docker.io/shop/app", ImageTag: "1", PodName: "web-7d9f8c6b5-x2k4q", PodNS: "shop", PodOwner: "web"},
		ctrID2: {Name: "cw2", Image: "busybox", ImageTag: "latest", Entrypoint: "sh"},
	}}
	for _, tt := range []struct {
		keyBy model.KeyBy
		want  map[uint64]string
	}{
		{keyBy: model.KeyByImage, want: map[uint64]string{1: "shop/app:1", 2: "busybox:latest", 3: ""}},
		{keyBy: model.KeyByWorkload, want: map[uint64]string{1: "k8s:shop/web/main", 2: "busybox:latest#sh", 3: ""}},
	} {
		t.Run(string(tt.keyBy), func(t *testing.T) {
			r := NewResolver(paths, nil, map[model.Runtime]Inspector{model.RuntimeDocker: ins}, tt.keyBy, nil)
			for id, want := range tt.want {
				c := r.Resolve(context.Background(), id)
				got := ""
				if c.HasBaseline() {
					got = c.ProfileKey()
				}
				if got != want {
					t.Errorf("cgroup %d: profile key %q, want %q", id, got, want)
				}
			}
		})
	}
}
