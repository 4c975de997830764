package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

var exportTime = time.Date(2025, 3, 2, 8, 30, 0, 0, time.FixedZone("CET", 3600))

// exportBaselines are what the codec tests export: learned baselines of
// different shapes, a stable one, one keyed by image id and an empty one.
func exportBaselines(t testing.TB) []*model.Baseline {
	t.Helper()
	stable := testBaseline(t, "docker.io/library/nginx", "1.27", 12)
	stable.Promote(stable.LastSeen)
	stable.AddException("kernel_attack_surface", "/usr/sbin/mariadbd", "io_uring_setup")
	stable.AddException("fs_write_drift", "/bin/sed", "/etc/nginx/")
	byID := testBaseline(t, "", "", 3)
	return []*model.Baseline{
		stable,
		testBaseline(t, "registry.example/shop/api", "", 7),
		byID,
		model.NewBaseline("docker.io/library/busybox", "latest", ""),
	}
}

func export(t testing.TB, bs []*model.Baseline) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Export(&buf, bs, exportTime); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return buf.Bytes()
}

func TestExportImportRoundTrip(t *testing.T) {
	want := exportBaselines(t)
	raw := export(t, want)
	got, err := Import(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Import of an export: %v", err)
	}
	sameJSON(t, "imported baselines", got, want)

	t.Run("export import export is byte-identical", func(t *testing.T) {
		again := export(t, got)
		if !bytes.Equal(again, raw) {
			t.Errorf("second export differs from the first:\n%s\n---\n%s", raw, again)
		}
	})
	reimport := func(t *testing.T) []*model.Baseline {
		bs, err := Import(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		return bs
	}
	t.Run("imported baselines learn on", func(t *testing.T) {
		for _, b := range reimport(t) {
			b.AddWindow(model.Window{Container: model.Container{ID: "new"}, Start: testT0.Add(24 * time.Hour), Duration: time.Second,
				Counts: map[string]uint64{"read": 5}}, 4)
			b.AddStartup(model.Window{Counts: map[string]uint64{"brk": 1}})
			b.AddExec("/bin/true")
			if err := b.Validate(); err != nil {
				t.Errorf("%s after learning on: %v", b.Key(), err)
			}
		}
	})
	t.Run("imported baselines merge like the originals", func(t *testing.T) {
		for i, b := range reimport(t) {
			m1, m2 := want[i].Clone(), b.Clone()
			if err := m1.Merge(want[i], 4); err != nil {
				t.Fatal(err)
			}
			if err := m2.Merge(b, 4); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, b.Key()+" merged with itself", m2, m1)
		}
	})
}

func TestExportHeader(t *testing.T) {
	raw := export(t, nil)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, raw)
	}
	want := map[string]string{
		"format":    `"cagewatch-baseline"`,
		"version":   fmt.Sprint(FormatVersion),
		"exported":  `"2025-03-02T07:30:00Z"`, // in UTC
		"baselines": "[]",                     // an empty list, never null
	}
	for key, w := range want {
		if got := string(doc[key]); got != w {
			t.Errorf("%s = %s, want %s", key, got, w)
		}
	}
	if len(doc) != len(want) {
		t.Errorf("header has %d fields, want %d: %s", len(doc), len(want), raw)
	}
	bs, err := Import(bytes.NewReader(raw))
	if err != nil || len(bs) != 0 {
		t.Errorf("Import of an empty export = %d baselines, %v; want none, nil", len(bs), err)
	}
	if !bytes.HasSuffix(raw, []byte("}\n")) {
		t.Error("export does not end with a newline")
	}
}

func TestImportFillsAbsentMaps(t *testing.T) {
	// A hand-written file may leave out maps; learning must be able to continue.
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprint("version ", version), func(t *testing.T) {
			in := fmt.Sprintf(`{"format":"cagewatch-baseline","version":%d,"baselines":[{"image":"nginx","state":"learning"}]}`, version)
			bs, err := Import(strings.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			b := bs[0]
			if b.Containers == nil || b.Syscalls == nil || b.Startup == nil || b.Binaries == nil ||
				b.Composition.Shares == nil || b.Order.Grams == nil {
				t.Fatalf("maps left nil: %+v", b)
			}
			b.AddWindow(model.Window{Container: model.Container{ID: "c"}, Start: testT0, Duration: time.Second,
				Counts: map[string]uint64{"read": 1}, Grams: map[string]uint64{"read": 1}}, 4)
			b.AddStartup(model.Window{Counts: map[string]uint64{"brk": 1}})
			b.AddExec("/bin/sh")
			if err := b.Validate(); err != nil {
				t.Errorf("after learning on: %v", err)
			}
		})
	}
}

// asVersion1 rewrites an export as the version 1 format held it: no views and
// no sampled grams.
func asVersion1(t testing.TB, raw []byte) []byte {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // priorities use all 64 bits
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	doc["version"] = 1
	for _, b := range doc["baselines"].([]any) {
		b := b.(map[string]any)
		delete(b, "composition")
		delete(b, "order")
		delete(b, "volume")
		samples, _ := b["sample"].([]any)
		for _, s := range samples {
			delete(s.(map[string]any), "grams")
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestImportVersion1 reads the format 1 example of docs/baseline-format.md, as
// the build before the views exported it.
func TestImportVersion1(t *testing.T) {
	raw, err := os.ReadFile("testdata/export-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	bs, err := Import(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Import of a version 1 file: %v", err)
	}
	b := bs[0]
	// The views are those of the three sampled windows (the fourth is lost):
	// totals 144, 352 and 170 calls in 1, 2 and 1 s.
	volumes := []float64{math.Log(144), math.Log(176), math.Log(170)}
	var volume model.Moments
	for _, v := range volumes {
		volume.Add(v)
	}
	if b.Composition.Windows != 3 || b.Volume.N != 3 || !nearly(b.Volume.Mean, volume.Mean) || !nearly(b.Volume.M2, volume.M2) || b.Volume.Max != volume.Max {
		t.Errorf("composition.windows %d, volume %+v; want 3 and %+v", b.Composition.Windows, b.Volume, volume)
	}
	shares := map[string]struct {
		n         uint64
		mean, max float64
	}{
		"read":       {3, (100.0/144 + 250.0/352 + 120.0/170) / 3, 250.0 / 352},
		"write":      {3, (44.0/144 + 80.0/352 + 40.0/170) / 3, 44.0 / 144},
		"epoll_wait": {2, (22.0/352 + 10.0/170) / 2, 22.0 / 352},
	}
	for name, w := range shares {
		if m := b.Composition.Shares[name]; m.N != w.n || !nearly(m.Mean, w.mean) || !nearly(m.Max, w.max) {
			t.Errorf("composition.shares[%q] = %+v, want n %d, mean %v, max %v", name, m, w.n, w.mean, w.max)
		}
	}
	if len(b.Composition.Shares) != len(shares) {
		t.Errorf("composition.shares = %v", b.Composition.Shares)
	}
	if b.Order.Windows != 0 || b.Order.Grams == nil || len(b.Order.Grams) != 0 {
		t.Errorf("order = %+v, want empty, learning from the next window", b.Order)
	}
	// The rest is as the file says.
	if b.Windows != 4 || b.Syscalls["read"].Mean != 115 || len(b.Sample) != 3 {
		t.Errorf("windows %d, read mean %v, sample %d", b.Windows, b.Syscalls["read"].Mean, len(b.Sample))
	}

	t.Run("exported again in the current version, which imports unchanged", func(t *testing.T) {
		again := export(t, bs)
		if !bytes.Contains(again, []byte(`"version": 5`)) {
			t.Fatalf("re-export is not version 5:\n%s", again)
		}
		got, err := Import(bytes.NewReader(again))
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "re-imported", got, bs)
	})
}

func TestImportVersion1Upgrades(t *testing.T) {
	originals := exportBaselines(t)
	bs, err := Import(bytes.NewReader(asVersion1(t, export(t, originals))))
	if err != nil {
		t.Fatalf("Import of a version 1 export: %v", err)
	}
	for i, b := range bs {
		t.Run(b.Key(), func(t *testing.T) {
			var withCalls uint64
			for _, s := range b.Sample {
				for _, c := range s.Counts {
					if c > 0 {
						withCalls++
						break
					}
				}
			}
			if b.Composition.Windows != withCalls || b.Volume.N != withCalls {
				t.Errorf("composition.windows %d, volume.n %d; want the %d sampled windows with calls", b.Composition.Windows, b.Volume.N, withCalls)
			}
			if b.Order.Windows != 0 || len(b.Order.Grams) != 0 {
				t.Errorf("order = %+v, want empty", b.Order)
			}
			// What format 1 had is kept as it was.
			o := originals[i]
			if b.Windows != o.Windows || b.Total != o.Total || len(b.Syscalls) != len(o.Syscalls) || len(b.Sample) != len(o.Sample) {
				t.Errorf("upgrade changed the format 1 statistics: %+v", b)
			}
			// An upgraded baseline merges with one learned with views.
			if err := b.Merge(o, 4); err != nil {
				t.Fatal(err)
			}
			if err := b.Validate(); err != nil {
				t.Errorf("merged with a version 2 baseline: %v", err)
			}
			if b.Order.Windows != o.Order.Windows || b.Composition.Windows != withCalls+o.Composition.Windows {
				t.Errorf("merged views: composition %d, order %d windows; want %d, %d",
					b.Composition.Windows, b.Order.Windows, withCalls+o.Composition.Windows, o.Order.Windows)
			}
		})
	}
}

func nearly(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

// replace returns s with old replaced by new once, failing if old is absent, so
// that a bad-input case cannot silently test the valid file.
func replace(t testing.TB, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("test input lacks %q", old)
	}
	return strings.Replace(s, old, new, 1)
}

// miniExport is a minimal valid export file, written by hand.
const miniExport = `{"format":"cagewatch-baseline","version":1,"baselines":[{"image":"nginx","state":"learning","windows":1,` +
	`"containers":{"c":1},"syscalls":{"read":{"n":1,"mean":5,"m2":0,"max":5}},"total":{"n":1,"mean":5,"m2":0,"max":5}}]}`

func TestImportMinimal(t *testing.T) {
	bs, err := Import(strings.NewReader(miniExport))
	if err != nil {
		t.Fatalf("Import of a minimal hand-written file: %v", err)
	}
	if len(bs) != 1 || bs[0].Key() != "nginx" || bs[0].Windows != 1 || bs[0].Syscalls["read"].Mean != 5 {
		t.Errorf("Import = %+v", bs)
	}
}

type badImport struct {
	name  string
	input string
	want  []string // substrings of the error message
}

// badImports are invalid export files, each derived from a valid one.
func badImports(t testing.TB) []badImport {
	bs := exportBaselines(t)
	valid := string(export(t, bs))
	one := string(export(t, bs[:1]))
	dup := string(export(t, []*model.Baseline{bs[1], bs[1]}))
	withNull := replace(t, valid, "\n    },\n    {", "\n    },\n    null,\n    {")
	return []badImport{
		{"unknown version", replace(t, valid, `"version": 5`, `"version": 6`), []string{"version 6", "versions 1 to 5"}},
		{"version 0", replace(t, valid, `"version": 5`, `"version": 0`), []string{"version 0"}},
		{"no version", replace(t, valid, `"version": 5,`, ``), []string{"version 0"}},
		{"wrong format name", replace(t, valid, `"cagewatch-baseline"`, `"falco-rules"`), []string{"format", `"falco-rules"`}},
		{"no format", replace(t, valid, `"format": "cagewatch-baseline",`, ``), []string{"format", `""`}},
		{"not an export at all", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`, []string{"format"}},
		{"version is a string", replace(t, valid, `"version": 5`, `"version": "5"`), []string{`"version"`, "string"}},
		{"version is fractional", replace(t, valid, `"version": 5`, `"version": 1.5`), []string{`"version"`, "1.5"}},
		{"windows is a string", replace(t, one, `"windows": 12`, `"windows": "12"`), []string{`"baselines.windows"`, "string"}},
		{"mean is a string", replace(t, miniExport, `"mean":5,`, `"mean":"5",`), []string{`"baselines.syscalls.mean"`, "string"}},
		{"syscalls is a list", replace(t, one, `"syscalls": {`, `"syscalls": [], "y": {`), []string{`"baselines.syscalls"`, "array"}},
		{"baselines is an object", `{"format":"cagewatch-baseline","version":1,"baselines":{}}`, []string{`"baselines"`, "object"}},
		{"top level is an array", `[{"format":"cagewatch-baseline","version":1}]`, []string{"array"}},
		{"negative windows", replace(t, one, `"windows": 12`, `"windows": -1`), []string{`"baselines.windows"`, "-1"}},
		{"negative syscall count", replace(t, one, `"n": 12`, `"n": -1`), []string{"baselines.syscalls.n", "-1"}},
		{"negative container windows", replace(t, one, `"c0": 6`, `"c0": -6`), []string{"baselines.containers", "-6"}},
		{"negative seconds", replace(t, one, `"seconds": 12`, `"seconds": -12`), []string{"baselines[0]", "seconds -12"}},
		{"negative mean", replace(t, miniExport, `"mean":5,`, `"mean":-5,`), []string{"baselines[0]", `syscalls["read"]`, "mean -5"}},
		{"max below mean", replace(t, miniExport, `"max":5}},`, `"max":4}},`), []string{"baselines[0]", `syscalls["read"]`, "max 4 below mean 5"}},
		{"sample larger than windows", replace(t, miniExport, `"total"`, `"sample":[{"priority":1},{"priority":2}],"total"`), []string{"baselines[0]", "sample holds 2"}},
		{"windows without total", replace(t, miniExport, `"windows":1,`, `"windows":2,`), []string{"baselines[0]", "total.n 1 differs from windows 2"}},
		{"sample not sorted", replace(t, replace(t, replace(t, miniExport, `"windows":1,`, `"windows":2,`), `"c":1`, `"c":2`),
			`"total":{"n":1,"mean":5,"m2":0,"max":5}`, `"total":{"n":2,"mean":5,"m2":0,"max":5},"sample":[{"priority":9},{"priority":3}]`),
			[]string{"baselines[0]", "sample is not sorted"}},
		{"overflowing float", replace(t, one, `"seconds": 12`, `"seconds": 1e999`), []string{"baselines.seconds", "1e999"}},
		{"overflowing count", replace(t, one, `"windows": 12`, `"windows": 1e999`), []string{"baselines.windows", "1e999"}},
		{"count beyond uint64", replace(t, one, `"windows": 12`, `"windows": 18446744073709551616`), []string{"baselines.windows", "18446744073709551616"}},
		{"NaN literal", replace(t, one, `"seconds": 12`, `"seconds": NaN`), []string{"malformed JSON", "'N'"}},
		{"Infinity literal", replace(t, one, `"seconds": 12`, `"seconds": Infinity`), []string{"malformed JSON", "'I'"}},
		{"truncated in half", valid[:len(valid)/2], []string{"truncated"}},
		{"truncated at the last brace", strings.TrimSuffix(valid, "}\n"), []string{"truncated"}},
		{"truncated inside a string", valid[:strings.Index(valid, "nginx")+2], []string{"truncated"}},
		{"empty file", "", []string{"truncated"}},
		{"only whitespace", " \n\t", []string{"truncated"}},
		{"trailing garbage", valid + "garbage", []string{"after top-level value"}},
		{"trailing brace", valid + "}", []string{"after top-level value"}},
		{"two documents", valid + valid, []string{"after top-level value"}},
		{"unknown top-level field", replace(t, valid, `"version": 5,`, `"version": 5, "comment": "hi",`), []string{`unknown field "comment"`}},
		{"unknown baseline field", replace(t, one, `"windows": 12`, `"windows": 12, "windowz": 12`), []string{`unknown field "windowz"`}},
		{"exception without hits", replace(t, one, `"io_uring_setup": 1`, `"io_uring_setup": 0`), []string{"baselines[0]", "exceptions", "io_uring_setup"}},
		{"exception with an empty detail", replace(t, one, `"io_uring_setup": 1`, `"": 1`), []string{"baselines[0]", "exceptions"}},
		{"null baseline", withNull, []string{"baselines[1] is null"}},
		{"duplicate image", dup, []string{"baselines[1]", `"registry.example/shop/api"`, "twice"}},
		{"total.n differs from windows", replace(t, one, `"n": 12,
        "mean": `, `"n": 11,
        "mean": `), []string{"baselines[0]", "docker.io/library/nginx:1.27", "total.n 11"}},
		{"bad state", replace(t, one, `"state": "stable"`, `"state": "enforcing"`), []string{"baselines[0]", `"enforcing"`}},
		{"syscall in more windows than learned", replace(t, one, `"n": 12`, `"n": 13`), []string{"baselines[0]", "syscalls[", "n 13 exceeds windows 12"}},
		{"containers do not add up", replace(t, one, `"c0": 6`, `"c0": 7`), []string{"baselines[0]", "containers"}},
		{"bad time", replace(t, one, `"first_seen": "2025`, `"first_seen": "yesterday`), []string{"parsing time", "yesterday"}},
		{"composition in more windows than learned", replace(t, one, `"windows": 12,
        "shares"`, `"windows": 13,
        "shares"`), []string{"baselines[0]", "composition.windows 13 exceeds windows 12"}},
		{"share above 1", replace(t, one, `"max": 0.7225806451612903`, `"max": 1.7225806451612903`), []string{"baselines[0]", `composition.shares["read"]`, "[0, 1]"}},
		{"gram too long", replace(t, one, `"read,write,futex,read": 6`, `"read,write,futex,read,write": 6`), []string{"baselines[0]", "order.grams", "more than 4"}},
		{"gram with an empty name", replace(t, one, `"read,write": 12`, `"read,,write": 12`), []string{"baselines[0]", "order.grams", "empty syscall name"}},
		{"gram counted 0 times", replace(t, one, `"read,write": 12`, `"read,write": 0`), []string{"baselines[0]", `order.grams["read,write"] is 0`}},
		{"gram count negative", replace(t, one, `"read,write": 12`, `"read,write": -12`), []string{"baselines.order.grams", "-12"}},
		{"order in more windows than learned", replace(t, one, `"windows": 12,
        "grams"`, `"windows": 13,
        "grams"`), []string{"baselines[0]", "order.windows 13 exceeds windows 12"}},
		{"sample gram too long", replace(t, one, `"read,write,futex,read": 1`, `"read,write,futex,read,write": 1`), []string{"baselines[0]", "sample[", "].grams", "more than 4"}},
		{"volume of other windows than composition", replace(t, one, `"volume": {
        "n": 12`, `"volume": {
        "n": 11`), []string{"baselines[0]", "volume.n 11 differs from composition.windows 12"}},
		{"unknown view field", replace(t, one, `"composition": {`, `"composition": {"pairs": {},`), []string{`unknown field "pairs"`}},
		{"version 1 sample with an empty syscall name", replace(t, miniExport, `"total"`, `"sample":[{"priority":1,"syscalls":{"":3}}],"total"`),
			[]string{"baselines[0]", "composition.shares", "empty name"}},
	}
}

func TestImportRejects(t *testing.T) {
	for _, tc := range badImports(t) {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := Import(strings.NewReader(tc.input))
			if err == nil {
				t.Fatalf("Import accepted it (%d baselines)", len(bs))
			}
			if !errors.Is(err, ErrBadImport) {
				t.Errorf("error %v is not ErrBadImport", err)
			}
			if bs != nil {
				t.Errorf("Import returned %d baselines with the error; want none, so nothing can be written", len(bs))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestImportReadError(t *testing.T) {
	_, err := Import(failingReader{})
	if !errors.Is(err, ErrBadImport) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Import = %v, want ErrBadImport with the reader's error", err)
	}
}

func FuzzImport(f *testing.F) {
	f.Add(export(f, exportBaselines(f)))
	f.Add(export(f, nil))
	f.Add(asVersion1(f, export(f, exportBaselines(f))))
	if v1, err := os.ReadFile("testdata/export-v1.json"); err == nil {
		f.Add(v1)
	}
	for _, tc := range badImports(f) {
		f.Add([]byte(tc.input))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := Import(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadImport) {
				t.Fatalf("error %v is not ErrBadImport", err)
			}
			if bs != nil {
				t.Fatalf("Import returned %d baselines with an error", len(bs))
			}
			return
		}
		seen := map[string]bool{}
		for i, b := range bs {
			if err := b.Validate(); err != nil {
				t.Fatalf("imported baselines[%d] does not validate: %v", i, err)
			}
			if seen[b.Key()] {
				t.Fatalf("imported %q twice", b.Key())
			}
			seen[b.Key()] = true
		}
		var first bytes.Buffer
		if err := Export(&first, bs, exportTime); err != nil {
			t.Fatalf("Export of imported baselines: %v", err)
		}
		again, err := Import(bytes.NewReader(first.Bytes()))
		if err != nil {
			t.Fatalf("Import of a re-export: %v\n%s", err, first.Bytes())
		}
		if len(bs) == 0 && len(again) == 0 {
			return // a file without baselines may import as nil; the export writes []
		}
		g, _ := json.Marshal(again)
		w, _ := json.Marshal(bs)
		if !bytes.Equal(g, w) {
			t.Fatalf("re-imported baselines differ:\n got %s\nwant %s", g, w)
		}
		var second bytes.Buffer
		if err := Export(&second, again, exportTime); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Bytes(), second.Bytes()) {
			t.Fatalf("export is not stable:\n%s\n---\n%s", first.Bytes(), second.Bytes())
		}
	})
}

func TestBadImportNamesField(t *testing.T) {
	// The message a user sees for a type error must point into the file.
	in := fmt.Sprintf(`{"format":%q,"version":1,"baselines":[{"image":"x","state":"learning","windows":"3"}]}`, FormatName)
	_, err := Import(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "at byte") {
		t.Errorf("Import = %v, want an error with the byte offset", err)
	}
}

// Format 4 carries inventories: they round-trip, and a bad one refuses the file.
func TestExportFileInventories(t *testing.T) {
	inv := model.NewInventory("shop/web", "1")
	inv.SetPackages("dpkg", time.Unix(100, 0).UTC(), []model.Package{{Name: "nginx", Version: "1.22", Type: "deb", Files: []string{"/usr/sbin/nginx"}}})
	inv.AddExec("/usr/sbin/nginx", time.Unix(200, 0).UTC())
	var buf bytes.Buffer
	if err := ExportFile(&buf, File{Inventories: []*model.Inventory{inv}}, time.Unix(300, 0)); err != nil {
		t.Fatal(err)
	}
	f, err := ImportFile(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Inventories) != 1 || !reflect.DeepEqual(f.Inventories[0], inv) {
		t.Errorf("round trip: %+v, want %+v", f.Inventories, inv)
	}
	bad := strings.Replace(buf.String(), `"/usr/sbin/nginx": {`, `"usr/sbin/nginx": {`, 1)
	if _, err := ImportFile(strings.NewReader(bad)); !errors.Is(err, ErrBadImport) || !strings.Contains(err.Error(), "inventories[0]") {
		t.Errorf("a relative executed path: %v, want ErrBadImport naming inventories[0]", err)
	}
	twice := strings.Replace(buf.String(), `"inventories": [`, `"inventories": [{"image":"shop/web","tag":"1"},`, 1)
	if _, err := ImportFile(strings.NewReader(twice)); err == nil || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("an image twice: %v", err)
	}
}

// Image records survive reopening the bbolt file, and a bad one is not written.
func TestImageRecordsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	inv := model.NewInventory("shop/web", "1")
	inv.AddExec("/bin/sh", time.Unix(1, 0).UTC())
	tally := &model.AlertTally{Image: "shop/web", Tag: "1"}
	tally.Add("sensitive_file", time.Unix(1, 0))
	report := &model.VulnReport{Image: "shop/web", Tag: "1", Scanner: "trivy", Findings: []model.Vulnerability{{ID: "CVE-1", Severity: "high", Package: "bash"}}}
	if err := s.PutInventories(inv); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAlertTallies(tally); err != nil {
		t.Fatal(err)
	}
	if err := s.PutVulnReport(report); err != nil {
		t.Fatal(err)
	}
	if err := s.PutVulnReport(&model.VulnReport{Image: "shop/web", Tag: "1", Findings: []model.Vulnerability{{ID: "CVE-2", Severity: "dire", Package: "x"}}}); err == nil {
		t.Error("a report with an unknown severity was written")
	}
	s.Close()
	s, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	invs, err := s.Inventories()
	if err != nil || len(invs) != 1 || !reflect.DeepEqual(invs[0], inv) {
		t.Errorf("inventories = %+v, %v", invs, err)
	}
	reports, err := s.VulnReports()
	if err != nil || len(reports) != 1 || reports[0].Findings[0].ID != "CVE-1" {
		t.Errorf("reports = %+v, %v", reports, err)
	}
	tallies, err := s.AlertTallies()
	if err != nil || len(tallies) != 1 || tallies[0].Since(time.Unix(0, 0))["sensitive_file"] != 1 {
		t.Errorf("tallies = %+v, %v", tallies, err)
	}
}
