package model

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func testInventory() *Inventory {
	inv := NewInventory("shop/web", "1")
	inv.SetPackages("dpkg", time.Unix(100, 0), []Package{
		{Name: "nginx", Version: "1.22", Type: "deb", Files: []string{"/usr/sbin/nginx"}},
		{Name: "libssl3", Version: "3.0", Type: "deb", Files: []string{"/usr/lib/libssl.so.3"}},
		{Name: "zlib1g", Version: "1.2", Type: "deb", Files: []string{"/usr/lib/libz.so.1.2.13"}},
		{Name: "curl", Version: "7.88", Type: "deb", Files: []string{"/usr/bin/curl"}},
	})
	return inv
}

func TestInventoryInUse(t *testing.T) {
	inv := testInventory()
	t0 := time.Unix(1000, 0)
	if !inv.AddExec("/usr/sbin/nginx", t0) {
		t.Fatal("first exec of nginx is not new")
	}
	if inv.AddExec("/usr/sbin/nginx", t0.Add(time.Minute)) {
		t.Fatal("second exec of nginx is new")
	}
	inv.SetLibraries("/usr/sbin/nginx", []string{"/usr/lib/libssl.so.3", "/usr/lib/libc.so.6"})
	uses := inv.InUse()
	got := map[string]PackageUse{}
	var order []string
	for _, u := range uses {
		got[u.Name] = u
		order = append(order, u.Name)
	}
	if want := []string{"libssl3", "nginx", "curl", "zlib1g"}; !slices.Equal(order, want) {
		t.Errorf("order = %v, want in-use first then by name %v", order, want)
	}
	for name, want := range map[string]string{"nginx": PackageInUse, "libssl3": PackageInUse, "zlib1g": PackageInstalledOnly, "curl": PackageInstalledOnly} {
		if got[name].Status != want {
			t.Errorf("%s: %s, want %s", name, got[name].Status, want)
		}
	}
	if b := got["libssl3"].Binaries; !slices.Equal(b, []string{"/usr/sbin/nginx"}) {
		t.Errorf("libssl3 is used by %v, want nginx", b)
	}
	if ls := got["nginx"].LastSeen; !ls.Equal(t0.Add(time.Minute)) {
		t.Errorf("nginx last seen %v", ls)
	}
	if e := inv.Executed["/usr/sbin/nginx"]; e.Count != 2 || !e.FirstSeen.Equal(t0) {
		t.Errorf("nginx execution = %+v", e)
	}
}

// Merging two nodes' inventories equals one node seeing every exec.
func TestInventoryMergeIsExact(t *testing.T) {
	t0 := time.Unix(1000, 0)
	execs := []struct {
		path string
		at   time.Time
		libs []string
	}{
		{"/usr/sbin/nginx", t0, []string{"/usr/lib/libssl.so.3"}},
		{"/usr/bin/curl", t0.Add(time.Second), []string{"/usr/lib/libz.so.1.2.13"}},
		{"/usr/sbin/nginx", t0.Add(2 * time.Second), nil},
		{"/usr/bin/curl", t0.Add(3 * time.Second), []string{"/usr/lib/libz.so.1.2.13"}},
	}
	whole, a, b := testInventory(), testInventory(), NewInventory("shop/web", "1")
	for i, e := range execs {
		part := a
		if i%2 == 1 {
			part = b
		}
		for _, inv := range []*Inventory{whole, part} {
			inv.AddExec(e.path, e.at)
			if e.libs != nil {
				inv.SetLibraries(e.path, e.libs)
			}
		}
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, whole) {
		t.Errorf("merged %+v\nwant %+v", a, whole)
	}
	if err := a.Merge(NewInventory("other", "1")); err == nil {
		t.Error("merging another image's inventory: no error")
	}
	c := a.Clone()
	c.Executed["/usr/sbin/nginx"] = Execution{Count: 99}
	c.Packages[0].Files[0] = "/changed"
	if reflect.DeepEqual(a, c) {
		t.Error("Clone shares state with the original")
	}
}

func TestInventoryValidate(t *testing.T) {
	tests := []struct {
		name string
		inv  Inventory
	}{
		{"no image", Inventory{}},
		{"unnamed package", Inventory{Image: "a", Packages: []Package{{Version: "1"}}}},
		{"relative exec", Inventory{Image: "a", Executed: map[string]Execution{"bin/sh": {Count: 1}}}},
		{"zero count", Inventory{Image: "a", Executed: map[string]Execution{"/bin/sh": {}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.inv.Validate(); err == nil {
				t.Error("no error")
			}
		})
	}
	if err := testInventory().Validate(); err != nil {
		t.Errorf("a good inventory: %v", err)
	}
}

func TestVulnReportInUse(t *testing.T) {
	inv := testInventory()
	inv.AddExec("/usr/sbin/nginx", time.Unix(1, 0))
	inv.SetLibraries("/usr/sbin/nginx", []string{"/usr/lib/libssl.so.3"})
	r := &VulnReport{Image: "shop/web", Tag: "1", Findings: []Vulnerability{
		{ID: "CVE-3", Severity: "low", Package: "nginx"},
		{ID: "CVE-1", Severity: "critical", Package: "zlib1g"},
		{ID: "CVE-2", Severity: "critical", Package: "libssl3"},
		{ID: "CVE-4", Severity: NormalizeSeverity("High"), Package: "libssl3"},
	}}
	r.MarkInUse(inv)
	if got := r.TopInUse(5); !slices.Equal(got, []string{"CVE-2", "CVE-4", "CVE-3"}) {
		t.Errorf("top in-use = %v", got)
	}
	if got := r.Counts(true); !reflect.DeepEqual(got, map[string]int{"critical": 1, "high": 1, "low": 1}) {
		t.Errorf("in-use counts = %v", got)
	}
	if got := r.Counts(false); got["critical"] != 2 {
		t.Errorf("all counts = %v", got)
	}
	if NormalizeSeverity("bogus") != "unknown" {
		t.Error("an unknown severity is not folded to unknown")
	}
}
