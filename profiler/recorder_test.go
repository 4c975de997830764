package profiler

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

func TestRecorderWritesReplayableLinesAndRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "windows.jsonl")
	r, err := OpenRecorder(path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	app := appContainer("app1", "e2e/app", "1")
	host := model.Container{Runtime: model.RuntimeHost}
	for i := range 40 {
		ws := []model.Window{win(app, 7, i, steady(i)), {CgroupID: 1, Container: host, Duration: time.Second, Counts: map[string]uint64{"read": 1}}}
		if err := r.Record(ws, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, p := range []string{path, path + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v (40 windows over a 4 KiB cap must rotate)", p, err)
		}
		if st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over the 4096 cap", p, st.Size())
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			w, err := model.DecodeRecordedWindow(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: line %q: %v", p, sc.Text(), err)
			}
			if w.Image != "e2e/app:1" || w.Container != "app1" || w.Duration != 1 || w.Syscalls["read"] == 0 {
				t.Errorf("recorded %+v", w)
			}
			lines++
		}
		f.Close()
	}
	if lines == 0 || lines > 40 {
		t.Errorf("%d lines kept, want some and no host windows", lines)
	}
}
