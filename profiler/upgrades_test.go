package profiler

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// learnToStable learns windows of c from second `from` until its baseline is
// stable and returns how many windows that took (0: not within max).
func learnToStable(t *testing.T, l trackedLearner, lib *Library, c model.Container, from, max int, counts func(int) map[string]uint64) int {
	t.Helper()
	for i := range max {
		learnEach(t, l, []model.Window{win(c, 7, from+i, counts(from+i))})
		if state, _ := lib.State(c.ProfileKey()); state == model.StateStable {
			return i + 1
		}
	}
	return 0
}

// TestNewTagStartsFromThePreviousTag: the agent starts a new tag's baseline
// from the repository's stable tag, it goes stable sooner when it behaves the
// same, and once stable the tags' differences are logged.
func TestNewTagStartsFromThePreviousTag(t *testing.T) {
	cfg := learnerConfig(0)
	cfg.PriorWindows = 5
	l, lib, _, _ := newLearner(t, ModeAuto, cfg, nil)
	var logs lockedBuffer
	lib.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	f := newFakeFleet()
	lib.SetFleet(f)

	v1 := appContainer("v1", "app", "1")
	alone := learnToStable(t, l, lib, v1, 0, 100, steady)
	if alone < int(cfg.MinWindows) {
		t.Fatalf("app:1 stable after %d windows, want at least %d", alone, cfg.MinWindows)
	}
	other := appContainer("o", "other", "1") // another repository starts from nothing
	learnEach(t, l, []model.Window{win(other, 9, 200, steady(0))})
	if mustGet(t, lib, "other:1").Prior != nil {
		t.Error("another repository's tag started from app:1")
	}

	v2 := appContainer("v2", "app", "2")
	withPrior := learnToStable(t, l, lib, v2, 300, 100, steady)
	b := mustGet(t, lib, "app:2")
	t.Logf("windows to stable: app:1 %d from nothing, app:2 %d of its own after its prior", alone, withPrior)
	if b.Prior == nil || b.Prior.From != "app:1" || b.Prior.Windows != 5 || b.Prior.Outcome != model.PriorMatched {
		t.Fatalf("app:2 prior = %+v, want 5 windows from app:1, matched", b.Prior)
	}
	if withPrior != int(cfg.StableWindows) {
		t.Errorf("app:2 stable after %d own windows, want %d", withPrior, cfg.StableWindows)
	}
	if p := f.priors["app:2"]; p == nil || p.Prior == nil || p.Prior.From != "app:1" || f.trusted["app:2"] {
		t.Errorf("the fleet was offered %+v (trusted %v), want app:2's prior from app:1, untrusted (no fleet view of app:1)", p, f.trusted["app:2"])
	}
	if shared := f.pending["app:2"]; shared == nil || shared.Windows != uint64(withPrior) || shared.Prior != nil {
		t.Errorf("the fleet's delta of app:2 should hold its own %d windows and no prior, got %+v", withPrior, shared)
	}
	st, err := lib.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(st.Images, func(is control.ImageStatus) bool { return is.Image == "app:2" }); i < 0 ||
		st.Images[i].CarriedFrom == nil || st.Images[i].CarriedFrom.Profile != "app:1" || st.Images[i].CarriedFrom.Outcome != model.PriorMatched {
		t.Errorf("status of app:2 does not say it was carried from app:1: %+v", st.Images)
	}
	for _, want := range []string{`msg="new tag starts from its previous tag's baseline" profile=app:2 from=app:1 windows=5`,
		`msg="new tag stable; changes from its previous tag" profile=app:2 from=app:1 prior=matched`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	// With the fleet's view of the old tag, the prior is read from it and
	// trusted: its items are the fleet's, guarded already.
	fleetV2 := mustGet(t, lib, "app:2")
	fleetV2.Binaries["/bin/fleet-only"] = 3
	f.mu.Lock()
	f.views["app:2"] = fleetV2
	f.mu.Unlock()
	v3 := appContainer("v3", "app", "3")
	learnEach(t, l, []model.Window{win(v3, 8, 500, steady(0))})
	p := f.priors["app:3"]
	if p == nil || p.Prior.From != "app:2" || !f.trusted["app:3"] || p.Binaries["/bin/fleet-only"] == 0 {
		t.Fatalf("app:3's prior = %+v (trusted %v), want from the fleet's app:2 (the most recently stable), trusted", p, f.trusted["app:3"])
	}
}
