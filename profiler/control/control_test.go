package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/store"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func learnCfg() model.LearnConfig {
	return model.LearnConfig{MinWindows: 10, MinContainers: 1, StableWindows: 5, MaxDrift: 3, SampleSize: 16}
}

// baseline learns n 1s windows of container id of image:tag, from t0+start.
func baseline(image, tag, id string, n, start int) *model.Baseline {
	c := model.Container{ID: id, Name: id, Runtime: model.RuntimeStatic, Image: image, ImageTag: tag, CgroupPath: "/cagewatch-e2e/" + id}
	b := model.NewBaseline(image, tag, "")
	for i := range n {
		b.AddWindow(model.Window{CgroupID: 1, Container: c, Start: t0.Add(time.Duration(start+i) * time.Second), Duration: time.Second,
			Counts: map[string]uint64{"read": 100 + uint64(i%3), "write": 50, "futex": uint64(i % 2)}}, 16)
	}
	b.AddExec("/usr/bin/" + id)
	return b
}

// seed is what every server's store starts with.
func seed() []*model.Baseline {
	return []*model.Baseline{
		baseline("e2e/app", "1", "app1", 6, 0),
		baseline("registry.local:5000/team/api", "v2", "api1", 3, 0),
		baseline("docker.io/library/nginx", "", "web1", 4, 0),
	}
}

var seedKeys = []string{"docker.io/library/nginx", "e2e/app:1", "registry.local:5000/team/api:v2"}

// agent is a control server over a Library over a real bbolt store.
type agent struct {
	st     *store.Bolt
	lib    *profiler.Library
	socket string
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, running bool) *agent {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "baselines.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PutBaselines(seed()...); err != nil {
		t.Fatal(err)
	}
	lib, err := profiler.NewLibrary(st, profiler.LearnerConfig{LearnConfig: learnCfg()}, profiler.ModeAuto, running)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{st: st, lib: lib, socket: control.SocketPath(path)}
	a.cancel, a.done = serve(t, a.socket, lib)
	return a
}

// serve runs control.Serve until the test ends and waits until it answers.
func serve(t *testing.T, socket string, svc control.Service) (context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, socket, svc, nil, discard()) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context was cancelled")
		}
	})
	waitServing(t, socket, done)
	return cancel, done
}

func waitServing(t *testing.T, socket string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := control.Dial(socket); err == nil {
			if _, err := c.Status(context.Background()); err == nil {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("control socket %s does not answer", socket)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (a *agent) client(t *testing.T) *control.Client {
	t.Helper()
	c, err := control.Dial(a.socket)
	if err != nil {
		t.Fatalf("Dial(%s): %v", a.socket, err)
	}
	return c
}

// snapshot is the store's content, as JSON, to compare before and after.
func snapshot(t *testing.T, st store.Store) string {
	t.Helper()
	all, err := st.Baselines()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// listJSON is the library's content, as JSON.
func listJSON(t *testing.T, lib *profiler.Library) string {
	t.Helper()
	bs, err := lib.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(bs)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func keys(bs []*model.Baseline) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Key()
	}
	return out
}

// viaJSON is v as it arrives on the other side of the socket.
func viaJSON[T any](t *testing.T, v T) T {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawPost sends body to the agent's socket as it is, bypassing the Client.
func rawPost(t *testing.T, socket, path string, body []byte) (int, map[string]string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}
	resp, err := hc.Post("http://agent"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var reply map[string]string
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &reply)
	return resp.StatusCode, reply
}

func TestClientList(t *testing.T) {
	tests := []struct {
		name  string
		reset []string // baselines reset before listing
		want  []string
	}{
		{name: "all, sorted", want: seedKeys},
		{name: "empty", reset: seedKeys, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, true)
			for _, k := range tt.reset {
				if err := a.lib.Reset(context.Background(), k); err != nil {
					t.Fatal(err)
				}
			}
			got, err := a.client(t).List(context.Background())
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if !slices.Equal(keys(got), tt.want) {
				t.Fatalf("List keys = %q, want %q", keys(got), tt.want)
			}
			want, _ := a.lib.List(context.Background())
			if !reflect.DeepEqual(got, viaJSON(t, want)) {
				t.Errorf("List over the socket differs from the library's")
			}
		})
	}
}

func TestClientGet(t *testing.T) {
	a := startAgent(t, true)
	c := a.client(t)
	tests := []struct {
		name    string
		key     string
		wantErr error
	}{
		{name: "image with tag", key: "e2e/app:1"},
		{name: "registry with port", key: "registry.local:5000/team/api:v2"},
		{name: "image without tag", key: "docker.io/library/nginx"},
		{name: "missing", key: "e2e/app:2", wantErr: store.ErrNotFound},
		{name: "query characters", key: "e2e/app:1&image=x?#", wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Get(context.Background(), tt.key)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get(%q) error = %v, want %v", tt.key, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.key) {
					t.Errorf("error %q does not name the image %q", err, tt.key)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tt.key, err)
			}
			want, err := a.lib.Get(context.Background(), tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, viaJSON(t, want)) {
				t.Errorf("Get(%q) over the socket = %+v, want %+v", tt.key, got, want)
			}
		})
	}
}

func TestClientImport(t *testing.T) {
	tests := []struct {
		name  string
		in    []*model.Baseline
		merge bool
		want  map[string]uint64 // windows by key afterwards
	}{
		{
			name: "replace and add",
			in:   []*model.Baseline{baseline("e2e/app", "1", "app9", 2, 100), baseline("e2e/new", "1", "n1", 5, 0)},
			want: map[string]uint64{"e2e/app:1": 2, "e2e/new:1": 5, "docker.io/library/nginx": 4, "registry.local:5000/team/api:v2": 3},
		},
		{
			name:  "merge",
			in:    []*model.Baseline{baseline("e2e/app", "1", "app9", 2, 100), baseline("e2e/new", "1", "n1", 5, 0)},
			merge: true,
			want:  map[string]uint64{"e2e/app:1": 8, "e2e/new:1": 5, "docker.io/library/nginx": 4, "registry.local:5000/team/api:v2": 3},
		},
		{
			name: "nothing",
			want: map[string]uint64{"e2e/app:1": 6, "docker.io/library/nginx": 4, "registry.local:5000/team/api:v2": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, true)
			if err := a.client(t).Import(context.Background(), tt.in, tt.merge); err != nil {
				t.Fatalf("Import(merge=%v): %v", tt.merge, err)
			}
			all, err := a.st.Baselines()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]uint64{}
			for _, b := range all {
				got[b.Key()] = b.Windows
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("store windows = %v, want %v", got, tt.want)
			}
			for key, w := range tt.want {
				b, err := a.lib.Get(context.Background(), key)
				if err != nil || b.Windows != w {
					t.Errorf("library %q = %v, %v; want %d windows", key, b, err, w)
				}
			}
			if tt.merge {
				b, _ := a.lib.Get(context.Background(), "e2e/app:1")
				if want := map[string]uint64{"app1": 6, "app9": 2}; !reflect.DeepEqual(b.Containers, want) {
					t.Errorf("merged containers = %v, want %v", b.Containers, want)
				}
				if want := map[string]uint64{"/usr/bin/app1": 1, "/usr/bin/app9": 1}; !reflect.DeepEqual(b.Binaries, want) {
					t.Errorf("merged binaries = %v, want %v", b.Binaries, want)
				}
			}
		})
	}
}

// exportJSON is a valid export file of bs, as generic JSON to break.
func exportJSON(t *testing.T, bs ...*model.Baseline) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := store.Export(&buf, bs, t0); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func encode(t *testing.T, doc map[string]any) []byte {
	t.Helper()
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestImportRejectsBadFiles(t *testing.T) {
	valid := func() []*model.Baseline {
		return []*model.Baseline{baseline("e2e/app", "1", "app9", 2, 100), baseline("e2e/new", "1", "n1", 5, 0)}
	}
	// edit returns a valid export of valid() with the second baseline changed.
	edit := func(fn func(b map[string]any)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			doc := exportJSON(t, valid()...)
			fn(doc["baselines"].([]any)[1].(map[string]any))
			return encode(t, doc)
		}
	}
	tests := []struct {
		name string
		body func(t *testing.T) []byte
		want string // in the error message
	}{
		{"empty body", func(*testing.T) []byte { return nil }, "truncated"},
		{"truncated", func(t *testing.T) []byte { raw := encode(t, exportJSON(t, valid()...)); return raw[:len(raw)/2] }, "truncated"},
		{"not JSON", func(*testing.T) []byte { return []byte("baselines: yes") }, "malformed"},
		{"unknown version", func(t *testing.T) []byte {
			doc := exportJSON(t, valid()...)
			doc["version"] = 99
			return encode(t, doc)
		}, "version 99"},
		{"wrong format name", func(t *testing.T) []byte {
			doc := exportJSON(t, valid()...)
			doc["format"] = "something-else"
			return encode(t, doc)
		}, "something-else"},
		{"unknown field", func(t *testing.T) []byte {
			doc := exportJSON(t, valid()...)
			doc["extra"] = true
			return encode(t, doc)
		}, "extra"},
		{"trailing data", func(t *testing.T) []byte { return append(encode(t, exportJSON(t, valid()...)), []byte(` {"x":1}`)...) }, "after top-level value"},
		{"NaN", func(t *testing.T) []byte {
			return bytes.Replace(encode(t, exportJSON(t, valid()...)), []byte(`"seconds":5`), []byte(`"seconds":NaN`), 1)
		}, "malformed"},
		{"wrong type", edit(func(b map[string]any) { b["windows"] = "many" }), "windows"},
		{"negative count", edit(func(b map[string]any) { b["windows"] = -1 }), "windows"},
		{"negative rate", edit(func(b map[string]any) { b["total"].(map[string]any)["mean"] = -3.5 }), "total"},
		{"windows disagree with the statistics", edit(func(b map[string]any) { b["windows"] = 99 }), "e2e/new:1"},
		{"bad state", edit(func(b map[string]any) { b["state"] = "trusted" }), "trusted"},
		{"container with no windows", edit(func(b map[string]any) { b["containers"] = map[string]any{"n1": 5, "ghost": 0} }), "ghost"},
		{"no image", edit(func(b map[string]any) { b["image"], b["tag"] = "", "" }), "baselines[1]"},
		{"null baseline", func(t *testing.T) []byte {
			doc := exportJSON(t, valid()...)
			doc["baselines"] = append(doc["baselines"].([]any), nil)
			return encode(t, doc)
		}, "null"},
		{"image twice", func(t *testing.T) []byte {
			return encode(t, exportJSON(t, baseline("e2e/app", "1", "x", 1, 0), baseline("e2e/app", "1", "y", 1, 0)))
		}, "twice"},
	}
	for _, merge := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if merge {
				name += "/merge"
			}
			t.Run(name, func(t *testing.T) {
				a := startAgent(t, true)
				before := snapshot(t, a.st)
				libBefore := listJSON(t, a.lib)
				path := "/v1/baselines/import"
				if merge {
					path += "?merge=true"
				}
				status, reply := rawPost(t, a.socket, path, tt.body(t))
				if status != http.StatusBadRequest || reply["kind"] != "bad_import" {
					t.Errorf("status %d reply %v, want 400 bad_import", status, reply)
				}
				if !strings.Contains(reply["error"], tt.want) {
					t.Errorf("error %q does not mention %q", reply["error"], tt.want)
				}
				if after := snapshot(t, a.st); after != before {
					t.Errorf("the store changed after a rejected import")
				}
				if listJSON(t, a.lib) != libBefore {
					t.Errorf("the library changed after a rejected import")
				}
			})
		}
	}

	t.Run("valid raw body is accepted", func(t *testing.T) {
		a := startAgent(t, true)
		status, reply := rawPost(t, a.socket, "/v1/baselines/import", encode(t, exportJSON(t, valid()...)))
		if status != http.StatusOK {
			t.Fatalf("status %d reply %v, want 200", status, reply)
		}
		if b, err := a.st.Baseline("e2e/new:1"); err != nil || b.Windows != 5 {
			t.Errorf("store: %v, %v; want e2e/new:1 with 5 windows", b, err)
		}
	})
}

func TestClientImportInvalid(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(b *model.Baseline)
	}{
		{"bad state", func(b *model.Baseline) { b.State = "trusted" }},
		{"windows disagree with the statistics", func(b *model.Baseline) { b.Windows = 99 }},
		{"container with no windows", func(b *model.Baseline) { b.Containers["ghost"] = 0 }},
		{"max below mean", func(b *model.Baseline) { m := b.Syscalls["read"]; m.Max = 1; b.Syscalls["read"] = m }},
		{"unsorted sample", func(b *model.Baseline) { slices.Reverse(b.Sample) }},
		{"no image", func(b *model.Baseline) { b.Image, b.Tag = "", "" }},
	}
	for _, merge := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if merge {
				name += "/merge"
			}
			t.Run(name, func(t *testing.T) {
				a := startAgent(t, true)
				before := snapshot(t, a.st)
				bad := baseline("e2e/app", "1", "app9", 3, 100)
				tt.corrupt(bad)
				in := []*model.Baseline{baseline("e2e/new", "1", "n1", 5, 0), bad}
				err := a.client(t).Import(context.Background(), in, merge)
				if !errors.Is(err, store.ErrBadImport) {
					t.Fatalf("Import error = %v, want ErrBadImport", err)
				}
				if after := snapshot(t, a.st); after != before {
					t.Errorf("the store changed after a rejected import")
				}
				if _, err := a.lib.Get(context.Background(), "e2e/new:1"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("the valid baseline of a rejected import was imported: %v", err)
				}
			})
		}
	}
}

func TestClientPromote(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		wantErr error
	}{
		{name: "learning image", key: "e2e/app:1"},
		{name: "registry with port", key: "registry.local:5000/team/api:v2"},
		{name: "missing", key: "e2e/none:1", wantErr: store.ErrNotFound},
		{name: "empty", key: "", wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, true)
			before := snapshot(t, a.st)
			err := a.client(t).Promote(context.Background(), tt.key)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Promote(%q) error = %v, want %v", tt.key, err, tt.wantErr)
				}
				if snapshot(t, a.st) != before {
					t.Error("a failed promotion changed the store")
				}
				return
			}
			if err != nil {
				t.Fatalf("Promote(%q): %v", tt.key, err)
			}
			if b, _ := a.lib.Get(context.Background(), tt.key); b.State != model.StateStable {
				t.Errorf("library state = %q, want stable", b.State)
			}
			if b, err := a.st.Baseline(tt.key); err != nil || b.State != model.StateStable {
				t.Errorf("store: %v, %v; want stable", b, err)
			}
			st, _ := a.client(t).Status(context.Background())
			for _, im := range st.Images {
				if want := im.Image == tt.key; (im.State == model.StateStable) != want {
					t.Errorf("status of %s = %s", im.Image, im.State)
				}
			}
		})
	}
}

func TestClientReset(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		wantErr error
		want    []string // keys left
	}{
		{name: "image", key: "e2e/app:1", want: []string{"docker.io/library/nginx", "registry.local:5000/team/api:v2"}},
		{name: "missing", key: "e2e/none:1", wantErr: store.ErrNotFound, want: seedKeys},
		{name: "empty", key: "", wantErr: store.ErrNotFound, want: seedKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, true)
			c := a.client(t)
			err := c.Reset(context.Background(), tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reset(%q) error = %v, want %v", tt.key, err, tt.wantErr)
			}
			bs, err := c.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keys(bs), tt.want) {
				t.Errorf("List after Reset = %q, want %q", keys(bs), tt.want)
			}
			stored, _ := a.st.Baselines()
			if !slices.Equal(keys(stored), tt.want) {
				t.Errorf("store after Reset = %q, want %q", keys(stored), tt.want)
			}
			if tt.wantErr == nil {
				if _, err := c.Get(context.Background(), tt.key); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Get after Reset error = %v, want ErrNotFound", err)
				}
			}
		})
	}
}

func TestClientStatus(t *testing.T) {
	tests := []struct {
		name     string
		running  bool
		wantMode profiler.Mode
	}{
		{name: "agent", running: true, wantMode: profiler.ModeAuto},
		{name: "library of the cli", running: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, tt.running)
			got, err := a.client(t).Status(context.Background())
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if got.AgentRunning != tt.running || got.Mode != string(tt.wantMode) {
				t.Errorf("agent running %v mode %q, want %v %q", got.AgentRunning, got.Mode, tt.running, tt.wantMode)
			}
			want, _ := a.lib.Status(context.Background())
			if !reflect.DeepEqual(got, viaJSON(t, want)) {
				t.Errorf("Status over the socket = %+v, want %+v", got, want)
			}
			var images []string
			for _, im := range got.Images {
				images = append(images, im.Image)
				if im.Progress.Windows == 0 || im.Progress.MinWindows != 10 || im.Progress.StableWindows != 5 {
					t.Errorf("progress of %s = %+v", im.Image, im.Progress)
				}
			}
			if !slices.Equal(images, seedKeys) {
				t.Errorf("images = %q, want sorted %q", images, seedKeys)
			}
		})
	}
}

// failingService fails every call with a plain error.
type failingService struct{ control.Service }

var errBroken = errors.New("disk on fire")

func (failingService) Status(context.Context) (control.Status, error) {
	return control.Status{}, errBroken
}

func TestClientOtherErrors(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "cagewatch.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, socket, failingService{}, nil, discard()) }()
	t.Cleanup(func() { cancel(); <-done })
	var c *control.Client
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if c, err = control.Dial(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dial: %v", err)
		}
	}
	_, err := c.Status(context.Background())
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadImport) || !strings.Contains(err.Error(), errBroken.Error()) {
		t.Errorf("Status error = %v, want a plain error carrying %q", err, errBroken)
	}
}

func TestServeSocket(t *testing.T) {
	tests := []struct {
		name       string
		socket     func(dir string) string
		privateDir bool // Serve created the directory, so it must be 0700
	}{
		{"in the store directory", func(dir string) string { return control.SocketPath(filepath.Join(dir, "baselines.db")) }, false},
		{"in a directory to create", func(dir string) string { return filepath.Join(dir, "run", "cagewatch", "cagewatch.sock") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := tt.socket(t.TempDir())
			serve(t, socket, emptyLibrary(t))
			fi, err := os.Stat(socket)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
				t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
			}
			if !tt.privateDir {
				return
			}
			dir, err := os.Stat(filepath.Dir(socket))
			if err != nil {
				t.Fatal(err)
			}
			if dir.Mode().Perm() != 0o700 {
				t.Errorf("created socket directory mode = %v, want 0700", dir.Mode().Perm())
			}
		})
	}
}

func emptyLibrary(t *testing.T) *profiler.Library {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "b.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lib, err := profiler.NewLibrary(st, profiler.LearnerConfig{LearnConfig: learnCfg()}, profiler.ModeLearn, true)
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// staleSocket leaves a socket file behind with nothing listening on it, as an
// agent killed with SIGKILL does.
func staleSocket(t *testing.T, socket string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("no stale socket file: %v", err)
	}
	if _, err := control.Dial(socket); err == nil {
		t.Fatal("the stale socket answers")
	}
}

func TestServeStaleSocket(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "cagewatch.sock")
	staleSocket(t, socket)
	serve(t, socket, emptyLibrary(t))
	c, err := control.Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(context.Background()); err != nil || !st.AgentRunning {
		t.Errorf("Status = %+v, %v; want the new agent answering", st, err)
	}
}

func TestServeRefusesSocketInUse(t *testing.T) {
	tests := []struct {
		name  string
		other func(t *testing.T, socket string) (check func() error)
	}{
		{"another listener", func(t *testing.T, socket string) func() error {
			ln, err := net.Listen("unix", socket)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			return func() error {
				c, err := net.Dial("unix", socket)
				if err == nil {
					c.Close()
				}
				return err
			}
		}},
		{"another agent", func(t *testing.T, socket string) func() error {
			serve(t, socket, emptyLibrary(t))
			return func() error {
				c, err := control.Dial(socket)
				if err != nil {
					return err
				}
				_, err = c.Status(context.Background())
				return err
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "cagewatch.sock")
			stillServing := tt.other(t, socket)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- control.Serve(ctx, socket, emptyLibrary(t), nil, discard()) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), socket) {
					t.Errorf("Serve on a socket in use = %v, want an error naming %s", err, socket)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve took over a socket in use (still running after 5s)")
			}
			if err := stillServing(); err != nil {
				t.Errorf("the first server no longer answers: %v", err)
			}
		})
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	tests := []struct {
		name string
		// before runs against the serving agent before its context is cancelled.
		before func(t *testing.T, socket string)
	}{
		{"idle", func(*testing.T, string) {}},
		{"after requests, with a kept-alive connection", func(t *testing.T, socket string) {
			c, err := control.Dial(socket)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := c.List(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "cagewatch.sock")
			cancel, done := serve(t, socket, emptyLibrary(t))
			tt.before(t, socket)
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve after cancel = %v, want nil", err)
				}
				done <- nil // for serve's cleanup
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return within 5s of its context being cancelled")
			}
			if _, err := os.Stat(socket); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket after stop: %v, want it removed", err)
			}
			if _, err := control.Dial(socket); err == nil {
				t.Error("Dial succeeded after the agent stopped")
			}
		})
	}

	t.Run("context cancelled before Serve", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "cagewatch.sock")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- control.Serve(ctx, socket, emptyLibrary(t), nil, discard()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Serve with a cancelled context did not return")
		}
		if _, err := os.Stat(socket); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket: %v, want none left", err)
		}
	})
}

func TestDialFailsFast(t *testing.T) {
	nothing := func(*testing.T, string) {}
	tests := []struct {
		name    string
		socket  string // under a temporary directory
		prepare func(t *testing.T, socket string)
		wantErr error
	}{
		{"missing socket", "cagewatch.sock", nothing, fs.ErrNotExist},
		{"missing directory", "nowhere/cagewatch.sock", nothing, fs.ErrNotExist},
		{"stale socket", "cagewatch.sock", staleSocket, syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), tt.socket)
			tt.prepare(t, socket)
			start := time.Now()
			c, err := control.Dial(socket)
			if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
				t.Errorf("Dial took %v, want it to fail fast", elapsed)
			}
			if !errors.Is(err, tt.wantErr) || c != nil {
				t.Errorf("Dial = %v, %v; want %v", c, err, tt.wantErr)
			}
		})
	}
}

func TestClientAfterAgentStopped(t *testing.T) {
	a := startAgent(t, true)
	c := a.client(t)
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatal(err)
	}
	a.done <- nil
	start := time.Now()
	_, err := c.List(context.Background())
	if err == nil || !strings.Contains(err.Error(), a.socket) {
		t.Errorf("List after the agent stopped = %v, want an error naming %s", err, a.socket)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("List took %v to fail", elapsed)
	}
}
