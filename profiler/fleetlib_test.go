package profiler

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
)

// fakeFleet stands in for profiler/fleet's client, whose etcd tests live there.
type fakeFleet struct {
	mu      sync.Mutex
	views   map[string]*model.Baseline
	pending map[string]*model.Baseline
	priors  map[string]*model.Baseline
	trusted map[string]bool
}

func newFakeFleet() *fakeFleet {
	return &fakeFleet{views: map[string]*model.Baseline{}, pending: map[string]*model.Baseline{},
		priors: map[string]*model.Baseline{}, trusted: map[string]bool{}}
}

func (f *fakeFleet) OfferPrior(b *model.Baseline, trusted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.priors[b.Key()], f.trusted[b.Key()] = b.Clone(), trusted
}

func (f *fakeFleet) View(key string) (*model.Baseline, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.views[key]
	return b, ok
}

func (f *fakeFleet) Update(c model.Container, fn func(*model.Baseline)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.pending[c.ProfileKey()]
	if b == nil {
		b = model.NewProfileBaseline(c)
		f.pending[c.ProfileKey()] = b
	}
	fn(b)
}

// TestLearnerSharesWithFleet: every learning change the local baseline gets,
// windows, start-up syscalls and binaries, also goes to the fleet's delta.
func TestLearnerSharesWithFleet(t *testing.T) {
	cfg := learnerConfig(2 * time.Second)
	l, lib, _, _ := newLearner(t, ModeLearn, cfg, nil) // learns whatever the state
	f := newFakeFleet()
	lib.SetFleet(f)
	c := appContainer("c1", "app", "1")
	learnEach(t, l, windows(c, 7, 0, 12))
	l.ObserveExec(model.Event{Kind: model.EventExec, CgroupID: 7, Container: c, Path: "/bin/app", Time: t0.Add(3 * time.Second)})
	local := mustGet(t, lib, "app:1")
	shared := f.pending["app:1"]
	if shared == nil {
		t.Fatal("nothing shared with the fleet")
	}
	if shared.Windows != local.Windows || shared.Windows == 0 {
		t.Errorf("fleet got %d windows, the store %d", shared.Windows, local.Windows)
	}
	if len(local.Startup) == 0 || !maps.Equal(shared.Startup, local.Startup) {
		t.Errorf("start-up syscalls: fleet %v, store %v", shared.Startup, local.Startup)
	}
	if !maps.Equal(shared.Binaries, local.Binaries) || shared.Binaries["/bin/app"] != 1 {
		t.Errorf("binaries: fleet %v, store %v", shared.Binaries, local.Binaries)
	}
	for name, m := range local.Syscalls {
		if shared.Syscalls[name] != m {
			t.Errorf("syscall %s: fleet %+v, store %+v", name, shared.Syscalls[name], m)
		}
	}
}

// TestFleetViewDecides: once the fleet has a view of a profile, its state
// decides learning and its baseline scoring; before, the local one does.
func TestFleetViewDecides(t *testing.T) {
	l, lib, _, _ := newLearner(t, ModeAuto, learnerConfig(0), nil)
	f := newFakeFleet()
	lib.SetFleet(f)
	c := appContainer("c1", "app", "1")
	if res := learnEach(t, l, windows(c, 7, 0, 3)); res.Learned != 3 {
		t.Fatalf("learned %d of 3 windows with no fleet view", res.Learned)
	}
	fleetBaseline := learned("app", "1", "elsewhere", 50, 0, steady)
	fleetBaseline.Promote(fleetBaseline.LastSeen)
	f.mu.Lock()
	f.views["app:1"] = fleetBaseline
	f.mu.Unlock()
	if st, ok := lib.State("app:1"); !ok || st != model.StateStable {
		t.Errorf("state %q %v, want the fleet's stable", st, ok)
	}
	var seen *model.Baseline
	lib.view("app:1", func(b *model.Baseline) { seen = b })
	if seen != fleetBaseline {
		t.Error("scoring does not see the fleet's baseline")
	}
	// auto mode: a profile the fleet made stable is no longer learned here.
	if res := learnEach(t, l, windows(c, 7, 3, 5)); res.Learned != 0 || res.Skipped != 2 {
		t.Errorf("learned %d, skipped %d: want the fleet's stable state to stop learning", res.Learned, res.Skipped)
	}
	if local := mustGet(t, lib, "app:1"); local.Windows != 3 || local.State != model.StateLearning {
		t.Errorf("the local baseline changed: %d windows, %s", local.Windows, local.State)
	}
	st, err := lib.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(st.Images, func(is control.ImageStatus) bool { return is.Image == "app:1" }) {
		t.Errorf("status lists %+v, want app:1 (the node's own learning)", st.Images)
	}
}
