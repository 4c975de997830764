package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/store"
)

const vulnFixtures = "../../model/testdata/vulns/"

func storedReports(t *testing.T, path string) []*model.VulnReport {
	t.Helper()
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs, err := st.VulnReports()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// Each malformed scanner report is refused with an error that names the
// file and the problem, and the stored report stays the one imported before.
func TestVulnsImportRefusesMalformedReports(t *testing.T) {
	db := filepath.Join(t.TempDir(), "cagewatch.db")
	out := mustCLI(t, "vulns", "import", "nginx:1.25", vulnFixtures+"grype-debian.json", "--store", db)
	if !strings.Contains(out, "nginx:1.25: 8 findings") || !strings.Contains(out, "grype 0.104.1") {
		t.Errorf("import said %q", out)
	}
	tests := []struct {
		file string
		want string
	}{
		{"bad-truncated.json", "bad-truncated.json"},
		{"bad-grype-missing-id.json", "matches[1] has no vulnerability.id"},
		{"bad-grype-0.12.json", "0.12"},
		{"bad-trivy-schema3.json", "SchemaVersion 3"},
		{"bad-trivy-schema1-array.json", "trivy"},
		{"bad-trivy-missing-pkgname.json", "has no PkgName"},
		{"bad-cyclonedx.json", "CycloneDX"},
		{"bad-sarif.json", "SARIF"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, stderr, err := runCLI(context.Background(), "vulns", "import", "nginx:1.25", vulnFixtures+tt.file, "--store", db)
			if err == nil {
				t.Fatalf("accepted %s", tt.file)
			}
			if msg := err.Error() + stderr; !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.file) {
				t.Errorf("error %q does not name %q and the file", msg, tt.want)
			}
		})
	}
	if rs := storedReports(t, db); len(rs) != 1 || len(rs[0].Findings) != 8 || rs[0].Scanner != "grype 0.104.1" {
		t.Errorf("stored after the refusals: %+v", rs)
	}
	if _, _, err := runCLI(context.Background(), "vulns", "import", "nginx:1.25", vulnFixtures+"missing.json", "--store", db); err == nil {
		t.Error("a missing file was accepted")
	}
}

// Malformed SBOMs are refused and leave the image's packages as they were.
func TestSBOMImportRefusesMalformedDocuments(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "cagewatch.db")
	good := "../../profiler/inventory/testdata/sbom/busybox.spdx.json"
	mustCLI(t, "sbom", "import", "cagewatch/busybox:1", good, "--store", db)
	before := mustCLI(t, "inuse", "cagewatch/busybox:1", "--json", "--store", db)
	bad := map[string]string{
		"notjson.json":   "this is not JSON",
		"cyclonedx.json": `{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}`,
		"tagvalue.spdx":  "SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\n",
		"empty.json":     `{}`,
	}
	for name, content := range bad {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, dir, name, content)
			_, stderr, err := runCLI(context.Background(), "sbom", "import", "cagewatch/busybox:1", path, "--store", db)
			if err == nil {
				t.Fatalf("accepted %s", name)
			}
			if msg := err.Error() + stderr; !strings.Contains(msg, name) {
				t.Errorf("error %q does not name the file", msg)
			}
		})
	}
	if after := mustCLI(t, "inuse", "cagewatch/busybox:1", "--json", "--store", db); after != before {
		t.Errorf("the refused imports changed the inventory:\nbefore %s\nafter %s", before, after)
	}
	if _, _, err := runCLI(context.Background(), "inuse", "other/image:1", "--store", db); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("inuse of an unknown image: %v, want ErrNotFound", err)
	}
}

func TestReportCSVAndJSON(t *testing.T) {
	db := filepath.Join(t.TempDir(), "cagewatch.db")
	mustCLI(t, "vulns", "import", "docker.io/library/nginx:1.25", vulnFixtures+"trivy-debian.json", "--store", db)
	rows, err := csv.NewReader(strings.NewReader(mustCLI(t, "report", "--csv", "--store", db))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || strings.Join(rows[0], ",") != strings.Join(reportColumns, ",") {
		t.Fatalf("report --csv = %v", rows)
	}
	row := map[string]string{}
	for i, c := range reportColumns {
		row[c] = rows[1][i]
	}
	// Nothing ran yet: every finding is installed only.
	if row["image"] != "nginx:1.25" || row["in_use_critical"] != "0" || row["installed_only_critical"] == "0" ||
		row["installed_only_vulnerable_packages"] == "" {
		t.Errorf("report row = %v", row)
	}
	var reports []model.ImageReport
	if err := json.Unmarshal([]byte(mustCLI(t, "report", "--json", "--since", "30d", "--store", db)), &reports); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || len(reports[0].VulnerablePackages) == 0 {
		t.Errorf("report --json = %+v", reports)
	}
	for _, bad := range [][]string{{"--since", "soon"}, {"--since", "-3d"}, {"--json", "--csv"}} {
		if _, _, err := runCLI(context.Background(), append([]string{"report", "--store", db}, bad...)...); err == nil {
			t.Errorf("report %v: no error", bad)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An image's inventory travels with its baseline: export from one store,
// import into another, and inuse there says the same.
func TestInventoryTravelsWithBaselineExport(t *testing.T) {
	dir := t.TempDir()
	src := seedStore(t, learnedBaseline("cagewatch/busybox", "1", 30, ""))
	mustCLI(t, "sbom", "import", "cagewatch/busybox:1", "../../profiler/inventory/testdata/sbom/busybox.spdx.json", "--store", src)
	export := filepath.Join(dir, "export.json")
	mustCLI(t, "baseline", "export", "--store", src, "-o", export)
	dst := filepath.Join(dir, "other.db")
	if out := mustCLI(t, "baseline", "import", export, "--store", dst); !strings.Contains(out, "1 baselines and 1 inventories") {
		t.Errorf("import said %q", out)
	}
	if a, b := mustCLI(t, "inuse", "cagewatch/busybox:1", "--json", "--store", src), mustCLI(t, "inuse", "cagewatch/busybox:1", "--json", "--store", dst); a != b {
		t.Errorf("inventory after the round trip:\n%s\nwant\n%s", b, a)
	}
}
