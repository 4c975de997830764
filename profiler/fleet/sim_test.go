package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cagewatch/cagewatch/profiler/fleet/fleettest"
)

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q is not a positive integer", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q is not a positive duration", name, v)
	}
	return d
}

// TestFleetSimulation is make fleet-bench, not part of make test: publishers
// (goroutines with their own node names and clients) learn and publish
// several images against a real 3-member etcd on loopback, each on the
// agent's own schedule (Run). It prints publish latency, compare-and-swap
// retries, etcd's database size and the watch traffic, and checks that no
// window was lost or counted twice.
//
//	CAGEWATCH_FLEET_SIM_NODES    publishers (50)
//	CAGEWATCH_FLEET_SIM_IMAGES   images, each on every node (10)
//	CAGEWATCH_FLEET_SIM_DURATION how long they learn (60s)
//	CAGEWATCH_FLEET_SIM_INTERVAL fleet.publish_interval (10s)
//	CAGEWATCH_FLEET_SIM_SPACING  per-profile spacing, nodes × this (1s, the client's)
//	CAGEWATCH_FLEET_SIM_WORKLOAD server (a request loop: hundreds of 4-grams)
//	                             or large (ADFA-LD-sized: tens of thousands)
func TestFleetSimulation(t *testing.T) {
	if os.Getenv("CAGEWATCH_FLEET_SIM") != "1" {
		t.Skip("a simulation, not a test: make fleet-bench (CAGEWATCH_FLEET_SIM=1)")
	}
	nNodes := envInt(t, "CAGEWATCH_FLEET_SIM_NODES", 50)
	nImages := envInt(t, "CAGEWATCH_FLEET_SIM_IMAGES", 10)
	duration := envDuration(t, "CAGEWATCH_FLEET_SIM_DURATION", time.Minute)
	interval := envDuration(t, "CAGEWATCH_FLEET_SIM_INTERVAL", 10*time.Second)
	spacing := envDuration(t, "CAGEWATCH_FLEET_SIM_SPACING", time.Second)
	large := os.Getenv("CAGEWATCH_FLEET_SIM_WORKLOAD") == "large"
	const window = time.Second // each node learns one window per image a second

	c := fleettest.Start(t, 3)
	admin, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close() //nolint:errcheck // test cleanup

	// What watching cost: agents watch the state keys (tracked below); a
	// watch on the whole prefix shows what watching the aggregates would cost
	// one agent.
	var allBytes, allEvents, stateBytes, stateEvents atomic.Int64
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	watch := func(key string, opts []clientv3.OpOption, bytes, events *atomic.Int64) {
		for resp := range admin.Watch(wctx, key, opts...) {
			for _, ev := range resp.Events {
				bytes.Add(int64(len(ev.Kv.Key) + len(ev.Kv.Value)))
				events.Add(1)
			}
		}
	}
	go watch(DefaultPrefix+"/", []clientv3.OpOption{clientv3.WithPrefix()}, &allBytes, &allEvents)
	for i := range nImages {
		go watch(fmt.Sprintf("%s/images/sim-%d:1/state", DefaultPrefix, i), nil, &stateBytes, &stateEvents)
	}

	type sample struct {
		d, inEtcd time.Duration
		attempts  int
		size      int
		err       error
		drain     bool // the final publishes after learning stopped
	}
	var draining atomic.Bool
	var mu sync.Mutex
	var samples []sample
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var learned atomic.Int64
	var clients []*Client
	for n := range nNodes {
		cl, err := New(Config{Endpoints: c.Endpoints(), Node: fmt.Sprintf("sim-node-%03d", n), PublishInterval: interval,
			Spacing: spacing, RequestTimeout: 10 * time.Second}, learnCfg, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close() //nolint:errcheck // test cleanup
		cl.onPublish = func(_ string, d, inEtcd time.Duration, attempts, size int, err error) {
			mu.Lock()
			samples = append(samples, sample{d, inEtcd, attempts, size, err, draining.Load()})
			mu.Unlock()
		}
		clients = append(clients, cl)
		wls := make([]*workload, nImages)
		for i := range wls {
			wls[i] = newWorkload(uint64(n*1000 + i))
			wls[i].server = !large
		}
		wg.Go(func() { _ = cl.Run(ctx) })
		wg.Go(func() {
			tick := time.NewTicker(window)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for i, wl := range wls {
					w := wl.window(cl.Node(), "c")
					w.Container.Image = fmt.Sprintf("sim-%d", i)
					cl.AddWindow(w)
					learned.Add(1)
				}
			}
		})
	}
	time.Sleep(duration)
	cancel()
	wg.Wait()
	draining.Store(true)

	// Drain: every node publishes what it still holds, then all must agree.
	drainStart := time.Now()
	sem := make(chan struct{}, 4)
	for _, cl := range clients {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := cl.Publish(ctxT(t, 5*time.Minute)); err != nil {
				t.Errorf("%s: final publish: %v", cl.Node(), err)
			}
		})
	}
	wg.Wait()
	t.Logf("drain (every node's last publish, 4 at a time): %v", time.Since(drainStart).Round(time.Second))
	var total uint64
	var aggBytes int
	for i := range nImages {
		key := fmt.Sprintf("sim-%d:1", i)
		resp, err := admin.Get(ctxT(t, 10*time.Second), DefaultPrefix+"/images/"+key+"/agg")
		if err != nil || len(resp.Kvs) == 0 {
			t.Fatalf("%s: %v", key, err)
		}
		a, err := decodeAggregate(resp.Kvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		total += a.Baseline.Windows
		aggBytes = max(aggBytes, len(resp.Kvs[0].Value))
		if a.Nodes != nNodes {
			t.Errorf("%s: %d nodes, want %d", key, a.Nodes, nNodes)
		}
	}
	if total != uint64(learned.Load()) {
		t.Errorf("the aggregates hold %d windows, the nodes learned %d", total, learned.Load())
	}
	time.Sleep(500 * time.Millisecond) // the watchers catch up
	wcancel()

	mu.Lock()
	defer mu.Unlock()
	var drained int
	samples = slices.DeleteFunc(samples, func(s sample) bool {
		if s.drain {
			drained++
		}
		return s.drain
	})
	t.Logf("%d publishes in the drain, left out below", drained)
	slices.SortFunc(samples, func(a, b sample) int { return int(a.d - b.d) })
	pct := func(p float64) time.Duration { return samples[min(len(samples)-1, int(p*float64(len(samples))))].d }
	var attempts, fails, bytes, deferred int
	var inEtcd time.Duration
	errs := map[string]int{}
	// Latency, attempts and bytes are of the publishes that went through;
	// deferred and failed ones are counted apart.
	samples = slices.DeleteFunc(samples, func(s sample) bool {
		switch {
		case errors.Is(s.err, errDeferred):
			deferred++
		case s.err != nil && !errors.Is(s.err, context.Canceled): // canceled: in flight when the run ended
			fails++
			errs[s.err.Error()]++
		}
		return s.err != nil
	})
	if len(samples) == 0 {
		t.Fatalf("no publish went through (%d failed, %d deferred)", fails, deferred)
	}
	for _, s := range samples {
		attempts += s.attempts
		bytes += s.size
		inEtcd += s.inEtcd
	}
	for e, n := range errs {
		t.Logf("%d× %s", n, e)
	}
	var dbSize, inUse int64
	for _, ep := range c.Endpoints() {
		st, err := admin.Status(ctxT(t, 10*time.Second), ep)
		if err != nil {
			t.Fatal(err)
		}
		dbSize, inUse = max(dbSize, st.DbSize), max(inUse, st.DbSizeInUse)
	}
	secs := duration.Seconds()
	workloadName := "server"
	if large {
		workloadName = "large"
	}
	t.Logf("%d publishers × %d images (%s workload), %v, publish_interval %v, spacing %v × nodes; %d windows learned, all in the aggregates once",
		nNodes, nImages, workloadName, duration, interval, spacing, learned.Load())
	t.Logf("publishes through: %d (%.1f/s); failed %d, deferred after 3 lost compare-and-swaps %d; latency p50 %v p90 %v p99 %v max %v; compare-and-swap attempts per publish %.2f",
		len(samples), float64(len(samples))/secs, fails, deferred, pct(0.5).Round(time.Millisecond), pct(0.9).Round(time.Millisecond),
		pct(0.99).Round(time.Millisecond), samples[len(samples)-1].d.Round(time.Millisecond), float64(attempts)/float64(len(samples)))
	t.Logf("time waiting on etcd (reads and commits): %.0f%% of publish time, %v per publish",
		100*float64(inEtcd)/float64(sumDur(samples, func(s sample) time.Duration { return s.d })),
		(inEtcd / time.Duration(len(samples))).Round(time.Millisecond))
	t.Logf("written: %.1f MB (%.0f KB/s); largest aggregate %d B", float64(bytes)/1e6, float64(bytes)/1e3/secs, aggBytes)
	t.Logf("etcd db size %.1f MB, in use %.1f MB (auto-compaction periodic 1m)", float64(dbSize)/1e6, float64(inUse)/1e6)
	t.Logf("watch traffic, agents (state keys of %d images): %d events, %d B; one watcher of the whole prefix (aggregates): %d events, %.1f MB (%.0f KB/s) — ×%d agents if each watched them",
		nImages, stateEvents.Load(), stateBytes.Load(), allEvents.Load(), float64(allBytes.Load())/1e6, float64(allBytes.Load())/1e3/secs, nNodes)
}

func sumDur[T any](xs []T, f func(T) time.Duration) time.Duration {
	var d time.Duration
	for _, x := range xs {
		d += f(x)
	}
	return max(d, 1)
}
