package sensor

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Counts are one cgroup's cumulative syscall counts, indexed by syscall number.
type Counts = [HistSlots]uint64

// batchSize is how many cgroups one batch lookup copies (4 KiB each).
const batchSize = 256

// ReadHistograms calls fn with every cgroup's cumulative counts. counts is only valid
// during the call.
func (s *Sensor) ReadHistograms(fn func(cgroupID uint64, counts *Counts)) error {
	keys := make([]uint64, batchSize)
	vals := make([]sensorHist, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := s.objs.SyscallHist.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], &vals[i].Counts)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return s.iterateHistograms(fn)
		}
		if err != nil {
			return fmt.Errorf("reading syscall histograms: %w", err)
		}
	}
}

func (s *Sensor) iterateHistograms(fn func(uint64, *Counts)) error {
	var key uint64
	var val sensorHist
	it := s.objs.SyscallHist.Iterate()
	for it.Next(&key, &val) {
		fn(key, &val.Counts)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterating syscall histograms: %w", err)
	}
	return nil
}

// DeleteHistograms removes dead cgroups' entries. Already-missing ids are not an error.
func (s *Sensor) DeleteHistograms(ids []uint64) error {
	var errs []error
	for _, id := range ids {
		if err := s.objs.SyscallHist.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("deleting histogram of cgroup %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
