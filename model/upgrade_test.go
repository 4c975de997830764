package model

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func stableBaseline(image, tag, workload string, stableAt time.Time) *Baseline {
	b := NewBaseline(image, tag, "")
	b.Workload = workload
	b.AddWindow(Window{Container: Container{ID: "c"}, Start: stableAt.Add(-time.Second), Duration: time.Second,
		Counts: map[string]uint64{"read": 1}}, 8)
	b.Promote(stableAt)
	return b
}

func TestPriorSourceIsTheMostRecentlyStableTag(t *testing.T) {
	t1, t2, t3 := testT0, testT0.Add(time.Hour), testT0.Add(2*time.Hour)
	learning := NewBaseline("shop/api", "3", "")
	learning.AddWindow(Window{Container: Container{ID: "c"}, Start: t3, Duration: time.Second, Counts: map[string]uint64{"read": 1}}, 8)
	legacy := stableBaseline("shop/api", "0", "", t1) // an older file: no stable time, its last window decides
	legacy.StableAt = time.Time{}
	known := []*Baseline{
		stableBaseline("shop/api", "1", "", t1),
		stableBaseline("shop/api", "2", "", t2),
		legacy,
		learning,                                // not stable: never a prior
		stableBaseline("shop/web", "9", "", t3), // another repository
		stableBaseline("shop/api", "5", "", t3), // the new tag itself (learned before, reset since): not its own prior
		stableBaseline("shop/api", "2", "k8s:prod/api/api", t3), // a Kubernetes workload
		stableBaseline("shop/api", "4", "shop/api:4#/bin/worker", t3),
		stableBaseline("shop/api", "4", "shop/api:4#/bin/server", t1),
	}
	fresh := func(tag, workload string) *Baseline {
		b := NewBaseline("shop/api", tag, "")
		b.Workload = workload
		return b
	}
	for _, tc := range []struct {
		name  string
		fresh *Baseline
		want  string
	}{
		{"image key", fresh("5", ""), "shop/api:2"},
		{"entrypoint workload: same executable only", fresh("5", "shop/api:5#/bin/server"), "shop/api:4#/bin/server"},
		{"kubernetes workload keeps its key across tags", fresh("5", "k8s:prod/api/api"), ""},
		{"no repository", NewBaseline("", "", "sha256:ab"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PriorSource(tc.fresh, known)
			if (got == nil) != (tc.want == "") || got != nil && got.Key() != tc.want {
				t.Fatalf("PriorSource = %v, want %q", got, tc.want)
			}
		})
	}
	t.Run("legacy stable without a stable time", func(t *testing.T) {
		legacy.LastSeen = t3.Add(time.Minute)
		if got := PriorSource(fresh("5", ""), known); got == nil || got.Key() != "shop/api:0" {
			t.Fatalf("PriorSource = %v, want shop/api:0 (stable until %v)", got, legacy.LastSeen)
		}
	})
}

// newTagWindows are n windows of the new tag "2" of testImage.
func newTagWindows(wl *workload, n int) []Window {
	out := make([]Window, n)
	for i := range out {
		w := wl.window("new")
		w.Container.ImageTag = "2"
		out[i] = w
	}
	return out
}

// ownWindowsToStable learns ws into b and returns how many it took to become
// stable (0: not stable after all of them).
func ownWindowsToStable(b *Baseline, ws []Window, cfg LearnConfig) int {
	for i, w := range ws {
		b.AddWindow(w, cfg.SampleSize)
		if b.UpdateState(cfg) {
			return i + 1
		}
	}
	return 0
}

func TestPriorMakesAMatchingTagStableSooner(t *testing.T) {
	cfg := DefaultLearnConfig()
	old := NewBaseline(testImage, testTag, "")
	wl := newWorkload(1)
	if feed(t, old, wl, cfg, "old", 200) == 0 {
		t.Fatal("the old tag never became stable")
	}
	fresh := NewBaseline(testImage, "2", "")
	at := testT0.Add(time.Hour)
	prior := NewPriorBaseline(fresh, old, cfg, at)
	if prior.Prior == nil || prior.Prior.From != old.Key() || prior.Prior.Windows != uint64(cfg.PriorWindows) || prior.Windows != uint64(cfg.PriorWindows) {
		t.Fatalf("prior = %+v with %d windows, want %d windows from %q", prior.Prior, prior.Windows, cfg.PriorWindows, old.Key())
	}
	if prior.State != StateLearning || prior.Key() != "registry.example/shop/api:2" {
		t.Fatalf("prior is %q %q, want the new tag learning", prior.Key(), prior.State)
	}
	if err := prior.Validate(); err != nil {
		t.Fatal(err)
	}

	same := newTagWindows(wl, 200)
	withPrior := ownWindowsToStable(prior.Clone(), same, cfg)
	alone := ownWindowsToStable(NewBaseline(testImage, "2", ""), same, cfg)
	t.Logf("own windows to stable: %d with the prior, %d from nothing", withPrior, alone)
	if withPrior != int(cfg.StableWindows) || alone < int(cfg.MinWindows) {
		t.Fatalf("own windows to stable = %d with the prior (want %d), %d alone (want >= %d)", withPrior, cfg.StableWindows, alone, cfg.MinWindows)
	}

	matched := prior.Clone()
	ownWindowsToStable(matched, same[:int(cfg.StableWindows)], cfg)
	if matched.Prior.Outcome != PriorMatched {
		t.Errorf("a matching tag's prior outcome = %q, want %q", matched.Prior.Outcome, PriorMatched)
	}

	// A tag that makes a new syscall and shifts its mix is not taken on its
	// prior's word: the prior is taken out, and it learns as from nothing.
	changed := newWorkload(2)
	changed.extra = func(int) map[string]float64 { return map[string]float64{"sendto": 600, "read": 800} }
	changedWs := newTagWindows(changed, 200)
	rejected := prior.Clone()
	got := ownWindowsToStable(rejected, changedWs, cfg)
	fromNothing := ownWindowsToStable(NewBaseline(testImage, "2", ""), changedWs, cfg)
	t.Logf("a changed tag: stable after %d own windows with the prior, %d from nothing", got, fromNothing)
	if rejected.Prior.Outcome != PriorRejected || got != fromNothing {
		t.Fatalf("a changed tag: prior %q, stable after %d own windows; want %q and %d (as from nothing)", rejected.Prior.Outcome, got, PriorRejected, fromNothing)
	}
}

// TestRejectedPriorLeavesTheOwnWindows: taking a prior out leaves what
// learning the tag's own windows from nothing leaves (Max aside: an upper bound).
func TestRejectedPriorLeavesTheOwnWindows(t *testing.T) {
	cfg := DefaultLearnConfig()
	old := NewBaseline(testImage, testTag, "")
	feed(t, old, newWorkload(4), cfg, "old", 120)
	changed := newWorkload(5)
	changed.extra = func(int) map[string]float64 { return map[string]float64{"sendto": 900} }
	ws := newTagWindows(changed, int(cfg.StableWindows))

	b := NewPriorBaseline(NewBaseline(testImage, "2", ""), old, cfg, testT0)
	alone := NewBaseline(testImage, "2", "")
	for _, w := range ws {
		b.AddWindow(w, cfg.SampleSize)
		b.UpdateState(cfg)
		alone.AddWindow(w, cfg.SampleSize)
	}
	if b.Prior.Outcome != PriorRejected {
		t.Fatalf("prior outcome %q, want %q", b.Prior.Outcome, PriorRejected)
	}
	if b.Windows != alone.Windows || len(b.Syscalls) != len(alone.Syscalls) || !maps.Equal(b.Order.Grams, alone.Order.Grams) ||
		!maps.Equal(b.Containers, alone.Containers) || len(b.Binaries) != 0 || b.Composition.Windows != alone.Composition.Windows {
		t.Fatalf("after rejection: %d windows, %d syscalls, %d grams, containers %v, binaries %v; want %d, %d, %d, %v, none",
			b.Windows, len(b.Syscalls), len(b.Order.Grams), b.Containers, b.Binaries, alone.Windows, len(alone.Syscalls), len(alone.Order.Grams), alone.Containers)
	}
	for name, w := range alone.Syscalls {
		g := b.Syscalls[name]
		g.Max = w.Max
		checkMoments(t, "Syscalls["+name+"]", g, w)
	}
	for name, w := range alone.Composition.Shares {
		g := b.Composition.Shares[name]
		g.Max = w.Max
		checkMoments(t, "Composition.Shares["+name+"]", g, w)
	}
	if len(b.Sample) != len(ws) {
		t.Errorf("sample of %d windows, want the %d own ones", len(b.Sample), len(ws))
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
}

// A fleet starts the new tag's aggregate from the prior
// and merges the nodes' own windows into it; that equals one node learning
// all of them after the prior.
func TestPriorThenMergedWindowsEqualLearningAfterThePrior(t *testing.T) {
	cfg := DefaultLearnConfig()
	old := NewBaseline(testImage, testTag, "")
	wl := newWorkload(3)
	feed(t, old, wl, cfg, "old", 120)
	old.Promote(old.LastSeen)
	fresh := NewBaseline(testImage, "2", "")
	ws := newTagWindows(wl, 30)

	one := NewPriorBaseline(fresh, old, cfg, testT0)
	for _, w := range ws {
		one.AddWindow(w, cfg.SampleSize)
	}
	// What the tag started from, recovered after it learned (a restarted
	// node offering its prior to the fleet).
	fleet := one.PriorStart()
	checkSameStatistics(t, fleet, NewPriorBaseline(fresh, old, cfg, testT0))
	if fleet.Convergence.CheckpointWindows != fleet.Windows || fleet.Prior.Outcome != "" {
		t.Fatalf("PriorStart: checkpoint %d of %d windows, outcome %q; want the prior as one unjudged block",
			fleet.Convergence.CheckpointWindows, fleet.Windows, fleet.Prior.Outcome)
	}
	for _, part := range [][]Window{ws[:10], ws[10:25], ws[25:]} {
		delta := NewBaseline(testImage, "2", "")
		for _, w := range part {
			delta.AddWindow(w, cfg.SampleSize)
		}
		if err := fleet.Merge(delta, cfg.SampleSize); err != nil {
			t.Fatal(err)
		}
	}
	checkSameStatistics(t, fleet, one)
	if fleet.Prior == nil || fleet.Prior.From != one.Prior.From || fleet.Prior.Windows != one.Prior.Windows {
		t.Errorf("merged prior = %+v, want %+v", fleet.Prior, one.Prior)
	}
}

// TestMergeCountsAPriorOnce: two nodes that each started the tag from the
// same prior (no fleet) and learned their own windows merge into the prior
// plus all of their windows.
func TestMergeCountsAPriorOnce(t *testing.T) {
	cfg := DefaultLearnConfig()
	old := NewBaseline(testImage, testTag, "")
	wl := newWorkload(6)
	feed(t, old, wl, cfg, "old", 120)
	fresh := NewBaseline(testImage, "2", "")
	ws := newTagWindows(wl, 30)
	one := NewPriorBaseline(fresh, old, cfg, testT0)
	nodeA, nodeB := one.Clone(), one.Clone()
	for i, w := range ws {
		one.AddWindow(w, cfg.SampleSize)
		if i%2 == 0 {
			nodeA.AddWindow(w, cfg.SampleSize)
		} else {
			nodeB.AddWindow(w, cfg.SampleSize)
		}
	}
	if err := nodeA.Merge(nodeB, cfg.SampleSize); err != nil {
		t.Fatal(err)
	}
	checkSameStatistics(t, nodeA, one)
}

func TestValidateRejectsABadPrior(t *testing.T) {
	cfg := DefaultLearnConfig()
	old := NewBaseline("shop/api", "1", "")
	feed(t, old, newWorkload(7), cfg, "old", 10)
	good := NewPriorBaseline(NewBaseline("shop/api", "2", ""), old, cfg, testT0)
	if err := good.Validate(); err != nil {
		t.Fatalf("a good prior: %v", err)
	}
	for name, mutate := range map[string]func(p *Prior){
		"no source":          func(p *Prior) { p.From = "" },
		"its own source":     func(p *Prior) { p.From = "shop/api:2" },
		"unknown outcome":    func(p *Prior) { p.Outcome = "maybe" },
		"no statistics":      func(p *Prior) { p.Baseline = nil },
		"windows mismatch":   func(p *Prior) { p.Windows++ },
		"nested prior":       func(p *Prior) { p.Baseline.Prior = &Prior{From: "x"} },
		"invalid statistics": func(p *Prior) { p.Baseline.Windows++ },
	} {
		b := good.Clone()
		mutate(b.Prior)
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "prior") {
			t.Errorf("%s: Validate = %v, want an error naming the prior", name, err)
		}
	}
}
