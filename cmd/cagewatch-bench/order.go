package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// serveRequests is a server-like child: RATE requests a second for SECONDS,
// each an open, read and close of a small file and a few getppid calls, with
// a sleep between requests as a server waits for its next one.
func serveRequests(rate int, d time.Duration) {
	buf := make([]byte, 64)
	interval := time.Second / time.Duration(max(rate, 1))
	next := time.Now()
	for end := next.Add(d); time.Now().Before(end); {
		if fd, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0); err == nil {
			_, _ = syscall.Read(fd, buf)
			_ = syscall.Close(fd)
		}
		for range 5 {
			syscall.Getppid()
		}
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
}

// measureOrder measures how much the kernel's reset of a thread's previous
// syscall at each context switch shapes the live order view: the share of
// syscalls counted with a predecessor, at one load and at four times it, and
// the distinct grams a window of that workload fills in a slot's table.
func measureOrder(o options, r *report) error {
	const section = "order view (4-grams) under load"
	s, err := sensor.Load(sensor.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	procs, rate, seconds := 4, 250, 5.0
	if o.smoke {
		seconds = 1
	}
	for _, load := range []int{1, 4} {
		f, err := startFleetIn(fmt.Sprintf("order-%dx", load), procs, "serve", strconv.Itoa(rate*load), strconv.FormatFloat(seconds, 'f', -1, 64))
		if err != nil {
			return err
		}
		sampler := sensor.NewSampler(s, time.Now(), nil)
		if _, _, err := sampler.Sample(time.Now()); err != nil {
			f.stop()
			return err
		}
		time.Sleep(time.Duration(seconds * 0.8 * float64(time.Second)))
		deltas, _, err := sampler.Sample(time.Now())
		id := f.cgroupID
		f.stop()
		if err != nil {
			return err
		}
		var w model.Window
		for _, d := range deltas {
			if d.CgroupID == id {
				w = d.Window(model.Container{})
			}
		}
		if w.Total() == 0 || len(w.Grams) == 0 {
			return fmt.Errorf("no counts or grams for the %dx workload's cgroup", load)
		}
		var first, total uint64
		for g, c := range w.Grams {
			total += c
			if len(model.GramNames(g)) == 1 {
				first += c
			}
		}
		r.add(section, fmt.Sprintf("syscalls with a predecessor at %dx load (%d req/s)", load, procs*rate*load),
			100*float64(total-first)/float64(total), "%", fmt.Sprintf("%d syscalls, %d distinct grams", total, len(w.Grams)), "")
	}
	r.add(section, "gram table per slot", float64(sensor.GramTableEntries), "entries", "full probe runs count in grams_lost", "")
	return nil
}

// startFleetIn starts n children in one cgroup under the bench's parent.
func startFleetIn(name string, n int, args ...string) (*oneCgroup, error) {
	root, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	dir := fmt.Sprintf("%s/%s/%s", root, benchCgroupParent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, err
	}
	f := &oneCgroup{dir: dir, cgroupID: st.Ino}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for range n {
		cmd, err := startChild(self, dir, nil, args...)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.procs = append(f.procs, cmd)
	}
	return f, nil
}

type oneCgroup struct {
	dir      string
	cgroupID uint64
	procs    []*exec.Cmd
}

func (f *oneCgroup) stop() {
	for _, p := range f.procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	for range 50 {
		if os.Remove(f.dir) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
