package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cagewatch/cagewatch/profiler/container"
	"github.com/cagewatch/cagewatch/profiler/sensor/sensorbench"
)

// benchCgroupParent holds the cgroups of the harness's fake containers; the agent
// is told they are containers of one image with a static rule.
const (
	benchCgroupParent = "cagewatch-bench"
	benchImage        = "bench/app:1"
)

// agentProc is a running `cagewatch run` with its own store, socket and metrics port.
type agentProc struct {
	cmd     *exec.Cmd
	dir     string
	metrics string
	logs    bytes.Buffer
	minProg uint32 // programs loaded before it, to find its own
}

// agentReadyWithin is how long an agent on a quiet machine may take to load
// its sensor and answer on its metrics port.
const agentReadyWithin = 30 * time.Second

// startAgent runs the agent with a config of its own and waits, at most
// readyWithin, until its sensor is attached and its metrics answer.
func startAgent(o options, window, readyWithin time.Duration) (*agentProc, error) {
	dir, err := os.MkdirTemp("", "cagewatch-bench-agent-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	a := &agentProc{dir: dir, metrics: fmt.Sprintf("127.0.0.1:%d", port)}
	config := fmt.Sprintf(`mode: auto
window: %s
store: %s
metrics:
  listen: %s
alerts:
  file: %s
containers:
  static:
    - cgroup: "/%s/*"
      image: %q
`, window, filepath.Join(dir, "cagewatch.db"), a.metrics, filepath.Join(dir, "alerts.json"), benchCgroupParent, benchImage)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	if a.minProg, err = sensorbench.HighestProgramID(); err != nil {
		return nil, err
	}
	a.cmd = exec.Command(o.agent, "--config", cfgPath, "--log-level", "warn", "run")
	a.cmd.Stdout = &a.logs
	a.cmd.Stderr = &a.logs
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting agent: %w", err)
	}
	deadline := time.Now().Add(readyWithin)
	for time.Now().Before(deadline) {
		st, err := sensorbench.LoadedProgramStats(sensorbench.SensorProgramName, false, a.minProg)
		if err == nil && !st.Missing {
			if _, err := a.metric("cagewatch_build_info"); err == nil {
				return a, nil
			}
		}
		if a.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = a.stop()
	return nil, fmt.Errorf("agent not ready within %s:\n%s", readyWithin, a.logs.String())
}

func (a *agentProc) stop() error {
	if a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		kill := time.AfterFunc(15*time.Second, func() { _ = a.cmd.Process.Kill() })
		err := a.cmd.Wait()
		kill.Stop()
		var exit *exec.ExitError // an exit status after a signal is no news
		if err != nil && !errors.As(err, &exit) {
			return err
		}
	}
	return os.RemoveAll(a.dir)
}

// programStats reads the run statistics of the agent's program with that name.
func (a *agentProc) programStats(name string) (sensorbench.RunStats, error) {
	st, err := sensorbench.LoadedProgramStats(name, false, a.minProg)
	if err == nil && st.Missing {
		err = fmt.Errorf("agent program %s not loaded", name)
	}
	return st, err
}

// perSyscallStats sums the agent's programs on the syscall path: sys_enter
// runs on every syscall, and the return-side programs add their time (whether
// they run on every return or only on the opens').
func (a *agentProc) perSyscallStats() (sensorbench.RunStats, error) {
	total, err := a.programStats(sensorbench.SensorProgramName)
	if err != nil {
		return total, err
	}
	for _, name := range sensorbench.ExitProgramNames {
		st, err := sensorbench.LoadedProgramStats(name, name != "sys_exit", a.minProg) // the others are tracepoint programs
		if err != nil {
			return total, err
		}
		total.Nanos += st.Nanos // a program not loaded adds nothing
	}
	return total, nil
}

// metric reads one unlabelled series (or the sum of a labelled one) from /metrics.
func (a *agentProc) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("metric %s not exported", name)
	}
	return sum, sc.Err()
}

// cpuTime is the agent's user plus system CPU time so far.
func (a *agentProc) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat: %q", rest)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc stat: %q", rest)
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// agentMemory is the agent's resident memory. VmRSS counts the pages of the
// BPF maps it has mapped (the histogram slots in use, the ring buffer): kernel
// memory the maps hold whether mapped or not, sized by sensor.histogram_slots
// and reported in the kernel memory row. So they are counted apart.
type agentMemory struct {
	rss, peak uint64 // VmRSS and VmHWM
	bpfMaps   uint64 // resident pages of BPF map mappings
}

// own is the memory the agent's process adds: VmRSS without the mapped maps.
func (m agentMemory) own() uint64 { return m.rss - min(m.bpfMaps, m.rss) }

// memory reads the agent's VmRSS, VmHWM and mapped BPF map pages, in bytes.
func (a *agentProc) memory() (agentMemory, error) {
	var m agentMemory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.peak = kb << 10
		}
	}
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", a.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	m.bpfMaps = bpfMapResident(string(smaps))
	return m, nil
}

// bpfMapResident sums the Rss of the mappings /proc/PID/smaps names
// anon_inode:bpf-map.
func bpfMapResident(smaps string) uint64 {
	var total uint64
	inMap := false
	for _, line := range strings.Split(smaps, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			inMap = len(f) >= 6 && f[5] == "anon_inode:bpf-map"
		case inMap && len(f) >= 2 && f[0] == "Rss:":
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// fleet is a set of child processes of this binary, each in its own cgroup under
// benchCgroupParent, which the agent sees as containers.
type fleet struct {
	parent string
	procs  []*exec.Cmd
	dirs   []string
	out    []*bytes.Buffer // each child's stdout
}

// startFleet starts n children running `child mode args...` in cgroups named prefix-i.
func startFleet(n int, prefix string, args ...string) (*fleet, error) {
	root, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	f := &fleet{parent: filepath.Join(root, benchCgroupParent)}
	if err := os.MkdirAll(f.parent, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", f.parent, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for i := range n {
		dir := filepath.Join(f.parent, fmt.Sprintf("%s-%d", prefix, i))
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			f.stop()
			return nil, err
		}
		f.dirs = append(f.dirs, dir)
		out := new(bytes.Buffer)
		f.out = append(f.out, out)
		cmd, err := startChild(self, dir, out, args...)
		if err != nil {
			f.stop()
			return nil, fmt.Errorf("starting child %d: %w", i, err)
		}
		f.procs = append(f.procs, cmd)
	}
	return f, nil
}

// startChild runs `self child args...` in the cgroup dir from its first instruction.
func startChild(self, dir string, stdout io.Writer, args ...string) (*exec.Cmd, error) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = syscall.Close(fd) }()
	cmd := exec.Command(self, append([]string{childCommand}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	cmd.Stderr = os.Stderr
	cmd.Stdout = stdout
	return cmd, cmd.Start()
}

// cgroup2Root is where cgroup v2 is mounted (/sys/fs/cgroup/unified in hybrid
// mode, /sys/fs/cgroup on unified hosts), so the static rule matches the fleet.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	root, err := container.FindCgroup2Mount(f)
	if err != nil {
		return "", fmt.Errorf("finding the cgroup v2 mount: %w", err)
	}
	return root, nil
}

// wait waits for every child to exit by itself.
func (f *fleet) wait() error {
	var first error
	for _, p := range f.procs {
		if err := p.Wait(); err != nil && first == nil {
			first = err
		}
	}
	f.procs = nil
	return first
}

func (f *fleet) stop() {
	for _, p := range f.procs {
		_ = p.Process.Kill()
	}
	for _, p := range f.procs {
		_ = p.Wait() // killed: the status is ours
	}
	f.procs = nil
	for _, d := range f.dirs {
		for range 50 {
			if err := os.Remove(d); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.Remove(f.parent)
}
