package sensor

import (
	"cmp"
	"errors"
	"fmt"
	mathbits "math/bits"
	"os"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Counts are one cgroup's cumulative syscall counts, indexed by syscall number.
type Counts = [HistSlots]uint64

// DefaultHistogramSlots is how many (cgroup, CPU) pairs are counted at once unless
// configured: each takes 12 KiB of kernel memory (4 KiB of counts, 8 KiB of
// 4-grams), and a cgroup takes one slot per CPU its tasks made syscalls on.
const DefaultHistogramSlots = 4096

// histSize is one slot's size in the mmapped array (struct hist: owner + counts).
const histSize = int64(unsafe.Sizeof(sensorHist{}))

// SlotBytes is one slot's kernel memory.
const SlotBytes = histSize

// histograms reads the kernel's slot array through a memory mapping and hands
// freed slots back to the kernel. A BPF array's mapping is populated whole when
// made, so only the prefix of slots in use is mapped (free slots come off a stack,
// lowest first, so the slots in use stay dense); it grows when a higher slot is
// handed out. Mapping all 8,192 slots would add 32 MiB to the agent's RSS.
type histograms struct {
	array  *ebpf.Map
	mapped []byte
	free   *ebpf.Map
	pairs  *ebpf.Map
	slots  uint32
	owned  map[uint64][]uint32 // cgroup id → its slots, as of the last read
	// released slots wait a window before they are zeroed again and handed back:
	// an increment that passed the owner check just before the release lands in
	// the old counts, not in the next owner's.
	released []uint32
}

func newHistograms(array, free, pairs *ebpf.Map) (*histograms, error) {
	if err := QueueHistogramSlots(free); err != nil {
		return nil, err
	}
	return &histograms{array: array, free: free, pairs: pairs, slots: array.MaxEntries(), owned: make(map[uint64][]uint32)}, nil
}

// QueueHistogramSlots hands every slot but 0 to the kernel through free, the
// free_slots stack of a loaded collection that includes bpf/histogram.h. Load
// does it for the sensor; it is exported for profiler/sensor/sensorbench, whose
// programs include the same header.
func QueueHistogramSlots(free *ebpf.Map) error {
	for slot := free.MaxEntries() - 1; slot >= 1; slot-- { // slot 0 is never handed out; 1 ends on top
		if err := free.Update(nil, slot, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("queueing histogram slot %d: %w", slot, err)
		}
	}
	return nil
}

// slot returns slot n as it lies in the mapping, mapping more of the array if
// needed; the pointer is good until the next call that grows the mapping.
func (h *histograms) slot(n uint32) (*sensorHist, error) {
	end := (int64(n) + 1) * histSize
	if end > int64(len(h.mapped)) {
		if n >= h.slots {
			return nil, fmt.Errorf("histogram slot %d beyond the array's %d", n, h.slots)
		}
		// Grow by at least half again, in whole pages, to remap rarely.
		page := int64(os.Getpagesize())
		want := max(end, int64(len(h.mapped))*3/2, 64*histSize)
		want = min((want+page-1)/page*page, (int64(h.slots)*histSize+page-1)/page*page)
		mem, err := unix.Mmap(h.array.FD(), 0, int(want), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("mapping %d bytes of histogram slots: %w", want, err)
		}
		h.unmap()
		h.mapped = mem
	}
	return (*sensorHist)(unsafe.Pointer(&h.mapped[end-histSize])), nil
}

func (h *histograms) unmap() {
	if h.mapped != nil {
		_ = unix.Munmap(h.mapped) // only fails for a range that was never mapped
		h.mapped = nil
	}
}

// ReadHistograms calls fn with every cgroup's cumulative nonzero counts, by
// ascending syscall number, and its cumulative gram counts by ascending key,
// each summed over the CPUs it ran on. counts and grams are only valid during
// the call. The slots in use are listed from the pair hash, so unused slots
// are neither mapped nor touched; within a slot only the counters its seen bitmap
// marks are read, each once, so a count racing with the read lands in this window
// or the next, never both.
func (s *Sensor) ReadHistograms(fn func(cgroupID uint64, counts []SyscallCount, grams []GramCount)) error {
	h := s.hist
	_ = h.recycle() // a slot that could not be handed back stays queued for the next try
	slots, err := h.usedSlots()
	if err != nil {
		return err
	}
	owned := make(map[uint64][]uint32, len(h.owned))
	var order []uint64
	for _, slot := range slots {
		v, err := h.slot(slot)
		if err != nil {
			return err
		}
		id := v.CgroupId
		if id == 0 { // released, or claimed and not yet owned
			continue
		}
		if owned[id] == nil {
			order = append(order, id)
		}
		owned[id] = append(owned[id], slot)
	}
	h.owned = owned
	counts := make([]SyscallCount, 0, 128)
	grams := make([]GramCount, 0, 256)
	gramSums := make(map[uint64]uint32, 256)
	var views []*sensorHist
	for _, id := range order {
		views = views[:0]
		var seen [len(sensorHist{}.Seen)]uint64
		for _, slot := range owned[id] {
			v, _ := h.slot(slot) // mapped by the loop above
			views = append(views, v)
			for w := range seen {
				seen[w] |= v.Seen[w]
			}
		}
		counts = counts[:0]
		for w, bits := range seen {
			for ; bits != 0; bits &= bits - 1 {
				nr := w*64 + mathbits.TrailingZeros64(bits)
				var c uint64
				for _, v := range views {
					c += v.Counts[nr]
				}
				if c != 0 {
					counts = append(counts, SyscallCount{Nr: nr, Count: c})
				}
			}
		}
		grams = sumGrams(views, gramSums, grams[:0])
		fn(id, counts, grams)
	}
	return nil
}

// sumGrams adds up the gram tables of one cgroup's slots, modulo the count's
// width, into out by ascending key.
func sumGrams(views []*sensorHist, sums map[uint64]uint32, out []GramCount) []GramCount {
	clear(sums)
	for _, v := range views {
		for _, e := range v.Grams {
			if e != 0 {
				sums[e&gramKeyMask] += uint32(e >> gramKeyBits)
			}
		}
	}
	for k, c := range sums {
		out = append(out, GramCount{Key: k, Count: c & gramCountMask})
	}
	slices.SortFunc(out, func(a, b GramCount) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// usedSlots lists the slots the kernel has handed out, once each, ascending.
func (h *histograms) usedSlots() ([]uint32, error) {
	const batch = 1024
	keys := make([]sensorSlotKey, batch)
	vals := make([]uint32, batch)
	var slots []uint32
	var cursor ebpf.MapBatchCursor
	for {
		n, err := h.pairs.BatchLookup(&cursor, keys, vals, nil)
		slots = append(slots, vals[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			slots = slots[:0]
			var key sensorSlotKey
			var slot uint32
			it := h.pairs.Iterate()
			for it.Next(&key, &slot) {
				slots = append(slots, slot)
			}
			if err := it.Err(); err != nil {
				return nil, fmt.Errorf("listing histogram slots: %w", err)
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing histogram slots: %w", err)
		}
	}
	slices.Sort(slots)
	return slices.Compact(slots), nil
}

// DeleteHistograms releases dead cgroups' slots. The pair's key goes first, so a
// claim racing with the release inserts a key the next read sees; then the owner
// is cleared, so the kernel stops counting into the slot, and the counts are
// zeroed. The slot is handed back a window later (recycle). Ids without a slot
// are not an error.
func (s *Sensor) DeleteHistograms(ids []uint64) error {
	h := s.hist
	errs := []error{h.recycle()}
	for _, id := range ids {
		for _, slot := range h.owned[id] {
			v, err := h.slot(slot)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			key := sensorSlotKey{CgroupId: id, Cpu: v.Cpu}
			if err := h.pairs.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("forgetting slot %d of cgroup %d: %w", slot, id, err))
				continue
			}
			atomic.StoreUint64(&v.CgroupId, 0) // first, and not merged into the zeroing below
			*v = sensorHist{}
			h.released = append(h.released, slot)
		}
		delete(h.owned, id)
	}
	return errors.Join(errs...)
}

// recycle zeroes the slots released before the last read again and hands them
// back to the kernel; those it cannot hand back stay for the next call.
func (h *histograms) recycle() error {
	var errs []error
	keep := h.released[:0]
	for _, slot := range h.released {
		v, err := h.slot(slot)
		if err == nil {
			*v = sensorHist{}
			err = h.free.Update(nil, slot, ebpf.UpdateAny)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("handing back histogram slot %d: %w", slot, err))
			keep = append(keep, slot)
		}
	}
	h.released = keep
	return errors.Join(errs...)
}

// ErrBadHistogramSlots is returned for a slot count the kernel cannot map.
var ErrBadHistogramSlots = errors.New("sensor.histogram_slots must be between 1 and 1048575")

// SizeHistogramMaps prepares a collection that includes bpf/histogram.h for n
// (cgroup, CPU) slots, 0 meaning DefaultHistogramSlots: it sizes the slot maps and
// tells the programs the CPU count. Load does it for the sensor; it is exported
// for profiler/sensor/sensorbench, whose programs include the same header.
func SizeHistogramMaps(spec *ebpf.CollectionSpec, n int) error {
	if n == 0 {
		n = DefaultHistogramSlots
	}
	if n < 1 || n >= 1<<20 {
		return fmt.Errorf("%w (got %d)", ErrBadHistogramSlots, n)
	}
	for _, name := range []string{"hist_slots", "free_slots", "pair_slots"} {
		spec.Maps[name].MaxEntries = uint32(n) + 1 // + slot 0
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("counting CPUs: %w", err)
	}
	if err := spec.Variables["nr_cpus"].Set(uint32(cpus)); err != nil {
		return fmt.Errorf("setting CPU count: %w", err)
	}
	return nil
}

// ForgetHistogramSlots empties the list of slots in use (the pair hash) and
// leaves the slots as they are, so that WriteHistogramSlot can lay out a detached
// sensor's slots afresh without those the kernel handed out before Detach being
// read too. For benchmarks (profiler/sensor/sensorbench); the agent does not use it.
func (s *Sensor) ForgetHistogramSlots() error {
	if s.links != nil {
		return errors.New("forgetting the histogram slots of an attached sensor")
	}
	var key sensorSlotKey
	var slot uint32
	var keys []sensorSlotKey
	it := s.hist.pairs.Iterate()
	for it.Next(&key, &slot) {
		keys = append(keys, key)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("listing histogram slots: %w", err)
	}
	for _, k := range keys {
		if err := s.hist.pairs.Delete(k); err != nil {
			return fmt.Errorf("clearing slot list: %w", err)
		}
	}
	return nil
}

// WriteHistogramSlot fills slot n (1 up to the configured slot count) of a
// detached sensor as the kernel would have after cgroupID's syscalls on cpu:
// owner, CPU, counts and the bitmap of nonzero counts; and lists it in the pair
// hash, so ReadHistograms reads it. For benchmarks (profiler/sensor/sensorbench);
// the agent does not use it.
func (s *Sensor) WriteHistogramSlot(n uint32, cgroupID uint64, cpu uint32, counts *Counts) error {
	if s.links != nil {
		return errors.New("writing a histogram slot of an attached sensor")
	}
	if n == 0 {
		return errors.New("histogram slot 0 is never handed out")
	}
	v, err := s.hist.slot(n)
	if err != nil {
		return err
	}
	*v = sensorHist{CgroupId: cgroupID, Cpu: cpu, Counts: *counts}
	for nr, c := range counts {
		if c != 0 {
			v.Seen[nr/64] |= 1 << (nr % 64)
		}
	}
	key := sensorSlotKey{CgroupId: cgroupID, Cpu: cpu}
	if err := s.hist.pairs.Update(key, n, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("listing histogram slot %d: %w", n, err)
	}
	return nil
}
