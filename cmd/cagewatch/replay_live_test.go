package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/alerts"
	"github.com/cagewatch/cagewatch/store"
)

// scriptedSource delivers sampling rounds as the sensor would: each round's
// windows, then the cgroups whose final window that was.
type scriptedSource struct {
	rounds [][]model.Window
	gone   map[int][]uint64 // round → cgroups removed after it
}

func (s *scriptedSource) Stats() (profiler.Stats, error) { return profiler.Stats{}, nil }

func (s *scriptedSource) Run(ctx context.Context, h profiler.Handlers) error {
	for i, ws := range s.rounds {
		h.Windows(ws)
		for _, id := range s.gone[i] {
			h.Removed(id)
		}
	}
	return ctx.Err()
}

type alertSink struct {
	mu     sync.Mutex
	alerts []model.Alert
}

func (s *alertSink) Name() string { return "test" }
func (s *alertSink) Close() error { return nil }
func (s *alertSink) Send(a model.Alert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
}

// liveScript is a day in the life of two containers of one image and one of an
// image without a baseline: start-up windows, windows of 1 s, 0.5 s and 2.3 s,
// a short final window, and behaviour that is steady, busier, of another mix,
// or new.
func liveScript(t0 time.Time) *scriptedSource {
	web := func(name string) model.Container {
		return model.Container{ID: name, Name: name, Runtime: model.RuntimeStatic, Image: "e2e/web", ImageTag: "1",
			CgroupPath: "/apps/" + name}
	}
	other := model.Container{ID: "other", Name: "other", Runtime: model.RuntimeStatic, Image: "e2e/other", ImageTag: "1",
		CgroupPath: "/apps/other"}
	steady := func(i int, scale float64) map[string]uint64 {
		x := uint64(i % 7)
		return map[string]uint64{"read": uint64(float64(100+x) * scale), "write": uint64(float64(50+x%3) * scale),
			"futex": uint64(float64(10+x%2) * scale)}
	}
	durations := []time.Duration{time.Second, time.Second, time.Second, time.Second, 500 * time.Millisecond,
		2300 * time.Millisecond, time.Second, time.Second, time.Second, 2300 * time.Millisecond, time.Second, 270 * time.Millisecond}
	src := &scriptedSource{gone: map[int][]uint64{}}
	at := t0
	for i, d := range durations {
		scale := d.Seconds()
		counts := steady(i, scale)
		switch i {
		case 6:
			counts["futex"] *= 40 // a few percent of the calls while learning, now most of them
		case 7:
			counts["ptrace"] = 1 // never learned
		case 9:
			counts["socket"], counts["connect"] = 30, 30
		}
		ws := []model.Window{
			{CgroupID: 101, Container: web("web-1"), Start: at, Duration: d, Counts: counts},
			{CgroupID: 301, Container: other, Start: at, Duration: d, Counts: steady(i, scale)},
		}
		if i >= 5 { // a second container arrives later: its own start-up
			c2 := steady(i+3, scale)
			if i == 8 { // 25x the load, the learned mix: quiet
				for name := range c2 {
					c2[name] *= 25
				}
			}
			ws = append(ws, model.Window{CgroupID: 102, Container: web("web-2"), Start: at, Duration: d, Counts: c2})
		}
		src.rounds = append(src.rounds, ws)
		at = at.Add(d)
	}
	src.gone[len(durations)-1] = []uint64{101, 102, 301}
	return src
}

// learnedWeb is a stable baseline of e2e/web:1 learned from 1 s windows.
func learnedWeb(t0 time.Time) *model.Baseline {
	b := model.NewBaseline("e2e/web", "1", "")
	for i := range 120 {
		x := uint64((i * 7919) % 97)
		b.AddWindow(model.Window{Container: model.Container{ID: "learn"}, Start: t0.Add(time.Duration(i) * time.Second),
			Duration: time.Second, Counts: map[string]uint64{"read": 60 + x, "write": 30 + (x*3)%41, "futex": 5 + (x*5)%13}},
			model.DefaultSampleSize)
	}
	b.Promote(b.LastSeen)
	return b
}

// TestReplayMatchesLive records the live pipeline's windows and replays them
// with the same baseline and budget: every window gets the same decision, start-up
// windows and windows of other lengths included.
func TestReplayMatchesLive(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	baseline := learnedWeb(t0.Add(-time.Hour))

	st, err := store.Open(filepath.Join(dir, "cagewatch.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := profiler.Config{Mode: profiler.ModeDetect, Window: time.Second, Budget: 1, Store: filepath.Join(dir, "cagewatch.db"),
		RecordFile: filepath.Join(dir, "windows.jsonl"),
		Learning:   profiler.LearnerConfig{LearnConfig: model.DefaultLearnConfig(), IgnoreFirst: 3 * time.Second}}
	lib, err := profiler.NewLibrary(st, cfg.Learning, cfg.Mode, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.Import(context.Background(), []*model.Baseline{baseline}, false); err != nil {
		t.Fatal(err)
	}
	rules, err := profiler.LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	sink := &alertSink{}
	p, err := profiler.NewPipeline(cfg, rules, profiler.Deps{Source: liveScript(t0), Library: lib, Sinks: []alerts.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	recorded := readRecorded(t, cfg.RecordFile)
	live := map[string]*model.LiveVerdict{}
	var startup, alerted, quiet int
	thresholds := map[float64]bool{}
	durations := map[float64]bool{}
	for _, rw := range recorded {
		if rw.Live == nil {
			t.Fatalf("window %s was recorded without the live decision", rw.ID)
		}
		live[rw.ID] = rw.Live
		durations[rw.Duration] = true
		switch {
		case rw.Startup:
			startup++
			if rw.Image == "e2e/web:1" && rw.Live.Scored {
				t.Errorf("start-up window %s was scored live", rw.ID)
			}
		case rw.Live.Alert:
			alerted++
		case rw.Live.Scored:
			quiet++
		}
		if rw.Live.Scored {
			thresholds[rw.Live.Threshold] = true
		}
	}
	// The script must reach every case the verdict distinguishes.
	if startup < 4 || alerted < 3 || quiet < 4 || len(durations) < 4 || len(thresholds) < 3 {
		t.Fatalf("script too narrow: %d start-up, %d alerting and %d quiet windows, %d durations, %d thresholds",
			startup, alerted, quiet, len(durations), len(thresholds))
	}
	// Load alone does not alert (web-2's only change is 25x the load); another mix does.
	for _, a := range sink.alerts {
		if a.Container.ID == "web-2" {
			t.Errorf("%s alert for web-2: %s", a.Rule, a.Output)
		}
	}
	if !slices.ContainsFunc(sink.alerts, func(a model.Alert) bool {
		return a.Rule == model.RuleSyscallAnomaly && a.Container.ID == "web-1"
	}) {
		t.Error("no syscall_anomaly for web-1's futex-heavy window")
	}
	// The record holds what the agent did: one alerting window per window alert sent.
	windowAlerts := map[string]bool{}
	for _, a := range sink.alerts {
		if a.OutputFields["evt.type"] == "window" {
			windowAlerts[a.Container.ID+"@"+a.Time.Format(time.RFC3339Nano)] = true
		}
	}
	for _, rw := range recorded {
		key := rw.Container + "@" + rw.Time.Add(time.Duration(math.Round(rw.Duration*1e9))).Format(time.RFC3339Nano)
		if rw.Live.Alert != windowAlerts[key] {
			t.Errorf("window %s: recorded alert %v, alert sent %v", rw.ID, rw.Live.Alert, windowAlerts[key])
		}
	}

	var out, errs bytes.Buffer
	r := &replayer{baselines: map[string]*model.Baseline{baseline.Key(): baseline}, budget: cfg.Budget, window: cfg.Window,
		thresholds: model.NewThresholdCache()}
	sum, err := r.scoreFile(cfg.RecordFile, &out, &errs)
	if err != nil {
		t.Fatalf("replay: %v (%s)", err, errs.String())
	}
	replayed := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var line replayLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("replay line %q: %v", sc.Text(), err)
		}
		want, ok := live[line.ID]
		if !ok {
			t.Errorf("replay scored %s, which was not recorded", line.ID)
			continue
		}
		replayed++
		if line.Scored != want.Scored || line.Alert != want.Alert {
			t.Errorf("window %s: replay scored %v alert %v, live scored %v alert %v", line.ID, line.Scored, line.Alert, want.Scored, want.Alert)
		}
		if !closeTo(line.Score, want.Score) || !closeTo(line.Threshold, want.Threshold) {
			t.Errorf("window %s: replay score %v threshold %v, live %v and %v", line.ID, line.Score, line.Threshold, want.Score, want.Threshold)
		}
	}
	wantReplayed := 0
	for _, rw := range recorded {
		if rw.Image == baseline.Key() {
			wantReplayed++
		}
	}
	if replayed != wantReplayed {
		t.Errorf("replayed %d windows, want the %d recorded for %s", replayed, wantReplayed, baseline.Key())
	}
	if sum.DiffersFromLive != 0 || sum.LiveRecorded != wantReplayed {
		t.Errorf("summary: %d of %d live decisions differ; want 0 of %d", sum.DiffersFromLive, sum.LiveRecorded, wantReplayed)
	}
}

// closeTo compares scores up to rounding: a score sums over a map, in its order.
func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func readRecorded(t *testing.T, path string) []model.RecordedWindow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []model.RecordedWindow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		rw, err := model.DecodeRecordedWindow(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, rw)
	}
	return out
}

// TestReplayLineExplains checks a replay line carries a live alert's
// explanation: each view's z and p-value, the top syscalls' shares (not rates)
// and the pairs learning never saw.
func TestReplayLineExplains(t *testing.T) {
	dir := t.TempDir()
	// cycle is n rounds of the syscalls in order by one thread.
	cycle := func(id string, n int, order ...string) model.RecordedWindow {
		w := model.RecordedWindow{ID: id, Duration: 1, Image: "app:1", Syscalls: map[string]uint64{}}
		for range n {
			for _, name := range order {
				w.Sequence = append(w.Sequence, name)
				w.Syscalls[name]++
			}
		}
		return w
	}
	write := func(name string, ws ...model.RecordedWindow) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, w := range ws {
			if err := enc.Encode(w); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var learn []model.RecordedWindow
	for i := range 40 {
		learn = append(learn, cycle(fmt.Sprintf("learn-%d", i), 30+i%7, "read", "write", "close"))
	}
	var errs bytes.Buffer
	baselines, err := learnFromFile(write("learn.jsonl", learn...), &errs)
	if err != nil {
		t.Fatalf("learning: %v (%s)", err, errs.String())
	}
	// Same mix, in learned and in never-seen order; and a start-up window, not scored.
	startup := cycle("startup", 33, "read", "write", "close")
	startup.Startup = true
	score := write("score.jsonl", cycle("same", 33, "read", "write", "close"), cycle("reordered", 33, "read", "close", "write"), startup)
	var out bytes.Buffer
	r := &replayer{baselines: baselines, budget: 1, window: time.Second, thresholds: model.NewThresholdCache()}
	if _, err := r.scoreFile(score, &out, &errs); err != nil {
		t.Fatalf("replay: %v (%s)", err, errs.String())
	}
	lines := map[string]replayLine{}
	raw := map[string]string{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var l replayLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("replay line %q: %v", sc.Text(), err)
		}
		lines[l.ID], raw[l.ID] = l, sc.Text()
	}
	same, reordered := lines["same"], lines["reordered"]
	if !same.Scored || same.Alert || !reordered.Alert {
		t.Fatalf("same order: scored %v alert %v; reordered: alert %v; want scored, quiet and alerting\n%s\n%s",
			same.Scored, same.Alert, reordered.Alert, raw["same"], raw["reordered"])
	}
	// Arrays are there even when empty; top entries name what they hold.
	for id, keys := range map[string][]string{
		"same":    {`"views":[{`, `"top":[{`, `"pairs":[]`, `"observed_share":`, `"expected_share":`},
		"startup": {`"scored":false`, `"views":[]`, `"top":[]`, `"pairs":[]`},
	} {
		for _, key := range keys {
			if !strings.Contains(raw[id], key) {
				t.Errorf("replay line %q lacks %s", raw[id], key)
			}
		}
	}
	for _, l := range []replayLine{same, reordered} {
		for _, c := range l.Top {
			if c.ObservedShare < 0.3 || c.ObservedShare > 0.34 || c.ExpectedShare < 0.3 || c.ExpectedShare > 0.34 {
				t.Errorf("%s: %s observed share %v, expected share %v; want about 1/3 each", l.ID, c.Syscall, c.ObservedShare, c.ExpectedShare)
			}
		}
	}
	views := map[string]replayView{}
	for _, v := range reordered.Views {
		views[v.View] = v
	}
	order, comp := views[model.ViewOrder], views[model.ViewComposition]
	if _, ok := views[model.ViewVolume]; !ok || order.View == "" || comp.View == "" || len(views) != 3 {
		t.Fatalf("reordered views %+v, want composition, order and volume once each", reordered.Views)
	}
	// No learning window had an unseen pair: the p-value is the sample's least.
	if order.Z <= comp.Z || order.Z < 10 || order.PValue > 1.0/float64(len(learn)+1)+1e-12 {
		t.Errorf("reordered: order z %v p %v, composition z %v; want order far off, ahead and beyond every learning window", order.Z, order.PValue, comp.Z)
	}
	want := model.PairContribution{Pair: model.PairKey("read", "close"), Count: 33, Learned: 0}
	if !slices.Contains(reordered.Pairs, want) {
		t.Errorf("reordered pairs %+v lack %+v", reordered.Pairs, want)
	}
}
