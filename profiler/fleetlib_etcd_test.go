package profiler

import (
	"context"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/fleet"
	"github.com/cagewatch/cagewatch/profiler/fleet/fleettest"
)

// TestFleetControlThroughEtcd: with a real etcd, the control socket's status
// carries the fleet's figures, and promote and reset through it act on the
// fleet's baseline, which then decides the library's state.
func TestFleetControlThroughEtcd(t *testing.T) {
	c := fleettest.Start(t, 1)
	cfg := learnerConfig(0)
	cfg.PriorWindows = 8
	l, lib, _, path := newLearner(t, ModeAuto, cfg, nil)
	fc, err := fleet.New(fleet.Config{Endpoints: c.Endpoints(), Node: "node-a", PublishInterval: time.Second, RequestTimeout: time.Second},
		cfg.LearnConfig, nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close() //nolint:errcheck // test cleanup
	lib.SetFleet(fc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	learnEach(t, l, windows(appContainer("c1", "app", "1"), 7, 0, 5))
	if err := fc.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	socket := control.SocketPath(path)
	served := make(chan error, 1)
	go func() {
		served <- control.Serve(ctx, socket, FleetControl{Control: Control{Library: lib}, Fleet: fc}, nil, discard())
	}()
	var cl *control.Client
	var st control.Status
	for deadline := time.Now().Add(10 * time.Second); ; {
		if cl, err = control.Dial(socket); err == nil {
			if st, err = cl.Status(ctx); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("control socket: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Fleet == nil || !st.Fleet.Connected || st.Fleet.Node != "node-a" {
		t.Fatalf("status fleet %+v", st.Fleet)
	}
	if len(st.Images) != 1 || st.Images[0].Fleet == nil || st.Images[0].Fleet.Nodes != 1 || st.Images[0].Fleet.Windows != 5 {
		t.Fatalf("status images %+v", st.Images)
	}

	if err := cl.Promote(ctx, "app:1"); err != nil {
		t.Fatal(err)
	}
	if a, ok := fc.Aggregate("app:1"); !ok || a.Baseline.State != model.StateStable {
		t.Error("promote did not reach the fleet's baseline")
	}
	if s, _ := lib.State("app:1"); s != model.StateStable {
		t.Errorf("state %q after promote, want the fleet's stable", s)
	}
	// node-b never ran app:1: its first publish of app:2 starts the fleet's
	// app:2 from app:1's fleet baseline, and its status says so.
	l2, lib2, _, _ := newLearner(t, ModeAuto, cfg, nil)
	fc2, err := fleet.New(fleet.Config{Endpoints: c.Endpoints(), Node: "node-b", PublishInterval: time.Second, RequestTimeout: time.Second},
		cfg.LearnConfig, nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer fc2.Close() //nolint:errcheck // test cleanup
	lib2.SetFleet(fc2)
	learnEach(t, l2, windows(appContainer("c2", "app", "2"), 7, 0, 3))
	if err := fc2.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	st2, err := FleetControl{Control: Control{Library: lib2}, Fleet: fc2}.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st2.Images) != 1 || st2.Images[0].CarriedFrom == nil || st2.Images[0].CarriedFrom.Profile != "app:1" {
		t.Errorf("node-b's status of app:2: %+v, want carried from app:1", st2.Images)
	}

	if err := cl.Reset(ctx, "app:1"); err != nil {
		t.Fatal(err)
	}
	if a, ok := fc.Aggregate("app:1"); !ok || a.Baseline.Windows != 0 || a.Epoch != 2 {
		t.Errorf("reset did not reach the fleet's baseline: %+v", a)
	}
	if s, _ := lib.State("app:1"); s != model.StateLearning {
		t.Errorf("state %q after reset, want learning", s)
	}

	// etcd gone: status (the DaemonSet's liveness probe) still answers at once.
	c.StopAll()
	for range 2 { // before and after the client notices
		began := time.Now()
		st, err := cl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Errorf("status took %v with etcd down", d)
		}
		if st.Fleet == nil || st.Fleet.Nodes != nil {
			t.Errorf("status with etcd down: %+v", st.Fleet)
		}
		_ = fc.Publish(ctx) // fails: the client marks etcd unreachable
	}
	if st, _ := cl.Status(ctx); st.Fleet.Connected {
		t.Error("connected with etcd down")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
