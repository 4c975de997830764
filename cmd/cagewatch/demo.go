package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/container"
)

// demoSteady is the demo's benign workload: the same small amount of work every
// 100ms (reads of a file, a sleep).
const demoSteady = `while :; do i=0; while [ $i -lt 20 ]; do read l < /etc/hostname; i=$((i+1)); done; sleep 0.1; done`

// demoEscape tries harmless escape steps: read /etc/shadow, unshare a user
// namespace, write a file named release_agent (a plain temp file).
const demoEscape = `cat /etc/shadow >/dev/null; unshare -U true; echo payload > "$DEMO_DIR/release_agent"; sleep 1`

// demoChange is a behaviour change: a burst of copying it never did while learning.
const demoChange = `end=$(($(date +%s)+4)); while [ $(date +%s) -lt $end ]; do dd if=/dev/zero of=/dev/null bs=1k count=300 2>/dev/null; done`

func newDemoCommand(g *globalOptions) *cobra.Command {
	var learnTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Two-minute tour on this machine, no Docker needed: learn a workload, catch an escape attempt and a behaviour change",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), g, learnTimeout)
		},
	}
	cmd.Flags().DurationVar(&learnTimeout, "learn-timeout", 90*time.Second, "give up if the workload is not learned by then")
	return cmd
}

func runDemo(ctx context.Context, g *globalOptions, learnTimeout time.Duration) error {
	if os.Geteuid() != 0 {
		return errors.New("demo: needs root (it loads BPF programs and creates cgroups)")
	}
	out := g.stdout
	log, err := g.logger()
	if err != nil {
		return err
	}
	cgfs, err := container.OpenCgroupFS("")
	if err != nil {
		return err
	}
	mount := cgfs.Mount
	cgfs.Close()
	tmp, err := os.MkdirTemp("", "cagewatch-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	parent := fmt.Sprintf("cagewatch-demo-%d", os.Getpid())
	parentDir := filepath.Join(mount, parent)
	defer removeCgroupTree(parentDir)

	v, err := newViper("")
	if err != nil {
		return err
	}
	cfg, err := loadConfig(v)
	if err != nil {
		return err
	}
	const image = "demo/web:1"
	cfg.Mode, cfg.Window, cfg.Store, cfg.MetricsListen = profiler.ModeAuto, time.Second, filepath.Join(tmp, "cagewatch.db"), ""
	cfg.Learning.IgnoreFirst, cfg.Learning.MinWindows, cfg.Learning.StableWindows = 2*time.Second, 15, 5
	cfg.Alerts.DedupInterval = 30 * time.Second
	cfg.Containers.Static = []container.StaticRule{{Cgroup: "/" + parent + "/*", Image: image}}

	fmt.Fprintf(out, "cagewatch demo: a workload in cgroup /%s/web is treated as container \"web\" of image %s.\n", parent, image)
	fmt.Fprintln(out, "1. Learning how it behaves (one window per second)...")
	var workloads []*exec.Cmd
	defer func() {
		for _, w := range workloads {
			_ = w.Process.Kill()
			_ = w.Wait()
		}
	}()
	start := func(name, script string) error {
		c, err := startScriptInCgroup(filepath.Join(parentDir, name), script, "DEMO_DIR="+tmp)
		if err == nil {
			workloads = append(workloads, c)
		}
		return err
	}
	if err := start("web", demoSteady); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	alertsOut := &demoAlertPrinter{w: out}
	libc := make(chan *profiler.Library, 1)
	done := make(chan error, 1)
	go func() {
		done <- profiler.Run(ctx, cfg, profiler.RunOptions{Log: log, AlertOut: alertsOut, Version: version,
			Ready: func(l *profiler.Library) { libc <- l }})
	}()
	var lib *profiler.Library
	select {
	case lib = <-libc:
	case err := <-done:
		return err
	}

	deadline := time.Now().Add(learnTimeout)
	for stable := false; !stable; {
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			return err
		case <-time.After(time.Second):
		}
		st, err := lib.Status(ctx)
		if err != nil {
			return err
		}
		for _, im := range st.Images {
			if im.Image == image {
				fmt.Fprintf(out, "   %s: %s — %s\n", im.Image, im.State, im.Progress)
				stable = im.State == model.StateStable
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s not learned within %v", image, learnTimeout)
		}
	}
	fmt.Fprintln(out, "   learned: from now on this image's windows are scored and hard rules apply.")

	fmt.Fprintln(out, "2. An intruder in a second container of the image tries escape steps (read /etc/shadow, unshare, write release_agent):")
	if err := start("intruder", demoEscape); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	fmt.Fprintln(out, "3. The web container changes behaviour (a burst of copying it never did):")
	if err := start("web", demoChange); err != nil {
		return err
	}
	time.Sleep(6 * time.Second)
	cancel()
	if err := <-done; err != nil {
		return err
	}
	n := alertsOut.count()
	fmt.Fprintf(out, "Done: %d alerts. Cleaned up the cgroups, workloads and the temporary store.\n", n)
	if n == 0 {
		return errors.New("demo: no alert was raised")
	}
	return nil
}

// startScriptInCgroup runs sh -c script directly inside a (created) cgroup.
func startScriptInCgroup(dir, script string, env ...string) (*exec.Cmd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	c := exec.Command("/bin/sh", "-c", script)
	c.Env = append(os.Environ(), env...)
	c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("starting workload in %s: %w", dir, err)
	}
	return c, nil
}

// removeCgroupTree removes a cgroup and its children once their processes exit.
func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	for range 100 {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// demoAlertPrinter turns the alert JSON lines into readable explanations.
type demoAlertPrinter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	n   int
}

func (p *demoAlertPrinter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		line := p.buf[:i]
		p.buf = p.buf[i+1:]
		var a struct {
			Rule         string         `json:"rule"`
			Priority     string         `json:"priority"`
			Output       string         `json:"output"`
			OutputFields map[string]any `json:"output_fields"`
		}
		if json.Unmarshal(line, &a) != nil {
			continue
		}
		p.n++
		fmt.Fprintf(p.w, "   ALERT [%s] %s\n      %s\n", a.Priority, a.Rule, a.Output)
		if action, ok := a.OutputFields["cagewatch.action"]; ok {
			fmt.Fprintf(p.w, "      action: %v\n", action)
		}
	}
}

func (p *demoAlertPrinter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
