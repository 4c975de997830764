package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// learnedBaseline is a small but complete learned baseline: two containers,
// startup syscalls, binaries, a cut sample and a checkpoint.
func learnedBaseline(t *testing.T) *Baseline {
	t.Helper()
	cfg := LearnConfig{MinWindows: 10, MinContainers: 1, StableWindows: 5, MaxDrift: defaultMaxDrift, SampleSize: 8}
	b := NewBaseline(testImage, testTag, "sha256:feed")
	wl := newWorkload(99)
	b.AddStartup(Window{Counts: map[string]uint64{"execve": 1, "arch_prctl": 2}})
	b.AddExec("/usr/bin/api")
	feed(t, b, wl, cfg, "c1", 12)
	feed(t, b, wl, cfg, "c2", 8)
	if err := b.Validate(); err != nil {
		t.Fatalf("learned baseline does not validate: %v", err)
	}
	return b
}

func TestValidateLearned(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		b := learn(randomEvents(rand.New(rand.NewPCG(seed, 1))), 8)
		if err := b.Validate(); err != nil {
			t.Errorf("seed %d: learned baseline does not validate: %v", seed, err)
		}
	}
	if err := NewBaseline(testImage, "", "").Validate(); err != nil {
		t.Errorf("empty baseline does not validate: %v", err)
	}
	b := learnedBaseline(t)
	b.Promote(b.LastSeen)
	if err := b.Validate(); err != nil {
		t.Errorf("promoted baseline does not validate: %v", err)
	}
}

func TestValidateRejects(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name   string
		mutate func(b *Baseline)
		want   []string // substrings of the error, besides the image key
	}{
		{"empty key", func(b *Baseline) { b.Image, b.Tag, b.ImageID = "", "", "" }, []string{"image"}},
		{"tag without image or id", func(b *Baseline) { b.Image, b.ImageID = "", "" }, []string{"image"}},
		{"bad state", func(b *Baseline) { b.State = "learnt" }, []string{"state", `"learnt"`}},
		{"empty state", func(b *Baseline) { b.State = "" }, []string{"state"}},
		{"negative seconds", func(b *Baseline) { b.Seconds = -1 }, []string{"seconds", "-1"}},
		{"NaN seconds", func(b *Baseline) { b.Seconds = nan }, []string{"seconds", "NaN"}},
		{"infinite seconds", func(b *Baseline) { b.Seconds = inf }, []string{"seconds", "Inf"}},
		{"total.n differs from windows", func(b *Baseline) { b.Total.N-- }, []string{"total.n", "windows"}},
		{"total.n above windows", func(b *Baseline) { b.Total.N++ }, []string{"total"}},
		{"total mean NaN", func(b *Baseline) { b.Total.Mean = nan }, []string{"total", "mean"}},
		{"syscall n above windows", func(b *Baseline) { m := b.Syscalls["read"]; m.N = b.Windows + 1; b.Syscalls["read"] = m }, []string{`syscalls["read"]`, "n "}},
		{"syscall negative mean", func(b *Baseline) { m := b.Syscalls["write"]; m.Mean = -3; b.Syscalls["write"] = m }, []string{`syscalls["write"]`, "mean -3"}},
		{"syscall m2 NaN", func(b *Baseline) { m := b.Syscalls["futex"]; m.M2 = nan; b.Syscalls["futex"] = m }, []string{`syscalls["futex"]`, "m2 NaN"}},
		{"syscall m2 negative", func(b *Baseline) { m := b.Syscalls["futex"]; m.M2 = -1; b.Syscalls["futex"] = m }, []string{`syscalls["futex"]`, "m2 -1"}},
		{"syscall max infinite", func(b *Baseline) { m := b.Syscalls["close"]; m.Max = inf; b.Syscalls["close"] = m }, []string{`syscalls["close"]`, "max +Inf"}},
		{"syscall max below mean", func(b *Baseline) { m := b.Syscalls["read"]; m.Max = m.Mean / 2; b.Syscalls["read"] = m }, []string{`syscalls["read"]`, "max", "below mean"}},
		{"syscall with empty name", func(b *Baseline) { b.Syscalls[""] = Moments{N: 1, Mean: 1, Max: 1} }, []string{"empty name"}},
		{"containers sum below windows", func(b *Baseline) { b.Containers["c1"]-- }, []string{"containers", "windows"}},
		{"containers sum above windows", func(b *Baseline) { b.Containers["c3"] = 4 }, []string{"containers", "windows"}},
		{"container with 0 windows", func(b *Baseline) { b.Containers["ghost"] = 0 }, []string{`containers["ghost"]`, "0 windows"}},
		{"unsorted sample", func(b *Baseline) { b.Sample[2], b.Sample[5] = b.Sample[5], b.Sample[2] }, []string{"sample", "sorted"}},
		{"sample larger than windows", func(b *Baseline) {
			for len(b.Sample) <= int(b.Windows) {
				b.Sample = append(b.Sample, SampledWindow{Priority: math.MaxUint64})
			}
		}, []string{"sample", "more than"}},
		{"sample seconds negative", func(b *Baseline) { b.Sample[1].Seconds = -1 }, []string{"sample[1].seconds"}},
		{"sample seconds NaN", func(b *Baseline) { b.Sample[0].Seconds = nan }, []string{"sample[0].seconds"}},
		{"drift NaN", func(b *Baseline) { b.Convergence.Drift = nan }, []string{"convergence.drift", "NaN"}},
		{"drift negative", func(b *Baseline) { b.Convergence.Drift = -0.5 }, []string{"convergence.drift"}},
		{"drift infinite", func(b *Baseline) { b.Convergence.Drift = inf }, []string{"convergence.drift"}},
		// No learning produces a checkpoint ahead of the windows learned; with one,
		// UpdateState would wait for windows that never come (or wrap around).
		{"checkpoint beyond windows", func(b *Baseline) { b.Convergence.CheckpointWindows = b.Windows + 1 }, []string{"checkpoint_windows"}},
		{"previous checkpoint after the last", func(b *Baseline) {
			b.Convergence.PreviousWindows = b.Convergence.CheckpointWindows + 1
		}, []string{"previous_windows"}},
		{"checkpoint sum negative", func(b *Baseline) {
			b.Convergence.CheckpointSums["read"] = RateSums{Sum: -1, SumSq: 1}
		}, []string{"checkpoint_sums", "read"}},
		{"previous sum not finite", func(b *Baseline) {
			b.Convergence.PreviousSums = map[string]RateSums{"read": {Sum: 1, SumSq: inf}}
		}, []string{"previous_sums", "read"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := learnedBaseline(t)
			if len(b.Sample) < 6 {
				t.Fatalf("test baseline has a sample of %d, want at least 6", len(b.Sample))
			}
			tc.mutate(b)
			err := b.Validate()
			if err == nil {
				t.Fatalf("Validate accepted a baseline with %s", tc.name)
			}
			msg := err.Error()
			if key := b.Key(); key != "" && !strings.Contains(msg, key) {
				t.Errorf("error %q does not name the image %q", msg, key)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	// Values learning can produce, at the edges of what Validate checks.
	tests := []struct {
		name   string
		mutate func(b *Baseline)
	}{
		{"image id only", func(b *Baseline) { b.Image, b.Tag = "", "" }},
		{"no tag", func(b *Baseline) { b.Tag = "" }},
		{"stable", func(b *Baseline) { b.State = StateStable }},
		{"zero seconds (recorded trace)", func(b *Baseline) {
			b.Seconds = 0
			for i := range b.Sample {
				b.Sample[i].Seconds = 0
			}
		}},
		{"max a rounding error below mean", func(b *Baseline) {
			b.Syscalls["solo"] = Moments{N: 1, Mean: 0.1 + 0.2, Max: 0.3}
		}},
		{"syscall present in no window of the total (startup only)", func(b *Baseline) { b.Startup["mount"] = 1 }},
		{"equal priorities in the sample", func(b *Baseline) { b.Sample[1].Priority = b.Sample[0].Priority }},
		{"empty sample", func(b *Baseline) { b.Sample = nil }},
		{"nil maps", func(b *Baseline) {
			*b = Baseline{Image: "x", State: StateLearning, FirstSeen: time.Time{}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := learnedBaseline(t)
			tc.mutate(b)
			if err := b.Validate(); err != nil {
				t.Errorf("Validate = %v, want nil", err)
			}
		})
	}
}

func TestValidatedBaselineStaysEncodable(t *testing.T) {
	// A baseline that passes Validate (e.g. from an import file) must stay valid
	// and encodable while learning goes on: the store cannot write NaN or Inf,
	// and one baseline that fails to encode fails the whole batch it is flushed in.
	tests := []struct {
		name string
		conv func(b *Baseline) Convergence
	}{
		{"sums far beyond the learned rates", func(b *Baseline) Convergence {
			return Convergence{CheckpointWindows: 40, PreviousWindows: 20,
				PreviousSums:   map[string]RateSums{"read": {Sum: 1e300, SumSq: 1.7e308}},
				CheckpointSums: map[string]RateSums{"read": {Sum: 1.7e308, SumSq: 1.7e308}}}
		}},
		{"sums of opposite sign", func(b *Baseline) Convergence {
			return Convergence{CheckpointWindows: 40, PreviousWindows: 20,
				PreviousSums:   map[string]RateSums{"read": {Sum: -1.7e308, SumSq: 1.7e308}},
				CheckpointSums: map[string]RateSums{"read": {Sum: 1.7e308, SumSq: 1.7e308}}}
		}},
		{"checkpoint far beyond windows", func(b *Baseline) Convergence {
			return Convergence{CheckpointWindows: 1 << 63}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultLearnConfig()
			b := NewBaseline(testImage, testTag, "")
			wl := newWorkload(3)
			for range 40 {
				b.AddWindow(wl.window("c1"), 8)
			}
			b.Convergence = tc.conv(b)
			if err := b.Validate(); err != nil {
				return // refused at the door: fine
			}
			// The agent persists after every window batch: check after each one.
			for range 5 * cfg.StableWindows {
				b.AddWindow(wl.window("c1"), 8)
				b.UpdateState(cfg)
				if err := b.Validate(); err != nil {
					t.Fatalf("accepted baseline no longer validates at window %d: %v", b.Windows, err)
				}
				if _, err := json.Marshal(b); err != nil {
					t.Fatalf("accepted baseline can no longer be encoded at window %d: %v (drift %v)", b.Windows, err, b.Convergence.Drift)
				}
			}
			// And the steady workload still converges.
			if b.State != StateStable {
				t.Errorf("steady workload not stable after %d windows: %s", b.Windows, b.Progress(cfg))
			}
		})
	}
}

// viewsBaseline is a learned baseline with all three views and sampled grams.
func viewsBaseline(t *testing.T) *Baseline {
	t.Helper()
	b := upgradeLearn(upgradeWindows("c1", 0, 30), 8)
	if err := b.Validate(); err != nil {
		t.Fatalf("learned baseline does not validate: %v", err)
	}
	if b.Composition.Windows == 0 || b.Order.Windows == 0 || b.Volume.N == 0 || b.Sample[0].Grams == nil {
		t.Fatalf("test baseline lacks a view: %+v %+v %+v", b.Composition, b.Order, b.Volume)
	}
	return b
}

func TestValidateViewsRejects(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	share := func(b *Baseline, name string, f func(m *Moments)) {
		m := b.Composition.Shares[name]
		f(&m)
		b.Composition.Shares[name] = m
	}
	// sampleGrams is the grams of the k-th sampled window that has some.
	sampleGrams := func(b *Baseline, k int) map[string]uint64 {
		for _, s := range b.Sample {
			if s.Grams != nil {
				if k == 0 {
					return s.Grams
				}
				k--
			}
		}
		t.Fatal("too few sampled windows with grams")
		return nil
	}
	firstGram := func(b *Baseline) string {
		for g := range b.Order.Grams {
			return g
		}
		return ""
	}
	tests := []struct {
		name   string
		mutate func(b *Baseline)
		want   []string
	}{
		{"composition windows above windows", func(b *Baseline) { b.Composition.Windows = b.Windows + 1 }, []string{"composition.windows", "exceeds windows"}},
		{"share in more windows than composition", func(b *Baseline) {
			share(b, "read", func(m *Moments) { m.N = b.Composition.Windows + 1 })
		}, []string{`composition.shares["read"]`, "exceeds windows"}},
		{"share mean above 1", func(b *Baseline) { share(b, "read", func(m *Moments) { m.Mean, m.Max = 1.5, 1.5 }) }, []string{`composition.shares["read"]`, "[0, 1]"}},
		{"share max above 1", func(b *Baseline) { share(b, "read", func(m *Moments) { m.Max = 2 }) }, []string{`composition.shares["read"]`, "max 2"}},
		{"share mean negative", func(b *Baseline) { share(b, "read", func(m *Moments) { m.Mean = -0.1 }) }, []string{`composition.shares["read"]`, "mean -0.1"}},
		{"share m2 NaN", func(b *Baseline) { share(b, "close", func(m *Moments) { m.M2 = nan }) }, []string{`composition.shares["close"]`, "m2 NaN"}},
		{"share max below mean", func(b *Baseline) { share(b, "read", func(m *Moments) { m.Max = m.Mean / 2 }) }, []string{`composition.shares["read"]`, "below mean"}},
		{"share in no window", func(b *Baseline) { b.Composition.Shares["ptrace"] = Moments{} }, []string{`composition.shares["ptrace"]`, "n is 0"}},
		{"share with empty name", func(b *Baseline) { b.Composition.Shares[""] = Moments{N: 1, Mean: 0.1, Max: 0.1} }, []string{"composition.shares", "empty name"}},
		{"order windows above windows", func(b *Baseline) { b.Order.Windows = b.Windows + 1 }, []string{"order.windows", "exceeds windows"}},
		{"grams without order windows", func(b *Baseline) {
			b.Order.Windows = 0
			for i := range b.Sample {
				b.Sample[i].Grams = nil
			}
		}, []string{"order.grams", "order.windows is 0"}},
		{"gram too long", func(b *Baseline) { b.Order.Grams["a,b,c,d,e"] = 1 }, []string{"order.grams", `"a,b,c,d,e"`, "more than 4"}},
		{"gram with empty name", func(b *Baseline) { b.Order.Grams["read,,write"] = 1 }, []string{"order.grams", `"read,,write"`, "empty"}},
		{"empty gram", func(b *Baseline) { b.Order.Grams[""] = 1 }, []string{"order.grams", "empty"}},
		{"gram counted 0 times", func(b *Baseline) { b.Order.Grams[firstGram(b)] = 0 }, []string{"order.grams[", "is 0"}},
		{"volume n above windows", func(b *Baseline) { b.Volume.N = b.Windows + 1 }, []string{"volume.n", "exceeds windows"}},
		{"volume n differs from composition", func(b *Baseline) { b.Volume.N-- }, []string{"volume.n", "composition.windows"}},
		{"volume mean NaN", func(b *Baseline) { b.Volume.Mean = nan }, []string{"volume", "mean NaN"}},
		{"volume max infinite", func(b *Baseline) { b.Volume.Max = inf }, []string{"volume", "max +Inf"}},
		{"volume m2 negative", func(b *Baseline) { b.Volume.M2 = -1 }, []string{"volume", "m2 -1"}},
		{"volume max below mean", func(b *Baseline) { b.Volume.Max = b.Volume.Mean - 1 }, []string{"volume", "below mean"}},
		{"sample gram too long", func(b *Baseline) { sampleGrams(b, 2)["a,b,c,d,e"] = 1 }, []string{"sample[", "].grams", "more than 4"}},
		{"sample gram with empty name", func(b *Baseline) { sampleGrams(b, 1)[",read"] = 1 }, []string{"sample[", "].grams", "empty"}},
		{"sample windows with calls beyond composition", func(b *Baseline) {
			b.Composition.Windows, b.Volume.N = 1, 1
			for name := range b.Composition.Shares {
				share(b, name, func(m *Moments) { m.N = 1 })
			}
		}, []string{"sample holds", "windows with calls", "composition.windows 1"}},
		{"sample windows with grams beyond order", func(b *Baseline) { b.Order.Windows = 1 }, []string{"sample holds", "windows with grams", "order.windows 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := viewsBaseline(t)
			tc.mutate(b)
			err := b.Validate()
			if err == nil {
				t.Fatalf("Validate accepted a baseline with %s", tc.name)
			}
			msg := err.Error()
			if !strings.Contains(msg, b.Key()) {
				t.Errorf("error %q does not name the image %q", msg, b.Key())
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestValidateViewsAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(b *Baseline)
	}{
		{"volume below one call per second (negative log)", func(b *Baseline) {
			b.Volume = Moments{N: b.Volume.N, Mean: -2, M2: 0.5, Max: -1}
		}},
		{"a share of 1", func(b *Baseline) { b.Composition.Shares["read"] = Moments{N: 1, Mean: 1, Max: 1} }},
		{"order windows whose grams were all 0", func(b *Baseline) { b.Order.Windows = b.Windows }},
		{"upgraded from format 1", func(b *Baseline) {
			*b = *asV1(t, b)
			b.UpgradeViews()
		}},
		{"no views (all windows without calls)", func(b *Baseline) {
			*b = *upgradeLearn([]Window{upgradeWindow("c1", 3)}, 8)
		}},
		{"full-length gram", func(b *Baseline) { b.Order.Grams["a,b,c,d"] = 3 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := viewsBaseline(t)
			tc.mutate(b)
			if err := b.Validate(); err != nil {
				t.Errorf("Validate = %v, want nil", err)
			}
		})
	}
}
