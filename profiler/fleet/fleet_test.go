package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/fleet/fleettest"
)

var learnCfg = model.LearnConfig{MinWindows: 60, MinContainers: 1, StableWindows: 20, MaxDrift: 3, SampleSize: 64}

// workload makes windows of one image: a fixed mix with noise, each window's
// order counted from a random walk, as a thread's run would be (tens of
// thousands of distinct 4-grams, as many as ADFA-LD's: a large image), or,
// for server, a request loop with a few branches (hundreds of 4-grams, as
// one server process makes).
type workload struct {
	rng    *rand.Rand
	names  []string
	server bool
}

// serverLoop is one request of a server: the branches are what varies.
func (wl *workload) serverLoop(seq []string) []string {
	seq = append(seq, "epoll_wait", "read")
	if wl.rng.IntN(10) < 3 { // a file served
		seq = append(seq, "openat", "fstat", "read", "close")
	}
	if wl.rng.IntN(10) < 5 {
		seq = append(seq, "futex")
	}
	if wl.rng.IntN(2) == 0 {
		seq = append(seq, "write")
	} else {
		seq = append(seq, "sendto")
	}
	if wl.rng.IntN(10) == 0 {
		seq = append(seq, "clock_gettime")
	}
	return seq
}

func newWorkload(seed uint64, names ...string) *workload {
	if len(names) == 0 {
		names = []string{"read", "write", "openat", "close", "fstat", "epoll_wait", "futex", "recvfrom", "sendto", "mmap",
			"munmap", "brk", "lseek", "getpid", "clock_gettime", "nanosleep"}
	}
	return &workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), names: names}
}

var windowClock atomic.Int64

// window is one window of container id on node; start times never repeat, so
// windows are distinct everywhere (as real ones are).
func (wl *workload) window(node, id string) model.Window {
	seq := make([]string, 200+wl.rng.IntN(200))
	if wl.server {
		seq = seq[:0]
		for n := 30 + wl.rng.IntN(30); n > 0; n-- {
			seq = wl.serverLoop(seq)
		}
	}
	for i := range seq {
		if !wl.server {
			seq[i] = wl.names[min(wl.rng.IntN(len(wl.names)), wl.rng.IntN(len(wl.names)))] // skewed mix
		}
	}
	counts := map[string]uint64{}
	for _, s := range seq {
		counts[s]++
	}
	return model.Window{
		CgroupID:  uint64(len(node)),
		Container: model.Container{ID: node + "/" + id, Image: "app", ImageTag: "1", Runtime: model.RuntimeStatic},
		Start:     time.Unix(1_700_000_000, 0).Add(time.Duration(windowClock.Add(1)) * time.Second),
		Duration:  10 * time.Second, Counts: counts, Grams: model.GramsOfSequence(seq),
	}
}

const profileKey = "app:1"

type logCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

type node struct {
	*Client
	name string
	logs *logCounter
	wl   *workload
	// own is everything this node learned, as its local bbolt baseline would.
	own *model.Baseline
}

func newNode(t testing.TB, endpoints []string, name string, seed uint64) *node {
	t.Helper()
	return newNodeLearning(t, endpoints, name, seed, learnCfg)
}

func newNodeLearning(t testing.TB, endpoints []string, name string, seed uint64, learn model.LearnConfig) *node {
	t.Helper()
	logs := &logCounter{}
	c, err := New(Config{Endpoints: endpoints, Node: name, PublishInterval: 200 * time.Millisecond,
		RequestTimeout: 10 * time.Second, Spacing: time.Millisecond}, learn, nil, slog.New(logs)) // patient: CI machines are loaded
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &node{Client: c, name: name, logs: logs, wl: newWorkload(seed), own: model.NewBaseline("app", "1", "")}
}

// learn learns n windows, locally and into the fleet's pending delta.
func (n *node) learn(count int) []model.Window {
	var ws []model.Window
	for i := range count {
		w := n.wl.window(n.name, fmt.Sprintf("c%d", i%3))
		n.AddWindow(w)
		n.own.AddWindow(w, learnCfg.SampleSize)
		ws = append(ws, w)
	}
	return ws
}

// single learns all windows on one baseline: what the fleet must equal.
func single(ws []model.Window) *model.Baseline {
	b := model.NewBaseline("app", "1", "")
	for _, w := range ws {
		b.AddWindow(w, learnCfg.SampleSize)
	}
	return b
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fleetBaseline reads the aggregate as any node sees it.
func fleetBaseline(t *testing.T, n *node) *Aggregate {
	t.Helper()
	if err := n.Refresh(ctxT(t, 10*time.Second), profileKey); err != nil {
		t.Fatal(err)
	}
	a, ok := n.Aggregate(profileKey)
	if !ok {
		t.Fatal("no aggregate")
	}
	return a
}

// TestFleetExact: three nodes publish disjoint windows concurrently, in many
// small publishes that race on the compare-and-swap; the aggregate must equal
// one baseline learned on every window.
func TestFleetExact(t *testing.T) {
	c := fleettest.Start(t, 3)
	var nodes []*node
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, newNode(t, c.Endpoints(), name, uint64(i+1)))
	}
	var all []model.Window
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			for range 8 {
				ws := n.learn(5)
				mu.Lock()
				all = append(all, ws...)
				mu.Unlock()
				if err := n.Publish(ctxT(t, 20*time.Second)); err != nil {
					t.Errorf("%s: %v", n.name, err)
				}
			}
		})
	}
	wg.Wait()
	a := fleetBaseline(t, nodes[0])
	fleettest.SameStatistics(t, a.Baseline, single(all))
	if a.Nodes != 3 {
		t.Errorf("nodes %d, want 3", a.Nodes)
	}
	// Every node converges on the same aggregate.
	for _, n := range nodes[1:] {
		b := fleetBaseline(t, n)
		fleettest.SameStatistics(t, b.Baseline, a.Baseline)
	}
	st := nodes[1].Status()
	if len(st.Profiles) != 1 || st.Profiles[0].Windows != 120 || st.Profiles[0].Nodes != 3 || !st.Connected {
		t.Errorf("status %+v", st)
	}
}

// TestFleetRetryAfterLostResponse: a publish whose transaction committed but
// whose answer was lost is retried with more windows learned meanwhile; each
// window counts once.
func TestFleetRetryAfterLostResponse(t *testing.T) {
	c := fleettest.Start(t, 3)
	n := newNode(t, c.Endpoints(), "node-a", 7)
	lost := 0
	n.afterCommit = func() error {
		if lost < 2 {
			lost++
			return errors.New("response lost")
		}
		return nil
	}
	ws := n.learn(10)
	if err := n.Publish(ctxT(t, 10*time.Second)); err == nil {
		t.Fatal("the lost response was not reported")
	}
	ws = append(ws, n.learn(4)...)
	if err := n.Publish(ctxT(t, 10*time.Second)); err == nil {
		t.Fatal("the second lost response was not reported")
	}
	ws = append(ws, n.learn(3)...)
	if err := n.Publish(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := n.Publish(ctxT(t, 10*time.Second)); err != nil { // nothing left: must add nothing
		t.Fatal(err)
	}
	a := fleetBaseline(t, n)
	fleettest.SameStatistics(t, a.Baseline, single(ws))
	if a.Nodes != 1 {
		t.Errorf("nodes %d, want 1", a.Nodes)
	}
	for name, s := range a.Support.Syscalls {
		if s != 1 {
			t.Errorf("syscall %s: %d nodes, want 1", name, s)
		}
	}
}

// TestFleetMemberKilled: one of three members dies while nodes publish; no
// publish fails and nothing is lost.
func TestFleetMemberKilled(t *testing.T) {
	c := fleettest.Start(t, 3)
	var nodes []*node
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, newNode(t, c.Endpoints(), name, uint64(10+i)))
	}
	var all []model.Window
	round := func() {
		for _, n := range nodes {
			all = append(all, n.learn(3)...)
			start := time.Now()
			if err := n.Publish(ctxT(t, 20*time.Second)); err != nil {
				t.Errorf("%s: publish failed: %v", n.name, err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("%s: publish took %v", n.name, d)
			}
		}
	}
	round()
	c.Stop(0) // the first endpoint every client dialed
	for range 4 {
		round()
	}
	fleettest.SameStatistics(t, fleetBaseline(t, nodes[2]).Baseline, single(all))
	for _, n := range nodes {
		if n.logs.count("etcd unavailable") != 0 {
			t.Errorf("%s logged an outage: one member of three is not one", n.name)
		}
	}
}

// TestFleetQuorumLost: two of three members die. Nodes keep learning, say so
// once, and once etcd is back every window learned meanwhile is in the
// aggregate exactly once, on every node.
func TestFleetQuorumLost(t *testing.T) {
	c := fleettest.Start(t, 3)
	var nodes []*node
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, newNode(t, c.Endpoints(), name, uint64(20+i)))
	}
	var all []model.Window
	for _, n := range nodes {
		all = append(all, n.learn(5)...)
		if err := n.Publish(ctxT(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(1)
	c.Stop(2)
	for _, n := range nodes {
		n.cfg.RequestTimeout = 2 * time.Second // each publish without quorum waits it out
	}
	for range 2 {
		for _, n := range nodes {
			all = append(all, n.learn(4)...)
			if err := n.Publish(ctxT(t, 20*time.Second)); err == nil {
				t.Errorf("%s: publish without quorum succeeded", n.name)
			}
			if n.Connected() {
				t.Errorf("%s: connected without quorum", n.name)
			}
			// Scoring goes on with the last fleet view read.
			if v, ok := n.View(profileKey); !ok || v.Windows < 5 {
				t.Errorf("%s: no view during the outage", n.name)
			}
		}
	}
	for _, n := range nodes {
		if got := n.logs.count("etcd unavailable"); got != 1 {
			t.Errorf("%s logged the outage %d times, want once", n.name, got)
		}
	}
	c.Restart(1, 2)
	for _, n := range nodes {
		n.cfg.RequestTimeout = 10 * time.Second
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range nodes {
		for {
			err := n.Publish(ctxT(t, 10*time.Second))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: etcd back, publish still fails: %v", n.name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	want := single(all)
	for _, n := range nodes {
		fleettest.SameStatistics(t, fleetBaseline(t, n).Baseline, want)
		if got := n.logs.count("reachable again"); got != 1 {
			t.Errorf("%s logged the recovery %d times, want once", n.name, got)
		}
		if !n.Connected() {
			t.Errorf("%s not connected after recovery", n.name)
		}
	}
}

// TestFleetUnreachableAtStart: no etcd at start. The client starts at once,
// learning goes on locally, and when etcd appears the windows are published.
func TestFleetUnreachableAtStart(t *testing.T) {
	ports := fleettest.FreePorts(t, 2)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	start := time.Now()
	n := newNode(t, []string{endpoint}, "node-a", 30)
	if d := time.Since(start); d > time.Second {
		t.Errorf("New waited %v for an unreachable etcd", d)
	}
	n.cfg.RequestTimeout = 2 * time.Second // nothing answers: each call waits it out
	ws := n.learn(6)
	if err := n.Publish(ctxT(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), endpoint) {
		t.Fatalf("publish to nothing: %v (the error must name the endpoint)", err)
	}
	if n.Connected() {
		t.Error("connected to nothing")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	fleettest.StartOn(t, ports[0], ports[1]) // etcd appears on the configured endpoint
	deadline := time.Now().Add(60 * time.Second)
	for {
		if a, ok := n.Aggregate(profileKey); ok && a.Baseline.Windows == uint64(len(ws)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("windows learned before etcd came up were never published")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fleettest.SameStatistics(t, fleetBaseline(t, n).Baseline, single(ws))
}

// TestFleetPoisoningGuard: with four nodes contributing, one node's novel
// syscall, pair and binary are not known fleet-wide; once a second node saw
// them, they are.
func TestFleetPoisoningGuard(t *testing.T) {
	c := fleettest.Start(t, 3)
	var nodes []*node
	for i, name := range []string{"node-a", "node-b", "node-c", "node-d"} {
		nodes = append(nodes, newNode(t, c.Endpoints(), name, uint64(40+i)))
	}
	publishAll := func() {
		for _, n := range nodes {
			if err := n.Publish(ctxT(t, 20*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range nodes {
			if err := n.Refresh(ctxT(t, 10*time.Second), profileKey); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range nodes {
		n.learn(5)
	}
	publishAll()
	intruder := newWorkload(99, "read", "ptrace", "process_vm_writev")
	poison := func(n *node) {
		w := intruder.window(n.name, "evil")
		n.AddWindow(w)
		n.Update(w.Container, func(b *model.Baseline) { b.AddExec("/tmp/x") })
	}
	gram := model.GramKey("read", "ptrace")
	known := func(n *node) (syscall, pair, binary bool) {
		v, ok := n.View(profileKey)
		if !ok {
			t.Fatalf("%s: no view", n.name)
		}
		_, syscall = v.Syscalls["ptrace"]
		for g := range v.Order.Grams {
			if strings.HasSuffix(g, gram) {
				pair = true
			}
		}
		_, binary = v.Binaries["/tmp/x"]
		return
	}
	poison(nodes[0])
	publishAll()
	if s, p, b := known(nodes[1]); s || p || b {
		t.Errorf("one node taught the fleet: syscall %v, pair %v, binary %v", s, p, b)
	}
	if s, p, b := known(nodes[0]); !s || !p || !b {
		t.Errorf("the node forgot what it learned itself: syscall %v, pair %v, binary %v", s, p, b)
	}
	a, _ := nodes[1].Aggregate(profileKey)
	if a.Support.Syscalls["ptrace"] != 1 || a.Support.Syscalls["read"] != 4 {
		t.Errorf("support: ptrace %d (want 1), read %d (want 4)", a.Support.Syscalls["ptrace"], a.Support.Syscalls["read"])
	}
	poison(nodes[0]) // the same node again is still one node
	publishAll()
	if s, _, _ := known(nodes[1]); s {
		t.Error("one node seen twice counted as two")
	}
	poison(nodes[2])
	publishAll()
	if s, p, b := known(nodes[1]); !s || !p || !b {
		t.Errorf("two nodes did not teach the fleet: syscall %v, pair %v, binary %v", s, p, b)
	}
}

// TestFleetAdminPropagates: promote and reset on one node reach a running
// node through the state key's watch.
func TestFleetAdminPropagates(t *testing.T) {
	c := fleettest.Start(t, 3)
	a := newNode(t, c.Endpoints(), "node-a", 50)
	b := newNode(t, c.Endpoints(), "node-b", 51)
	a.learn(5)
	b.learn(5)
	for _, n := range []*node{a, b} {
		if err := n.Publish(ctxT(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// node-b runs with a publish interval far beyond the test: only the watch
	// can bring the action in time.
	b.cfg.PublishInterval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = b.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // the watch is set up in Run's first round
	waitFor := func(what string, ok func(*Aggregate) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if agg, got := b.Aggregate(profileKey); got && ok(agg) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach node-b", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := a.Promote(ctxT(t, 10*time.Second), profileKey); err != nil {
		t.Fatal(err)
	}
	waitFor("promote", func(g *Aggregate) bool { return g.Baseline.State == model.StateStable })
	// A promote names the tag its family's newest stable one, for new tags.
	if resp, err := a.etcd.Get(ctxT(t, 10*time.Second), a.familyKey("app")); err != nil || len(resp.Kvs) != 1 ||
		!strings.Contains(string(resp.Kvs[0].Value), `"profile":"app:1"`) {
		t.Errorf("after promote, family record %v (%v), want app:1", resp, err)
	}
	if err := a.Reset(ctxT(t, 10*time.Second), profileKey); err != nil {
		t.Fatal(err)
	}
	waitFor("reset", func(g *Aggregate) bool { return g.Baseline.Windows == 0 && g.Epoch == 2 })
	if err := a.Promote(ctxT(t, 10*time.Second), "nothing:1"); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("promote of an unknown profile: %v", err)
	}
}

// TestFleetWindowsToStable: three nodes learning one image together reach
// stable with fewer windows each than one node alone, and the fleet's state
// machine runs on the aggregate's own checkpoints across publishes.
func TestFleetWindowsToStable(t *testing.T) {
	c := fleettest.Start(t, 3)
	var nodes []*node
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, newNode(t, c.Endpoints(), name, uint64(60+i)))
	}
	alone := model.NewBaseline("app", "1", "")
	soloWl := newWorkload(70)
	soloStable := 0
	for i := 1; i <= 2000 && soloStable == 0; i++ {
		alone.AddWindow(soloWl.window("solo", "c0"), learnCfg.SampleSize)
		if alone.UpdateState(learnCfg) {
			soloStable = i
		}
	}
	if soloStable == 0 {
		t.Fatal("one node alone never went stable on this workload")
	}
	perNode := 0
	for round := 1; round <= 400 && perNode == 0; round++ {
		for _, n := range nodes {
			n.learn(1)
			if err := n.Publish(ctxT(t, 20*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		if a, ok := nodes[0].Aggregate(profileKey); ok && a.Baseline.State == model.StateStable {
			perNode = round
		}
	}
	if perNode == 0 {
		t.Fatal("the fleet never went stable")
	}
	t.Logf("windows to stable: one node alone %d; three nodes together %d each (%d in the fleet)", soloStable, perNode, 3*perNode)
	if perNode >= soloStable {
		t.Errorf("three nodes needed %d windows each, one alone %d: the fleet did not learn faster", perNode, soloStable)
	}
}

// memOutbox is the agent's bbolt outbox in memory.
type memOutbox struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (o *memOutbox) FleetOutbox() (map[string][]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range o.m {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

func (o *memOutbox) UpdateFleetOutbox(put map[string][]byte, del []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range del {
		delete(o.m, k)
	}
	for k, v := range put {
		o.m[k] = slices.Clone(v)
	}
	return nil
}

// TestFleetRestartKeepsUnpublished: an agent restarted during an outage, and
// again after a publish whose answer was lost, still brings every window to
// the fleet, each once, and counts its items' node once.
func TestFleetRestartKeepsUnpublished(t *testing.T) {
	c := fleettest.Start(t, 1)
	outbox := &memOutbox{m: map[string][]byte{}}
	start := func(endpoints []string) *node {
		logs := &logCounter{}
		cl, err := New(Config{Endpoints: endpoints, Node: "node-a", PublishInterval: 200 * time.Millisecond,
			RequestTimeout: 10 * time.Second, Outbox: outbox}, learnCfg, nil, slog.New(logs))
		if err != nil {
			t.Fatal(err)
		}
		return &node{Client: cl, name: "node-a", logs: logs, wl: newWorkload(80), own: model.NewBaseline("app", "1", "")}
	}
	// 1. etcd unreachable: learned, not published, then the agent stops.
	down := start([]string{fmt.Sprintf("http://127.0.0.1:%d", fleettest.FreePorts(t, 1)[0])})
	ws := down.learn(5)
	if err := down.Publish(ctxT(t, 10*time.Second)); err == nil {
		t.Fatal("published to nothing")
	}
	if err := down.Close(); err != nil {
		t.Fatal(err)
	}
	// 2. Restarted with etcd up: a publish commits but its answer is lost;
	// more windows come; the agent stops again.
	lost := start(c.Endpoints())
	lost.wl = newWorkload(81)
	ws = append(ws, lost.learn(4)...)
	lost.afterCommit = func() error { return errors.New("response lost") }
	if err := lost.Publish(ctxT(t, 10*time.Second)); err == nil {
		t.Fatal("the lost answer was not reported")
	}
	ws = append(ws, lost.learn(3)...)
	if err := lost.Close(); err != nil {
		t.Fatal(err)
	}
	// 3. Restarted once more: everything arrives, once.
	last := start(c.Endpoints())
	defer last.Close() //nolint:errcheck // test cleanup
	if err := last.Publish(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	a := fleetBaseline(t, last)
	fleettest.SameStatistics(t, a.Baseline, single(ws))
	if a.Nodes != 1 {
		t.Errorf("nodes %d, want 1", a.Nodes)
	}
	for name, s := range a.Support.Syscalls {
		if s != 1 {
			t.Errorf("syscall %s: %d nodes, want 1 (a restart counted the node again)", name, s)
		}
	}
	if st := last.Status(); len(st.Profiles) != 1 || st.Profiles[0].PendingWindows != 0 {
		t.Errorf("after the last publish: %+v", st.Profiles)
	}
}

// TestFleetSeed: a node that learned before joining the fleet contributes
// its local baseline once; a restart (the outbox remembers) does not seed again.
func TestFleetSeed(t *testing.T) {
	c := fleettest.Start(t, 1)
	outbox := &memOutbox{m: map[string][]byte{}}
	newClient := func() *Client {
		cl, err := New(Config{Endpoints: c.Endpoints(), Node: "node-a", PublishInterval: time.Second, Outbox: outbox},
			learnCfg, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	wl := newWorkload(90)
	var ws []model.Window
	for range 8 {
		ws = append(ws, wl.window("node-a", "c0"))
	}
	local := single(ws)
	local.Promote(local.LastSeen)
	first := newClient()
	first.Seed(local)
	if err := first.Publish(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again := newClient()
	defer again.Close() //nolint:errcheck // test cleanup
	again.Seed(local)   // the agent seeds at every start
	w := wl.window("node-a", "c0")
	again.AddWindow(w)
	if err := again.Publish(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := again.Refresh(ctxT(t, 10*time.Second), profileKey); err != nil {
		t.Fatal(err)
	}
	a, _ := again.Aggregate(profileKey)
	fleettest.SameStatistics(t, a.Baseline, single(append(ws, w)))
	if a.Baseline.State != model.StateLearning {
		t.Errorf("a seed's promotion became the fleet's: %s", a.Baseline.State)
	}
}

// TestFleetNodes: nodes that published are listed; one whose lease ended
// (stopped) is stale, and its learning still counts.
func TestFleetNodes(t *testing.T) {
	c := fleettest.Start(t, 1)
	a := newNode(t, c.Endpoints(), "node-a", 100)
	b := newNode(t, c.Endpoints(), "node-b", 101)
	for _, n := range []*node{a, b} {
		n.learn(2)
		n.round(ctxT(t, 10*time.Second)) // the lease, then a publish when due
		if err := n.Publish(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := a.Nodes(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if nodes.Published != 2 || nodes.Alive != 2 || nodes.StaleN != 0 {
		t.Errorf("both running: %+v", nodes)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if nodes, err = a.Nodes(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if nodes.Published != 2 || nodes.Alive != 1 || nodes.StaleN != 1 || !slices.Equal(nodes.Stale, []string{"node-b"}) {
		t.Errorf("node-b stopped: %+v", nodes)
	}
	if agg := fleetBaseline(t, a); agg.Baseline.Windows != 4 || agg.Nodes != 2 {
		t.Errorf("a stale node's learning must still count: %d windows from %d nodes", agg.Baseline.Windows, agg.Nodes)
	}
}
