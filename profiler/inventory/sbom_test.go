package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// The fixtures are real syft output (testdata/sbom/README.md says how each
// was made).
func readSBOMFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "sbom", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func sbomPackage(pkgs []model.Package, name string) (model.Package, bool) {
	i := slices.IndexFunc(pkgs, func(p model.Package) bool { return p.Name == name })
	if i < 0 {
		return model.Package{}, false
	}
	return pkgs[i], true
}

func TestParseSBOMFixtures(t *testing.T) {
	busybox := []model.Package{{Name: "busybox", Version: "1.35.0", Type: "binary", Files: []string{"/bin/busybox"}}}
	type pkgWant struct {
		files   []string // must be among the package's files
		without []string // must not be
		none    bool     // the package has no runnable files
	}
	tests := []struct {
		name    string
		file    string
		exact   []model.Package    // the whole result, when set
		names   []string           // else: exactly these package names …
		typ     string             // … all of this type …
		details map[string]pkgWant // … and these packages' files
	}{
		{
			// busybox-static's binary alone: syft's binary classifier finds
			// it and links it by "evident-by"; the image itself is no package.
			name:  "busybox image, SPDX 2.3",
			file:  "busybox.spdx.json",
			exact: busybox,
		},
		{
			name:  "busybox image, SPDX 2.2",
			file:  "busybox.spdx22.json",
			exact: busybox,
		},
		{
			// dpkg packages CONTAIN their files; syft names them by real
			// path (/bin/gzip of the .list is /usr/bin/gzip under merged /usr,
			// the libz.so.1 symlink is libz.so.1.2.13).
			name:  "debian image, dpkg packages",
			file:  "debian-mini.spdx.json",
			names: []string{"base-files", "gzip", "libc6", "libzstd1", "zlib1g"},
			typ:   "deb",
			details: map[string]pkgWant{
				"gzip": {
					files: []string{"/usr/bin/gzip", "/usr/bin/zgrep" /* a shell script */, "/usr/bin/zcat"},
					without: []string{"/usr/share/man/man1/gzip.1.gz", "/usr/share/doc/gzip/copyright",
						"/var/lib/dpkg/status" /* evident-by, not runnable */, "/bin/gzip"},
				},
				"zlib1g":   {files: []string{"/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"}, without: []string{"/lib/x86_64-linux-gnu/libz.so.1"}},
				"libzstd1": {files: []string{"/usr/lib/x86_64-linux-gnu/libzstd.so.1.5.4"}},
				"libc6": {
					files: []string{"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
						"/usr/lib/x86_64-linux-gnu/gconv/UTF-16.so"},
					without: []string{"/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", "/usr/share/doc/libc6/copyright"},
				},
				"base-files": {none: true}, // kept, with no runnable file
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source, pkgs, err := ParseSBOM(readSBOMFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if source != SourceSPDX {
				t.Errorf("source %q, want %q", source, SourceSPDX)
			}
			if tt.exact != nil {
				if !slices.EqualFunc(pkgs, tt.exact, func(a, b model.Package) bool {
					return a.Name == b.Name && a.Version == b.Version && a.Type == b.Type && slices.Equal(a.Files, b.Files)
				}) {
					t.Fatalf("packages %+v, want %+v", pkgs, tt.exact)
				}
				return
			}
			var names []string
			for _, p := range pkgs {
				names = append(names, p.Name)
				if p.Type != tt.typ {
					t.Errorf("package %s has type %q, want %q", p.Name, p.Type, tt.typ)
				}
				if p.Version == "" {
					t.Errorf("package %s has no version", p.Name)
				}
				for _, f := range p.Files {
					if !strings.HasPrefix(f, "/") || filepath.Clean(f) != f {
						t.Errorf("package %s: file %q is not an absolute clean path", p.Name, f)
					}
				}
			}
			if !slices.Equal(names, tt.names) {
				t.Fatalf("packages %v, want %v", names, tt.names)
			}
			for name, want := range tt.details {
				p, _ := sbomPackage(pkgs, name)
				if want.none && len(p.Files) > 0 {
					t.Errorf("%s: files %v, want none", name, p.Files)
				}
				for _, f := range want.files {
					if !slices.Contains(p.Files, f) {
						t.Errorf("%s: %s missing from %v", name, f, p.Files)
					}
				}
				for _, f := range want.without {
					if slices.Contains(p.Files, f) {
						t.Errorf("%s: has %s", name, f)
					}
				}
			}
		})
	}
}

// editSBOM returns the busybox SPDX 2.3 fixture changed by edit.
func editSBOM(t *testing.T, edit func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readSBOMFixture(t, "busybox.spdx.json"), &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// keepOnly filters a list of the document, e.g. "packages", by SPDXID or, for
// "relationships", by either end.
func keepOnly(doc map[string]any, list string, keep func(ids ...string) bool) {
	var out []any
	for _, e := range doc[list].([]any) {
		m := e.(map[string]any)
		var ids []string
		for _, k := range []string{"SPDXID", "spdxElementId", "relatedSpdxElement"} {
			if s, ok := m[k].(string); ok {
				ids = append(ids, s)
			}
		}
		if keep(ids...) {
			out = append(out, e)
		}
	}
	doc[list] = out
}

func TestParseSBOMErrors(t *testing.T) {
	const busyboxPkg = "SPDXRef-Package-binary-busybox-a900f42cee92368b"
	notBusybox := func(ids ...string) bool { return !slices.Contains(ids, busyboxPkg) }
	tests := []struct {
		name  string
		data  []byte
		is    error
		wants []string // substrings of the error
	}{
		{"empty", []byte(" \n"), ErrSBOMFormat, []string{"empty input"}},
		{"not JSON", []byte(`{"spdxVersion": "SPDX-2.3",`), ErrSBOMFormat, []string{"not JSON"}},
		{"binary junk", []byte("\x7fELF\x02\x01\x01"), ErrSBOMFormat, []string{"not JSON"}},
		{"JSON array", []byte(`[{"spdxVersion": "SPDX-2.3"}]`), ErrSBOMFormat, []string{"an array", "not an SPDX document"}},
		{"XML", []byte(`<?xml version="1.0"?><bom xmlns="http://cyclonedx.org/schema/bom/1.6"/>`), ErrSBOMFormat, []string{"XML", "SPDX JSON"}},
		{"CycloneDX JSON from syft", readSBOMFixture(t, "busybox.cdx.json"), ErrSBOMFormat,
			[]string{"CycloneDX carries no package→file relationships in syft's output; use SPDX JSON (syft -o spdx-json)"}},
		{"SPDX tag-value from syft", readSBOMFixture(t, "busybox.spdx"), ErrSBOMFormat, []string{"SPDX tag-value is not supported", "only SPDX JSON"}},
		{"syft JSON", readSBOMFixture(t, "busybox.syft.json"), ErrSBOMFormat, []string{"syft's own JSON"}},
		{"SPDX 3 JSON-LD", []byte(`{"@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld", "@graph": []}`), ErrSBOMFormat, []string{"SPDX 3"}},
		{"JSON, no spdxVersion", []byte(`{"name": "x", "packages": []}`), ErrSBOMFormat, []string{"without spdxVersion"}},
		{"SPDX version the parser lacks", editSBOM(t, func(d map[string]any) { d["spdxVersion"] = "SPDX-2.4" }), ErrSBOMFormat,
			[]string{`spdxVersion "SPDX-2.4"`, "SPDX-2.2, SPDX-2.3"}},
		{"spdxVersion not a string", editSBOM(t, func(d map[string]any) { d["spdxVersion"] = 2.3 }), ErrSBOMFormat, []string{`spdxVersion "2.3"`}},
		{"no packages", editSBOM(t, func(d map[string]any) {
			delete(d, "packages")
			d["relationships"] = []any{}
		}), ErrSBOMInvalid, []string{`"cagewatch/busybox" lists no packages`}},
		{"only the scanned image", editSBOM(t, func(d map[string]any) {
			keepOnly(d, "packages", notBusybox)
			keepOnly(d, "relationships", notBusybox)
		}), ErrSBOMInvalid, []string{"no packages besides SPDXRef-DocumentRoot-Image-cagewatch-busybox", "found none"}},
		{"relationship to an unknown SPDXID", editSBOM(t, func(d map[string]any) {
			d["relationships"] = append(d["relationships"].([]any), map[string]any{
				"spdxElementId": busyboxPkg, "relatedSpdxElement": "SPDXRef-File-usr-bin-missing", "relationshipType": "CONTAINS"})
		}), ErrSBOMInvalid, []string{`relationship "SPDXRef-Package-binary-busybox-a900f42cee92368b CONTAINS SPDXRef-File-usr-bin-missing" names SPDXRef-File-usr-bin-missing`, "no package, file or snippet"}},
		{"unknown SPDXID on the left", editSBOM(t, func(d map[string]any) {
			d["relationships"] = append(d["relationships"].([]any), map[string]any{
				"spdxElementId": "SPDXRef-File-etc-passwd", "relatedSpdxElement": busyboxPkg, "relationshipType": "CONTAINED_BY"})
		}), ErrSBOMInvalid, []string{"SPDXRef-File-etc-passwd"}},
		{"hasFiles naming an unknown file", editSBOM(t, func(d map[string]any) {
			d["packages"].([]any)[0].(map[string]any)["hasFiles"] = []any{"SPDXRef-File-gone"}
		}), ErrSBOMInvalid, []string{"SPDXRef-File-gone"}},
		{"undeclared external document", editSBOM(t, func(d map[string]any) {
			d["relationships"] = append(d["relationships"].([]any), map[string]any{
				"spdxElementId": busyboxPkg, "relatedSpdxElement": "DocumentRef-base:SPDXRef-Package-libc", "relationshipType": "DEPENDS_ON"})
		}), ErrSBOMInvalid, []string{"DocumentRef-base:SPDXRef-Package-libc", "external document"}},
		{"SPDXID declared twice", editSBOM(t, func(d map[string]any) {
			d["files"].([]any)[0].(map[string]any)["SPDXID"] = busyboxPkg
		}), ErrSBOMInvalid, []string{busyboxPkg, "declared twice"}},
		{"SPDXID without its prefix", editSBOM(t, func(d map[string]any) {
			d["packages"].([]any)[0].(map[string]any)["SPDXID"] = "Package-busybox"
		}), ErrSBOMInvalid, []string{"reading SPDX-2.3 JSON", "Package-busybox"}},
		{"package without a name", editSBOM(t, func(d map[string]any) {
			d["packages"].([]any)[0].(map[string]any)["name"] = ""
		}), ErrSBOMInvalid, []string{busyboxPkg, "has no name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source, pkgs, err := ParseSBOM(tt.data)
			if err == nil {
				t.Fatalf("no error; source %q, packages %+v", source, pkgs)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if source != "" || pkgs != nil {
				t.Errorf("source %q, packages %+v beside the error", source, pkgs)
			}
		})
	}
}

// spdxDoc builds a small SPDX 2.3 JSON document: pkgs and files are JSON
// objects, rels are "A TYPE B [comment]" lines (IDs without SPDXRef-).
func spdxDoc(t *testing.T, pkgs, files []string, rels ...string) []byte {
	t.Helper()
	var relationships []map[string]string
	for _, r := range rels {
		f := strings.SplitN(r, " ", 4)
		m := map[string]string{"spdxElementId": "SPDXRef-" + f[0], "relationshipType": f[1], "relatedSpdxElement": "SPDXRef-" + f[2]}
		if len(f) == 4 {
			m["comment"] = f[3]
		}
		relationships = append(relationships, m)
	}
	rel, err := json.Marshal(relationships)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "test",
		"documentNamespace": "https://example.invalid/test", "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: test"]},
		"packages": [` + strings.Join(pkgs, ",") + `], "files": [` + strings.Join(files, ",") + `], "relationships": ` + string(rel) + `}`)
}

func spdxPkg(id, name, purl string, extra ...string) string {
	refs := ""
	if purl != "" {
		refs = `, "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "` + purl + `"}]`
	}
	return `{"SPDXID": "SPDXRef-` + id + `", "name": "` + name + `", "versionInfo": "1.0", "downloadLocation": "NOASSERTION"` +
		refs + strings.Join(extra, "") + `}`
}

func spdxFile(id, name string, types ...string) string {
	ty, _ := json.Marshal(types)
	return `{"SPDXID": "SPDXRef-` + id + `", "fileName": "` + name + `", "fileTypes": ` + string(ty) +
		`, "checksums": [{"algorithm": "SHA1", "checksumValue": "da39a3ee5e6b4b0d3255bfef95601890afd80709"}]}`
}

func TestParseSBOMRelationships(t *testing.T) {
	image := spdxPkg("DocumentRoot-Image-x", "x", "pkg:oci/x@sha256%3Aabc")
	tests := []struct {
		name  string
		data  []byte
		want  []model.Package
		check string // a package whose files to compare; all when ""
	}{
		{
			name: "CONTAINS and CONTAINED_BY, names with ./, / or neither",
			data: spdxDoc(t,
				[]string{image, spdxPkg("p", "musl", "pkg:apk/alpine/musl@1.0")},
				[]string{spdxFile("f1", "./lib/ld-musl-x86_64.so.1"), spdxFile("f2", "/usr/bin/ldd"), spdxFile("f3", "usr/bin/getent")},
				"DOCUMENT DESCRIBES DocumentRoot-Image-x", "DocumentRoot-Image-x CONTAINS p",
				"p CONTAINS f1", "f2 CONTAINED_BY p", "p CONTAINS f3"),
			want: []model.Package{{Name: "musl", Version: "1.0", Type: "apk", Files: []string{"/lib/ld-musl-x86_64.so.1", "/usr/bin/getent", "/usr/bin/ldd"}}},
		},
		{
			name: "hasFiles",
			data: spdxDoc(t,
				[]string{spdxPkg("p", "bash", "pkg:rpm/fedora/bash@5.2", `, "hasFiles": ["SPDXRef-f1"]`)},
				[]string{spdxFile("f1", "/usr/bin/bash")}),
			want: []model.Package{{Name: "bash", Version: "1.0", Type: "rpm", Files: []string{"/usr/bin/bash"}}},
		},
		{
			name: "which files can run or be loaded",
			data: spdxDoc(t,
				[]string{spdxPkg("p", "tool", "pkg:deb/debian/tool@1")},
				[]string{
					spdxFile("a", "usr/libexec/tool/helper", "TEXT"), spdxFile("b", "usr/lib/tool/plugin.so"),
					spdxFile("c", "usr/lib/x86_64-linux-gnu/libtool.so.1.2", "APPLICATION", "BINARY"),
					spdxFile("d", "usr/lib/tool/worker", "APPLICATION", "BINARY"), spdxFile("e", "usr/share/doc/tool/README.source", "TEXT"),
					spdxFile("f", "usr/share/doc/tool/changelog.gz", "APPLICATION", "ARCHIVE"), spdxFile("g", "etc/tool.conf", "TEXT"),
					spdxFile("h", "usr/local/sbin/toold"), spdxFile("i", "opt/bin.d/x"),
				},
				"p CONTAINS a", "p CONTAINS b", "p CONTAINS c", "p CONTAINS d", "p CONTAINS e", "p CONTAINS f", "p CONTAINS g",
				"p CONTAINS h", "p CONTAINS i"),
			want: []model.Package{{Name: "tool", Version: "1.0", Type: "deb", Files: []string{
				"/usr/lib/tool/plugin.so", "/usr/lib/tool/worker", "/usr/lib/x86_64-linux-gnu/libtool.so.1.2",
				"/usr/libexec/tool/helper", "/usr/local/sbin/toold"}}},
		},
		{
			name: "evident-by owns; other OTHER relationships do not",
			data: spdxDoc(t,
				[]string{image, spdxPkg("b", "busybox", "pkg:generic/busybox@1.36"), spdxPkg("g", "go-mod", "pkg:golang/example.com/m@v1")},
				[]string{spdxFile("f1", "bin/busybox", "APPLICATION", "BINARY"), spdxFile("f2", "usr/local/bin/app", "APPLICATION", "BINARY")},
				"DOCUMENT DESCRIBES DocumentRoot-Image-x", "DocumentRoot-Image-x CONTAINS b", "DocumentRoot-Image-x CONTAINS g",
				"DocumentRoot-Image-x CONTAINS f1", "DocumentRoot-Image-x CONTAINS f2",
				"b OTHER f1 evident-by: indicates the package's existence is evident by the given file",
				"g OTHER f2 ownership-by-file-overlap: something else"),
			want: []model.Package{
				{Name: "busybox", Version: "1.0", Type: "binary", Files: []string{"/bin/busybox"}},
				{Name: "go-mod", Version: "1.0", Type: "golang"},
			},
		},
		{
			// syft names a file inside an archive by its path there, and the
			// archive file CONTAINS it: no path in the image.
			name: "files inside archives are skipped",
			data: spdxDoc(t,
				[]string{spdxPkg("p", "netty", "pkg:maven/io.netty/netty@4")},
				[]string{spdxFile("jar", "app/app.jar", "APPLICATION", "ARCHIVE"), spdxFile("so", "META-INF/native/libnetty.so", "APPLICATION", "BINARY")},
				"jar CONTAINS so", "p OTHER jar evident-by: x", "p CONTAINS so"),
			want: []model.Package{{Name: "netty", Version: "1.0", Type: "maven"}},
		},
		{
			// A document that describes one package (its own SBOM) keeps it:
			// only a subject that contains packages is the scanned image.
			name: "described package that contains none is kept",
			data: spdxDoc(t,
				[]string{spdxPkg("p", "app", "")},
				[]string{spdxFile("f", "usr/bin/app")},
				"DOCUMENT DESCRIBES p", "p CONTAINS f"),
			want: []model.Package{{Name: "app", Version: "1.0", Files: []string{"/usr/bin/app"}}},
		},
		{
			name: "NONE and NOASSERTION ends are allowed",
			data: spdxDoc(t, []string{spdxPkg("p", "a", "pkg:npm/a@1")}, nil),
			want: []model.Package{{Name: "a", Version: "1.0", Type: "npm"}},
		},
	}
	// NONE/NOASSERTION cannot go through spdxDoc's SPDXRef- prefixing.
	tests[len(tests)-1].data = []byte(strings.Replace(string(tests[len(tests)-1].data), `"relationships": null`,
		`"relationships": [{"spdxElementId": "SPDXRef-p", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": "NONE"},
			{"spdxElementId": "SPDXRef-p", "relationshipType": "CONTAINS", "relatedSpdxElement": "NOASSERTION"}]`, 1))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, pkgs, err := ParseSBOM(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(pkgs, tt.want, func(a, b model.Package) bool {
				return a.Name == b.Name && a.Version == b.Version && a.Type == b.Type && slices.Equal(a.Files, b.Files)
			}) {
				t.Errorf("packages\n%+v, want\n%+v", pkgs, tt.want)
			}
		})
	}
}

func TestSBOMPackageType(t *testing.T) {
	tests := []struct{ purl, want string }{
		{"pkg:deb/debian/gzip@1.12-1?arch=amd64", "deb"},
		{"pkg:apk/alpine/musl@1.2.5", "apk"},
		{"pkg:generic/busybox@1.35.0", "binary"},
		{"pkg:golang/github.com/x/y@v1", "golang"},
		{"pkg://RPM/fedora/bash@5", "rpm"}, // slashes after the scheme and case do not matter
		{"pkg:pypi/requests@2", "pypi"},
		{"cpe:2.3:a:busybox:busybox:1.35.0", ""}, // not a purl
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.purl, func(t *testing.T) {
			doc := spdxDoc(t, []string{spdxPkg("p", "x", tt.purl)}, nil)
			_, pkgs, err := ParseSBOM(doc)
			if err != nil {
				t.Fatal(err)
			}
			if pkgs[0].Type != tt.want {
				t.Errorf("type %q, want %q", pkgs[0].Type, tt.want)
			}
		})
	}
}

// TestSBOMFromRealSyft builds the pinned syft (hack/syft.sh) if needed, scans
// cagewatch/busybox:1 (.ci/dockerd.sh start builds it) through the Docker
// daemon and parses the SPDX JSON it writes: the parser against the syft of
// today, not only the committed fixtures. It skips, naming what is missing,
// without Docker or when syft would have to be built with modules not in the
// module cache (about 450 MB to download, 13 minutes from cold);
// CAGEWATCH_REQUIRE_SYFT=1 makes both failures.
func TestSBOMFromRealSyft(t *testing.T) {
	require := os.Getenv("CAGEWATCH_REQUIRE_SYFT") != ""
	missing := func(format string, args ...any) {
		t.Helper()
		if require {
			t.Fatalf(format+" (CAGEWATCH_REQUIRE_SYFT=1)", args...)
		}
		t.Skipf(format+"; CAGEWATCH_REQUIRE_SYFT=1 makes this a failure", args...)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	const image = "cagewatch/busybox:1"
	if _, err := exec.LookPath("docker"); err != nil {
		missing("no docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", image).CombinedOutput(); err != nil {
		missing("docker image %s not available (is Docker running? .ci/dockerd.sh start builds it): %v: %s", image, err, strings.TrimSpace(string(out)))
	}

	if !syftUpToDate(root) && !require {
		// Build only what can be built from the module cache, with time
		// to spare.
		if dl, ok := t.Deadline(); ok && time.Until(dl) < 8*time.Minute {
			t.Skipf("bin/syft needs building and the test has %v left; run hack/syft.sh first", time.Until(dl).Round(time.Second))
		}
		list := exec.CommandContext(t.Context(), "go", "list", "-deps", "github.com/anchore/syft/cmd/syft")
		list.Dir = filepath.Join(root, "hack", "syft")
		list.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
		if out, err := list.CombinedOutput(); err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			missing("bin/syft is missing or older than hack/syft/go.sum, and syft's modules are not all in the module cache "+
				"(run hack/syft.sh: it downloads them): %v: %s", err, lines[len(lines)-1])
		}
	}
	build := exec.CommandContext(t.Context(), filepath.Join(root, "hack", "syft.sh"))
	build.Stderr = &testLogWriter{t: t}
	if _, err := build.Output(); err != nil {
		t.Fatalf("hack/syft.sh: %v", err)
	}

	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	scan := exec.CommandContext(ctx, filepath.Join(root, "hack", "syft.sh"), "scan", "-q", "docker:"+image, "-o", "spdx-json")
	var stderr strings.Builder
	scan.Stderr = &stderr
	out, err := scan.Output()
	if err != nil {
		t.Fatalf("syft scan docker:%s: %v\n%s", image, err, stderr.String())
	}
	source, pkgs, err := ParseSBOM(out)
	if err != nil {
		t.Fatalf("parsing syft's SPDX JSON of %s: %v", image, err)
	}
	if source != SourceSPDX {
		t.Errorf("source %q", source)
	}
	p, ok := sbomPackage(pkgs, "busybox")
	if !ok {
		t.Fatalf("no busybox package in %+v", pkgs)
	}
	if p.Type != "binary" || p.Version == "" || !slices.Equal(p.Files, []string{"/bin/busybox"}) {
		t.Errorf("busybox package %+v, want type binary, a version and the file /bin/busybox", p)
	}
	t.Logf("syft found %+v", pkgs)
}

// syftUpToDate mirrors hack/syft.sh's test: bin/syft exists and is newer than
// hack/syft/go.sum and go.mod.
func syftUpToDate(root string) bool {
	bin, err := os.Stat(filepath.Join(root, "bin", "syft"))
	if err != nil {
		return false
	}
	for _, f := range []string{"go.sum", "go.mod"} {
		st, err := os.Stat(filepath.Join(root, "hack", "syft", f))
		if err != nil || st.ModTime().After(bin.ModTime()) {
			return false
		}
	}
	return true
}

type testLogWriter struct{ t *testing.T }

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
