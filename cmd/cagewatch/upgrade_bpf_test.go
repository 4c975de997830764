package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// The upgrade test's learning: 1 s windows, stable after 24 windows at the
// earliest; a new tag carries 16 of its old tag's windows. max_drift is 4, not
// 3: the Go runtime's share of a busy loop's syscalls moves with the load of
// a 2-core machine (the same loop drifted 1.1–3.4 across runs), while a
// changed mix drifts by hundreds.
const (
	upgradeMinWindows   = 24
	upgradeStableEvery  = 8
	upgradePriorWindows = 16
)

// TestBPFImageUpgrade is #17's image upgrade on the real kernel with a real
// agent: upg/app:1 learns until stable. Then upg/app:2 (the same loop) and
// upg/app:3 (the loop with another syscall in its mix) appear, app:3 once
// app:2 is stable. Each starts from the most recently stable tag. app:2 keeps
// the prior and is stable after one block of its own windows, far sooner than
// app:1 from nothing, and the agent logs the two tags' differences; app:3's
// prior is rejected and it learns on.
// status --json says where each was carried from.
func TestBPFImageUpgrade(t *testing.T) {
	requireRoot(t)
	sensortest.RequireBPF(t)
	bin := cagewatchBinary(t)
	parent := fmt.Sprintf("cagewatch-upgrade-%d", os.Getpid())
	dir := t.TempDir()
	config := writeConfig(t, fmt.Sprintf(`mode: auto
window: 1s
store: %s/cagewatch.db
learning: {ignore_first: 1s, min_windows: %d, stable_windows: %d, max_drift: 4, sample_size: 64, prior_windows: %d}
containers:
  static:
    - {cgroup: "/%s/v1-*", image: "upg/app:1"}
    - {cgroup: "/%s/v2-*", image: "upg/app:2"}
    - {cgroup: "/%s/v3-*", image: "upg/app:3"}
`, dir, upgradeMinWindows, upgradeStableEvery, upgradePriorWindows, parent, parent, parent))
	agent := e2eStartAgent(t, bin, config)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitFor(t, 30*time.Second, "the agent to start", func() bool {
		_, _, err := runCLI(ctx, "--config", config, "--log-level", "warn", "status", "--require-agent")
		return err == nil
	})
	checkRunning := func() {
		select {
		case <-agent.done:
			t.Fatalf("agent exited:\n%s", tail(agent.log.String(), 40))
		default:
		}
	}
	// The loops start under the agent, so each tag learns its binary (the
	// test binary) from the exec: app:2's is not new.
	startHelperCgroup(t, parent, "v1-a", "getppid-loop")
	var v1Stable int
	waitFor(t, 90*time.Second, "upg/app:1 to go stable", func() bool {
		checkRunning()
		v1Stable = stableAt(agent.log.String(), "upg/app:1")
		return v1Stable > 0
	})

	startHelperCgroup(t, parent, "v2-a", "getppid-loop")
	judged := func(profile string) string {
		m := regexp.MustCompile(`msg="new tag's prior judged" profile=` + regexp.QuoteMeta(profile) + ` from=\S+ outcome=(\w+) why="([^"]*)"`).
			FindStringSubmatch(agent.log.String())
		if m == nil {
			return ""
		}
		t.Logf("%s's prior: %s, %s", profile, m[1], m[2])
		return m[1]
	}
	var v2Outcome string
	waitFor(t, 60*time.Second, "upg/app:2's prior to be judged", func() bool {
		checkRunning()
		v2Outcome = judged("upg/app:2")
		return v2Outcome != ""
	})
	if v2Outcome != model.PriorMatched {
		t.Fatalf("upg/app:2 runs what upg/app:1 ran, yet its prior was %s", v2Outcome)
	}
	var v2Stable int
	waitFor(t, 30*time.Second, "upg/app:2 to go stable", func() bool {
		checkRunning()
		v2Stable = stableAt(agent.log.String(), "upg/app:2")
		return v2Stable > 0
	})
	own := v2Stable - upgradePriorWindows
	t.Logf("windows to stable: upg/app:1 %d from nothing; upg/app:2 %d of its own after %d carried from upg/app:1", v1Stable, own, upgradePriorWindows)
	if own < upgradeStableEvery || own >= v1Stable {
		t.Errorf("upg/app:2 went stable after %d windows of its own; want at least one block (%d) and fewer than app:1 needed (%d)",
			own, upgradeStableEvery, v1Stable)
	}
	waitFor(t, 10*time.Second, "the upgrade diff in the log", func() bool {
		return strings.Contains(agent.log.String(), `msg="new tag stable; changes from its previous tag" profile=upg/app:2 from=upg/app:1 prior=matched syscalls_added=[]`)
	})

	startHelperCgroup(t, parent, "v3-a", "getppid-getuid-loop")
	waitFor(t, 60*time.Second, "upg/app:3's prior to be judged", func() bool {
		checkRunning()
		return judged("upg/app:3") != ""
	})
	// app:3 starts from the most recently stable tag: app:2.
	log := agent.log.String()
	for tag, from := range map[string]string{"upg/app:2": "upg/app:1", "upg/app:3": "upg/app:2"} {
		want := fmt.Sprintf(`msg="new tag starts from its previous tag's baseline" profile=%s from=%s windows=%d`, tag, from, upgradePriorWindows)
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// app:3's first block has getuid: the prior is rejected, and it learns on.
	st := upgradeStatus(ctx, t, config)
	for tag, want := range map[string]struct {
		from    string
		outcome string
		state   model.BaselineState
	}{"upg/app:2": {"upg/app:1", model.PriorMatched, model.StateStable}, "upg/app:3": {"upg/app:2", model.PriorRejected, model.StateLearning}} {
		is := imageStatus(st, tag)
		cf := is.CarriedFrom
		if cf == nil || cf.Profile != want.from || cf.Windows != upgradePriorWindows || cf.Outcome != want.outcome || cf.Why == "" || is.State != want.state {
			t.Errorf("%s: status %+v carried_from %+v; want %s, carried from %s (%d windows, %s, and why)",
				tag, is, cf, want.state, want.from, upgradePriorWindows, want.outcome)
		}
	}
	if cf := imageStatus(st, "upg/app:1").CarriedFrom; cf != nil {
		t.Errorf("upg/app:1 carried from %+v: it learned from nothing", cf)
	}
	text, _, err := runCLI(ctx, "--config", config, "--log-level", "warn", "status")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("carried from upg/app:1 (%d windows, matched)", upgradePriorWindows); !strings.Contains(text, want) {
		t.Errorf("status lacks %q:\n%s", want, text)
	}
	if strings.Contains(agent.log.String(), "level=ERROR") {
		t.Errorf("the agent logged errors:\n%s", tail(agent.log.String(), 40))
	}
}

// stableAt is the windows at which the agent's log says profile's baseline
// went stable (carried windows included); 0: not yet.
func stableAt(log, profile string) int {
	m := regexp.MustCompile(`msg="baseline stable" profile=` + regexp.QuoteMeta(profile) + ` windows=(\d+)`).FindStringSubmatch(log)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func upgradeStatus(ctx context.Context, t *testing.T, config string) control.Status {
	t.Helper()
	out, stderr, err := runCLI(ctx, "--config", config, "--log-level", "warn", "status", "--json", "--require-agent")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, stderr)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

func imageStatus(st control.Status, image string) control.ImageStatus {
	for _, is := range st.Images {
		if is.Image == image {
			return is
		}
	}
	return control.ImageStatus{}
}
