package model

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// defaultMaxDrift is the drift threshold of the default config, whatever its unit.
var defaultMaxDrift = DefaultLearnConfig().MaxDrift

// steadyRates is a steady workload's syscall mix, in calls per second.
var steadyRates = map[string]float64{"read": 1000, "write": 400, "futex": 250, "epoll_wait": 120, "close": 30}

// workload produces 1s windows of a synthetic container: the steady mix with
// ±2% noise, plus whatever extra rates the test sets per window.
type workload struct {
	r     *rand.Rand
	i     int // windows produced so far (all containers)
	extra func(i int) map[string]float64
	load  func(i int) float64 // multiplies every rate (a load change), 1 when nil
}

func newWorkload(seed uint64) *workload {
	return &workload{r: rand.New(rand.NewPCG(seed, 0x5eed))}
}

func (wl *workload) window(containerID string) Window {
	counts := map[string]uint64{}
	scale := 1.0
	if wl.load != nil {
		scale = wl.load(wl.i)
	}
	noisy := func(name string, rate float64) {
		counts[name] += uint64(scale * rate * (1 + 0.04*(wl.r.Float64()-0.5)))
	}
	for name, rate := range steadyRates {
		noisy(name, rate)
	}
	if wl.extra != nil {
		for name, rate := range wl.extra(wl.i) {
			noisy(name, rate)
		}
	}
	w := Window{
		CgroupID:  uint64(len(containerID)),
		Container: Container{ID: containerID, Runtime: RuntimeDocker, Image: testImage, ImageTag: testTag},
		Start:     testT0.Add(time.Duration(wl.i) * time.Second),
		Duration:  time.Second,
		Counts:    counts,
	}
	wl.i++
	return w
}

// feed learns n windows of container id, calling UpdateState after each as the
// learner does, and returns the baseline's window count when it became stable
// (0 if it did not). It fails the test if UpdateState reports becoming stable
// twice or disagrees with State.
func feed(t *testing.T, b *Baseline, wl *workload, cfg LearnConfig, id string, n int) (stableAt uint64) {
	t.Helper()
	for range n {
		wasStable := b.State == StateStable
		b.AddWindow(wl.window(id), cfg.SampleSize)
		became := b.UpdateState(cfg)
		if became && (wasStable || b.State != StateStable) {
			t.Fatalf("window %d: UpdateState reported becoming stable, was stable %v, state %q", b.Windows, wasStable, b.State)
		}
		if !became && !wasStable && b.State == StateStable {
			t.Fatalf("window %d: state became stable but UpdateState returned false", b.Windows)
		}
		if became {
			stableAt = b.Windows
		}
	}
	return stableAt
}

func TestLearningSteadyWorkloadBecomesStable(t *testing.T) {
	tests := []struct {
		name string
		cfg  LearnConfig
	}{
		{"default", DefaultLearnConfig()},
		{"short", LearnConfig{MinWindows: 30, MinContainers: 1, StableWindows: 10, MaxDrift: defaultMaxDrift, SampleSize: 16}},
		{"min windows between checkpoints", LearnConfig{MinWindows: 45, MinContainers: 1, StableWindows: 20, MaxDrift: defaultMaxDrift, SampleSize: 16}},
		{"min windows below stable windows", LearnConfig{MinWindows: 5, MinContainers: 1, StableWindows: 10, MaxDrift: defaultMaxDrift, SampleSize: 16}},
		{"long", LearnConfig{MinWindows: 300, MinContainers: 1, StableWindows: 50, MaxDrift: defaultMaxDrift, SampleSize: 16}},
	}
	for _, tc := range tests {
		for seed := uint64(1); seed <= 5; seed++ {
			t.Run(fmt.Sprintf("%s/seed %d", tc.name, seed), func(t *testing.T) {
				b := NewBaseline(testImage, testTag, "")
				wl := newWorkload(seed)
				stableAt := feed(t, b, wl, tc.cfg, "c1", int(tc.cfg.MinWindows+10*tc.cfg.StableWindows))
				if stableAt == 0 {
					t.Fatalf("steady workload not stable after %d windows: %s", b.Windows, b.Progress(tc.cfg))
				}
				if stableAt < tc.cfg.MinWindows {
					t.Errorf("stable at window %d, before min windows %d", stableAt, tc.cfg.MinWindows)
				}
				// Checkpoints come every StableWindows windows and the first only
				// records the means, so stability may lag MinWindows by up to two.
				if limit := max(tc.cfg.MinWindows, tc.cfg.StableWindows) + 2*tc.cfg.StableWindows; stableAt > limit {
					t.Errorf("stable only at window %d, want at most %d for a steady workload", stableAt, limit)
				}
				if b.State != StateStable {
					t.Errorf("State = %q after becoming stable", b.State)
				}
			})
		}
	}
}

func TestLearningMinContainers(t *testing.T) {
	tests := []struct {
		name          string
		minContainers int
		containers    int
		wantStable    bool
	}{
		{"one of two", 2, 1, false},
		{"two of two", 2, 2, true},
		{"two of three", 3, 2, false},
		{"three of three", 3, 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultLearnConfig()
			cfg.MinContainers = tc.minContainers
			b := NewBaseline(testImage, testTag, "")
			wl := newWorkload(7)
			// Plenty of windows from the first container alone: never enough.
			if at := feed(t, b, wl, cfg, "c1", 300); at != 0 {
				t.Fatalf("stable at window %d with one container, min containers %d", at, tc.minContainers)
			}
			if got := b.Progress(cfg).Containers; got != 1 {
				t.Fatalf("Progress.Containers = %d, want 1", got)
			}
			var stableAt uint64
			for i := 0; i < 100 && stableAt == 0; i++ {
				stableAt = feed(t, b, wl, cfg, fmt.Sprintf("c%d", 1+i%tc.containers), 1)
			}
			if got := (stableAt != 0); got != tc.wantStable {
				t.Errorf("stable = %v (at window %d) with %d containers, min %d; want %v: %s",
					got, stableAt, tc.containers, tc.minContainers, tc.wantStable, b.Progress(cfg))
			}
			if tc.wantStable && stableAt > 300+2*cfg.StableWindows {
				t.Errorf("stable only at window %d, want within %d windows of the last container joining", stableAt, 2*cfg.StableWindows)
			}
		})
	}
}

func TestLearningNoveltyPreventsStable(t *testing.T) {
	newSyscalls := []string{"openat", "fstat", "mmap", "munmap", "brk", "accept4", "sendto", "recvfrom",
		"getpid", "clock_gettime", "nanosleep", "getrandom", "poll", "lseek", "pread64", "pwrite64",
		"socket", "connect", "bind", "listen", "shutdown", "setsockopt", "getsockopt", "writev",
		"readv", "madvise", "dup", "dup2", "pipe2", "fcntl", "getdents64", "statx", "uname", "sysinfo",
		"prctl", "sched_yield", "epoll_ctl", "eventfd2", "timerfd_create", "timerfd_settime", "wait4"}
	const every = 10 // a new one every 10 windows, less than StableWindows
	tests := []struct {
		name    string
		novelty func(b *Baseline, wl *workload)
	}{
		{"new syscall", func(b *Baseline, wl *workload) {
			introduced := map[string]int{}
			wl.extra = func(i int) map[string]float64 {
				if i < 400 && i%every == 5 {
					introduced[newSyscalls[i/every]] = i
				}
				rates := map[string]float64{}
				for name := range introduced {
					rates[name] = 50 // it stays, at a steady rate
				}
				return rates
			}
		}},
		{"new binary", func(b *Baseline, wl *workload) {
			wl.extra = func(i int) map[string]float64 {
				if i < 400 && i%every == 5 {
					b.AddExec(fmt.Sprintf("/usr/bin/tool-%d", i))
				}
				return nil
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultLearnConfig()
			b := NewBaseline(testImage, testTag, "")
			wl := newWorkload(9)
			tc.novelty(b, wl)
			for i := 0; i < 400; i++ {
				if at := feed(t, b, wl, cfg, "c1", 1); at != 0 {
					t.Fatalf("stable at window %d while something new appears every %d windows", at, every)
				}
				if p := b.Progress(cfg); p.QuietWindows > every {
					t.Fatalf("window %d: QuietWindows = %d, want <= %d (LastNovelty %d)", b.Windows, p.QuietWindows, every, b.Convergence.LastNovelty)
				}
			}
			// The last novelty came in window 396 (i=395): LastNovelty is the window
			// count once it was learned, or the count before it for an exec.
			if ln := b.Convergence.LastNovelty; ln < 395 || ln > 396 {
				t.Errorf("LastNovelty = %d, want 395 or 396", ln)
			}
			// Once nothing new appears, it converges.
			if at := feed(t, b, wl, cfg, "c1", 300); at == 0 {
				t.Errorf("not stable 300 windows after the last novelty: %s", b.Progress(cfg))
			}
		})
	}
}

func TestLearningDriftPreventsStable(t *testing.T) {
	// The syscall mix is steady except one rate that keeps climbing, as in a leak
	// or a warming cache: the statistics change in every StableWindows windows, so
	// the baseline must not be declared stable while the ramp lasts.
	tests := []struct {
		name    string
		windows int
		ramp    func(i int) float64
	}{
		{"linear, steep", 400, func(i int) float64 { return 100 + 10*float64(i) }},
		// Shares dilute a ramp by the rest of the mix: +80% or +120% of one
		// syscall over 400 windows sits at 2.8-3.0 standard errors of drift,
		// at the 3.0 limit; +200% is clear of it.
		{"linear, gentle", 400, func(i int) float64 { return 1000 + 5*float64(i) }},
		{"doubling every 100 windows", 400, func(i int) float64 { return 100 * pow2(float64(i)/100) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultLearnConfig()
			b := NewBaseline(testImage, testTag, "")
			wl := newWorkload(11)
			wl.extra = func(i int) map[string]float64 { return map[string]float64{"sendto": tc.ramp(i)} }
			if at := feed(t, b, wl, cfg, "c1", tc.windows); at != 0 {
				t.Errorf("stable at window %d although sendto ramps from %.0f/s to %.0f/s (%.0f/s at that window); drift %.3f",
					at, tc.ramp(0), tc.ramp(tc.windows-1), tc.ramp(int(at)-1), b.Convergence.Drift)
			}
		})
	}
}

// A load that swings 5x while learning moves every rate and no share: the
// image still converges, as it must for servers learned under real traffic.
func TestLearningVaryingLoadConverges(t *testing.T) {
	cfg := DefaultLearnConfig()
	b := NewBaseline(testImage, testTag, "")
	wl := newWorkload(13)
	wl.load = func(i int) float64 { return []float64{1, 2, 5}[(i/30)%3] }
	if at := feed(t, b, wl, cfg, "c1", 400); at == 0 {
		t.Errorf("not stable after 400 windows of 1x/2x/5x load: %s (drift %.2f)", b.Progress(cfg), b.Convergence.Drift)
	}
}

// A syscall made now and then (a checkpoint's fsync every 40 windows, so in
// every other block) is in one block and not the next: that is no drift, or
// such an image never converges.
func TestLearningSparseSyscallConverges(t *testing.T) {
	cfg := DefaultLearnConfig()
	b := NewBaseline(testImage, testTag, "")
	wl := newWorkload(17)
	wl.extra = func(i int) map[string]float64 {
		if i%40 == 7 {
			return map[string]float64{"fsync": 3}
		}
		return nil
	}
	if at := feed(t, b, wl, cfg, "c1", 400); at == 0 {
		t.Errorf("not stable after 400 windows with an fsync every 40: %s (drift %.2f)", b.Progress(cfg), b.Convergence.Drift)
	}
}

func pow2(x float64) float64 {
	r := 1.0
	for x >= 1 {
		r *= 2
		x--
	}
	// 2^x for 0 <= x < 1 by a short series is enough for a test workload.
	return r * (1 + x*0.6931471805599453 + x*x*0.2402265069591007 + x*x*x*0.0555041086648216)
}

func TestLearningNewBinaryResetsQuietWindows(t *testing.T) {
	cfg := DefaultLearnConfig()
	b := NewBaseline(testImage, testTag, "")
	wl := newWorkload(13)
	b.AddExec("/usr/bin/api")
	if at := feed(t, b, wl, cfg, "c1", 55); at != 0 {
		t.Fatalf("stable at %d, before min windows", at)
	}
	if q := b.Progress(cfg).QuietWindows; q != 54 {
		t.Fatalf("QuietWindows = %d before the exec, want 54", q)
	}

	tests := []struct {
		name      string
		path      string
		wantNew   bool
		wantQuiet uint64
	}{
		{"known binary changes nothing", "/usr/bin/api", false, 54},
		{"new binary resets", "/bin/sh", true, 0},
		{"same new binary again", "/bin/sh", false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.AddExec(tc.path); got != tc.wantNew {
				t.Errorf("AddExec(%q) = %v, want %v", tc.path, got, tc.wantNew)
			}
			if q := b.Progress(cfg).QuietWindows; q != tc.wantQuiet {
				t.Errorf("QuietWindows = %d, want %d", q, tc.wantQuiet)
			}
		})
	}
	// Without the exec this workload is stable at window 60; now it needs
	// StableWindows quiet windows after window 55 first.
	stableAt := feed(t, b, wl, cfg, "c1", 100)
	if stableAt == 0 {
		t.Fatalf("never stable after the exec: %s", b.Progress(cfg))
	}
	if stableAt < 55+cfg.StableWindows {
		t.Errorf("stable at window %d, less than %d quiet windows after the new binary at 55", stableAt, cfg.StableWindows)
	}
}

func TestLearningPromote(t *testing.T) {
	cfg := DefaultLearnConfig()
	b := NewBaseline(testImage, testTag, "")
	wl := newWorkload(15)
	feed(t, b, wl, cfg, "c1", 5)
	b.Promote(b.LastSeen)
	if b.State != StateStable {
		t.Fatalf("State after Promote = %q, want %q", b.State, StateStable)
	}
	// A promoted baseline stays stable whatever is learned afterwards.
	wl.extra = func(i int) map[string]float64 { return map[string]float64{fmt.Sprint("sys_", 1000+i): 1} }
	for i := 0; i < 100; i++ {
		b.AddWindow(wl.window("c1"), cfg.SampleSize)
		if b.UpdateState(cfg) {
			t.Fatalf("UpdateState reported becoming stable for a promoted baseline")
		}
	}
	if b.State != StateStable {
		t.Errorf("State = %q after learning on a promoted baseline", b.State)
	}
}

func TestLearningProgress(t *testing.T) {
	cfg := DefaultLearnConfig()
	b := NewBaseline(testImage, testTag, "")
	wl := newWorkload(17)
	feed(t, b, wl, cfg, "c1", 20)
	feed(t, b, wl, cfg, "c2", 14)
	b.AddExec("/bin/sh") // LastNovelty = 34

	tests := []struct {
		name        string
		setup       func()
		want        Progress
		wantStrings []string
	}{
		{
			name: "after a new binary",
			want: Progress{Windows: 34, MinWindows: 60, Containers: 2, MinContainers: 1, QuietWindows: 0,
				StableWindows: 20, Drift: b.Convergence.Drift, MaxDrift: defaultMaxDrift},
			wantStrings: []string{"windows 34/60", "containers 2/1", "0/20", fmt.Sprintf("(max %.2f)", defaultMaxDrift)},
		},
		{
			name:  "quiet windows are capped at stable windows in the text",
			setup: func() { feed(t, b, wl, cfg, "c2", 25) },
			want: Progress{Windows: 59, MinWindows: 60, Containers: 2, MinContainers: 1, QuietWindows: 25,
				StableWindows: 20, MaxDrift: defaultMaxDrift},
			wantStrings: []string{"windows 59/60", "containers 2/1", "20/20"},
		},
		{
			name:  "last novelty beyond windows (inconsistent import) is 0 quiet windows",
			setup: func() { b.Convergence.LastNovelty = 1000 },
			want: Progress{Windows: 59, MinWindows: 60, Containers: 2, MinContainers: 1, QuietWindows: 0,
				StableWindows: 20, MaxDrift: defaultMaxDrift},
			wantStrings: []string{"0/20"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			got := b.Progress(cfg)
			tc.want.Drift = b.Convergence.Drift
			if got != tc.want {
				t.Errorf("Progress = %+v,\nwant       %+v", got, tc.want)
			}
			s := got.String()
			for _, w := range tc.wantStrings {
				if !strings.Contains(s, w) {
					t.Errorf("String() = %q, does not contain %q", s, w)
				}
			}
		})
	}
}

func TestProgressString(t *testing.T) {
	tests := []struct {
		p    Progress
		want string
	}{
		{
			Progress{Windows: 34, MinWindows: 60, Containers: 2, MinContainers: 1, QuietWindows: 12, StableWindows: 20, Drift: 0.123, MaxDrift: 0.25},
			"windows 34/60, containers 2/1, windows without anything new 12/20, drift 0.12 (max 0.25)",
		},
		{
			Progress{Windows: 0, MinWindows: 60, Containers: 0, MinContainers: 3, QuietWindows: 0, StableWindows: 20, Drift: 0, MaxDrift: 0.5},
			"windows 0/60, containers 0/3, windows without anything new 0/20, drift 0.00 (max 0.50)",
		},
		{
			Progress{Windows: 500, MinWindows: 60, Containers: 4, MinContainers: 1, QuietWindows: 480, StableWindows: 20, Drift: 3.14159, MaxDrift: 0.25},
			"windows 500/60, containers 4/1, windows without anything new 20/20, drift 3.14 (max 0.25)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.p.String(); got != tc.want {
				t.Errorf("String() = %q,\nwant        %q", got, tc.want)
			}
		})
	}
}
