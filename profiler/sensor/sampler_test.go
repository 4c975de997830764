package sensor

import (
	"cmp"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// fakeHistograms is a HistogramSource over an in-memory map the test mutates.
type fakeHistograms struct {
	mu       sync.Mutex
	hists    map[uint64]*Counts
	grams    map[uint64][]GramCount // cumulative, by ascending key
	deletes  [][]uint64             // every DeleteHistograms call, ids sorted
	failRead error                  // returned by the next ReadHistograms, then cleared
	// failAfter is returned by the next ReadHistograms after it has passed every
	// entry to fn, as a batch read that fails on its last batch does; then cleared.
	failAfter  error
	failDelete error          // returned by the next DeleteHistograms, which deletes nothing
	scratch    []SyscallCount // like the real sensor, fn's counts are only valid during the call
}

func newFakeHistograms() *fakeHistograms {
	return &fakeHistograms{hists: make(map[uint64]*Counts), grams: make(map[uint64][]GramCount)}
}

func (f *fakeHistograms) ReadHistograms(fn func(cgroupID uint64, counts []SyscallCount, grams []GramCount)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failRead; err != nil {
		f.failRead = nil
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(f.hists)) {
		f.scratch = f.scratch[:0]
		for nr, c := range f.hists[id] {
			if c != 0 {
				f.scratch = append(f.scratch, SyscallCount{Nr: nr, Count: c})
			}
		}
		fn(id, f.scratch, f.grams[id])
	}
	for i := range f.scratch { // a sampler that kept the slice would now see zeros
		f.scratch[i] = SyscallCount{}
	}
	err := f.failAfter
	f.failAfter = nil
	return err
}

func (f *fakeHistograms) DeleteHistograms(ids []uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, slices.Sorted(slices.Values(ids)))
	if err := f.failDelete; err != nil {
		f.failDelete = nil
		return err
	}
	for _, id := range ids {
		delete(f.hists, id)
	}
	return nil
}

// set stores cumulative counts for a cgroup, creating its entry if needed.
func (f *fakeHistograms) set(id uint64, counts map[int]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hists[id]
	if h == nil {
		h = new(Counts)
		f.hists[id] = h
	}
	for nr, n := range counts {
		h[nr] = n
	}
}

// drop deletes an entry behind the sampler's back (LRU eviction, another agent).
func (f *fakeHistograms) drop(id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.hists, id)
}

func (f *fakeHistograms) takeDeletes() [][]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.deletes
	f.deletes = nil
	return d
}

// samplerStep is one Sample call: what changes before it, and what it must return.
type samplerStep struct {
	at       time.Duration             // now = start + at
	drop     []uint64                  // entries deleted behind the sampler's back, first
	set      map[uint64]map[int]uint64 // then cumulative counts written (creating entries)
	removed  []uint64                  // CgroupRemoved calls before sampling
	failRead bool                      // ReadHistograms fails this time

	wantErr       bool
	wantDeltas    []Delta    // sorted by cgroup id
	wantGone      []uint64   // sorted
	wantDeleted   [][]uint64 // DeleteHistograms calls; nil means none
	wantAliveAsks []uint64   // sorted ids alive was asked about (scenarios with alive)
	wantTracked   int
}

func TestSampler(t *testing.T) {
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	delta := func(id uint64, from, to time.Duration, counts map[int]uint64) Delta {
		return Delta{CgroupID: id, Start: at(from), Duration: to - from, Counts: sparse(counts)}
	}
	const s10, s20, s30 = 10 * time.Second, 20 * time.Second, 30 * time.Second

	tests := []struct {
		name string
		// dead, when non-nil, enables the alive callback; it reports these ids dead.
		dead  map[uint64]bool
		steps []samplerStep
	}{
		{
			name: "first sample reports totals since start",
			steps: []samplerStep{{
				at:  s10,
				set: map[uint64]map[int]uint64{1: {0: 5, 1: 7}, 2: {257: 3}},
				wantDeltas: []Delta{
					delta(1, 0, s10, map[int]uint64{0: 5, 1: 7}),
					delta(2, 0, s10, map[int]uint64{257: 3}),
				},
				wantTracked: 2,
			}},
		},
		{
			name: "second sample reports only differences of changed cgroups",
			steps: []samplerStep{
				{
					at:  s10,
					set: map[uint64]map[int]uint64{1: {0: 5, 1: 7}, 2: {257: 3}},
					wantDeltas: []Delta{
						delta(1, 0, s10, map[int]uint64{0: 5, 1: 7}),
						delta(2, 0, s10, map[int]uint64{257: 3}),
					},
					wantTracked: 2,
				},
				{
					at:          25 * time.Second,
					set:         map[uint64]map[int]uint64{1: {0: 8, 1: 7, 42: 1}},
					wantDeltas:  []Delta{delta(1, s10, 25*time.Second, map[int]uint64{0: 3, 42: 1})},
					wantTracked: 2,
				},
			},
		},
		{
			name: "idle cgroups produce no delta",
			steps: []samplerStep{
				{
					at:          s10,
					set:         map[uint64]map[int]uint64{1: {0: 5}},
					wantDeltas:  []Delta{delta(1, 0, s10, map[int]uint64{0: 5})},
					wantTracked: 1,
				},
				{at: s20, wantTracked: 1},
				{
					at:          s30,
					set:         map[uint64]map[int]uint64{1: {0: 6}},
					wantDeltas:  []Delta{delta(1, s20, s30, map[int]uint64{0: 1})},
					wantTracked: 1,
				},
			},
		},
		{
			name: "counter going backwards counts from zero",
			steps: []samplerStep{
				{
					at:          s10,
					set:         map[uint64]map[int]uint64{1: {0: 100}},
					wantDeltas:  []Delta{delta(1, 0, s10, map[int]uint64{0: 100})},
					wantTracked: 1,
				},
				{
					// The entry was deleted and recreated between samples.
					at:          s20,
					drop:        []uint64{1},
					set:         map[uint64]map[int]uint64{1: {0: 4}},
					wantDeltas:  []Delta{delta(1, s10, s20, map[int]uint64{0: 4})},
					wantTracked: 1,
				},
			},
		},
		{
			name: "removed cgroup reports its final delta then is freed",
			steps: []samplerStep{
				{
					at:  s10,
					set: map[uint64]map[int]uint64{1: {0: 5}, 2: {0: 1}},
					wantDeltas: []Delta{
						delta(1, 0, s10, map[int]uint64{0: 5}),
						delta(2, 0, s10, map[int]uint64{0: 1}),
					},
					wantTracked: 2,
				},
				{
					at:          s20,
					set:         map[uint64]map[int]uint64{1: {0: 9}, 2: {0: 2}},
					removed:     []uint64{1},
					wantDeltas:  []Delta{delta(1, s10, s20, map[int]uint64{0: 4}), delta(2, s10, s20, map[int]uint64{0: 1})},
					wantGone:    []uint64{1},
					wantDeleted: [][]uint64{{1}},
					wantTracked: 1,
				},
				{at: s30, wantTracked: 1},
			},
		},
		{
			name: "removed idle cgroup is freed without asking alive",
			dead: map[uint64]bool{},
			steps: []samplerStep{
				{
					at:          s10,
					set:         map[uint64]map[int]uint64{1: {0: 5}},
					wantDeltas:  []Delta{delta(1, 0, s10, map[int]uint64{0: 5})},
					wantTracked: 1,
				},
				{
					at:          s20,
					removed:     []uint64{1},
					wantGone:    []uint64{1},
					wantDeleted: [][]uint64{{1}},
					wantTracked: 0,
				},
			},
		},
		{
			name: "removal of a cgroup without an entry is still reported and deleted",
			steps: []samplerStep{{
				at:          s10,
				removed:     []uint64{7},
				wantGone:    []uint64{7},
				wantDeleted: [][]uint64{{7}},
			}},
		},
		{
			name: "alive is asked only about idle cgroups and dead idle ones are freed",
			// 1 is reported dead but active: alive must not be asked, it stays.
			// 2 is idle and dead: freed. 3 is idle and alive: kept.
			dead: map[uint64]bool{1: true, 2: true},
			steps: []samplerStep{
				{
					at:  s10,
					set: map[uint64]map[int]uint64{1: {0: 1}, 2: {0: 1}, 3: {0: 1}},
					wantDeltas: []Delta{
						delta(1, 0, s10, map[int]uint64{0: 1}),
						delta(2, 0, s10, map[int]uint64{0: 1}),
						delta(3, 0, s10, map[int]uint64{0: 1}),
					},
					wantTracked: 3,
				},
				{
					at:            s20,
					set:           map[uint64]map[int]uint64{1: {0: 2}},
					wantDeltas:    []Delta{delta(1, s10, s20, map[int]uint64{0: 1})},
					wantGone:      []uint64{2},
					wantDeleted:   [][]uint64{{2}},
					wantAliveAsks: []uint64{2, 3},
					wantTracked:   2,
				},
			},
		},
		{
			name: "read failure returns the error and keeps removal marks",
			steps: []samplerStep{
				{
					at:          s10,
					set:         map[uint64]map[int]uint64{1: {0: 5}},
					wantDeltas:  []Delta{delta(1, 0, s10, map[int]uint64{0: 5})},
					wantTracked: 1,
				},
				{
					at:          s20,
					set:         map[uint64]map[int]uint64{1: {0: 6}},
					removed:     []uint64{1},
					failRead:    true,
					wantErr:     true,
					wantTracked: 1,
				},
				{
					// The failed window is folded into this one.
					at:          s30,
					wantDeltas:  []Delta{delta(1, s10, s30, map[int]uint64{0: 1})},
					wantGone:    []uint64{1},
					wantDeleted: [][]uint64{{1}},
					wantTracked: 0,
				},
			},
		},
		{
			name: "entry deleted behind the sampler's back is dropped",
			steps: []samplerStep{
				{
					at:  s10,
					set: map[uint64]map[int]uint64{1: {0: 5}, 2: {0: 10}},
					wantDeltas: []Delta{
						delta(1, 0, s10, map[int]uint64{0: 5}),
						delta(2, 0, s10, map[int]uint64{0: 10}),
					},
					wantTracked: 2,
				},
				{at: s20, drop: []uint64{2}, wantTracked: 1},
				{
					// Recreated: counted from zero, not against the old 10.
					at:          s30,
					set:         map[uint64]map[int]uint64{2: {0: 3}},
					wantDeltas:  []Delta{delta(2, s20, s30, map[int]uint64{0: 3})},
					wantTracked: 2,
				},
			},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeHistograms()
			var asked []uint64
			var alive func(uint64) bool
			if tc.dead != nil {
				alive = func(id uint64) bool {
					asked = append(asked, id)
					return !tc.dead[id]
				}
			}
			s := NewSampler(src, start, alive)

			for i, st := range tc.steps {
				for _, id := range st.drop {
					src.drop(id)
				}
				for id, counts := range st.set {
					src.set(id, counts)
				}
				for _, id := range st.removed {
					s.CgroupRemoved(id)
				}
				if st.failRead {
					src.failRead = errors.New("batch lookup: injected failure")
				}
				asked = nil

				deltas, gone, err := s.Sample(at(st.at))

				if (err != nil) != st.wantErr {
					t.Fatalf("step %d: Sample error = %v, want error %v", i, err, st.wantErr)
				}
				slices.SortFunc(deltas, func(a, b Delta) int { return cmp.Compare(a.CgroupID, b.CgroupID) })
				if !deltasEqual(deltas, st.wantDeltas) {
					t.Errorf("step %d: deltas\n got: %+v\nwant: %+v", i, deltas, st.wantDeltas)
				}
				slices.Sort(gone)
				if !slices.Equal(gone, st.wantGone) {
					t.Errorf("step %d: gone = %v, want %v", i, gone, st.wantGone)
				}
				if got := src.takeDeletes(); !reflect.DeepEqual(got, st.wantDeleted) {
					t.Errorf("step %d: DeleteHistograms calls = %v, want %v", i, got, st.wantDeleted)
				}
				if tc.dead != nil {
					slices.Sort(asked)
					if !slices.Equal(asked, st.wantAliveAsks) {
						t.Errorf("step %d: alive asked about %v, want %v", i, asked, st.wantAliveAsks)
					}
				}
				if got := s.Tracked(); got != st.wantTracked {
					t.Errorf("step %d: Tracked() = %d, want %d", i, got, st.wantTracked)
				}
			}
		})
	}
}

// deltasEqual treats nil and empty slices alike.
func deltasEqual(got, want []Delta) bool {
	if len(got) == 0 && len(want) == 0 {
		return true
	}
	return reflect.DeepEqual(got, want)
}

// TestSamplerCgroupRemovedConcurrent marks removals from another goroutine while
// sampling, as the event reader does; run it with -race. No mark may be lost or
// reported twice.
func TestSamplerCgroupRemovedConcurrent(t *testing.T) {
	const n = 2000
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	src := newFakeHistograms()
	for id := range uint64(50) {
		src.set(id, map[int]uint64{0: 1})
	}
	s := NewSampler(src, start, nil)

	var wg sync.WaitGroup
	wg.Go(func() {
		for id := range uint64(n) {
			s.CgroupRemoved(1000 + id)
		}
	})

	seen := make(map[uint64]int)
	collect := func(gone []uint64) {
		for _, id := range gone {
			seen[id]++
		}
	}
	for i := 1; i <= 200; i++ {
		_, gone, err := s.Sample(start.Add(time.Duration(i) * time.Second))
		if err != nil {
			t.Fatalf("Sample: %v", err)
		}
		collect(gone)
	}
	wg.Wait()
	_, gone, err := s.Sample(start.Add(time.Hour))
	if err != nil {
		t.Fatalf("final Sample: %v", err)
	}
	collect(gone)

	for id := range uint64(n) {
		if c := seen[1000+id]; c != 1 {
			t.Fatalf("cgroup %d reported gone %d times, want 1", 1000+id, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%d cgroups reported gone, want %d", len(seen), n)
	}
	if got := s.Tracked(); got != 50 {
		t.Errorf("Tracked() = %d, want the 50 untouched cgroups", got)
	}
}

func TestDeltaWindow(t *testing.T) {
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	c := model.Container{ID: "abc", Runtime: model.RuntimeDocker, Image: "docker.io/library/nginx", ImageTag: "1.27"}

	tests := []struct {
		name   string
		counts map[int]uint64
		want   map[string]uint64
	}{
		{
			name:   "known syscalls by name",
			counts: map[int]uint64{0: 3, 1: 4, 257: 2, 435: 1},
			want:   map[string]uint64{"read": 3, "write": 4, "openat": 2, "clone3": 1},
		},
		{
			name:   "last slot folds into other",
			counts: map[int]uint64{HistSlots - 1: 9, 0: 1},
			want:   map[string]uint64{"other": 9, "read": 1},
		},
		{
			name:   "unknown slot keeps its number",
			counts: map[int]uint64{400: 2},
			want:   map[string]uint64{"sys_400": 2},
		},
		{
			name:   "empty",
			counts: map[int]uint64{},
			want:   map[string]uint64{},
		},
	}
	if HistSlots != 512 {
		t.Fatalf("HistSlots = %d, want 512 (HIST_SLOTS in bpf/sensor.h)", HistSlots)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Delta{CgroupID: 77, Start: start, Duration: 30 * time.Second, Counts: sparse(tc.counts)}
			w := d.Window(c)
			want := model.Window{CgroupID: 77, Container: c, Start: start, Duration: 30 * time.Second, Counts: tc.want}
			if !reflect.DeepEqual(w, want) {
				t.Errorf("Window\n got: %+v\nwant: %+v", w, want)
			}
			var total uint64
			for _, n := range tc.counts {
				total += n
			}
			if w.Total() != total {
				t.Errorf("Window total %d, want the delta's total %d", w.Total(), total)
			}
		})
	}
}

// TestSamplerNeverLosesOrDoublesCounts covers failures midway: a read that fails
// after delivering entries, an entry recreated between samples, and a failed delete.
func TestSamplerNeverLosesOrDoublesCounts(t *testing.T) {
	start := time.Now()
	sum := func(ds []Delta, id uint64, nr int) uint64 {
		var n uint64
		for _, d := range ds {
			if d.CgroupID == id {
				n += d.Count(nr)
			}
		}
		return n
	}
	t.Run("read failing after delivering entries loses nothing", func(t *testing.T) {
		f := newFakeHistograms()
		s := NewSampler(f, start, nil)
		f.set(1, map[int]uint64{0: 5})
		if _, _, err := s.Sample(start.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		f.set(1, map[int]uint64{0: 8})
		f.failAfter = errors.New("batch lookup: EINTR")
		if _, _, err := s.Sample(start.Add(2 * time.Second)); err == nil {
			t.Fatal("want the read error")
		}
		ds, _, err := s.Sample(start.Add(3 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if got := sum(ds, 1, 0); got != 3 {
			t.Errorf("delta after the failed read = %d, want 3", got)
		}
		if len(ds) == 1 && ds[0].Start != start.Add(time.Second) {
			t.Errorf("window start %v, want the last successful sample %v", ds[0].Start, start.Add(time.Second))
		}
	})
	t.Run("a syscall gone from a recreated entry counts it from zero", func(t *testing.T) {
		f := newFakeHistograms()
		s := NewSampler(f, start, nil)
		f.set(1, map[int]uint64{0: 5, 3: 2})
		if _, _, err := s.Sample(start.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		f.drop(1)
		f.set(1, map[int]uint64{0: 7})
		ds, _, err := s.Sample(start.Add(2 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]uint64{0: 7}
		if len(ds) != 1 || !reflect.DeepEqual(countMap(ds[0]), want) {
			t.Errorf("deltas %+v, want one with %v", ds, want)
		}
	})
	t.Run("recreated entry counts from zero in every slot", func(t *testing.T) {
		f := newFakeHistograms()
		s := NewSampler(f, start, nil)
		f.set(1, map[int]uint64{0: 100, 1: 50, 2: 7})
		if _, _, err := s.Sample(start.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		f.drop(1)
		f.set(1, map[int]uint64{0: 4, 1: 60, 2: 7})
		ds, _, err := s.Sample(start.Add(2 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]uint64{0: 4, 1: 60, 2: 7}
		if len(ds) != 1 || !reflect.DeepEqual(countMap(ds[0]), want) {
			t.Errorf("deltas %+v, want one with %v", ds, want)
		}
	})
	t.Run("failed delete is retried without counting twice", func(t *testing.T) {
		f := newFakeHistograms()
		s := NewSampler(f, start, nil)
		f.set(1, map[int]uint64{0: 5})
		if _, _, err := s.Sample(start.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		f.set(1, map[int]uint64{0: 7})
		s.CgroupRemoved(1)
		f.failDelete = errors.New("map delete: EBUSY")
		ds, gone, err := s.Sample(start.Add(2 * time.Second))
		if err == nil || len(gone) != 0 {
			t.Fatalf("err %v gone %v, want the delete error and nothing gone", err, gone)
		}
		if got := sum(ds, 1, 0); got != 2 {
			t.Errorf("final delta %d, want 2 (returned despite the delete error)", got)
		}
		ds, gone, err = s.Sample(start.Add(3 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if got := sum(ds, 1, 0); got != 0 {
			t.Errorf("retry reported %d more syscalls for cgroup 1, want 0", got)
		}
		if !reflect.DeepEqual(gone, []uint64{1}) || s.Tracked() != 0 {
			t.Errorf("gone %v tracked %d after the retried delete", gone, s.Tracked())
		}
	})
}

// sparse turns a map of counts into Delta's sorted form.
func sparse(counts map[int]uint64) []SyscallCount {
	var out []SyscallCount
	for nr, n := range counts {
		if n > 0 {
			out = append(out, SyscallCount{Nr: nr, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b SyscallCount) int { return a.Nr - b.Nr })
	return out
}

// countMap is a delta's counts by syscall number.
func countMap(d Delta) map[int]uint64 {
	m := make(map[int]uint64, len(d.Counts))
	for _, c := range d.Counts {
		m[c.Nr] = c.Count
	}
	return m
}
