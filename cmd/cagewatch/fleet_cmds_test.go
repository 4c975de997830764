package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/fleet"
	"github.com/cagewatch/cagewatch/profiler/fleet/fleettest"
	"github.com/cagewatch/cagewatch/store"
)

func TestFleetStatusNeedsARunningFleetAgent(t *testing.T) {
	path := seedStore(t, learnedBaseline("e2e/app", "1", 5, ""))
	_, _, err := runCLI(context.Background(), "fleet", "status", "--store", path)
	if err == nil || !strings.Contains(err.Error(), "running agent") {
		t.Fatalf("fleet status without an agent: %v", err)
	}
}

// TestFleetStatus: an agent in a fleet answers on its control socket; the
// command prints its etcd link and each image's fleet figures.
func TestFleetStatus(t *testing.T) {
	c := fleettest.Start(t, 1)
	path := seedStore(t)
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close() //nolint:errcheck // test cleanup
	learn := model.LearnConfig{MinWindows: 60, MinContainers: 1, StableWindows: 20, MaxDrift: 3, SampleSize: 16}
	lib, err := profiler.NewLibrary(st, profiler.LearnerConfig{LearnConfig: learn}, profiler.ModeAuto, true)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fc, err := fleet.New(fleet.Config{Endpoints: c.Endpoints(), Node: "node-a", PublishInterval: time.Second}, learn, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close() //nolint:errcheck // test cleanup
	lib.SetFleet(fc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := learnedBaseline("e2e/app", "1", 7, "")
	for _, w := range b.Sample { // the baseline's windows, learned on this node
		fc.AddWindow(model.Window{Container: model.Container{ID: w.Container, Image: "e2e/app", ImageTag: "1"},
			Start: w.Start, Duration: time.Second, Counts: w.Counts, Grams: w.Grams})
	}
	if err := fc.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- control.Serve(ctx, control.SocketPath(path), profiler.FleetControl{Control: profiler.Control{Library: lib}, Fleet: fc}, nil, log)
	}()
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var stderr string
		if out, stderr, err = runCLI(ctx, "fleet", "status", "--store", path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet status: %v\n%s", err, stderr)
		}
	}
	// No Run here, so no lease: node-a published but shows stale.
	for _, want := range []string{"node node-a", c.Endpoints()[0], ": connected", "nodes: 1 published, 0 alive, 1 stale",
		"e2e/app:1: learning, 1 nodes, 7 windows in the fleet, 0 here not yet published"} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet status does not say %q:\n%s", want, out)
		}
	}
	var js struct {
		Node      string `json:"node"`
		Connected bool   `json:"connected"`
		Images    []struct {
			Image string              `json:"image"`
			Fleet *control.ImageFleet `json:"fleet"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "fleet", "status", "--store", path, "--json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Node != "node-a" || !js.Connected || len(js.Images) != 1 || js.Images[0].Fleet == nil || js.Images[0].Fleet.Windows != 7 {
		t.Errorf("fleet status --json: %+v", js)
	}
	if !strings.Contains(mustCLI(t, "status", "--store", path), "fleet learning, 1 nodes, 7 windows") {
		t.Error("status does not show the image's fleet figures")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
