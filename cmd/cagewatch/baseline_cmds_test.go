package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/store"
)

// learnedBaseline learns n one-second windows of a steady synthetic workload;
// extra, when set, is made after every read.
func learnedBaseline(image, tag string, n int, extra string) *model.Baseline {
	b := model.NewBaseline(image, tag, "sha256:"+strings.Repeat("ab", 32))
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		counts := map[string]uint64{"read": uint64(100 + i%7), "write": uint64(50 + i%3), "futex": 10}
		grams := model.GramsOfSequence([]string{"futex", "read", "write", "read", "write"})
		if extra != "" {
			counts[extra] = 5
			grams = model.GramsOfSequence([]string{"futex", "read", extra, "write"})
		}
		b.AddWindow(model.Window{
			CgroupID: 42, Container: model.Container{ID: "c1", Image: image, ImageTag: tag},
			Start: start.Add(time.Duration(i) * time.Second), Duration: time.Second, Counts: counts, Grams: grams,
		}, 16)
	}
	b.AddExec("/bin/app")
	return b
}

func seedStore(t *testing.T, bs ...*model.Baseline) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cagewatch.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutBaselines(bs...); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := runCLI(context.Background(), args...)
	if err != nil {
		t.Fatalf("cagewatch %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func exportedBaselines(t *testing.T, path string) []json.RawMessage {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Baselines []json.RawMessage `json:"baselines"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f.Baselines
}

func TestBaselineExportImportRoundTrip(t *testing.T) {
	src := seedStore(t, learnedBaseline("e2e/app", "1", 30, ""), learnedBaseline("e2e/db", "2", 12, "fsync"))
	dir := t.TempDir()
	first := filepath.Join(dir, "first.json")
	mustCLI(t, "baseline", "export", "--store", src, "-o", first)

	dst := filepath.Join(dir, "empty", "cagewatch.db")
	if out := mustCLI(t, "baseline", "import", "--store", dst, first); !strings.Contains(out, "imported 2 baselines") {
		t.Errorf("import said %q", out)
	}
	second := filepath.Join(dir, "second.json")
	mustCLI(t, "baseline", "export", "--store", dst, "-o", second)
	a, b := exportedBaselines(t, first), exportedBaselines(t, second)
	if len(a) != 2 || len(b) != 2 || string(a[0]) != string(b[0]) || string(a[1]) != string(b[1]) {
		t.Errorf("export after import differs:\n%s\n%s", a, b)
	}

	// One image by name; list shows both; show prints the top syscall.
	one := filepath.Join(dir, "one.json")
	mustCLI(t, "baseline", "export", "--store", dst, "e2e/db:2", "-o", one)
	if got := exportedBaselines(t, one); len(got) != 1 || !strings.Contains(string(got[0]), `"fsync"`) {
		t.Errorf("export of e2e/db:2: %s", got)
	}
	var rows []baselineSummary
	if err := json.Unmarshal([]byte(mustCLI(t, "baseline", "list", "--json", "--store", dst)), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Image != "e2e/app:1" || rows[0].Windows != 30 || rows[0].Syscalls != 3 || rows[0].Binaries != 1 {
		t.Errorf("list: %+v", rows)
	}
	if out := mustCLI(t, "baseline", "show", "--store", dst, "e2e/app:1"); !strings.Contains(out, "read") || !strings.Contains(out, "/bin/app") {
		t.Errorf("show:\n%s", out)
	}

	// --merge folds in: windows add up.
	mustCLI(t, "baseline", "import", "--merge", "--store", dst, one)
	if err := json.Unmarshal([]byte(mustCLI(t, "baseline", "list", "--json", "--store", dst)), &rows); err != nil {
		t.Fatal(err)
	}
	if rows[1].Image != "e2e/db:2" || rows[1].Windows != 24 {
		t.Errorf("after --merge: %+v, want e2e/db:2 with 24 windows", rows[1])
	}
}

func TestBaselineImportRejectsBadFilesAndWritesNothing(t *testing.T) {
	path := seedStore(t, learnedBaseline("e2e/app", "1", 10, ""))
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	mustCLI(t, "baseline", "export", "--store", path, "-o", good)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	valid := string(raw)
	// A second, valid image ahead of the broken one: it must not be written either.
	withNew := strings.Replace(valid, `"baselines": [`, `"baselines": [`+string(mustJSON(t, learnedBaseline("e2e/new", "1", 5, "")))+",", 1)
	tests := []struct {
		name, body, want string
	}{
		{"truncated", valid[:len(valid)/2], "truncated"},
		{"unknown version", strings.Replace(valid, `"version": 5`, `"version": 7`, 1), "version 7"},
		{"wrong type", strings.Replace(valid, `"windows": 10`, `"windows": "ten"`, 1), "windows"},
		{"negative count", strings.Replace(valid, `"windows": 10`, `"windows": -10`, 1), "windows"},
		{"overflowing number", strings.Replace(valid, `"seconds": 10`, `"seconds": 1e999`, 1), "seconds"},
		{"inconsistent counts after a valid image", strings.Replace(withNew, `"windows": 10`, `"windows": 11`, 1), "e2e/app:1"},
	}
	before := mustCLI(t, "baseline", "export", "--store", path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.body == valid {
				t.Fatal("test case did not change the file")
			}
			bad := filepath.Join(t.TempDir(), "bad.json")
			if err := os.WriteFile(bad, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := runCLI(context.Background(), "baseline", "import", "--store", path, bad)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "bad.json") {
				t.Fatalf("error %v, want one naming the file and %q", err, tt.want)
			}
			after := mustCLI(t, "baseline", "export", "--store", path)
			if stripExported(after) != stripExported(before) {
				t.Errorf("store changed by a rejected import")
			}
		})
	}
}

// stripExported drops the export timestamp so two exports can be compared.
func stripExported(s string) string {
	var f map[string]any
	_ = json.Unmarshal([]byte(s), &f)
	delete(f, "exported")
	out, _ := json.Marshal(f)
	return string(out)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBaselineMergeDiffPromoteReset(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	mustCLI(t, "baseline", "export", "--store", seedStore(t, learnedBaseline("e2e/app", "1", 20, "")), "-o", a)
	mustCLI(t, "baseline", "export", "--store", seedStore(t, learnedBaseline("e2e/app", "1", 10, "")), "-o", b)
	merged := filepath.Join(dir, "merged.json")
	mustCLI(t, "baseline", "merge", a, b, "-o", merged)
	bs, err := readBaselineFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Windows != 30 {
		t.Fatalf("merged: %d baselines, windows %d; want 1 with 30", len(bs), bs[0].Windows)
	}

	tag2 := filepath.Join(dir, "tag2.json")
	mustCLI(t, "baseline", "export", "--store", seedStore(t, learnedBaseline("e2e/app", "2", 20, "sendto")), "-o", tag2)
	out := mustCLI(t, "baseline", "diff", a, tag2)
	if !strings.Contains(out, "e2e/app:1 -> e2e/app:2") || !strings.Contains(out, "syscalls added:") || !strings.Contains(out, "sendto") {
		t.Errorf("diff:\n%s", out)
	}

	path := seedStore(t, learnedBaseline("e2e/app", "1", 5, ""))
	mustCLI(t, "baseline", "promote", "--store", path, "e2e/app:1")
	if out := mustCLI(t, "status", "--store", path); !strings.Contains(out, "e2e/app:1: stable") || !strings.Contains(out, "not running") {
		t.Errorf("status after promote:\n%s", out)
	}
	mustCLI(t, "baseline", "reset", "--store", path, "e2e/app:1")
	if out := mustCLI(t, "status", "--store", path); !strings.Contains(out, "no baselines yet") {
		t.Errorf("status after reset:\n%s", out)
	}
	// A probe must not pass on the store alone.
	if _, _, err := runCLI(context.Background(), "status", "--require-agent", "--store", path); err == nil || !strings.Contains(err.Error(), "no agent answers") {
		t.Errorf("status --require-agent without an agent: %v, want an error", err)
	}
	if _, _, err := runCLI(context.Background(), "baseline", "show", "--store", path, "e2e/app:1"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("show after reset: %v", err)
	}
}

func TestBaselineShowViewsAndPairs(t *testing.T) {
	many := learnedBaseline("e2e/many", "1", 4, "")
	// Twelve pairs with distinct counts: show lists the ten most frequent.
	for i := range 12 {
		many.AddWindow(model.Window{
			CgroupID: 43, Container: model.Container{ID: "c2", Image: "e2e/many", ImageTag: "1"},
			Start: time.Date(2026, 11, 2, 12, 0, i, 0, time.UTC), Duration: time.Second,
			Counts: map[string]uint64{"read": 1, fmt.Sprintf("s%02d", i): 1},
			Grams:  map[string]uint64{"read": 1, model.GramKey("read", fmt.Sprintf("s%02d", i)): uint64(100 + i)},
		}, 16)
	}
	path := seedStore(t, learnedBaseline("e2e/app", "1", 30, ""), many)

	t.Run("text", func(t *testing.T) {
		out := mustCLI(t, "baseline", "show", "--store", path, "e2e/app:1")
		for _, want := range []string{"composition over 30 windows, order over 30 windows (3 distinct pairs)", "PAIR", "read → write", "60", "write → read", "futex → read"} {
			if !strings.Contains(out, want) {
				t.Errorf("show does not print %q:\n%s", want, out)
			}
		}
		if strings.Index(out, "read → write") > strings.Index(out, "futex → read") {
			t.Errorf("pairs not by count (read → write 60, futex → read 30):\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		var shown struct {
			Image       string            `json:"image"`
			Windows     uint64            `json:"windows"`
			Composition model.Composition `json:"composition"`
			Order       model.Order       `json:"order"`
			TopPairs    []model.PairCount `json:"top_pairs"`
		}
		if err := json.Unmarshal([]byte(mustCLI(t, "baseline", "show", "--json", "--store", path, "e2e/many:1")), &shown); err != nil {
			t.Fatal(err)
		}
		// The whole baseline is still there, as before, with top_pairs beside it.
		if shown.Image != "e2e/many" || shown.Windows != 16 || shown.Composition.Windows != 16 || shown.Order.Windows != 16 {
			t.Errorf("show --json: image %q, windows %d, composition %d, order %d", shown.Image, shown.Windows, shown.Composition.Windows, shown.Order.Windows)
		}
		if len(shown.TopPairs) != 10 {
			t.Fatalf("top_pairs holds %d pairs, want 10: %v", len(shown.TopPairs), shown.TopPairs)
		}
		if first := shown.TopPairs[0]; first != (model.PairCount{Pair: "read → s11", Count: 111}) {
			t.Errorf("top pair %v, want read → s11 (111)", first)
		}
		if !slices.IsSortedFunc(shown.TopPairs, func(a, b model.PairCount) int { return int(b.Count) - int(a.Count) }) {
			t.Errorf("top_pairs not by count: %v", shown.TopPairs)
		}
	})
	t.Run("version 1 import: no order yet", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "cagewatch.db")
		mustCLI(t, "baseline", "import", "--store", dst, filepath.Join("..", "..", "store", "testdata", "export-v1.json"))
		out := mustCLI(t, "baseline", "show", "--store", dst, "docker.io/library/nginx:1.27")
		for _, want := range []string{"composition over 3 windows, order over 0 windows", "no order learned yet"} {
			if !strings.Contains(out, want) {
				t.Errorf("show does not print %q:\n%s", want, out)
			}
		}
		var shown struct {
			TopPairs []model.PairCount `json:"top_pairs"`
		}
		raw := mustCLI(t, "baseline", "show", "--json", "--store", dst, "docker.io/library/nginx:1.27")
		if err := json.Unmarshal([]byte(raw), &shown); err != nil || shown.TopPairs == nil || len(shown.TopPairs) != 0 {
			t.Errorf("top_pairs of a baseline without order = %v (%v), want []", shown.TopPairs, err)
		}
	})
}

func TestBaselineDiffPairs(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	mustCLI(t, "baseline", "export", "--store", seedStore(t, learnedBaseline("e2e/app", "1", 20, "")), "-o", a)
	// Tag 2 makes sendto after read: read → sendto and sendto → write are new,
	// read → write and write → read are gone.
	mustCLI(t, "baseline", "export", "--store", seedStore(t, learnedBaseline("e2e/app", "2", 10, "sendto")), "-o", b)

	out := mustCLI(t, "baseline", "diff", a, b)
	for _, want := range []string{"pairs added:", "read → sendto", "sendto → write", "pairs removed:", "read → write", "write → read"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff does not print %q:\n%s", want, out)
		}
	}
	var diffs []model.BaselineDiff
	if err := json.Unmarshal([]byte(mustCLI(t, "baseline", "diff", "--json", a, b)), &diffs); err != nil {
		t.Fatal(err)
	}
	d := diffs[0]
	wantAdded := []model.PairCount{{Pair: "read → sendto", Count: 10}, {Pair: "sendto → write", Count: 10}}
	wantRemoved := []model.PairCount{{Pair: "read → write", Count: 40}, {Pair: "write → read", Count: 20}}
	if !d.PairsCompared || !slices.Equal(d.PairsAdded, wantAdded) || !slices.Equal(d.PairsRemoved, wantRemoved) {
		t.Errorf("diff --json pairs: compared %v, added %v, removed %v; want %v, %v", d.PairsCompared, d.PairsAdded, d.PairsRemoved, wantAdded, wantRemoved)
	}

	t.Run("with a version 1 file", func(t *testing.T) {
		v1 := filepath.Join("..", "..", "store", "testdata", "export-v1.json")
		c := filepath.Join(dir, "c.json")
		mustCLI(t, "baseline", "export", "--store", seedStore(t, learnedBaseline("docker.io/library/nginx", "1.28", 10, "")), "-o", c)
		out := mustCLI(t, "baseline", "diff", v1, c)
		if !strings.Contains(out, "pairs:") || !strings.Contains(out, "not compared") || strings.Contains(out, "pairs added") {
			t.Errorf("diff with a baseline without order:\n%s", out)
		}
	})
}

// TestMergeFilesKeepsWorkloadsApart: two nodes' exports of one image's two
// workloads merge per workload, never into one per-image baseline.
func TestMergeFilesKeepsWorkloadsApart(t *testing.T) {
	dir := t.TempDir()
	workload := func(key string, n int) *model.Baseline {
		b := learnedBaseline("shop/app", "1", n, "")
		b.Workload = key
		return b
	}
	var files []string
	for node, n := range []int{30, 20} {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("node%d.json", node)))
		if err != nil {
			t.Fatal(err)
		}
		bs := []*model.Baseline{workload("k8s:shop/web/main", n), workload("k8s:shop/worker/main", n+1)}
		if err := store.Export(f, bs, time.Now()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		files = append(files, f.Name())
	}
	merged, err := mergeFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, b := range merged.Baselines {
		got[b.Key()] = b.Windows
	}
	want := map[string]uint64{"k8s:shop/web/main": 50, "k8s:shop/worker/main": 52}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("merged windows by key %v, want %v", got, want)
	}
}
