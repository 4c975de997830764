package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/fleet"
	"github.com/cagewatch/cagewatch/profiler/fleet/fleettest"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensortest"
)

// The fleet test's learning: 1 s windows, stable after 24 windows at the
// earliest (checkpoints every 8), so one agent alone needs about half a minute.
const (
	fleetImage       = "fleet/app:1"
	fleetPrefix      = "/cagewatch-fleet-test"
	fleetMinWindows  = 24
	fleetStableEvery = 8
	fleetSampleSize  = 64
)

// TestBPFFleetThreeAgents is #17's "Exact" on the real kernel: three `cagewatch
// run` processes, each with its own store, config, fleet node name and static
// cgroup subtree running the same busy loop as image fleet/app:1, learn
// together through a real 3-member etcd; a fourth agent learns the same
// workload alone. Then:
//   - the fleet goes stable, on fewer windows per node than the agent alone;
//   - every node's status shows the aggregate (3 nodes, its windows);
//   - after SIGTERM the aggregate equals one baseline learned from the union of
//     the windows the three agents recorded (--record), within float tolerance.
func TestBPFFleetThreeAgents(t *testing.T) {
	requireRoot(t)
	sensortest.RequireBPF(t)
	began := time.Now()
	cluster := fleettest.Start(t, 3)
	endpoints := cluster.Endpoints()
	bin := cagewatchBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Every publish writes the node's watermark in the aggregate's
	// transaction: watched in order, they say each node's windows at any
	// revision (history may be compacted by the time the test asks).
	marks := watchWatermarks(ctx, t, endpoints)

	// The workloads run before the agents start: no agent sees their exec,
	// so no binary is learned that the records do not show.
	nodes := []string{"node-a", "node-b", "node-c"}
	var agents []*fleetAgent
	for _, node := range append(slices.Clone(nodes), "solo") {
		agents = append(agents, newFleetAgent(t, node, node != "solo", endpoints))
	}
	for _, a := range agents {
		a.start(t, bin)
	}
	fleetAgents, solo := agents[:3], agents[3]

	observer, err := fleet.New(fleet.Config{Endpoints: endpoints, Prefix: fleetPrefix, Node: "test-observer",
		PublishInterval: time.Second, RequestTimeout: 10 * time.Second}, fleetLearnConfig(), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = observer.Close() })
	aggregate := func() *fleet.Aggregate {
		if err := observer.Refresh(ctx, fleetImage); err != nil {
			t.Fatalf("reading the aggregate: %v", err)
		}
		a, _ := observer.Aggregate(fleetImage)
		return a
	}

	// 1. The fleet goes stable, and so does the agent alone.
	soloStable := 0
	waitFor(t, 75*time.Second, "the fleet and the agent alone to go stable", func() bool {
		for _, a := range agents {
			a.checkRunning(t)
		}
		if soloStable == 0 {
			soloStable = stableAt(solo.proc.log.String(), fleetImage)
		}
		agg := aggregate()
		return soloStable > 0 && agg != nil && agg.Baseline.State == model.StateStable
	})

	// 2. Quiet: the workloads end, each node publishes its last windows and
	// every node reads the aggregate with all of them.
	for _, a := range agents {
		a.stopWorkload()
	}
	time.Sleep(2500 * time.Millisecond) // the windows with the loops' last syscalls close
	var agg *fleet.Aggregate
	var statuses map[string]control.ImageFleet
	waitFor(t, 30*time.Second, "every recorded window in the aggregate, and every node to show it", func() bool {
		agg = aggregate()
		recorded := 0
		for _, a := range fleetAgents {
			recorded += a.recordedLearned(t)
		}
		if agg.Baseline.Windows != uint64(recorded) {
			return false
		}
		statuses = map[string]control.ImageFleet{}
		for _, a := range fleetAgents {
			f := a.fleetStatus(ctx, t)
			if f == nil || f.PendingWindows != 0 || f.Windows != agg.Baseline.Windows {
				return false
			}
			statuses[a.node] = *f
		}
		return true
	})
	// 3. Each node's status --json: the image's fleet field.
	for node, f := range statuses {
		if f.Nodes != 3 || f.Windows != agg.Baseline.Windows || f.State != model.StateStable {
			t.Errorf("%s: status fleet %+v, want 3 nodes, %d windows, stable", node, f, agg.Baseline.Windows)
		}
	}

	// SIGTERM: the agents stop cleanly; nothing was left to publish.
	for _, a := range agents {
		a.terminate(t)
	}
	final := aggregate()
	if final.Baseline.Windows != agg.Baseline.Windows || final.Nodes != 3 {
		t.Errorf("after stop: %d windows from %d nodes, want %d from 3", final.Baseline.Windows, final.Nodes, agg.Baseline.Windows)
	}

	// 4. Exact: the aggregate is one baseline learned from every window the
	// three agents recorded.
	want, perNode := learnRecorded(t, fleetAgents)
	maxDiff := fleettest.SameStatistics(t, final.Baseline, want)

	// 5. Windows to stable: the fleet's state machine went stable at its last
	// checkpoint; the watermarks say each node's share at that revision.
	stableAt := final.Baseline.Convergence.CheckpointWindows
	atStable, ok := windowsAt(marks.events(), stableAt)
	if !ok {
		t.Fatalf("no revision where the nodes' watermarks add up to the %d windows the fleet went stable at: %+v", stableAt, marks.events())
	}
	t.Logf("windows to stable: one agent alone %d; fleet of 3 %d in total (%s); aggregate %d windows (%s) equals one baseline of the recorded windows, max relative difference %.3g; %.0f s",
		soloStable, stableAt, perNodeString(atStable), final.Baseline.Windows, perNodeString(perNode), maxDiff, time.Since(began).Seconds())
	for _, node := range nodes {
		if atStable[node] == 0 || atStable[node] >= uint64(soloStable) {
			t.Errorf("%s had learned %d windows when the fleet went stable; the agent alone needed %d", node, atStable[node], soloStable)
		}
	}
	if stableAt < fleetMinWindows {
		t.Errorf("the fleet went stable at %d windows, under min_windows %d", stableAt, fleetMinWindows)
	}
}

func fleetLearnConfig() model.LearnConfig {
	return model.LearnConfig{MinWindows: fleetMinWindows, MinContainers: 1, StableWindows: fleetStableEvery, MaxDrift: 3, SampleSize: fleetSampleSize}
}

// fleetAgent is one agent of the test with its workload.
type fleetAgent struct {
	node, config, record string
	stopWorkload         func()
	proc                 *e2eAgent
}

// newFleetAgent starts the busy loop in the node's own cgroup subtree and
// writes a config whose static rule matches that subtree only; inFleet:
// with the fleet's etcd.
func newFleetAgent(t *testing.T, node string, inFleet bool, endpoints []string) *fleetAgent {
	t.Helper()
	parent := fmt.Sprintf("cagewatch-fleet-%d-%s", os.Getpid(), node)
	_, stop := startBusyCgroup(t, parent, "app-"+node)
	dir := t.TempDir()
	a := &fleetAgent{node: node, record: filepath.Join(dir, "windows.jsonl"), stopWorkload: stop}
	cfg := fmt.Sprintf(`mode: learn
window: 1s
store: %s/store/cagewatch.db
record: {file: %s}
learning: {ignore_first: 1s, min_windows: %d, stable_windows: %d, sample_size: %d}
containers:
  static: [{cgroup: "/%s/*", image: %q}]
`, dir, a.record, fleetMinWindows, fleetStableEvery, fleetSampleSize, parent, fleetImage)
	if inFleet {
		cfg += fmt.Sprintf(`fleet:
  etcd: {endpoints: [%s], prefix: %s}
  node: %s
  publish_interval: 500ms
`, strings.Join(endpoints, ", "), fleetPrefix, node)
	}
	a.config = writeConfig(t, cfg)
	return a
}

func (a *fleetAgent) start(t *testing.T, bin string) { a.proc = e2eStartAgent(t, bin, a.config) }

func (a *fleetAgent) checkRunning(t *testing.T) {
	t.Helper()
	select {
	case <-a.proc.done:
		t.Fatalf("%s: agent exited:\n%s", a.node, tail(a.proc.log.String(), 40))
	default:
	}
}

// terminate sends SIGTERM and waits for a clean exit.
func (a *fleetAgent) terminate(t *testing.T) {
	t.Helper()
	if err := a.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.proc.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: no exit 15 s after SIGTERM", a.node)
	}
	if code := a.proc.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(a.proc.log.String(), "msg=stopped") {
		t.Errorf("%s: exit code %d after SIGTERM:\n%s", a.node, code, tail(a.proc.log.String(), 20))
	}
	if strings.Contains(a.proc.log.String(), "window not learned") {
		t.Errorf("%s: a window was not learned (a hard rule tripped): the records no longer say what was learned", a.node)
	}
}

// fleetStatus is the image's fleet field in the node's `status --json`.
func (a *fleetAgent) fleetStatus(ctx context.Context, t *testing.T) *control.ImageFleet {
	t.Helper()
	out, stderr, err := runCLI(ctx, "--config", a.config, "--log-level", "warn", "status", "--json", "--require-agent")
	if err != nil {
		t.Fatalf("%s: status: %v\n%s", a.node, err, stderr)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%s: status --json: %v\n%s", a.node, err, out)
	}
	for _, im := range st.Images {
		if im.Image == fleetImage {
			return im.Fleet
		}
	}
	return nil
}

// recorded is the image's windows in the agent's record file, in order.
// Read once the workloads ended: no line is being written then.
func (a *fleetAgent) recorded(t *testing.T) []model.RecordedWindow {
	t.Helper()
	var out []model.RecordedWindow
	for _, r := range readRecorded(t, a.record) {
		if r.Image == fleetImage {
			out = append(out, r)
		}
	}
	return out
}

// recordedLearned counts the recorded windows learned as behaviour (in learn
// mode: all but start-up and stopping ones).
func (a *fleetAgent) recordedLearned(t *testing.T) int {
	n := 0
	for _, r := range a.recorded(t) {
		if !r.Startup && !r.Stopping {
			n++
		}
	}
	return n
}

// learnRecorded learns the union of the agents' recorded windows into one
// baseline, as one agent seeing all of them would (the learner's rules: a
// stopping window is skipped, a start-up one only adds its syscalls), and
// counts each node's learned windows.
func learnRecorded(t *testing.T, agents []*fleetAgent) (*model.Baseline, map[string]uint64) {
	t.Helper()
	var b *model.Baseline
	perNode := map[string]uint64{}
	for _, a := range agents {
		for _, r := range a.recorded(t) {
			if r.Stopping {
				continue
			}
			w := r.Window()
			// The calibration sample's priority hashes the cgroup id, which
			// the record keeps only in the window's id ("<cgroup>-<start>").
			cg, _, _ := strings.Cut(r.ID, "-")
			id, err := strconv.ParseUint(cg, 10, 64)
			if err != nil {
				t.Fatalf("%s: window id %q: %v", a.node, r.ID, err)
			}
			w.CgroupID = id
			if b == nil {
				b = model.NewProfileBaseline(w.Container)
			}
			if r.Startup {
				b.AddStartup(w)
				continue
			}
			b.AddWindow(w, fleetSampleSize)
			perNode[a.node]++
		}
	}
	if b == nil {
		t.Fatal("no window of the image recorded")
	}
	return b, perNode
}

// watermark is one node's publish as etcd saw it.
type watermark struct {
	Rev     int64
	Node    string
	Windows uint64
}

type watermarkLog struct {
	mu  sync.Mutex
	evs []watermark
}

func (l *watermarkLog) events() []watermark {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

// watchWatermarks records every node's published watermark for the image, in
// revision order, from now on.
func watchWatermarks(ctx context.Context, t *testing.T, endpoints []string) *watermarkLog {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	nodesPrefix := fleetPrefix + "/nodes/"
	resp, err := cli.Get(ctx, nodesPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	ch := cli.Watch(wctx, nodesPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	l := &watermarkLog{}
	go func() {
		for wr := range ch {
			for _, ev := range wr.Events {
				node, ok := strings.CutSuffix(strings.TrimPrefix(string(ev.Kv.Key), nodesPrefix), "/published")
				if !ok || ev.Type != clientv3.EventTypePut {
					continue
				}
				var wms map[string]fleet.Watermark
				if json.Unmarshal(ev.Kv.Value, &wms) != nil {
					continue
				}
				if wm, ok := wms[fleetImage]; ok {
					l.mu.Lock()
					l.evs = append(l.evs, watermark{Rev: ev.Kv.ModRevision, Node: node, Windows: wm.Windows})
					l.mu.Unlock()
				}
			}
		}
	}()
	return l
}

// windowsAt replays the watermarks up to the first revision where the nodes'
// windows add up to total: each node's windows in the aggregate then.
func windowsAt(evs []watermark, total uint64) (map[string]uint64, bool) {
	cur := map[string]uint64{}
	for _, e := range evs {
		cur[e.Node] = e.Windows
		var sum uint64
		for _, n := range cur {
			sum += n
		}
		if sum == total {
			return cur, true
		}
	}
	return nil, false
}

func perNodeString(m map[string]uint64) string {
	var parts []string
	for _, node := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", node, m[node]))
	}
	return strings.Join(parts, ", ")
}
