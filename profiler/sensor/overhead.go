package sensor

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// This file is measurement support for `make bench` (cmd/cagewatch-bench): the
// comparison programs of bpf/bench.bpf.c and the kernel's own per-program run
// time statistics. The agent does not use it.

// Probe names of bpf/bench.bpf.c's sys_enter programs.
const (
	ProbeEmpty       = "empty_tp_btf"   // the floor: an empty tp_btf/sys_enter program
	ProbeEmptyRawTP  = "empty_raw_tp"   // the raw_tp floor
	ProbeHistogram   = "hist_tp_btf"    // the sensor's histogram alone
	ProbeHistRawTP   = "hist_raw_tp"    // the same on raw_tp
	ProbeHash        = "hash_tp_btf"    // the first design: hash map keyed by cgroup id
	ProbeCgrpStorage = "storage_tp_btf" // counts in cgroup local storage, looked up per syscall
	ProbePairs       = "pairs_tp_btf"   // the histogram plus a hashed syscall-pair sketch (#8)
)

// Probes are the benchmark programs, loaded but not attached.
type Probes struct {
	objs benchObjects
	hist *histograms
}

// LoadProbes loads bpf/bench.bpf.c.
func LoadProbes() (*Probes, error) {
	spec, err := loadBench()
	if err != nil {
		return nil, err
	}
	slots, err := histogramSlots(0)
	if err != nil {
		return nil, err
	}
	if err := sizeHistograms(spec, slots); err != nil {
		return nil, err
	}
	var p Probes
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("loading benchmark programs: %w", err)
	}
	if p.hist, err = newHistograms(p.objs.HistSlots, p.objs.FreeSlots, p.objs.PairSlots); err != nil {
		_ = p.objs.Close()
		return nil, err
	}
	return &p, nil
}

// Close frees the programs and maps.
func (p *Probes) Close() error {
	p.hist.unmap()
	return p.objs.Close()
}

func (p *Probes) program(name string) (*ebpf.Program, bool) {
	prog := map[string]*ebpf.Program{
		ProbeEmpty: p.objs.EmptyTpBtf, ProbeEmptyRawTP: p.objs.EmptyRawTp,
		ProbeHistogram: p.objs.HistTpBtf, ProbeHistRawTP: p.objs.HistRawTp,
		ProbeHash: p.objs.HashTpBtf, ProbeCgrpStorage: p.objs.StorageTpBtf,
		ProbePairs: p.objs.PairsTpBtf,
	}[name]
	return prog, prog != nil
}

// Attach attaches the named probe to sys_enter until the returned closer is closed.
// The histogram probes come with the context-switch and cgroup-move programs that
// keep their per-CPU cgroup id.
func (p *Probes) Attach(name string) (io.Closer, error) {
	prog, ok := p.program(name)
	if !ok {
		return nil, fmt.Errorf("no benchmark program %q", name)
	}
	var links links
	if name == ProbeHistogram || name == ProbeHistRawTP || name == ProbePairs {
		for _, helper := range []*ebpf.Program{p.objs.SchedSwitch, p.objs.CgroupAttachTask} {
			l, err := link.AttachTracing(link.TracingOptions{Program: helper})
			if err != nil {
				_ = links.Close()
				return nil, err
			}
			links = append(links, l)
		}
	}
	var l link.Link
	var err error
	if strings.HasSuffix(name, "_raw_tp") {
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: prog})
	} else {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	}
	if err != nil {
		_ = links.Close()
		return nil, err
	}
	return append(links, l), nil
}

type links []link.Link

func (ls links) Close() error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// SwitchStats reads the run statistics of the histogram's context-switch program.
func (p *Probes) SwitchStats() (RunStats, error) { return statsOf(p.objs.SchedSwitch) }

// RunStats are a program's cumulative run count and run time, kept by the kernel
// while run-time statistics are enabled.
type RunStats struct {
	Runs    uint64
	Nanos   uint64
	Missing bool // no such program was loaded
}

// Sub is the difference s - before.
func (s RunStats) Sub(before RunStats) RunStats {
	return RunStats{Runs: s.Runs - before.Runs, Nanos: s.Nanos - before.Nanos}
}

// PerRun is the mean run time in nanoseconds, or 0 without runs.
func (s RunStats) PerRun() float64 {
	if s.Runs == 0 {
		return 0
	}
	return float64(s.Nanos) / float64(s.Runs)
}

func statsOf(prog *ebpf.Program) (RunStats, error) {
	st, err := prog.Stats()
	if err != nil {
		return RunStats{}, fmt.Errorf("reading program statistics: %w", err)
	}
	return RunStats{Runs: st.RunCount, Nanos: uint64(st.Runtime.Nanoseconds())}, nil
}

// Stats reads the named probe's run statistics.
func (p *Probes) Stats(name string) (RunStats, error) {
	prog, ok := p.program(name)
	if !ok {
		return RunStats{}, fmt.Errorf("no benchmark program %q", name)
	}
	return statsOf(prog)
}

// EnableRunTimeStats turns on the kernel's per-program run-time accounting (what
// sysctl kernel.bpf_stats_enabled=1 does) until the closer is closed.
func EnableRunTimeStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enabling BPF run-time statistics: %w", err)
	}
	return c, nil
}

// LoadedProgramStats sums the run statistics of every loaded program named name,
// of tracepoint type (bpftrace's) or not (tp_btf, the agent's), whose id is above
// minID, so another process's programs can be measured. Missing is set when none
// matched.
func LoadedProgramStats(name string, tracepoint bool, minID uint32) (RunStats, error) {
	var total RunStats
	matched := false
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return total, fmt.Errorf("listing programs: %w", err)
		}
		id = next
		if uint32(id) <= minID {
			continue
		}
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := prog.Info()
		if err == nil && info.Name == name && (info.Type == ebpf.TracePoint) == tracepoint {
			st, err := statsOf(prog)
			if err == nil {
				total.Runs += st.Runs
				total.Nanos += st.Nanos
				matched = true
			}
		}
		_ = prog.Close()
	}
	total.Missing = !matched
	return total, nil
}

// HighestProgramID is the newest loaded program's id, to tell later loads apart.
func HighestProgramID() (uint32, error) {
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, unix.ENOENT) {
			return uint32(id), nil
		}
		if err != nil {
			return 0, fmt.Errorf("listing programs: %w", err)
		}
		id = next
	}
}

// Kernel names of the sensor's per-syscall and per-context-switch programs, for
// LoadedProgramStats.
const (
	SensorProgramName = "sys_enter"
	SwitchProgramName = "sched_switch"
)

// Detach detaches the sensor's programs and keeps its maps, so a benchmark can
// write the histogram slots without the kernel claiming them too.
func (s *Sensor) Detach() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	return errors.Join(errs...)
}

// SeedHistograms gives n synthetic cgroups (ids from 1,000,000) a slot on each of
// cpus CPUs with active busy syscalls, and returns a function that adds to every
// busy count, as a window of activity would. The sensor must be detached and
// have n*cpus slots.
func SeedHistograms(s *Sensor, n, active, cpus int) func() error {
	rng := rand.New(rand.NewPCG(1, 2))
	h := s.hist
	hists := make([]sensorHist, n*cpus)
	for i := range n {
		nrs := rng.Perm(460)[:active]
		sort.Ints(nrs)
		for cpu := range cpus {
			hist := &hists[i*cpus+cpu]
			hist.CgroupId = uint64(1_000_000 + i)
			hist.Cpu = uint32(cpu)
			for _, nr := range nrs {
				hist.Counts[nr] = uint64(rng.IntN(1000)) + 1
				hist.Seen[nr/64] |= 1 << (nr % 64)
			}
		}
	}
	wiped := false
	return func() error {
		if s.links != nil {
			return errors.New("seeding histograms of an attached sensor")
		}
		if !wiped { // forget the slots the kernel handed out before Detach
			var key sensorSlotKey
			var slot uint32
			var stale []sensorSlotKey
			for it := h.pairs.Iterate(); it.Next(&key, &slot); {
				stale = append(stale, key)
			}
			for _, k := range stale {
				if err := h.pairs.Delete(k); err != nil {
					return fmt.Errorf("clearing slot list: %w", err)
				}
			}
			wiped = true
		}
		if uint32(len(hists)) >= h.slots {
			return fmt.Errorf("%d cgroups on %d CPUs do not fit %d slots", n, cpus, h.slots-1)
		}
		for i := range hists {
			for nr, c := range hists[i].Counts {
				if c > 0 {
					hists[i].Counts[nr] = c + uint64(rng.IntN(50))
				}
			}
			slot := uint32(i + 1)
			v, err := h.slot(slot)
			if err != nil {
				return err
			}
			*v = hists[i]
			key := sensorSlotKey{CgroupId: hists[i].CgroupId, Cpu: hists[i].Cpu}
			if err := h.pairs.Update(key, slot, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("seeding slot %d: %w", slot, err)
			}
		}
		return nil
	}
}
