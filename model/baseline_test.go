package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var testT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testImage = "registry.example/shop/api"
	testTag   = "v1.4.2"
)

// learnEvent is one thing the learner can feed a baseline: a learned window, a
// window from a container's first seconds, or an exec.
type learnEvent struct {
	kind   string // "window", "startup", "exec"
	window Window
	path   string
}

func (e learnEvent) apply(b *Baseline, sampleSize int) {
	switch e.kind {
	case "window":
		b.AddWindow(e.window, sampleSize)
	case "startup":
		b.AddStartup(e.window)
	case "exec":
		b.AddExec(e.path)
	default:
		panic("unknown learn event " + e.kind)
	}
}

func learn(events []learnEvent, sampleSize int) *Baseline {
	b := NewBaseline(testImage, testTag, "sha256:0123")
	for _, e := range events {
		e.apply(b, sampleSize)
	}
	return b
}

var (
	testSyscallPool = []string{"read", "write", "openat", "close", "futex", "epoll_wait", "mmap",
		"recvfrom", "sendto", "clock_gettime", "getpid", "nanosleep", "accept4", "brk"}
	testBinaryPool = []string{"/usr/bin/api", "/bin/sh", "/usr/bin/curl", "/usr/local/bin/healthcheck", "/bin/ls"}
)

// randomEvents generates a random learning history: 1..60 windows over several
// containers with random syscall subsets, counts and durations (including 0),
// some startup windows and some execs. Every window has a distinct identity
// (container, cgroup, start) as real windows do.
func randomEvents(r *rand.Rand) []learnEvent {
	nContainers := 1 + r.IntN(5)
	containers := make([]Container, nContainers)
	cgroups := make([]uint64, nContainers)
	for i := range containers {
		containers[i] = Container{ID: fmt.Sprintf("c%02d-%x", i, r.Uint32()), Runtime: RuntimeDocker, Image: testImage, ImageTag: testTag}
		cgroups[i] = 1000 + r.Uint64N(1<<20)
	}
	durations := []time.Duration{0, time.Second, 500 * time.Millisecond, 2500 * time.Millisecond, 10 * time.Second}
	nWindows := 1 + r.IntN(60)
	var events []learnEvent
	for i := 0; i < nWindows; i++ {
		ci := r.IntN(nContainers)
		d := durations[r.IntN(len(durations))]
		if r.IntN(6) == 0 {
			d = time.Duration(1 + r.Int64N(int64(3*time.Second))) // odd durations
		}
		counts := map[string]uint64{}
		for _, name := range testSyscallPool {
			switch r.IntN(4) {
			case 0: // absent
			case 1:
				counts[name] = 0 // present with a zero count: must count as absent
			default:
				counts[name] = 1 + r.Uint64N(100000)
			}
		}
		var grams map[string]uint64
		if r.IntN(3) > 0 { // some windows come from a sensor without order
			seq := make([]string, 1+r.IntN(20))
			for j := range seq {
				seq[j] = testSyscallPool[r.IntN(len(testSyscallPool))]
			}
			grams = GramsOfSequence(seq)
		}
		w := Window{
			Grams:     grams,
			CgroupID:  cgroups[ci],
			Container: containers[ci],
			// Out of order across containers, distinct per container.
			Start:    testT0.Add(time.Duration(i)*time.Second + time.Duration(r.IntN(1000))*time.Millisecond),
			Duration: d,
			Counts:   counts,
		}
		kind := "window"
		if r.IntN(8) == 0 {
			kind = "startup"
		}
		events = append(events, learnEvent{kind: kind, window: w})
		if r.IntN(5) == 0 {
			events = append(events, learnEvent{kind: "exec", path: testBinaryPool[r.IntN(len(testBinaryPool))]})
		}
	}
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	return events
}

// checkSameStatistics asserts that got has the statistics of want: everything
// that learning determines (not State or Convergence, which merge resets).
func checkSameStatistics(t *testing.T, got, want *Baseline) {
	t.Helper()
	if got.Key() != want.Key() {
		t.Errorf("Key = %q, want %q", got.Key(), want.Key())
	}
	if got.Windows != want.Windows {
		t.Errorf("Windows = %d, want %d", got.Windows, want.Windows)
	}
	if !approxEqual(got.Seconds, want.Seconds) {
		t.Errorf("Seconds = %.17g, want %.17g", got.Seconds, want.Seconds)
	}
	if !maps.Equal(got.Containers, want.Containers) {
		t.Errorf("Containers = %v, want %v", got.Containers, want.Containers)
	}
	if g, w := slices.Sorted(maps.Keys(got.Syscalls)), slices.Sorted(maps.Keys(want.Syscalls)); !slices.Equal(g, w) {
		t.Errorf("Syscalls seen = %v, want %v", g, w)
	}
	for name, w := range want.Syscalls {
		checkMoments(t, "Syscalls["+name+"]", got.Syscalls[name], w)
	}
	checkMoments(t, "Total", got.Total, want.Total)
	checkSameViews(t, got, want)
	if !maps.Equal(got.Startup, want.Startup) {
		t.Errorf("Startup = %v, want %v", got.Startup, want.Startup)
	}
	if !maps.Equal(got.Binaries, want.Binaries) {
		t.Errorf("Binaries = %v, want %v", got.Binaries, want.Binaries)
	}
	if !got.FirstSeen.Equal(want.FirstSeen) {
		t.Errorf("FirstSeen = %v, want %v", got.FirstSeen, want.FirstSeen)
	}
	if !got.LastSeen.Equal(want.LastSeen) {
		t.Errorf("LastSeen = %v, want %v", got.LastSeen, want.LastSeen)
	}
	if !got.Updated.Equal(want.Updated) {
		t.Errorf("Updated = %v, want %v", got.Updated, want.Updated)
	}
	checkSameSample(t, got.Sample, want.Sample)
}

func checkSameSample(t *testing.T, got, want []SampledWindow) {
	t.Helper()
	prio := func(ws []SampledWindow) []uint64 {
		out := make([]uint64, len(ws))
		for i, w := range ws {
			out[i] = w.Priority
		}
		return out
	}
	if gp, wp := prio(got), prio(want); !slices.Equal(gp, wp) {
		i := 0
		for i < min(len(gp), len(wp)) && gp[i] == wp[i] {
			i++
		}
		t.Errorf("Sample holds %d windows, want %d; priorities differ first at index %d", len(gp), len(wp), i)
		if len(gp) <= 16 && len(wp) <= 16 {
			t.Errorf("Sample priorities = %v,\nwant %v", gp, wp)
		}
		return
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Container != w.Container || !g.Start.Equal(w.Start) || g.Seconds != w.Seconds || !maps.Equal(g.Counts, w.Counts) ||
			!maps.Equal(g.Grams, w.Grams) {
			t.Errorf("Sample[%d] = %+v, want %+v", i, g, w)
		}
	}
}

func TestBaselineMergeEqualsLearningTogether(t *testing.T) {
	const cases = 200
	const sampleSize = 8
	sampled := 0 // cases where the bottom-k cut actually dropped windows
	for seed := uint64(0); seed < cases; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0xba5e))
			events := randomEvents(r)
			var partA, partB []learnEvent
			for _, e := range events {
				if r.IntN(2) == 0 {
					partA = append(partA, e)
				} else {
					partB = append(partB, e)
				}
			}
			all := learn(events, sampleSize)
			a, b := learn(partA, sampleSize), learn(partB, sampleSize)
			if all.Windows > sampleSize {
				sampled++
			}

			ab := a.Clone()
			if err := ab.Merge(b, sampleSize); err != nil {
				t.Fatalf("Merge(A, B): %v", err)
			}
			checkSameStatistics(t, ab, all)

			ba := b.Clone()
			if err := ba.Merge(a, sampleSize); err != nil {
				t.Fatalf("Merge(B, A): %v", err)
			}
			t.Run("commutes", func(t *testing.T) { checkSameStatistics(t, ba, ab) })

			for name, bl := range map[string]*Baseline{"all": all, "A": a, "B": b, "A+B": ab} {
				if err := bl.Validate(); err != nil {
					t.Errorf("%s does not validate: %v", name, err)
				}
			}
			if len(all.Sample) != min(int(all.Windows), sampleSize) {
				t.Errorf("sample of %d windows holds %d, want %d", all.Windows, len(all.Sample), min(int(all.Windows), sampleSize))
			}
		})
	}
	if sampled < cases/2 {
		t.Errorf("only %d of %d cases had more windows than the sample size: the bottom-k cut is barely exercised", sampled, cases)
	}
}

func TestBaselineMergeIsAssociative(t *testing.T) {
	// Many nodes: splitting the windows into 3 parts and merging them in either
	// grouping gives what learning them together gives.
	const sampleSize = 8
	for seed := uint64(0); seed < 50; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0xa550c))
			events := randomEvents(r)
			parts := make([][]learnEvent, 3)
			for _, e := range events {
				i := r.IntN(3)
				parts[i] = append(parts[i], e)
			}
			all := learn(events, sampleSize)
			a, b, c := learn(parts[0], sampleSize), learn(parts[1], sampleSize), learn(parts[2], sampleSize)

			left := a.Clone() // (A+B)+C
			mustMerge(t, left, b, sampleSize)
			mustMerge(t, left, c, sampleSize)
			bc := b.Clone() // A+(B+C)
			mustMerge(t, bc, c, sampleSize)
			right := a.Clone()
			mustMerge(t, right, bc, sampleSize)

			t.Run("(A+B)+C", func(t *testing.T) { checkSameStatistics(t, left, all) })
			t.Run("A+(B+C)", func(t *testing.T) { checkSameStatistics(t, right, all) })
		})
	}
}

func mustMerge(t *testing.T, into, o *Baseline, sampleSize int) {
	t.Helper()
	if err := into.Merge(o, sampleSize); err != nil {
		t.Fatalf("Merge(%q, %q): %v", into.Key(), o.Key(), err)
	}
}

func TestBaselineMergeEmpty(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	full := learn(randomEvents(r), 8)
	tests := []struct {
		name string
		a, b *Baseline
	}{
		{"empty into full", full, NewBaseline(testImage, testTag, "")},
		{"full into empty", NewBaseline(testImage, testTag, ""), full},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.a.Clone()
			mustMerge(t, got, tc.b, 8)
			checkSameStatistics(t, got, full)
			if got.FirstSeen.IsZero() {
				t.Error("FirstSeen is zero after merging with a learned baseline")
			}
		})
	}
}

func TestBaselineMergeStateAndConvergence(t *testing.T) {
	tests := []struct {
		name   string
		a, b   BaselineState
		wantSt BaselineState
	}{
		{"stable+stable", StateStable, StateStable, StateStable},
		{"stable+learning", StateStable, StateLearning, StateLearning},
		{"learning+stable", StateLearning, StateStable, StateLearning},
		{"learning+learning", StateLearning, StateLearning, StateLearning},
	}
	r := rand.New(rand.NewPCG(21, 22))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := learn(randomEvents(r), 8), learn(randomEvents(r), 8)
			a.State, b.State = tc.a, tc.b
			mustMerge(t, a, b, 8)
			if a.State != tc.wantSt {
				t.Errorf("State = %q, want %q", a.State, tc.wantSt)
			}
			// Convergence restarts from the merged data: the merged baseline has to
			// show StableWindows quiet windows before it can become stable.
			if a.Convergence.LastNovelty != a.Windows || a.Convergence.CheckpointWindows != a.Windows {
				t.Errorf("Convergence = %+v, want LastNovelty and CheckpointWindows = %d", a.Convergence, a.Windows)
			}
			if got := a.Progress(DefaultLearnConfig()).QuietWindows; got != 0 {
				t.Errorf("QuietWindows after merge = %d, want 0", got)
			}
			if len(a.Convergence.CheckpointSums) != len(a.Syscalls) {
				t.Errorf("CheckpointSums has %d syscalls, want %d", len(a.Convergence.CheckpointSums), len(a.Syscalls))
			}
		})
	}
}

func TestBaselineMergeImageID(t *testing.T) {
	tests := []struct {
		name       string
		idA, idB   string
		wantResult string
	}{
		{"adopts the other's id", "", "sha256:bbb", "sha256:bbb"},
		{"keeps its own id", "sha256:aaa", "sha256:bbb", "sha256:aaa"},
		{"both empty", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := NewBaseline(testImage, testTag, tc.idA), NewBaseline(testImage, testTag, tc.idB)
			mustMerge(t, a, b, 0)
			if a.ImageID != tc.wantResult {
				t.Errorf("ImageID = %q, want %q", a.ImageID, tc.wantResult)
			}
		})
	}
}

func TestBaselineMergeDifferentImages(t *testing.T) {
	tests := []struct {
		name string
		a, b *Baseline
	}{
		{"different tag", NewBaseline("nginx", "1.27", ""), NewBaseline("nginx", "1.28", "")},
		{"tag and no tag", NewBaseline("nginx", "1.27", ""), NewBaseline("nginx", "", "")},
		{"different repository", NewBaseline("nginx", "1", ""), NewBaseline("redis", "1", "")},
		{"different image ids", NewBaseline("", "", "sha256:aaa"), NewBaseline("", "", "sha256:bbb")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.AddWindow(Window{Container: Container{ID: "x"}, Start: testT0, Duration: time.Second, Counts: map[string]uint64{"read": 1}}, 8)
			before := tc.a.Clone()
			err := tc.a.Merge(tc.b, 8)
			if !errors.Is(err, ErrImageMismatch) {
				t.Fatalf("Merge = %v, want ErrImageMismatch", err)
			}
			for _, key := range []string{tc.a.Key(), tc.b.Key()} {
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", key)) {
					t.Errorf("error %q does not name %q", err, key)
				}
			}
			if tc.a.Windows != before.Windows || tc.a.Total != before.Total {
				t.Errorf("failed Merge changed the baseline: windows %d, total %+v", tc.a.Windows, tc.a.Total)
			}
		})
	}
}

func TestBaselineMergeDefaultSampleSize(t *testing.T) {
	// sampleSize <= 0 keeps the larger of both samples and DefaultSampleSize.
	var events []learnEvent
	c := Container{ID: "c1"}
	for i := 0; i < 400; i++ {
		events = append(events, learnEvent{kind: "window", window: Window{Container: c, CgroupID: 9,
			Start: testT0.Add(time.Duration(i) * time.Second), Duration: time.Second, Counts: map[string]uint64{"read": uint64(i + 1)}}})
	}
	tests := []struct {
		name           string
		nA             int // A learns events[:nA], B the rest
		size           int // sample size each learns with
		wantSampleSize int
		exact          bool // both inputs kept every window: the result is the union's bottom-k
	}{
		{"larger than default in A", 300, 1000, 300, true},
		{"larger than default in B", 100, 1000, 300, true},
		{"both below default: default", 200, 150, DefaultSampleSize, false},
	}
	all := learn(events, 1000)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := learn(events[:tc.nA], tc.size), learn(events[tc.nA:], tc.size)
			mustMerge(t, a, b, 0)
			if len(a.Sample) != tc.wantSampleSize {
				t.Fatalf("sample after Merge(…, 0) holds %d, want %d", len(a.Sample), tc.wantSampleSize)
			}
			if tc.exact {
				checkSameSample(t, a.Sample, all.Sample[:tc.wantSampleSize])
			}
		})
	}
}

func TestBaselineAddWindow(t *testing.T) {
	c := Container{ID: "c1"}
	b := NewBaseline(testImage, testTag, "")
	b.AddStartup(Window{Container: c, Start: testT0, Duration: time.Second, Counts: map[string]uint64{"execve": 1, "mmap": 30, "brk": 0}})

	tests := []struct {
		name      string
		w         Window
		wantNovel []string
	}{
		{
			name:      "first window: everything not seen at startup is new, sorted",
			w:         Window{Container: c, Start: testT0.Add(10 * time.Second), Duration: 2 * time.Second, Counts: map[string]uint64{"write": 4, "read": 10, "mmap": 2, "futex": 0}},
			wantNovel: []string{"read", "write"},
		},
		{
			name:      "known syscalls are not new",
			w:         Window{Container: c, Start: testT0.Add(12 * time.Second), Duration: 2 * time.Second, Counts: map[string]uint64{"read": 6}},
			wantNovel: nil,
		},
		{
			name:      "zero-duration window counts calls",
			w:         Window{Container: c, Start: testT0.Add(5 * time.Second), Duration: 0, Counts: map[string]uint64{"read": 3, "brk": 1}},
			wantNovel: []string{"brk"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.AddWindow(tc.w, 8); !slices.Equal(got, tc.wantNovel) {
				t.Errorf("novel = %v, want %v", got, tc.wantNovel)
			}
		})
	}
	// read: 10/2 = 5, 6/2 = 3, 3 (zero duration: the count itself).
	checkMoments(t, "read", b.Syscalls["read"], twoPass([]float64{5, 3, 3}))
	checkMoments(t, "Total", b.Total, twoPass([]float64{8, 3, 4}))
	if _, ok := b.Syscalls["futex"]; ok {
		t.Error("a zero count made futex known")
	}
	if b.Windows != 3 || b.Seconds != 4 {
		t.Errorf("Windows, Seconds = %d, %v, want 3, 4", b.Windows, b.Seconds)
	}
	if !b.FirstSeen.Equal(testT0.Add(5*time.Second)) || !b.LastSeen.Equal(testT0.Add(14*time.Second)) {
		t.Errorf("FirstSeen, LastSeen = %v, %v, want t0+5s, t0+14s", b.FirstSeen, b.LastSeen)
	}
	if b.Convergence.LastNovelty != 3 {
		t.Errorf("LastNovelty = %d, want 3 (brk was new in the third window)", b.Convergence.LastNovelty)
	}
	for _, name := range []string{"execve", "mmap", "read", "brk"} {
		if !knowsSyscall(b, name) {
			t.Errorf("knowsSyscall(%q) = false", name)
		}
	}
	if knowsSyscall(b, "futex") || knowsSyscall(b, "ptrace") {
		t.Error("a syscall never made is known")
	}
	// read was in all 3 windows: its stats over all windows are its own.
	mean, std := b.SyscallStats("read")
	if !approxEqual(mean, 11.0/3) || !approxEqual(std*std, twoPass([]float64{5, 3, 3}).M2/2) {
		t.Errorf("SyscallStats(read) = %v, %v", mean, std)
	}
	// write was in 1 of 3 windows at rate 2: mean 2/3 over all windows.
	if mean, _ := b.SyscallStats("write"); !approxEqual(mean, 2.0/3) {
		t.Errorf("SyscallStats(write) mean = %v, want 2/3", mean)
	}
}

func TestBaselineSampleIsBottomK(t *testing.T) {
	const k = 5
	b := NewBaseline(testImage, testTag, "")
	var all []uint64
	for i := 0; i < 40; i++ {
		w := Window{Container: Container{ID: fmt.Sprint("c", i%3)}, CgroupID: uint64(i % 3), Start: testT0.Add(time.Duration(i) * time.Second),
			Duration: time.Second, Counts: map[string]uint64{"read": 1}}
		all = append(all, windowPriority(w))
		b.AddWindow(w, k)
		// The same window learned again (e.g. replayed) must not take two slots.
		if i == 7 {
			b.Sample = bottomK(append(b.Sample, b.Sample...), k)
		}
	}
	slices.Sort(all)
	got := make([]uint64, len(b.Sample))
	for i, s := range b.Sample {
		got[i] = s.Priority
	}
	if !slices.Equal(got, all[:k]) {
		t.Errorf("sample priorities = %v, want the %d smallest %v", got, k, all[:k])
	}
}

func TestBaselineWindowPriorityIsIdentity(t *testing.T) {
	base := Window{Container: Container{ID: "abc"}, CgroupID: 42, Start: testT0, Duration: time.Second, Counts: map[string]uint64{"read": 1}}
	same := base
	same.Counts = map[string]uint64{"write": 99}
	same.Duration = 3 * time.Second
	same.Start = testT0.In(time.FixedZone("X", 3600))
	if windowPriority(base) != windowPriority(same) {
		t.Error("priority depends on something other than container, cgroup and start")
	}
	for name, w := range map[string]Window{
		"container": {Container: Container{ID: "abd"}, CgroupID: 42, Start: testT0},
		"cgroup":    {Container: Container{ID: "abc"}, CgroupID: 43, Start: testT0},
		"start":     {Container: Container{ID: "abc"}, CgroupID: 42, Start: testT0.Add(time.Nanosecond)},
	} {
		if windowPriority(w) == windowPriority(base) {
			t.Errorf("a different %s gives the same priority", name)
		}
	}
}

func TestBaselineAddExec(t *testing.T) {
	b := NewBaseline(testImage, testTag, "")
	for i := 0; i < 5; i++ {
		b.AddWindow(Window{Container: Container{ID: "c"}, Start: testT0.Add(time.Duration(i) * time.Second), Duration: time.Second, Counts: map[string]uint64{"read": 1}}, 8)
	}
	steps := []struct {
		path    string
		wantNew bool
	}{{"/bin/sh", true}, {"/bin/sh", false}, {"/usr/bin/curl", true}, {"/bin/sh", false}}
	for _, s := range steps {
		if got := b.AddExec(s.path); got != s.wantNew {
			t.Errorf("AddExec(%q) = %v, want %v", s.path, got, s.wantNew)
		}
	}
	if want := map[string]uint64{"/bin/sh": 3, "/usr/bin/curl": 1}; !maps.Equal(b.Binaries, want) {
		t.Errorf("Binaries = %v, want %v", b.Binaries, want)
	}
}

func TestBaselineKey(t *testing.T) {
	tests := []struct {
		image, tag, id, want string
	}{
		{"nginx", "1.27", "sha256:a", "nginx:1.27"},
		{"nginx", "", "sha256:a", "nginx"},
		{"", "", "sha256:a", "sha256:a"},
		{"", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := NewBaseline(tc.image, tc.tag, tc.id).Key(); got != tc.want {
				t.Errorf("Key() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBaselineCloneIsDeep(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	orig := learn(randomEvents(r), 8)
	orig.AddExec("/bin/sh")
	orig.AddStartup(Window{Counts: map[string]uint64{"execve": 1}})
	orig.Convergence.CheckpointSums = map[string]RateSums{"read": {Sum: 1}}
	orig.Convergence.PreviousSums = map[string]RateSums{"read": {Sum: 1}}
	before, err := json.Marshal(orig) // independent of Clone, which is under test
	if err != nil {
		t.Fatal(err)
	}
	checkSameStatistics(t, orig.Clone(), orig)

	c := orig.Clone()
	c.Containers["intruder"] = 99
	c.Syscalls["ptrace"] = Moments{N: 1, Mean: 1, Max: 1}
	c.Syscalls["read"] = Moments{}
	c.Startup["mount"] = 1
	c.Binaries["/tmp/x"] = 1
	c.Binaries["/bin/sh"] = 1000
	c.Convergence.CheckpointSums["read"] = RateSums{Sum: 1e9}
	c.Convergence.PreviousSums["read"] = RateSums{Sum: 1e9}
	c.Sample[0].Counts["ptrace"] = 1
	c.Sample[0].Priority = 0
	c.Sample = append(c.Sample[:0], SampledWindow{Priority: 1})

	after, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("mutating the clone changed the original:\nbefore %s\nafter  %s", before, after)
	}
}

func TestBaselineCopiesLearnLikeOriginal(t *testing.T) {
	// A clone, or a baseline read back from its JSON encoding (store, export), is
	// used in place of the original (import, promote, restart): learning the same
	// windows must then lead to the same state at the same window.
	copies := []struct {
		name string
		copy func(t *testing.T, b *Baseline) *Baseline
	}{
		{"clone", func(t *testing.T, b *Baseline) *Baseline { return b.Clone() }},
		{"JSON round trip", func(t *testing.T, b *Baseline) *Baseline {
			raw, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			var c Baseline
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			return &c
		}},
	}
	cfg := LearnConfig{MinWindows: 20, MinContainers: 1, StableWindows: 10, MaxDrift: defaultMaxDrift, SampleSize: 8}
	for _, cp := range copies {
		for _, at := range []int{0, 5, 10, 25} { // fresh, within the first block, at a checkpoint, between
			t.Run(fmt.Sprintf("%s after %d windows", cp.name, at), func(t *testing.T) {
				orig := NewBaseline(testImage, testTag, "")
				// read was seen at startup, so its burst in the first window is not new.
				orig.AddStartup(Window{Container: Container{ID: "c"}, Start: testT0.Add(-10 * time.Second), Counts: map[string]uint64{"read": 5}})
				wl := newWorkload(41)
				window := func(i int) Window {
					w := wl.window("c")
					if i == 0 {
						w.Counts["read"] += 5000 // a burst
					}
					return w
				}
				var dup *Baseline
				for i := 0; i < 120; i++ {
					if i == at {
						dup = cp.copy(t, orig)
					}
					w := window(i)
					orig.AddWindow(w, cfg.SampleSize)
					so := orig.UpdateState(cfg)
					if dup == nil {
						continue
					}
					dup.AddWindow(w, cfg.SampleSize)
					sd := dup.UpdateState(cfg)
					if so != sd || orig.State != dup.State || orig.Convergence.Drift != dup.Convergence.Drift {
						t.Fatalf("after window %d: original %q (became stable %v, drift %v), copy %q (%v, drift %v)",
							i+1, orig.State, so, orig.Convergence.Drift, dup.State, sd, dup.Convergence.Drift)
					}
				}
				if orig.State != StateStable {
					t.Errorf("the workload never became stable: %s", orig.Progress(cfg))
				}
			})
		}
	}
}

// knowsSyscall reports whether the image was seen making the syscall.
func knowsSyscall(b *Baseline, name string) bool {
	_, ok := b.Syscalls[name]
	return ok || b.Startup[name] > 0
}
