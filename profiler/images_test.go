package profiler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/inventory"
	"github.com/cagewatch/cagewatch/store"
)

var shopWeb = model.Container{ID: "c1", Name: "web1", Runtime: model.RuntimeDocker, Image: "docker.io/shop/web", ImageTag: "1"}

func selfProcess(t *testing.T) model.ProcessKey {
	t.Helper()
	start, err := procStartNs(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	return model.ProcessKey{PID: uint32(os.Getpid()), StartNs: start}
}

func execOf(p model.ProcessKey, path string, at time.Time) model.Event {
	return model.Event{Kind: model.EventExec, Time: at, PID: p.PID, ProcStartNs: p.StartNs, Path: path, Container: shopWeb}
}

// fakeReaders stand in for the container's files; they record the roots used.
type fakeReaders struct {
	mu    sync.Mutex
	roots []inventory.Root
}

func (f *fakeReaders) install(r *ImageRecords) {
	r.readPackages = func(root inventory.Root) (string, []model.Package, error) {
		f.note(root)
		return "dpkg", []model.Package{
			{Name: "nginx", Version: "1.22", Type: "deb", Files: []string{"/usr/sbin/nginx"}},
			{Name: "libssl3", Version: "3.0", Type: "deb", Files: []string{"/usr/lib/libssl.so.3"}},
			{Name: "curl", Version: "7.88", Type: "deb", Files: []string{"/usr/bin/curl"}},
		}, nil
	}
	r.readLibraries = func(root inventory.Root, p string) ([]string, error) {
		f.note(root)
		if _, err := os.Stat(string(root)); err != nil {
			return nil, err // the root must be a live directory
		}
		return []string{"/usr/lib/libssl.so.3"}, nil
	}
}

func (f *fakeReaders) note(root inventory.Root) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roots = append(f.roots, root)
}

// newTestRecords are image records on a fresh bbolt store, reading through
// fake readers.
func newTestRecords(t *testing.T) (*ImageRecords, *store.Bolt, *fakeReaders) {
	t.Helper()
	st, _ := openStore(t)
	recs, err := NewImageRecords(st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	readers := &fakeReaders{}
	readers.install(recs)
	return recs, st, readers
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestImageRecordsInventoryVulnsAndAlerts(t *testing.T) {
	recs, st, readers := newTestRecords(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- recs.Run(ctx, time.Hour) }()

	self := selfProcess(t)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	recs.ObserveExec(execOf(self, "/usr/sbin/nginx", t0))
	recs.ObserveExec(execOf(self, "/usr/sbin/nginx", t0.Add(time.Minute)))
	// Not files of the image: never counted.
	memfd := execOf(self, "memfd:x", t0)
	memfd.Exec = &model.ExecFile{Memfd: true}
	recs.ObserveExec(memfd)
	setup := execOf(self, "/usr/bin/runc", t0)
	setup.RuntimeSetup = true
	recs.ObserveExec(setup)

	waitFor(t, "packages and libraries read", func() bool {
		inv, err := recs.Inventory(ctx, "shop/web:1")
		return err == nil && inv.Source == "dpkg" && inv.Executed["/usr/sbin/nginx"].Libraries != nil
	})
	inv, _ := recs.Inventory(ctx, "docker.io/shop/web:1") // a CRI name finds Docker's
	if len(inv.Executed) != 1 || inv.Executed["/usr/sbin/nginx"].Count != 2 {
		t.Errorf("executed = %+v, want nginx twice only", inv.Executed)
	}
	got := map[string]string{}
	for _, u := range inv.InUse() {
		got[u.Name] = u.Status
	}
	want := map[string]string{"nginx": model.PackageInUse, "libssl3": model.PackageInUse, "curl": model.PackageInstalledOnly}
	if !maps.Equal(got, want) {
		t.Errorf("in use = %v, want %v", got, want)
	}
	if len(readers.roots) == 0 {
		t.Error("no read went through a root")
	}

	// A scanner report: the alert carries the in-use findings only.
	err := recs.ImportVulns(ctx, &model.VulnReport{Image: "shop/web", Tag: "1", Scanner: "grype 0.1", Findings: []model.Vulnerability{
		{ID: "CVE-1", Severity: "critical", Package: "curl"},
		{ID: "CVE-2", Severity: "high", Package: "libssl3"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := recs.ImportVulns(ctx, &model.VulnReport{Image: "shop/web", Findings: []model.Vulnerability{{ID: "CVE-9", Severity: "dire", Package: "x"}}}); !errors.Is(err, store.ErrBadImport) {
		t.Errorf("a report with a bad severity: %v, want ErrBadImport", err)
	}
	a := model.Alert{Rule: "sensitive_file", Time: t0, Container: shopWeb, OutputFields: map[string]any{}}
	recs.Enrich(&a)
	if c, _ := a.OutputFields["cagewatch.image_vulns"].(map[string]int); c["high"] != 1 || c["critical"] != 0 {
		t.Errorf("cagewatch.image_vulns = %v, want high 1 (curl's critical does not run)", a.OutputFields["cagewatch.image_vulns"])
	}
	if top, _ := a.OutputFields["cagewatch.image_vulns_top"].([]string); !slices.Equal(top, []string{"CVE-2"}) {
		t.Errorf("cagewatch.image_vulns_top = %v", a.OutputFields["cagewatch.image_vulns_top"])
	}
	recs.ObserveAlert(a)
	recs.ObserveAlert(a)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("final flush: %v", err)
	}
	// Everything survives a restart.
	again, err := NewImageRecords(st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reports, err := again.Reports(context.Background(), t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 {
		t.Fatalf("reports = %+v", reports)
	}
	r := reports[0]
	if r.Image != "shop/web:1" || r.Alerts["sensitive_file"] != 2 || r.InUse != 2 || r.VulnsInUse["high"] != 1 ||
		r.VulnsInstalledOnly["critical"] != 1 || len(r.VulnerablePackages) != 2 || !r.VulnerablePackages[0].InUse {
		t.Errorf("report after restart = %+v", r)
	}
	if later, _ := again.Reports(context.Background(), t0.Add(48*time.Hour)); later[0].AlertsTotal != 0 {
		t.Errorf("alerts counted before the period: %+v", later[0])
	}
}

// A PID reused by another process is never read through: its start time differs.
func TestImageRecordsRefuseReusedPID(t *testing.T) {
	recs, _, readers := newTestRecords(t)
	self := selfProcess(t)
	stale := model.ProcessKey{PID: self.PID, StartNs: self.StartNs + uint64(time.Hour)}
	recs.ObserveExec(execOf(stale, "/usr/sbin/nginx", time.Now()))
	for len(recs.jobs) > 0 {
		recs.do(<-recs.jobs)
	}
	if len(readers.roots) != 0 {
		t.Errorf("read through a reused PID's root: %v", readers.roots)
	}
	if recs.readFails.Load() == 0 {
		t.Error("the refused read was not counted")
	}
}

// A long-lived process that exec's again stays readable however many
// short-lived ones exec'd in between.
func TestImageRecordsKeepLongLivedProcess(t *testing.T) {
	recs, _, _ := newTestRecords(t)
	self := selfProcess(t)
	now := time.Now()
	recs.ObserveExec(execOf(self, "/usr/bin/bash", now))
	for i := range 2 * maxLivePerImage {
		gone := model.ProcessKey{PID: 1 << 30, StartNs: uint64(i + 1)} // never a live PID
		recs.ObserveExec(execOf(gone, fmt.Sprintf("/usr/bin/helper%d", i), now))
	}
	recs.ObserveExec(execOf(self, "/usr/bin/python3", now))
	procs := recs.live["shop/web:1"]
	if len(procs) != maxLivePerImage || procs[len(procs)-1] != self {
		t.Fatalf("live processes = %+v, want %d with the long-lived one newest", procs, maxLivePerImage)
	}
	for len(recs.jobs) > 0 {
		recs.do(<-recs.jobs)
	}
	inv, err := recs.Inventory(context.Background(), "shop/web:1")
	if err != nil {
		t.Fatal(err)
	}
	if inv.Source != "dpkg" || inv.Executed["/usr/bin/python3"].Libraries == nil {
		t.Errorf("inventory = %+v: the package database and python3's libraries were not read through the live process", inv)
	}
}

// A read that never returns (a container's files can try) stops neither the
// flushes nor the agent's shutdown; an image's binaries are bounded.
func TestImageRecordsStuckReadAndBoundedBinaries(t *testing.T) {
	recs, st, _ := newTestRecords(t)
	stuck := make(chan struct{})
	defer close(stuck)
	recs.readLibraries = func(inventory.Root, string) ([]string, error) { <-stuck; return nil, nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- recs.Run(ctx, 10*time.Millisecond) }()
	self := selfProcess(t)
	now := time.Now()
	for i := range maxExecutedPerImage + 10 {
		recs.ObserveExec(execOf(self, fmt.Sprintf("/tmp/build%d/app", i), now.Add(time.Duration(i)*time.Millisecond)))
	}
	waitFor(t, "a flush while the read hangs", func() bool {
		invs, err := st.Inventories()
		return err == nil && len(invs) == 1 && len(invs[0].Executed) == maxExecutedPerImage
	})
	inv, _ := recs.Inventory(ctx, "shop/web:1")
	if _, ok := inv.Executed["/tmp/build0/app"]; ok {
		t.Error("the least recent binary was kept past the bound")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return while a read hung")
	}
}
