package sensorbench

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// Probe names of bpf/bench.bpf.c's sys_enter programs.
const (
	ProbeEmpty       = "empty_tp_btf"   // the floor: an empty tp_btf/sys_enter program
	ProbeEmptyRawTP  = "empty_raw_tp"   // the raw_tp floor
	ProbeHistogram   = "hist_tp_btf"    // the sensor's histogram alone
	ProbeHistRawTP   = "hist_raw_tp"    // the same on raw_tp
	ProbeHash        = "hash_tp_btf"    // the first design: hash map keyed by cgroup id
	ProbeCgrpStorage = "storage_tp_btf" // counts in cgroup local storage, looked up per syscall
	ProbeCountsOnly  = "counts_tp_btf"  // the histogram without its 4-grams
)

// Probes are the benchmark programs, loaded but not attached.
type Probes struct {
	objs benchObjects
}

// LoadProbes loads bpf/bench.bpf.c, its histogram sized as the sensor's default.
func LoadProbes() (*Probes, error) {
	spec, err := loadBench()
	if err != nil {
		return nil, err
	}
	if err := sensor.SizeHistogramMaps(spec, 0); err != nil {
		return nil, err
	}
	var p Probes
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("loading benchmark programs: %w", err)
	}
	if err := sensor.QueueHistogramSlots(p.objs.FreeSlots); err != nil {
		_ = p.objs.Close()
		return nil, err
	}
	return &p, nil
}

// Close frees the programs and maps.
func (p *Probes) Close() error { return p.objs.Close() }

func (p *Probes) program(name string) (*ebpf.Program, bool) {
	prog := map[string]*ebpf.Program{
		ProbeEmpty: p.objs.EmptyTpBtf, ProbeEmptyRawTP: p.objs.EmptyRawTp,
		ProbeHistogram: p.objs.HistTpBtf, ProbeHistRawTP: p.objs.HistRawTp,
		ProbeHash: p.objs.HashTpBtf, ProbeCgrpStorage: p.objs.StorageTpBtf,
		ProbeCountsOnly: p.objs.CountsTpBtf,
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
	if name == ProbeHistogram || name == ProbeHistRawTP || name == ProbeCountsOnly {
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

// ProgramStats reads prog's run statistics, such as the sensor's
// (sensor.Sensor.SysEnterProgram).
func ProgramStats(prog *ebpf.Program) (RunStats, error) {
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
	return ProgramStats(prog)
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
	_, err := eachProgramID(func(id ebpf.ProgramID) {
		if uint32(id) <= minID {
			return
		}
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return // unloaded meanwhile
		}
		info, err := prog.Info()
		if err == nil && info.Name == name && (info.Type == ebpf.TracePoint) == tracepoint {
			st, err := ProgramStats(prog)
			if err == nil {
				total.Runs += st.Runs
				total.Nanos += st.Nanos
				matched = true
			}
		}
		_ = prog.Close()
	})
	if err != nil {
		return total, err
	}
	total.Missing = !matched
	return total, nil
}

// HighestProgramID is the newest loaded program's id, to tell later loads apart.
func HighestProgramID() (uint32, error) {
	id, err := eachProgramID(func(ebpf.ProgramID) {})
	if err != nil {
		return 0, err
	}
	return uint32(id), nil
}

// eachProgramID calls fn with every loaded program's id, ascending, and returns
// the last.
func eachProgramID(fn func(ebpf.ProgramID)) (ebpf.ProgramID, error) {
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, unix.ENOENT) {
			return id, nil
		}
		if err != nil {
			return id, fmt.Errorf("listing programs: %w", err)
		}
		id = next
		fn(id)
	}
}

// Kernel names of the sensor's per-syscall and per-context-switch programs, for
// LoadedProgramStats of an agent running in another process.
const (
	SensorProgramName = "sys_enter"
	SwitchProgramName = "sched_switch"
)

// ExitProgramNames are the sensor's programs that judge write-opens on return:
// tp_btf/sys_exit, or the per-syscall tracepoints of the opens.
var ExitProgramNames = []string{"sys_exit", "open_exit", "openat_exit", "openat2_exit", "creat_exit"}
