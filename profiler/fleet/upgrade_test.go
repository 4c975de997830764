package fleet

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/fleet/fleettest"
)

// TestFleetPriorEntersOnce: three nodes each start a new tag from the same
// old tag's baseline and offer it while publishing their own windows at once.
// The aggregate holds the prior once and every node's windows: what one node
// learning them all after the prior holds. The prior's items are known
// fleet-wide (it came from the fleet's view), and its record is written once.
func TestFleetPriorEntersOnce(t *testing.T) {
	c := fleettest.Start(t, 3)
	priorCfg := learnCfg
	priorCfg.PriorWindows = 20
	old := model.NewBaseline("app", "1", "")
	oldWl := newWorkload(90)
	for range 80 {
		old.AddWindow(oldWl.window("old", "c0"), learnCfg.SampleSize)
	}
	old.AddExec("/usr/bin/app-helper")
	old.Promote(old.LastSeen)
	fresh := model.NewBaseline("app", "2", "")
	at := time.Unix(1_800_000_000, 0).UTC()

	var nodes []*node
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, newNode(t, c.Endpoints(), name, uint64(91+i)))
	}
	var all []model.Window
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			n.OfferPrior(model.NewPriorBaseline(fresh, old, priorCfg, at), true)
			for range 4 {
				var ws []model.Window
				for i := range 3 {
					w := n.wl.window(n.name, "c"+string(rune('0'+i)))
					w.Container.ImageTag = "2"
					n.AddWindow(w)
					ws = append(ws, w)
				}
				mu.Lock()
				all = append(all, ws...)
				mu.Unlock()
				if err := n.Publish(ctxT(t, 20*time.Second)); err != nil {
					t.Errorf("%s: %v", n.name, err)
				}
			}
		})
	}
	wg.Wait()

	if err := nodes[0].Refresh(ctxT(t, 10*time.Second), "app:2"); err != nil {
		t.Fatal(err)
	}
	a, ok := nodes[0].Aggregate("app:2")
	if !ok {
		t.Fatal("no aggregate of app:2")
	}
	// The fleet judged the prior against the tag's first block (the
	// outcome depends on how publishes raced): kept, it is in once; rejected,
	// it is out.
	want := model.NewPriorBaseline(fresh, old, priorCfg, at)
	if a.Baseline.Prior != nil && a.Baseline.Prior.Outcome == model.PriorRejected {
		want = fresh.Clone()
	}
	t.Logf("prior outcome in the fleet: %q", a.Baseline.Prior.Outcome)
	for _, w := range all {
		want.AddWindow(w, learnCfg.SampleSize)
	}
	fleettest.SameStatistics(t, a.Baseline, want)
	if a.Baseline.Prior == nil || a.Baseline.Prior.From != "app:1" || a.Baseline.Prior.Windows != 20 {
		t.Errorf("aggregate prior = %+v, want 20 windows from app:1", a.Baseline.Prior)
	}
	if a.Nodes != 3 {
		t.Errorf("aggregate of %d nodes, want 3 (the prior is no node)", a.Nodes)
	}
	// The prior came from the fleet's view: its binary is known to every node.
	for _, n := range nodes {
		_ = n.Refresh(ctxT(t, 10*time.Second), "app:2")
		if v, ok := n.View("app:2"); !ok || v.Binaries["/usr/bin/app-helper"] == 0 {
			t.Errorf("%s: the prior's binary is not in its fleet view", n.name)
		}
	}
	resp, err := nodes[0].etcd.Get(ctxT(t, 10*time.Second), nodes[0].priorKey("app:2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].Version != 1 {
		t.Fatalf("prior record: %d keys, want one written once", len(resp.Kvs))
	}
	var rec PriorRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil || rec.From != "app:1" || rec.Windows != 20 || !rec.Trusted {
		t.Errorf("prior record %+v (%v), want 20 trusted windows from app:1", rec, err)
	}
}

// TestFleetPriorFromAnotherNode: node-a learns app:1 until the fleet's
// baseline is stable; node-b never ran app:1, yet its first publish of app:2
// starts the fleet's app:2 from app:1's fleet baseline (the family record),
// trusted, and status says where it came from.
func TestFleetPriorFromAnotherNode(t *testing.T) {
	c := fleettest.Start(t, 3)
	priorCfg := learnCfg
	priorCfg.PriorWindows = 20
	a := newNodeLearning(t, c.Endpoints(), "node-a", 101, priorCfg)
	b := newNodeLearning(t, c.Endpoints(), "node-b", 102, priorCfg)
	ctx := ctxT(t, time.Minute)

	for batch := 0; ; batch++ {
		a.learn(20)
		if err := a.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if agg, _ := a.Aggregate("app:1"); agg.Baseline.State == model.StateStable {
			break
		}
		if batch == 10 {
			t.Fatal("app:1 not stable in the fleet after 220 windows")
		}
	}
	resp, err := a.etcd.Get(ctx, a.familyKey("app"))
	if err != nil {
		t.Fatal(err)
	}
	var fam FamilyRecord
	if len(resp.Kvs) != 1 || json.Unmarshal(resp.Kvs[0].Value, &fam) != nil || fam.Profile != "app:1" || fam.Node != "node-a" {
		t.Fatalf("family record %q, want app:1 named by node-a", resp.Kvs)
	}

	var ws []model.Window
	for i := range 3 {
		w := b.wl.window(b.name, fmt.Sprintf("c%d", i))
		w.Container.ImageTag = "2"
		b.AddWindow(w)
		ws = append(ws, w)
	}
	if err := b.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	agg, ok := b.Aggregate("app:2")
	if !ok {
		t.Fatal("no aggregate of app:2")
	}
	if p := agg.Baseline.Prior; p == nil || p.From != "app:1" || p.Windows != 20 {
		t.Fatalf("app:2's prior = %+v, want 20 windows from app:1", p)
	}
	if agg.PriorSupport != DefaultGuard.K {
		t.Errorf("prior support %d, want %d (read from the fleet's view: trusted)", agg.PriorSupport, DefaultGuard.K)
	}
	old, _ := a.Aggregate("app:1")
	want := model.NewPriorBaseline(model.NewBaseline("app", "2", ""), old.guard(b.cfg.Guard, newItems()), priorCfg, time.Now()).PriorStart()
	for _, w := range ws {
		want.AddWindow(w, learnCfg.SampleSize)
	}
	fleettest.SameStatistics(t, agg.Baseline, want)

	st := b.Status()
	i := slices.IndexFunc(st.Profiles, func(p ProfileStatus) bool { return p.Key == "app:2" })
	if i < 0 || st.Profiles[i].Prior == nil || st.Profiles[i].Prior.From != "app:1" {
		t.Errorf("status of app:2 = %+v, want its prior from app:1", st.Profiles)
	}
	if b.logs.count("new tag starts from its previous tag's fleet baseline") != 1 {
		t.Error("node-b did not log where app:2 started from")
	}
}
