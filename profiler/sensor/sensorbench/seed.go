package sensorbench

import (
	"fmt"
	"math/rand/v2"

	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// SeedHistograms gives n synthetic cgroups (ids from 1,000,000) a slot on each of
// cpus CPUs with active busy syscalls, and returns a function that adds to every
// busy count, as a window of activity would. The sensor must be detached and
// have n*cpus slots.
func SeedHistograms(s *sensor.Sensor, n, active, cpus int) func() error {
	type slot struct {
		cgroupID uint64
		cpu      uint32
		counts   sensor.Counts
	}
	rng := rand.New(rand.NewPCG(1, 2))
	slots := make([]slot, n*cpus)
	for i := range n {
		nrs := rng.Perm(460)[:active]
		for cpu := range cpus {
			sl := &slots[i*cpus+cpu]
			sl.cgroupID = uint64(1_000_000 + i)
			sl.cpu = uint32(cpu)
			for _, nr := range nrs {
				sl.counts[nr] = uint64(rng.IntN(1000)) + 1
			}
		}
	}
	forgot := false
	return func() error {
		if !forgot { // the slots the kernel handed out before Detach
			if err := s.ForgetHistogramSlots(); err != nil {
				return err
			}
			forgot = true
		}
		for i := range slots {
			sl := &slots[i]
			for nr, c := range sl.counts {
				if c > 0 {
					sl.counts[nr] = c + uint64(rng.IntN(50))
				}
			}
			if err := s.WriteHistogramSlot(uint32(i+1), sl.cgroupID, sl.cpu, &sl.counts); err != nil {
				return fmt.Errorf("seeding %d cgroups on %d CPUs: %w", n, cpus, err)
			}
		}
		return nil
	}
}
