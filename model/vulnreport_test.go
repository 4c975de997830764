package model

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readVulnFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "vulns", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseVulnReport(t *testing.T) {
	tests := []struct {
		name    string
		file    string // under testdata/vulns, or
		data    string // inline
		scanner string
		count   int
		// severities counts findings per severity.
		severities map[string]int
		// findings are checked in full, by (ID, Package).
		findings []Vulnerability
		absent   [][2]string // (ID, Package) that must not be there
	}{
		{
			name: "grype debian", file: "grype-debian.json", scanner: "grype 0.104.1", count: 8,
			severities: map[string]int{"critical": 1, "high": 3, "medium": 2, "low": 1, "negligible": 1},
			findings: []Vulnerability{
				{ID: "CVE-2023-45853", Severity: "critical", Package: "zlib1g", Version: "1:1.2.13.dfsg-1", Type: "deb"},
				// Two matches (dpkg Medium, NVD CPE High): one finding, the more severe, the first fix.
				{ID: "CVE-2023-5363", Severity: "high", Package: "libssl3", Version: "3.0.11-1~deb12u1", Type: "deb",
					FixedIn: "3.0.11-1~deb12u2"},
				{ID: "CVE-2023-5363", Severity: "medium", Package: "openssl", Version: "3.0.11-1~deb12u1", Type: "deb",
					FixedIn: "3.0.11-1~deb12u2"},
				{ID: "CVE-2022-3715", Severity: "low", Package: "bash", Version: "5.2.15-2+b2", Type: "deb"},
				{ID: "CVE-2011-3374", Severity: "negligible", Package: "apt", Version: "2.6.1", Type: "deb"},
				// A GHSA keeps its own id; the related CVE is not a second finding.
				{ID: "GHSA-m425-mq94-257g", Severity: "high", Package: "google.golang.org/grpc", Version: "v1.56.2",
					Type: "go-module", FixedIn: "1.56.3"},
				{ID: "CVE-2023-44487", Severity: "high", Package: "nginx", Version: "1.25.2", Type: "binary", FixedIn: "1.25.3"},
			},
			absent: [][2]string{{"CVE-2010-4756", "libc6"}, {"CVE-2023-44487", "google.golang.org/grpc"}},
		},
		{name: "grype, no matches", file: "grype-empty.json", scanner: "grype 0.74.7", count: 0},
		{
			name: "trivy debian (no Trivy version)", file: "trivy-debian.json", scanner: "trivy (schema 2)", count: 10,
			severities: map[string]int{"critical": 1, "high": 5, "medium": 2, "low": 2},
			findings: []Vulnerability{
				{ID: "CVE-2023-45853", Severity: "critical", Package: "zlib1g", Version: "1:1.2.13.dfsg-1", Type: "deb"},
				{ID: "CVE-2023-5363", Severity: "high", Package: "libssl3", Version: "3.0.11-1~deb12u1", Type: "deb",
					FixedIn: "3.0.11-1~deb12u2"},
				{ID: "CVE-2023-5363", Severity: "high", Package: "openssl", Version: "3.0.11-1~deb12u1", Type: "deb",
					FixedIn: "3.0.11-1~deb12u2"},
				{ID: "CVE-2023-44487", Severity: "high", Package: "nginx", Version: "1.25.2-1~bookworm", Type: "deb"},
				{ID: "TEMP-0841856-B18BAF", Severity: "low", Package: "bash", Version: "5.2.15-2+b2", Type: "deb"},
				{ID: "CVE-2023-4039", Severity: "medium", Package: "libgcc-s1", Version: "12.2.0-14", Type: "deb"},
				// Language packages keep Trivy's type.
				{ID: "CVE-2023-44487", Severity: "medium", Package: "golang.org/x/net", Version: "v0.10.0", Type: "gobinary",
					FixedIn: "0.17.0"},
				{ID: "GHSA-m425-mq94-257g", Severity: "high", Package: "google.golang.org/grpc", Version: "v1.56.2",
					Type: "gobinary", FixedIn: "1.56.3, 1.57.1, 1.58.3"},
			},
		},
		{
			name: "trivy alpine (Trivy version)", file: "trivy-alpine.json", scanner: "trivy 0.69.0 (schema 2)", count: 6,
			severities: map[string]int{"high": 1, "medium": 4, "low": 1},
			findings: []Vulnerability{
				{ID: "CVE-2023-42363", Severity: "medium", Package: "busybox", Version: "1.36.1-r2", Type: "apk", FixedIn: "1.36.1-r6"},
				{ID: "CVE-2023-42363", Severity: "medium", Package: "busybox-binsh", Version: "1.36.1-r2", Type: "apk",
					FixedIn: "1.36.1-r6"},
				{ID: "CVE-2024-0727", Severity: "low", Package: "libssl3", Version: "3.1.3-r0", Type: "apk", FixedIn: "3.1.4-r5"},
				{ID: "CVE-2023-44487", Severity: "high", Package: "nginx", Version: "1.25.2-r1", Type: "apk", FixedIn: "1.25.3-r0"},
			},
		},
		{name: "trivy, no Results", data: `{"SchemaVersion":2,"ArtifactName":"scratch","ArtifactType":"container_image"}`,
			scanner: "trivy (schema 2)"},
		{name: "trivy, Results null", data: `{"SchemaVersion":2,"Results":null}`, scanner: "trivy (schema 2)"},
		{name: "grype version with v and suffix", scanner: "grype 0.80.0-SNAPSHOT-1a2b3c",
			data: `{"matches":[],"descriptor":{"name":"grype","version":"v0.80.0-SNAPSHOT-1a2b3c"}}`},
		{name: "UTF-8 byte order mark", data: "\xef\xbb\xbf" + `{"SchemaVersion":2,"Results":[]}`, scanner: "trivy (schema 2)"},
		{name: "trivy severity folded", scanner: "trivy (schema 2)", count: 1, severities: map[string]int{"unknown": 1},
			data: `{"SchemaVersion":2,"Results":[{"Target":"x","Class":"os-pkgs","Type":"redhat","Vulnerabilities":[` +
				`{"VulnerabilityID":"CVE-1","PkgName":"p","InstalledVersion":"1","Severity":"IMPORTANT"}]}]}`,
			findings: []Vulnerability{{ID: "CVE-1", Severity: "unknown", Package: "p", Version: "1", Type: "rpm"}}},
		{name: "a duplicate of unknown severity does not hide a known one", scanner: "grype 0.74.7", count: 1,
			data: `{"descriptor":{"name":"grype","version":"0.74.7"},"matches":[` +
				`{"vulnerability":{"id":"CVE-1","severity":"Unknown","fix":{"versions":[],"state":"unknown"}},"artifact":{"name":"p","version":"1","purl":"pkg:apk/alpine/p@1"}},` +
				`{"vulnerability":{"id":"CVE-1","severity":"Low","fix":{"versions":["2"],"state":"fixed"}},"artifact":{"name":"p","version":"1","type":"apk"}}]}`,
			findings: []Vulnerability{{ID: "CVE-1", Severity: "low", Package: "p", Version: "1", Type: "apk", FixedIn: "2"}}},
		{name: "type from the purl when the result has none", scanner: "trivy (schema 2)", count: 1,
			data: `{"SchemaVersion":2,"Results":[{"Target":"x","Vulnerabilities":[` +
				`{"VulnerabilityID":"CVE-1","PkgName":"p","InstalledVersion":"1","Severity":"LOW","PkgIdentifier":{"PURL":"pkg:deb/debian/p@1"}}]}]}`,
			findings: []Vulnerability{{ID: "CVE-1", Severity: "low", Package: "p", Version: "1", Type: "deb"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			if tt.file != "" {
				data = readVulnFixture(t, tt.file)
			}
			scanner, findings, err := ParseVulnReport(data)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if scanner != tt.scanner {
				t.Errorf("scanner %q, want %q", scanner, tt.scanner)
			}
			if findings == nil {
				t.Error("findings nil, want a (possibly empty) slice")
			}
			if len(findings) != tt.count {
				t.Errorf("%d findings, want %d: %+v", len(findings), tt.count, findings)
			}
			if tt.severities != nil {
				got := map[string]int{}
				for _, f := range findings {
					got[f.Severity]++
				}
				if !maps.Equal(got, tt.severities) {
					t.Errorf("severities %v, want %v", got, tt.severities)
				}
			}
			for _, want := range tt.findings {
				i := slices.IndexFunc(findings, func(f Vulnerability) bool { return f.ID == want.ID && f.Package == want.Package })
				if i < 0 {
					t.Errorf("no finding %s in %s", want.ID, want.Package)
					continue
				}
				if findings[i] != want {
					t.Errorf("finding %s in %s:\n got %+v\nwant %+v", want.ID, want.Package, findings[i], want)
				}
			}
			for _, a := range tt.absent {
				if slices.ContainsFunc(findings, func(f Vulnerability) bool { return f.ID == a[0] && f.Package == a[1] }) {
					t.Errorf("finding %s in %s should not be there", a[0], a[1])
				}
			}
			seen := map[[3]string]bool{}
			for _, f := range findings {
				k := [3]string{f.ID, f.Package, f.Version}
				if seen[k] {
					t.Errorf("duplicate finding %v", k)
				}
				seen[k] = true
			}
		})
	}
}

func TestParseVulnReportErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		data string
		// want are substrings the error must contain: what is wrong, and where.
		want []string
		// notReport says the error wraps ErrNotVulnReport.
		notReport bool
	}{
		{name: "truncated JSON", file: "bad-truncated.json", want: []string{"invalid JSON", "unexpected end"}, notReport: true},
		{name: "empty", data: " \n", want: []string{"empty input"}, notReport: true},
		{name: "not JSON", data: "Report Summary\n┌────────┐", want: []string{"invalid JSON", "near byte 1"}, notReport: true},
		{name: "trailing data", data: `{"SchemaVersion":2} {}`, want: []string{"invalid JSON"}, notReport: true},
		{name: "JSON string", data: `"grype"`, want: []string{"a string, not an object"}, notReport: true},
		{name: "JSON null", data: `null`, want: []string{"a null, not an object"}, notReport: true},
		{name: "JSON array", data: `[1,2]`, want: []string{"an array, not an object"}, notReport: true},
		{name: "empty object", data: `{}`, want: []string{"no matches", "SchemaVersion"}, notReport: true},
		{name: "CycloneDX", file: "bad-cyclonedx.json", want: []string{"CycloneDX", "grype -o json", "trivy image -f json"}, notReport: true},
		{name: "SARIF", file: "bad-sarif.json", want: []string{"SARIF"}, notReport: true},
		{name: "SARIF without $schema", data: `{"version":"2.1.0","runs":[]}`, want: []string{"SARIF"}, notReport: true},
		{name: "SPDX", data: `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT"}`, want: []string{"SPDX"}, notReport: true},
		{name: "both formats' keys", data: `{"matches":[],"SchemaVersion":2}`, want: []string{"both"}, notReport: true},

		// Grype.
		{name: "grype match without id", file: "bad-grype-missing-id.json", want: []string{"grype report", "matches[1]", "no vulnerability.id"}},
		{name: "grype match without package name", want: []string{"grype report", "matches[0] (CVE-1)", "no artifact.name"},
			data: `{"matches":[{"vulnerability":{"id":"CVE-1"},"artifact":{"version":"1"}}],"descriptor":{"name":"grype","version":"0.74.7"}}`},
		{name: "grype without matches", file: "bad-grype-no-matches.json", want: []string{"grype report", "no matches array"}},
		{name: "grype matches null", want: []string{"grype report", "no matches array"},
			data: `{"matches":null,"descriptor":{"name":"grype","version":"0.74.7"}}`},
		{name: "grype matches not an array", want: []string{"grype report", "is a JSON object, want an array"},
			data: `{"matches":{},"descriptor":{"name":"grype","version":"0.74.7"}}`},
		{name: "grype id not a string", want: []string{"grype report", "vulnerability.id is a JSON number, want a string"},
			data: `{"matches":[{"vulnerability":{"id":5}}],"descriptor":{"name":"grype","version":"0.74.7"}}`},
		{name: "grype before fix{versions,state}", file: "bad-grype-0.12.json",
			want: []string{"grype report", `"0.12.1"`, "accepted: grype 0.13.0 to 0.x"}},
		{name: "grype 1.x", data: `{"matches":[],"descriptor":{"name":"grype","version":"1.2.0"}}`,
			want: []string{"grype report", `descriptor.version "1.2.0" is not supported`, "accepted: grype 0.13.0 to 0.x"}},
		{name: "grype dev build", data: `{"matches":[],"descriptor":{"name":"grype","version":"[not provided]"}}`,
			want: []string{`"[not provided]" is not a release version`, "accepted"}},
		{name: "grype without version", data: `{"matches":[],"descriptor":{"name":"grype"}}`,
			want: []string{"no descriptor.version"}},
		{name: "grype without descriptor", data: `{"matches":[]}`, want: []string{"grype report", "no descriptor"}},
		{name: "syft JSON", data: `{"artifacts":[],"descriptor":{"name":"syft","version":"1.0.0"},"schema":{"version":"16.0.0"}}`,
			want: []string{`descriptor.name is "syft", not grype`}, notReport: true},

		// Trivy.
		{name: "trivy schema 3", file: "bad-trivy-schema3.json", want: []string{"trivy report: SchemaVersion 3 not supported (accepted: 2)"}},
		{name: "trivy schema 1", data: `{"SchemaVersion":1,"Results":[]}`, want: []string{"trivy report: SchemaVersion 1 not supported (accepted: 2)"}},
		{name: "trivy before 0.20 (bare array)", file: "bad-trivy-schema1-array.json",
			want: []string{"trivy report", "bare array of results", "accepted: SchemaVersion 2"}},
		{name: "trivy without SchemaVersion", data: `{"ArtifactName":"x","Results":[]}`,
			want: []string{"trivy report: no SchemaVersion", "accepted: 2"}},
		{name: "trivy SchemaVersion a string", data: `{"SchemaVersion":"2","Results":[]}`,
			want: []string{`SchemaVersion "2" is not an integer`}},
		{name: "trivy finding without PkgName", file: "bad-trivy-missing-pkgname.json",
			want: []string{"trivy report", "Results[0].Vulnerabilities[1]", "CVE-2023-45853", "no PkgName"}},
		{name: "trivy finding without id", want: []string{"trivy report", "Results[1].Vulnerabilities[0]", `target "app"`, "no VulnerabilityID"},
			data: `{"SchemaVersion":2,"Results":[{"Target":"os"},{"Target":"app","Vulnerabilities":[{"PkgName":"p"}]}]}`},
		{name: "trivy Results not an array", data: `{"SchemaVersion":2,"Results":{}}`,
			want: []string{"trivy report", "Results is a JSON object, want an array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			if tt.file != "" {
				data = readVulnFixture(t, tt.file)
			}
			scanner, findings, err := ParseVulnReport(data)
			if err == nil {
				t.Fatalf("no error; scanner %q, %d findings", scanner, len(findings))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := errors.Is(err, ErrNotVulnReport); got != tt.notReport {
				t.Errorf("errors.Is(err, ErrNotVulnReport) = %v, want %v (error %q)", got, tt.notReport, err)
			}
			if scanner != "" || findings != nil {
				t.Errorf("on error: scanner %q, findings %v, want neither", scanner, findings)
			}
		})
	}
}

// Every fixture that is not a report is named bad-*, and fails.
func TestVulnFixturesCovered(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "vulns", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		_, _, err := ParseVulnReport(readVulnFixture(t, name))
		if bad := strings.HasPrefix(name, "bad-"); bad != (err != nil) {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

func FuzzParseVulnReport(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "vulns", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures to seed from: %v", err)
	}
	for _, path := range files {
		f.Add(readVulnFixture(f, filepath.Base(path)))
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `[{"Target":"x"}]`, `{"SchemaVersion":2}`,
		`{"SchemaVersion":2,"Results":[{"Target":"x","Type":"alpine","Vulnerabilities":[{"VulnerabilityID":"CVE-1","PkgName":"p"}]}]}`,
		`{"matches":[],"descriptor":{"name":"grype","version":"0.13.0"}}`,
		`{"matches":[{"vulnerability":{"id":"CVE-1","fix":{"versions":["1",""]}},"artifact":{"name":"p","purl":"pkg:apk/x"}}],"descriptor":{"name":"grype","version":"0.99.0"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		scanner, findings, err := ParseVulnReport(data)
		if err != nil {
			if scanner != "" || findings != nil || err.Error() == "" {
				t.Fatalf("error %q with scanner %q and %d findings", err, scanner, len(findings))
			}
			return
		}
		if !strings.HasPrefix(scanner, "grype 0.") && !strings.HasPrefix(scanner, "trivy ") {
			t.Fatalf("accepted a report of scanner %q", scanner)
		}
		if findings == nil {
			t.Fatal("nil findings without an error")
		}
		seen := map[[3]string]bool{}
		for _, v := range findings {
			if strings.TrimSpace(v.ID) == "" || strings.TrimSpace(v.Package) == "" {
				t.Fatalf("accepted a finding without id or package: %+v", v)
			}
			if !slices.Contains(Severities, v.Severity) {
				t.Fatalf("severity %q is not one of %v", v.Severity, Severities)
			}
			k := [3]string{v.ID, v.Package, v.Version}
			if seen[k] {
				t.Fatalf("duplicate finding %v", k)
			}
			seen[k] = true
		}
	})
}
