package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cagewatch/cagewatch/model"
)

var testT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testBaseline learns a small baseline for image:tag: windows from two
// containers with grams, startup syscalls, a binary and a sample cut to 4.
func testBaseline(t testing.TB, image, tag string, windows int) *model.Baseline {
	t.Helper()
	b := model.NewBaseline(image, tag, "sha256:"+strings.Repeat("ab", 8))
	b.AddStartup(model.Window{Counts: map[string]uint64{"execve": 1, "arch_prctl": 1}})
	b.AddExec("/usr/bin/app")
	for i := 0; i < windows; i++ {
		id := fmt.Sprintf("c%d", i%2)
		b.AddWindow(model.Window{
			CgroupID:  uint64(100 + i%2),
			Container: model.Container{ID: id, Image: image, ImageTag: tag},
			Start:     testT0.Add(time.Duration(i) * time.Second),
			Duration:  time.Second,
			Counts:    map[string]uint64{"read": uint64(100 + i*7%13), "write": uint64(40 + i%5), "futex": uint64(i % 3)},
			Grams:     model.GramsOfSequence([]string{"read", "write", "futex", "read", "write"}[:2+i%4]),
		}, 4)
		b.UpdateState(model.LearnConfig{MinWindows: 4, MinContainers: 1, StableWindows: 2, MaxDrift: 0.25, SampleSize: 4})
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("test baseline %s does not validate: %v", b.Key(), err)
	}
	return b
}

// sameJSON compares baselines by their JSON encoding, which is what the store
// keeps: equal encodings mean equal stored values.
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: encoding got: %v", what, err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("%s: encoding want: %v", what, err)
	}
	if string(g) != string(w) {
		t.Errorf("%s differs:\n got %s\nwant %s", what, g, w)
	}
}

func openTest(t *testing.T, path string) *Bolt {
	t.Helper()
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func keys(bs []*model.Baseline) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Key()
	}
	return out
}

func TestOpenCreatesFileAndDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "lib", "cagewatch", "cagewatch.db")
	s := openTest(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("store file: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("store file mode = %v, want 0600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatalf("store directory: %v", err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("store directory mode = %v, want 0700", perm)
	}
	if bs, err := s.Baselines(); err != nil || len(bs) != 0 {
		t.Errorf("new store: Baselines() = %d baselines, %v; want none", len(bs), err)
	}
}

func TestOpenUnusablePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{"directory is a file", filepath.Join(file, "cagewatch.db")},
		{"path is a directory", dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path, 100*time.Millisecond)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", tc.path)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the path %s", err, tc.path)
			}
		})
	}
}

func TestPutGetListDelete(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	nginx := testBaseline(t, "docker.io/library/nginx", "1.27", 9)
	redis := testBaseline(t, "docker.io/library/redis", "7", 5)
	api := testBaseline(t, "registry.example/api", "", 3)
	byID := testBaseline(t, "", "", 2)
	if err := s.PutBaselines(redis, byID); err != nil {
		t.Fatalf("PutBaselines: %v", err)
	}
	if err := s.PutBaselines(nginx, api); err != nil {
		t.Fatalf("PutBaselines: %v", err)
	}

	t.Run("get", func(t *testing.T) {
		for _, want := range []*model.Baseline{nginx, redis, api, byID} {
			got, err := s.Baseline(want.Key())
			if err != nil {
				t.Fatalf("Baseline(%q): %v", want.Key(), err)
			}
			sameJSON(t, want.Key(), got, want)
			if got == want {
				t.Error("Baseline returned the caller's pointer, not a copy")
			}
		}
	})
	t.Run("list is sorted by key", func(t *testing.T) {
		all, err := s.Baselines()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{byID.Key(), nginx.Key(), redis.Key(), api.Key()}
		slices.Sort(want)
		if got := keys(all); !slices.Equal(got, want) {
			t.Errorf("Baselines() keys = %q, want %q", got, want)
		}
	})
	t.Run("put replaces", func(t *testing.T) {
		more := testBaseline(t, "docker.io/library/nginx", "1.27", 20)
		if err := s.PutBaselines(more); err != nil {
			t.Fatal(err)
		}
		got, err := s.Baseline(nginx.Key())
		if err != nil {
			t.Fatal(err)
		}
		if got.Windows != 20 {
			t.Errorf("Windows after replacing = %d, want 20", got.Windows)
		}
	})
	t.Run("returned values are independent of the store", func(t *testing.T) {
		got, _ := s.Baseline(redis.Key())
		got.Syscalls["ptrace"] = model.Moments{N: 1, Mean: 1, Max: 1}
		again, _ := s.Baseline(redis.Key())
		if _, ok := again.Syscalls["ptrace"]; ok {
			t.Error("changing a returned baseline changed the store")
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := s.DeleteBaseline(redis.Key()); err != nil {
			t.Fatalf("DeleteBaseline: %v", err)
		}
		if _, err := s.Baseline(redis.Key()); !errors.Is(err, ErrNotFound) {
			t.Errorf("Baseline after delete: %v, want ErrNotFound", err)
		}
		err := s.DeleteBaseline(redis.Key())
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), redis.Key()) {
			t.Errorf("second DeleteBaseline: %v, want ErrNotFound naming %q", err, redis.Key())
		}
		all, _ := s.Baselines()
		if len(all) != 3 {
			t.Errorf("%d baselines after delete, want 3", len(all))
		}
	})
	t.Run("put nothing", func(t *testing.T) {
		if err := s.PutBaselines(); err != nil {
			t.Errorf("PutBaselines() = %v", err)
		}
	})
}

func TestGetMissing(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	if err := s.PutBaselines(testBaseline(t, "nginx", "1", 2)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"nginx:2", "nginx", "", "redis:1"} {
		t.Run(key, func(t *testing.T) {
			b, err := s.Baseline(key)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Baseline(%q) = %v, %v; want ErrNotFound", key, b, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", key)) {
				t.Errorf("error %q does not name the key %q", err, key)
			}
		})
	}
}

func TestPutBaselinesIsOneTransaction(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	old := testBaseline(t, "nginx", "1", 3)
	if err := s.PutBaselines(old); err != nil {
		t.Fatal(err)
	}
	newer := testBaseline(t, "nginx", "1", 8)
	extra := testBaseline(t, "redis", "7", 4)
	bad := testBaseline(t, "postgres", "16", 4)
	bad.Seconds = math.NaN() // cannot be encoded as JSON

	err := s.PutBaselines(newer, extra, bad)
	if err == nil {
		t.Fatal("PutBaselines with an unencodable baseline succeeded")
	}
	if !strings.Contains(err.Error(), bad.Key()) {
		t.Errorf("error %q does not name %q", err, bad.Key())
	}
	// Nothing of the batch was written: the old value stays, the others are absent.
	got, err := s.Baseline(old.Key())
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "nginx:1 after a failed batch", got, old)
	for _, key := range []string{extra.Key(), bad.Key()} {
		if _, err := s.Baseline(key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Baseline(%q) after a failed batch: %v, want ErrNotFound", key, err)
		}
	}

	// The same batch without the bad one is written whole.
	if err := s.PutBaselines(newer, extra); err != nil {
		t.Fatal(err)
	}
	all, err := s.Baselines()
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(all); !slices.Equal(got, []string{"nginx:1", "redis:7"}) {
		t.Errorf("keys = %q", got)
	}
	sameJSON(t, "nginx:1", all[0], newer)
}

func TestPutBaselinesIsOneCommit(t *testing.T) {
	// One bbolt transaction is one commit: the transaction counter moves by one
	// however many baselines are written.
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	var batch []*model.Baseline
	for i := 0; i < 25; i++ {
		batch = append(batch, testBaseline(t, fmt.Sprintf("image-%02d", i), "1", 3))
	}
	txID := func() (id int) {
		s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }) // the last committed transaction
		return id
	}
	before := txID()
	if err := s.PutBaselines(batch...); err != nil {
		t.Fatal(err)
	}
	if commits := txID() - before; commits != 1 {
		t.Errorf("writing %d baselines took %d commits, want 1", len(batch), commits)
	}
	all, err := s.Baselines()
	if err != nil || len(all) != len(batch) {
		t.Fatalf("Baselines() = %d, %v; want %d", len(all), err, len(batch))
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []*model.Baseline{testBaseline(t, "a", "1", 7), testBaseline(t, "b", "2", 3)}
	if err := s.PutBaselines(want...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = openTest(t, path)
	got, err := s.Baselines()
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "baselines after reopening", got, want)
	// Learning resumes where it stopped: the reopened baseline learns on.
	b := got[0]
	b.AddWindow(model.Window{Container: model.Container{ID: "c0"}, Start: testT0.Add(time.Hour), Duration: time.Second,
		Counts: map[string]uint64{"read": 1}}, 4)
	if b.Windows != 8 {
		t.Errorf("Windows after learning on = %d, want 8", b.Windows)
	}
}

func readMeta(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("opening %s with bbolt: %v", path, err)
	}
	defer db.Close()
	out := map[string]string{}
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{"meta", "baselines"} {
			if tx.Bucket([]byte(name)) == nil {
				return fmt.Errorf("bucket %q missing", name)
			}
		}
		return tx.Bucket([]byte("meta")).ForEach(func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeRaw(t *testing.T, path, bucket, key, value string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("opening %s with bbolt: %v", path, err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), []byte(value))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSchemaVersionIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got, want := readMeta(t, path)["schema_version"], fmt.Sprint(SchemaVersion); got != want {
		t.Errorf("schema_version = %q, want %q", got, want)
	}
}

func TestOpenSchemaVersions(t *testing.T) {
	tests := []struct {
		name    string
		version string // "" writes none (a file from before the schema key)
		wantErr error
		wantMsg []string
	}{
		{"none: migrated", "", nil, nil},
		{"current", fmt.Sprint(SchemaVersion), nil, nil},
		{"older: migrated", "0", nil, nil},
		{"schema 1: migrated", "1", nil, nil},
		{"newer", fmt.Sprint(SchemaVersion + 1), ErrNewerSchema, []string{fmt.Sprint(SchemaVersion + 1)}},
		{"much newer", "99", ErrNewerSchema, []string{"99"}},
		{"not a number", "one", nil, []string{"schema version", `"one"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			writeRaw(t, path, "baselines", "kept", "{}")
			if tc.version != "" {
				writeRaw(t, path, "meta", "schema_version", tc.version)
			}
			s, err := Open(path, time.Second)
			if tc.wantErr == nil && tc.wantMsg == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				s.Close()
				if got := readMeta(t, path)["schema_version"]; got != fmt.Sprint(SchemaVersion) {
					t.Errorf("schema_version after Open = %q, want %d", got, SchemaVersion)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open of a store with schema_version %q succeeded", tc.version)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Open = %v, want %v", err, tc.wantErr)
			}
			for _, w := range append(tc.wantMsg, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// The refused file is left as it was, and unlocked.
			if got := readMeta(t, path)["schema_version"]; got != tc.version {
				t.Errorf("schema_version after refused Open = %q, want %q unchanged", got, tc.version)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	first := openTest(t, path)
	const wait = 200 * time.Millisecond
	start := time.Now()
	s, err := Open(path, wait)
	took := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("second Open while the first holds the lock succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	// bbolt gives up one lock retry (50ms) early.
	if took < wait/2 || took > wait+5*time.Second {
		t.Errorf("second Open gave up after %v, want about %v", took, wait)
	}
	// Once the first closes, the file opens.
	first.Close()
	openTest(t, path)
}

func TestCorruptValue(t *testing.T) {
	valid, err := json.Marshal(testBaseline(t, "nginx", "1", 3))
	if err != nil {
		t.Fatal(err)
	}
	invalid := testBaseline(t, "nginx", "2", 3)
	invalid.Total.N = 99 // decodes, but fails Validate
	invalidRaw, _ := json.Marshal(invalid)
	tests := []struct {
		name  string
		value string
		msg   string
	}{
		{"garbage", "\x00\x01not json", "invalid character"},
		{"truncated", string(valid[:len(valid)/2]), "unexpected end"},
		{"wrong type", `{"image":"nginx","windows":"many"}`, "windows"},
		{"fails validation", string(invalidRaw), "total"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			s, err := Open(path, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			good := testBaseline(t, "redis", "7", 3)
			if err := s.PutBaselines(good); err != nil {
				t.Fatal(err)
			}
			s.Close()
			const key = "broken:1"
			writeRaw(t, path, "baselines", string(storeKeys(key)[0]), tc.value)
			s = openTest(t, path)

			_, err = s.Baseline(key)
			if !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("Baseline(%q) = %v, want ErrCorruptValue", key, err)
			}
			for _, w := range []string{fmt.Sprintf("%q", key), tc.msg} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			if _, err := s.Baselines(); !errors.Is(err, ErrCorruptValue) || !strings.Contains(err.Error(), key) {
				t.Errorf("Baselines() = %v, want ErrCorruptValue naming %q", err, key)
			}
			// The other baseline still reads, and the broken one can be deleted.
			if _, err := s.Baseline(good.Key()); err != nil {
				t.Errorf("Baseline(%q) next to a corrupt value: %v", good.Key(), err)
			}
			if err := s.DeleteBaseline(key); err != nil {
				t.Errorf("DeleteBaseline(%q) of a corrupt value: %v", key, err)
			}
			if all, err := s.Baselines(); err != nil || len(all) != 1 {
				t.Errorf("Baselines() after deleting the corrupt value = %d, %v", len(all), err)
			}
		})
	}
}

// TestStoreInterface keeps Bolt usable where a Store is expected.
func TestStoreInterface(t *testing.T) {
	var s Store = openTest(t, filepath.Join(t.TempDir(), "s.db"))
	if _, err := s.Baselines(); err != nil {
		t.Fatal(err)
	}
}

// readRaw returns every value of a bucket, as bbolt holds it.
func readRaw(t *testing.T, path, bucket string) map[string]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("opening %s with bbolt: %v", path, err)
	}
	defer db.Close()
	out := map[string]string{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
			if bucket == "baselines" { // by profile key, whatever the schema's key layout
				k = []byte(profileOf(k))
			}
			out[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateSchema1UpgradesViews opens a store as schema 1 left it: baselines
// encoded without views. Open upgrades each in its migration transaction.
func TestMigrateSchema1UpgradesViews(t *testing.T) {
	docExample, err := os.ReadFile("testdata/export-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Baselines []json.RawMessage `json:"baselines"`
	}
	if err := json.Unmarshal(docExample, &file); err != nil {
		t.Fatal(err)
	}
	cut := testBaseline(t, "docker.io/library/redis", "7", 9) // sample of 4 of 9 windows
	withViews := testBaseline(t, "registry.example/api", "2", 5)
	rawWithViews, _ := json.Marshal(withViews)
	stored := map[string]string{
		"docker.io/library/nginx:1.27": string(file.Baselines[0]),
		cut.Key():                      string(v1Baseline(t, cut)),
		withViews.Key():                string(rawWithViews), // a development build wrote views at schema 1
		"broken:1":                     "\x00not json",
		"invalid:1":                    "{}",
	}
	path := filepath.Join(t.TempDir(), "s.db")
	for k, v := range stored {
		if strings.Contains(v, `"composition"`) != (k == withViews.Key()) {
			t.Fatalf("%s: old value with views %v", k, strings.Contains(v, `"composition"`))
		}
		writeRaw(t, path, "baselines", k, v)
	}
	writeRaw(t, path, "meta", "schema_version", "1")

	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open of a schema 1 store: %v", err)
	}
	got := map[string]*model.Baseline{} // by the key schema 1 used
	for _, key := range []string{"docker.io/library/nginx:1.27", cut.Key(), withViews.Key()} {
		repo, tag := model.SplitImageRef(key)
		familiar := model.FamiliarImage(repo) + ":" + tag // schema 4 keys Docker Hub images so
		b, err := s.Baseline(familiar)
		if err != nil {
			t.Fatalf("Baseline(%q) after migration: %v", familiar, err)
		}
		got[key] = b
	}
	s.Close()
	if v := readMeta(t, path)["schema_version"]; v != fmt.Sprint(SchemaVersion) {
		t.Errorf("schema_version = %q, want %d", v, SchemaVersion)
	}

	t.Run("views rebuilt from the sample", func(t *testing.T) {
		for _, key := range []string{"docker.io/library/nginx:1.27", cut.Key()} {
			b := got[key]
			if b.Composition.Windows == 0 || b.Composition.Windows != uint64(len(b.Sample)) || b.Volume.N != b.Composition.Windows {
				t.Errorf("%s: composition.windows %d, volume.n %d; want the %d sampled windows", key, b.Composition.Windows, b.Volume.N, len(b.Sample))
			}
			if b.Order.Windows != 0 || b.Order.Grams == nil {
				t.Errorf("%s: order = %+v, want empty and learning", key, b.Order)
			}
		}
		if b := got[cut.Key()]; b.Windows != 9 || b.Composition.Windows != 4 {
			t.Errorf("cut sample: windows %d, composition.windows %d; want 9 and 4", b.Windows, b.Composition.Windows)
		}
	})
	t.Run("written back", func(t *testing.T) {
		raw := readRaw(t, path, "baselines")
		for _, key := range []string{"nginx:1.27", "redis:7"} { // re-keyed by schema 4
			if !strings.Contains(raw[key], `"composition":{"windows":`) {
				t.Errorf("%s stored without views after migration: %s", key, raw[key])
			}
		}
		for _, key := range []string{"docker.io/library/nginx:1.27", cut.Key()} {
			if _, ok := raw[key]; ok {
				t.Errorf("%s still stored under its registry-qualified name", key)
			}
		}
		if raw[withViews.Key()] != string(rawWithViews) {
			t.Errorf("a baseline with views was rewritten:\n got %s\nwant %s", raw[withViews.Key()], rawWithViews)
		}
		// Values that do not decode or validate are left for reads to report.
		for _, key := range []string{"broken:1", "invalid:1"} {
			if raw[key] != stored[key] {
				t.Errorf("%s changed by migration: %q", key, raw[key])
			}
		}
	})
	t.Run("reopening changes nothing", func(t *testing.T) {
		before := readRaw(t, path, "baselines")
		openTest(t, path).Close()
		if after := readRaw(t, path, "baselines"); !maps.Equal(after, before) {
			t.Error("second Open rewrote baselines")
		}
	})
	t.Run("learns on", func(t *testing.T) {
		s := openTest(t, path)
		b := got[cut.Key()]
		b.AddWindow(model.Window{Container: model.Container{ID: "c0"}, Start: testT0.Add(time.Hour), Duration: time.Second,
			Counts: map[string]uint64{"read": 3}, Grams: map[string]uint64{"read": 1, "read,read": 2}}, 4)
		if err := s.PutBaselines(b); err != nil {
			t.Fatal(err)
		}
		again, err := s.Baseline(b.Key())
		if err != nil {
			t.Fatal(err)
		}
		if again.Order.Windows != 1 || again.Composition.Windows != 5 {
			t.Errorf("after one more window: order %d, composition %d windows; want 1 and 5", again.Order.Windows, again.Composition.Windows)
		}
	})
}

// v1Baseline is b as schema 1 stored it: without views and sampled grams.
func v1Baseline(t *testing.T, b *model.Baseline) json.RawMessage {
	t.Helper()
	var file struct {
		Baselines []json.RawMessage `json:"baselines"`
	}
	if err := json.Unmarshal(asVersion1(t, export(t, []*model.Baseline{b})), &file); err != nil {
		t.Fatal(err)
	}
	return file.Baselines[0]
}

// TestMigrateSchema3FamiliarImageKeys: a CRI runtime's and Docker's names of
// one Docker Hub image become one baseline, merged, under Docker's name.
func TestMigrateSchema3FamiliarImageKeys(t *testing.T) {
	fromDocker := testBaseline(t, "nginx", "1.27", 6)
	fromCRI := testBaseline(t, "docker.io/library/nginx", "1.27", 4)
	other := testBaseline(t, "docker.io/cagewatch/busybox", "1", 3)
	path := filepath.Join(t.TempDir(), "s.db")
	for _, b := range []*model.Baseline{fromDocker, fromCRI, other} {
		raw, _ := json.Marshal(b)
		writeRaw(t, path, "baselines", b.Key(), string(raw))
	}
	writeRaw(t, path, "meta", "schema_version", "3")
	s := openTest(t, path)
	b, err := s.Baseline("nginx:1.27")
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b.Windows != 10 || b.Validate() != nil {
		t.Errorf("merged baseline has %d windows (valid: %v), want 6 + 4", b.Windows, b.Validate())
	}
	keys := slices.Sorted(maps.Keys(readRaw(t, path, "baselines")))
	if want := []string{"cagewatch/busybox:1", "nginx:1.27"}; !slices.Equal(keys, want) {
		t.Errorf("keys after migration %v, want %v", keys, want)
	}
}

func TestFleetOutbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cagewatch.db")
	st, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.FleetOutbox(); err != nil || len(got) != 0 {
		t.Fatalf("new store's outbox: %v %v", got, err)
	}
	if err := st.UpdateFleetOutbox(map[string][]byte{"a:1": []byte("one"), "b:1": []byte("two")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateFleetOutbox(map[string][]byte{"b:1": []byte("three")}, []string{"a:1", "never:1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.FleetOutbox()
	if err != nil || len(got) != 1 || string(got["b:1"]) != "three" {
		t.Errorf("outbox after reopening: %q %v", got, err)
	}
}

// TestMigrateSchema4SplitsRepositoryAndTag: schema 5 keys a baseline by its
// repository and tag apart, taken from the baseline's fields; workloads and
// id-only images under their own prefixes. Reads by profile key find each.
func TestMigrateSchema4SplitsRepositoryAndTag(t *testing.T) {
	withPort := testBaseline(t, "registry:5000/team/app", "2", 3)
	untagged := testBaseline(t, "registry:5000/team/app", "", 2)
	byID := testBaseline(t, "", "", 2)
	byID.ImageID = "sha256:" + strings.Repeat("cd", 32)
	k8s := testBaseline(t, "nginx", "1.27", 2)
	k8s.Workload = "k8s:prod/web/nginx"
	entry := testBaseline(t, "nginx", "1.27", 2)
	entry.Workload = "nginx:1.27#/usr/sbin/nginx"
	plain := testBaseline(t, "nginx", "1.27", 4)
	path := filepath.Join(t.TempDir(), "s.db")
	all := []*model.Baseline{withPort, untagged, byID, k8s, entry, plain}
	for _, b := range all {
		raw, _ := json.Marshal(b)
		writeRaw(t, path, "baselines", b.Key(), string(raw))
	}
	writeRaw(t, path, "baselines", "broken:1", "not json")
	writeRaw(t, path, "meta", "schema_version", "4")

	s := openTest(t, path)
	for _, b := range all {
		got, err := s.Baseline(b.Key())
		if err != nil || got.Windows != b.Windows || got.Workload != b.Workload {
			t.Errorf("Baseline(%q) after migration: %v, %v", b.Key(), got, err)
		}
	}
	if _, err := s.Baseline("broken:1"); !errors.Is(err, ErrCorruptValue) || !strings.Contains(err.Error(), `"broken:1"`) {
		t.Errorf("a value that does not decode: %v, want ErrCorruptValue naming broken:1", err)
	}
	if err := s.DeleteBaseline("broken:1"); err != nil {
		t.Errorf("deleting the broken value: %v", err)
	}
	listed, err := s.Baselines()
	if err != nil || len(listed) != len(all) {
		t.Fatalf("Baselines after migration: %d, %v; want %d", len(listed), err, len(all))
	}
	s.Close()

	var keys []string
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("baselines")).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	db.Close()
	want := []string{"\x00id\x00" + byID.ImageID, "\x00workload\x00k8s:prod/web/nginx", "\x00workload\x00nginx:1.27#/usr/sbin/nginx",
		"nginx\x001.27", "registry:5000/team/app\x00", "registry:5000/team/app\x002"}
	if !slices.Equal(keys, want) {
		t.Errorf("stored keys %q,\nwant %q", keys, want)
	}
	before := readRaw(t, path, "baselines")
	openTest(t, path).Close()
	if after := readRaw(t, path, "baselines"); !maps.Equal(after, before) {
		t.Error("a second Open rewrote baselines")
	}
}
