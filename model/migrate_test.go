package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"
)

// upgradeSeqs are the threads' syscall runs upgrade windows are made of.
var upgradeSeqs = [][]string{
	{"openat", "read", "read", "close"},
	{"epoll_wait", "recvfrom", "sendto", "epoll_wait"},
	{"futex", "futex", "write"},
}

// upgradeWindow is window i of container id: calls and grams that vary with i,
// a window that made no call every seventh, and a duration of 0.5 s so that
// low volumes have a negative log.
func upgradeWindow(id string, i int) Window {
	counts := map[string]uint64{}
	var seq []string
	if i%7 != 3 {
		for r := range 1 + i%3 {
			s := upgradeSeqs[(i+r)%len(upgradeSeqs)]
			seq = append(seq, s...)
		}
		for _, name := range seq {
			counts[name]++
		}
	}
	w := Window{
		CgroupID: 7, Container: Container{ID: id, Runtime: RuntimeDocker, Image: testImage, ImageTag: testTag},
		Start: testT0.Add(time.Duration(i) * time.Second), Duration: 500 * time.Millisecond, Counts: counts,
	}
	if len(seq) > 0 {
		w.Grams = GramsOfSequence(seq)
	}
	return w
}

func upgradeWindows(id string, from, n int) []Window {
	ws := make([]Window, n)
	for i := range ws {
		ws[i] = upgradeWindow(id, from+i)
	}
	return ws
}

// upgradeLearn learns windows into a new baseline with views (format 2).
func upgradeLearn(ws []Window, sampleSize int) *Baseline {
	b := NewBaseline(testImage, testTag, "sha256:feed")
	for _, w := range ws {
		b.AddWindow(w, sampleSize)
	}
	return b
}

// asV1 is b as a format 1 file or schema 1 store held it: no views, no grams.
func asV1(t *testing.T, b *Baseline) *Baseline {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // priorities use all 64 bits
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "composition")
	delete(doc, "order")
	delete(doc, "volume")
	for _, s := range doc["sample"].([]any) {
		delete(s.(map[string]any), "grams")
	}
	if raw, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	var v1 Baseline
	if err := json.Unmarshal(raw, &v1); err != nil {
		t.Fatal(err)
	}
	return &v1
}

func upgradeClose(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func checkMomentsClose(t *testing.T, what string, got, want Moments) {
	t.Helper()
	if got.N != want.N || !upgradeClose(got.Mean, want.Mean) || !upgradeClose(got.M2, want.M2) || got.Max != want.Max {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

func checkCompositionClose(t *testing.T, got, want Composition) {
	t.Helper()
	if got.Windows != want.Windows || len(got.Shares) != len(want.Shares) {
		t.Fatalf("composition: %d windows, %d shares; want %d, %d", got.Windows, len(got.Shares), want.Windows, len(want.Shares))
	}
	for name, w := range want.Shares {
		checkMomentsClose(t, fmt.Sprintf("composition.shares[%q]", name), got.Shares[name], w)
	}
}

func sampledWithCalls(b *Baseline) uint64 {
	var n uint64
	for _, s := range b.Sample {
		if sumCounts(s.Counts) > 0 {
			n++
		}
	}
	return n
}

func TestUpgradeViews(t *testing.T) {
	tests := []struct {
		name       string
		windows    int
		sampleSize int
	}{
		{"every window sampled", 30, 64},
		{"sample cut", 60, 16},
		{"one window", 1, 8},
		{"only a window without calls", 0, 8}, // window 3 below
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := upgradeWindows("c1", 0, tc.windows)
			if tc.windows == 0 {
				ws = upgradeWindows("c1", 3, 1)
			}
			learned := upgradeLearn(ws, tc.sampleSize)
			b := asV1(t, learned)
			if b.Composition.Windows != 0 || b.Order.Grams != nil || b.Volume.N != 0 {
				t.Fatalf("v1 baseline has views: %+v %+v %+v", b.Composition, b.Order, b.Volume)
			}
			b.UpgradeViews()
			if err := b.Validate(); err != nil {
				t.Fatalf("upgraded baseline does not validate: %v", err)
			}
			want := sampledWithCalls(b)
			if b.Composition.Windows != want || b.Volume.N != want {
				t.Errorf("composition.windows %d, volume.n %d; want the %d sampled windows with calls", b.Composition.Windows, b.Volume.N, want)
			}
			if b.Order.Windows != 0 || b.Order.Grams == nil || len(b.Order.Grams) != 0 {
				t.Errorf("order = %+v, want empty and learning", b.Order)
			}
			if b.Composition.Shares == nil {
				t.Error("composition.shares left nil")
			}
			if len(learned.Sample) == int(learned.Windows) {
				// The sample is every window: the rebuilt views are the learned ones.
				checkCompositionClose(t, b.Composition, learned.Composition)
				checkMomentsClose(t, "volume", b.Volume, learned.Volume)
			}

			t.Run("idempotent", func(t *testing.T) {
				before, _ := json.Marshal(b)
				b.UpgradeViews()
				if after, _ := json.Marshal(b); string(after) != string(before) {
					t.Errorf("second upgrade changed the baseline:\n%s\n%s", before, after)
				}
			})
			t.Run("learns order on", func(t *testing.T) {
				c := b.Clone()
				c.AddWindow(upgradeWindow("c2", 100), tc.sampleSize)
				if c.Order.Windows != 1 || len(c.Order.Grams) == 0 {
					t.Errorf("order after one more window = %d windows, %d grams", c.Order.Windows, len(c.Order.Grams))
				}
				if err := c.Validate(); err != nil {
					t.Errorf("after learning on: %v", err)
				}
			})
		})
	}
}

func TestUpgradeViewsKeepsViews(t *testing.T) {
	tests := []struct {
		name string
		b    func(t *testing.T) *Baseline
	}{
		{"learned with views", func(*testing.T) *Baseline { return upgradeLearn(upgradeWindows("c1", 0, 40), 16) }},
		{"only windows without calls", func(*testing.T) *Baseline {
			return upgradeLearn([]Window{upgradeWindow("c1", 3), upgradeWindow("c1", 10)}, 16)
		}},
		{"new", func(*testing.T) *Baseline { return NewBaseline(testImage, testTag, "") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b(t)
			before, _ := json.Marshal(b)
			b.UpgradeViews()
			if after, _ := json.Marshal(b); string(after) != string(before) {
				t.Errorf("upgrade changed a baseline with views:\n%s\n%s", before, after)
			}
		})
	}
}

func TestUpgradeViewsNilMaps(t *testing.T) {
	b := &Baseline{Image: "x", State: StateLearning}
	b.UpgradeViews()
	if b.Composition.Shares == nil || b.Order.Grams == nil {
		t.Fatalf("nil view maps left: %+v %+v", b.Composition, b.Order)
	}
	if b.Composition.Windows != 0 || b.Volume.N != 0 {
		t.Errorf("views of an empty baseline: %+v %+v", b.Composition, b.Volume)
	}
}

// TestMergeUpgradedWithV2: an upgraded v1 baseline merged with a v2 one (either
// way round) has exactly the statistics both have: the rate statistics of all
// windows, composition and volume over A's sample and all of B, and B's order.
func TestMergeUpgradedWithV2(t *testing.T) {
	const sampleSize = 16
	wa, wb := upgradeWindows("a", 0, 50), upgradeWindows("b", 1000, 30)
	a := asV1(t, upgradeLearn(wa, sampleSize))
	a.UpgradeViews()
	b := upgradeLearn(wb, sampleSize)
	all := upgradeLearn(append(append([]Window{}, wa...), wb...), sampleSize)
	// ref learns B's windows on top of upgraded A: the views the merge must equal.
	ref := a.Clone()
	for _, w := range wb {
		ref.AddWindow(w, sampleSize)
	}
	for _, order := range []string{"v1+v2", "v2+v1"} {
		t.Run(order, func(t *testing.T) {
			m, o := a.Clone(), b.Clone()
			if order == "v2+v1" {
				m, o = o, m
			}
			if err := m.Merge(o, sampleSize); err != nil {
				t.Fatal(err)
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("merged baseline does not validate: %v", err)
			}
			if m.Windows != all.Windows || m.Seconds != all.Seconds {
				t.Errorf("windows %d, seconds %v; want %d, %v", m.Windows, m.Seconds, all.Windows, all.Seconds)
			}
			checkMomentsClose(t, "total", m.Total, all.Total)
			for name, want := range all.Syscalls {
				checkMomentsClose(t, fmt.Sprintf("syscalls[%q]", name), m.Syscalls[name], want)
			}
			checkCompositionClose(t, m.Composition, ref.Composition)
			checkMomentsClose(t, "volume", m.Volume, ref.Volume)
			if m.Composition.Windows != sampledWithCalls(a)+b.Composition.Windows {
				t.Errorf("composition.windows %d, want A's %d sampled plus B's %d", m.Composition.Windows, sampledWithCalls(a), b.Composition.Windows)
			}
			if m.Order.Windows != b.Order.Windows || len(m.Order.Grams) != len(b.Order.Grams) {
				t.Errorf("order: %d windows, %d grams; want B's %d, %d", m.Order.Windows, len(m.Order.Grams), b.Order.Windows, len(b.Order.Grams))
			}
			for g, n := range b.Order.Grams {
				if m.Order.Grams[g] != n {
					t.Errorf("order.grams[%q] = %d, want %d", g, m.Order.Grams[g], n)
				}
			}
			if len(m.Sample) != len(all.Sample) {
				t.Fatalf("sample holds %d windows, want %d", len(m.Sample), len(all.Sample))
			}
			for i, s := range all.Sample {
				if m.Sample[i].Priority != s.Priority {
					t.Errorf("sample[%d].priority = %d, want %d", i, m.Sample[i].Priority, s.Priority)
				}
			}
			// Calibration holds out sampled windows from the views: it must
			// find every one of them there.
			for _, s := range m.Calibration().heldOut {
				if math.IsNaN(s) || math.IsInf(s, 0) {
					t.Fatalf("held-out score %v", s)
				}
			}
		})
	}
}
