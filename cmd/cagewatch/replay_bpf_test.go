package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// TestBPFReplayReproducesLiveAlerts records a live agent's windows, exports the
// baseline it scored them with, replays the recording against the export and
// expects the same windows to alert.
func TestBPFReplayReproducesLiveAlerts(t *testing.T) {
	dir, parent := pacedCgroup(t, "cagewatch-replay", "app1")
	bin := cagewatchBinary(t)
	tmp := t.TempDir()
	record := filepath.Join(tmp, "windows.jsonl")
	config := writeConfig(t, fmt.Sprintf(`
mode: auto
window: 500ms
store: %s/cagewatch.db
record: {file: %s}
alerts: {dedup_interval: 0s, container_limit: 0} # compare every alert, not deduplicated or capped ones
learning: {ignore_first: 1s, min_windows: 20, stable_windows: 5}
containers:
  static: [{cgroup: "/%s/*", image: "e2e/replay:1"}]
`, tmp, record, parent))
	startInCgroup(t, dir, pacedSteady)
	agent, stdout, log := runAgentProcess(t, bin, config)
	waitFor(t, 60*time.Second, "e2e/replay:1 to become stable", func() bool {
		return strings.Contains(log.String(), `msg="baseline stable" profile=e2e/replay:1`)
	})
	startInCgroup(t, dir, pacedDifferent)
	waitFor(t, 15*time.Second, "statistical alerts", func() bool {
		n := 0
		for _, a := range alertsFrom(t, stdout.String(), "app1") {
			if a.Rule == "syscall_novel" || a.Rule == "syscall_anomaly" {
				n++
			}
		}
		return n >= 2
	})
	time.Sleep(2 * time.Second) // a few more scored windows
	export := filepath.Join(tmp, "baseline.json")
	cli(t, bin, "--config", config, "baseline", "export", "e2e/replay:1", "-o", export)
	_ = agent.Process.Kill()
	_ = agent.Wait()

	// Windows the live agent alerted on, by end time.
	live := map[int64]bool{}
	for _, a := range alertsFrom(t, stdout.String(), "app1") {
		if a.Rule == "syscall_novel" || a.Rule == "syscall_anomaly" {
			live[a.Time.Round(time.Millisecond).UnixNano()] = true
		}
	}
	// Replay every recorded window scored after the baseline became stable.
	out, err := exec.Command(bin, "replay", "--baseline", export, "--score", record, "--window", "500ms").Output()
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	windows := map[string]model.RecordedWindow{}
	f, err := os.Open(record)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w, err := model.DecodeRecordedWindow(sc.Bytes())
		if err != nil {
			t.Fatalf("recorded line %q: %v", sc.Text(), err)
		}
		windows[w.ID] = w
	}
	replayed := map[int64]bool{}
	sc = bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var l replayLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		w := windows[l.ID]
		// Recorded durations are float seconds: compare window ends to the millisecond.
		end := w.Time.Add(time.Duration(w.Duration * float64(time.Second))).Round(time.Millisecond).UnixNano()
		if l.Alert {
			replayed[end] = true
		}
	}
	for end := range live {
		if !replayed[end] {
			t.Errorf("live alert for the window ending %v is not reproduced by replay", time.Unix(0, end))
		}
	}
	// Replay alerts on windows the live agent scored must have been live alerts too.
	// (Windows from before the baseline was stable were not scored live.)
	stableAt := time.Time{}
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, `msg="baseline stable"`) {
			if ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(strings.Fields(line)[0], "time=")); err == nil {
				stableAt = ts
			}
		}
	}
	for end := range replayed {
		if time.Unix(0, end).After(stableAt.Add(time.Second)) && !live[end] {
			t.Errorf("replay alerts on the window ending %v, the live agent did not", time.Unix(0, end))
		}
	}
	if len(live) == 0 {
		t.Fatal("no live statistical alert to compare")
	}
	t.Logf("%d live statistical alert windows, all reproduced by replay", len(live))
}
