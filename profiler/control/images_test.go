package control_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/store"
)

// The image endpoints over the real socket: imports land in the store, bad
// ones are refused as bad imports and leave it unchanged.
func TestImageServiceOverSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cagewatch.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutBaselines(model.NewBaseline("shop/web", "1", "")); err != nil {
		t.Fatal(err)
	}
	lib, err := profiler.NewLibrary(st, profiler.LearnerConfig{LearnConfig: learnCfg()}, profiler.ModeAuto, true)
	if err != nil {
		t.Fatal(err)
	}
	images, err := profiler.NewImageRecords(st, lib, nil)
	if err != nil {
		t.Fatal(err)
	}
	socket := control.SocketPath(path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- control.Serve(ctx, socket, profiler.Control{Library: lib, Images: images}, images, discard())
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitServing(t, socket, done)
	c, err := control.Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()

	if _, err := c.Inventory(bg, "shop/web:1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("inventory of an unknown image: %v, want ErrNotFound", err)
	}
	pkgs := []model.Package{{Name: "busybox", Version: "1.36", Type: "binary", Files: []string{"/bin/busybox"}}}
	if err := c.ImportSBOM(bg, "docker.io/shop/web:1", pkgs); err != nil {
		t.Fatal(err)
	}
	if err := c.ImportSBOM(bg, "shop/web:1", nil); !errors.Is(err, store.ErrBadImport) {
		t.Errorf("an SBOM without packages: %v, want ErrBadImport", err)
	}
	inv := model.NewInventory("shop/web", "1")
	inv.AddExec("/bin/busybox", time.Unix(100, 0).UTC())
	if err := c.ImportInventories(bg, []*model.Inventory{inv}); err != nil {
		t.Fatal(err)
	}
	bad := model.NewInventory("shop/web", "1")
	bad.Executed["bin/sh"] = model.Execution{Count: 1}
	if err := c.ImportInventories(bg, []*model.Inventory{inv, bad}); !errors.Is(err, store.ErrBadImport) {
		t.Errorf("a bad inventory: %v, want ErrBadImport", err)
	}
	got, err := c.Inventory(bg, "shop/web:1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "spdx" || got.Executed["/bin/busybox"].Count != 1 || got.InUse()[0].Status != model.PackageInUse {
		t.Errorf("inventory = %+v: want the SBOM's busybox in use, counted once (the refused import left it alone)", got)
	}

	report := &model.VulnReport{Image: "shop/web", Tag: "1", Scanner: "grype 0.104.1",
		Findings: []model.Vulnerability{{ID: "CVE-1", Severity: "critical", Package: "busybox"}}}
	if err := c.ImportVulns(bg, report); err != nil {
		t.Fatal(err)
	}
	if err := c.ImportVulns(bg, &model.VulnReport{Image: "", Findings: nil}); !errors.Is(err, store.ErrBadImport) {
		t.Errorf("a report without an image: %v, want ErrBadImport", err)
	}
	reports, err := c.Reports(bg, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].VulnsInUse["critical"] != 1 || reports[0].Scanner != "grype 0.104.1" {
		t.Errorf("reports = %+v", reports)
	}
	status, err := c.Status(bg)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.Images) != 1 || status.Images[0].VulnsInUse["critical"] != 1 || status.Images[0].Vulns["critical"] != 1 {
		t.Errorf("status = %+v, want shop/web:1 with one critical vulnerability in use", status)
	}
	stored, err := st.VulnReports()
	if err != nil || len(stored) != 1 {
		t.Errorf("stored reports = %v, %v", stored, err)
	}
}
