package sensor

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/cagewatch/cagewatch/model"
)

// Watch-map values, mirroring enum watch_flag in bpf/sensor.h.
const (
	watchReport    = 1
	watchKillWrite = 2
	watchKillAny   = 4
)

// KillOpen says when opening a watched path kills the caller.
type KillOpen int

const (
	KillOnWrite KillOpen = watchKillWrite // opened with O_WRONLY, O_RDWR, O_CREAT or O_TRUNC
	KillOnAny   KillOpen = watchKillAny
)

// EnforcePolicy is what the BPF program kills at syscall entry in enforce mode,
// for processes of the cgroups passed to EnforceCgroup.
type EnforcePolicy struct {
	Enabled        bool
	KillSyscalls   []string // any call kills (unshare, setns, init_module…)
	KillCloneFlags uint64   // clone/clone3 with any of these flags kills
	// KillUnshareByFlags: unshare kills when its flags meet KillCloneFlags (not on
	// every call, e.g. not for CLONE_FILES alone).
	KillUnshareByFlags bool
	KillPrefixes       map[string]KillOpen
	KillNames          map[string]KillOpen
	// KillExecFile: an exec of any of these kinds (model.ExecFileKinds) kills
	// the process before the new image runs.
	KillExecFile []string
}

// execKillBits are the exec_file_flag bits each kernel-decidable kind kills on.
var execKillBits = map[string]uint64{
	"deleted": execFileDeleted, "outside_root": execFileOutsideRoot, "stdio_socket": execStdioSocket,
}

// SetEnforcement replaces the kill policy; it can be called again (rules reload).
func (s *Sensor) SetEnforcement(p EnforcePolicy) error {
	s.enforceMu.Lock()
	defer s.enforceMu.Unlock()
	var kp sensorEnforcePolicy
	for _, name := range p.KillSyscalls {
		nr, ok := model.SyscallNumber(name)
		if !ok || nr >= HistSlots-1 {
			return fmt.Errorf("kill syscall %q: unknown", name)
		}
		kp.KillSyscalls[nr/64] |= 1 << (nr % 64)
	}
	kp.KillCloneFlags = p.KillCloneFlags
	for _, kind := range p.KillExecFile {
		bit, ok := execKillBits[kind]
		if !ok {
			return fmt.Errorf("kill on exec of %q: the kernel cannot tell that kind", kind)
		}
		kp.KillExecFlags |= bit
	}
	if p.KillUnshareByFlags {
		kp.KillUnshareByFlags = 1
	}
	if p.Enabled {
		kp.Enabled = 1
	}
	// Restore the previous policy's path entries to report-only (or remove those
	// that were only there to kill), then add this policy's.
	for _, prefix := range s.killPrefixes {
		if err := s.setPrefix(prefix, watchReport, !slices.Contains(s.opts.WatchPrefixes, prefix)); err != nil {
			return err
		}
	}
	for _, name := range s.killNames {
		if err := s.setName(name, watchReport, !slices.Contains(s.opts.WatchNames, name)); err != nil {
			return err
		}
	}
	s.killPrefixes, s.killNames = nil, nil
	for prefix, mode := range p.KillPrefixes {
		if err := s.setPrefix(prefix, watchReport|uint8(mode), false); err != nil {
			return err
		}
		s.killPrefixes = append(s.killPrefixes, prefix)
	}
	for name, mode := range p.KillNames {
		if err := s.setName(name, watchReport|uint8(mode), false); err != nil {
			return err
		}
		s.killNames = append(s.killNames, name)
	}
	if err := s.objs.Enforce.Put(uint32(0), kp); err != nil {
		return fmt.Errorf("writing enforce policy: %w", err)
	}
	return nil
}

func prefixKey(p string) (sensorPrefixKey, error) {
	key := sensorPrefixKey{Prefixlen: uint32(len(p) * 8)}
	if p == "" || len(p) >= len(key.Data) {
		return key, fmt.Errorf("watch prefix %q: length must be 1..%d", p, len(key.Data)-1)
	}
	for i := range len(p) {
		key.Data[i] = int8(p[i])
	}
	return key, nil
}

func nameKey(n string) ([nameLen]byte, error) {
	var key [nameLen]byte
	if n == "" || len(n) >= nameLen || strings.ContainsRune(n, '/') {
		return key, fmt.Errorf("watch name %q: must be 1..%d bytes without '/'", n, nameLen-1)
	}
	copy(key[:], n)
	return key, nil
}

func (s *Sensor) setPrefix(p string, flags uint8, remove bool) error {
	key, err := prefixKey(p)
	if err != nil {
		return err
	}
	if remove {
		if err := s.objs.WatchPrefixes.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing watch prefix %q: %w", p, err)
		}
		delete(s.filterPrefixes, p)
		return s.writeWatchFilter()
	}
	if err := s.objs.WatchPrefixes.Put(key, flags); err != nil {
		return fmt.Errorf("setting watch prefix %q: %w", p, err)
	}
	s.filterPrefixes[p] = true
	return s.writeWatchFilter()
}

func (s *Sensor) setName(n string, flags uint8, remove bool) error {
	key, err := nameKey(n)
	if err != nil {
		return err
	}
	if remove {
		if err := s.objs.WatchNames.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing watch name %q: %w", n, err)
		}
		delete(s.filterNames, n)
		return s.writeWatchFilter()
	}
	if err := s.objs.WatchNames.Put(key, flags); err != nil {
		return fmt.Errorf("setting watch name %q: %w", n, err)
	}
	s.filterNames[n] = true
	return s.writeWatchFilter()
}

// pathHash is path_base's component hash in bpf/sensor.bpf.c.
func pathHash(component string) uint32 {
	var h uint32
	for i := range len(component) {
		h = h*31 + uint32(component[i])
	}
	return h & 0xffff
}

// watchFilter is struct watch_filter: the hash bits of every watched file
// name and of every watched prefix's first component.
type watchFilter struct {
	Names     [1024 / 64]uint64
	Firsts    [256 / 64]uint64
	AllFirsts uint32
	Pad       uint32
}

func buildWatchFilter(prefixes, names map[string]bool) watchFilter {
	var f watchFilter
	set := func(bits []uint64, h uint32) {
		bit := h % uint32(len(bits)*64)
		bits[bit/64] |= 1 << (bit % 64)
	}
	for n := range names {
		set(f.Names[:], pathHash(n))
	}
	for p := range prefixes {
		first, _, complete := strings.Cut(strings.TrimPrefix(p, "/"), "/")
		if !complete { // "/e" or "/etc": the path's first component may run on
			f.AllFirsts = 1
			continue
		}
		set(f.Firsts[:], pathHash(first))
	}
	return f
}

// writeWatchFilter rewrites the kernel's watch filter from the watch lists.
func (s *Sensor) writeWatchFilter() error {
	f := buildWatchFilter(s.filterPrefixes, s.filterNames)
	if err := s.objs.WatchFilter.Put(uint32(0), f); err != nil {
		return fmt.Errorf("writing the watch filter: %w", err)
	}
	return nil
}

// EnforceCgroup puts a container's cgroup under (or out of) the kill policy.
func (s *Sensor) EnforceCgroup(cgroupID uint64, on bool) error {
	if on {
		if err := s.objs.EnforcedCgroups.Put(cgroupID, uint8(1)); err != nil {
			return fmt.Errorf("enforcing cgroup %d: %w", cgroupID, err)
		}
		return nil
	}
	if err := s.objs.EnforcedCgroups.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("releasing cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// SetEnforcedPrefixes replaces the cgroup path prefixes (e.g. "/docker/")
// whose new cgroups the kernel enforces at mkdir, before their first process
// runs and before user space has classified them.
func (s *Sensor) SetEnforcedPrefixes(prefixes []string) error {
	s.enforceMu.Lock()
	defer s.enforceMu.Unlock()
	keys := make([]sensorPrefixKey, 0, len(prefixes))
	for _, p := range prefixes {
		key, err := prefixKey(p)
		if err != nil {
			return fmt.Errorf("enforced cgroup prefix: %w", err)
		}
		keys = append(keys, key)
	}
	for _, old := range s.enforcedPrefixes {
		if !slices.Contains(prefixes, old) {
			key, _ := prefixKey(old)
			if err := s.objs.EnforcePrefixes.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("removing enforced cgroup prefix %q: %w", old, err)
			}
		}
	}
	s.enforcedPrefixes = nil
	for i, key := range keys {
		if err := s.objs.EnforcePrefixes.Put(key, uint8(1)); err != nil {
			return fmt.Errorf("adding enforced cgroup prefix %q: %w", prefixes[i], err)
		}
		s.enforcedPrefixes = append(s.enforcedPrefixes, prefixes[i])
	}
	return nil
}
