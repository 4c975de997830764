// Command cagewatch-bench measures what cagewatch costs on this machine and prints
// one table (`make bench`): per-syscall overhead from the kernel's own BPF run-time
// statistics and by wall clock against an empty program and bpftrace, a
// syscall-heavy workload with and without the agent, sampling time, agent CPU and
// memory at 1,000 containers, scoring throughput and event throughput. Variants
// run interleaved and each figure is the median of its repetitions. It needs root.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

type options struct {
	agent      string // the cagewatch binary
	out        string // directory for bench.json
	reps       int
	calls      int // getppid calls per measurement
	smoke      bool
	containers int
	only       string // comma-separated step names; empty: all
}

// row is one line of the table; the JSON copy keeps the same fields.
type row struct {
	Section string  `json:"section"`
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Note    string  `json:"note,omitempty"`
	Target  string  `json:"target,omitempty"`
}

type report struct {
	Time    time.Time `json:"time"`
	Kernel  string    `json:"kernel"`
	CPUs    int       `json:"cpus"`
	Reps    int       `json:"repetitions"`
	Rows    []row     `json:"rows"`
	Skipped []string  `json:"skipped,omitempty"`
}

func (r *report) add(section, name string, value float64, unit, note, target string) {
	r.Rows = append(r.Rows, row{Section: section, Name: name, Value: value, Unit: unit, Note: note, Target: target})
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childCommand {
		os.Exit(runChild(os.Args[2:]))
	}
	var o options
	flag.StringVar(&o.agent, "agent", "bin/cagewatch", "the cagewatch binary to run as the agent")
	flag.StringVar(&o.out, "out", "bench/out", "directory for the machine-readable copy (bench.json)")
	flag.IntVar(&o.reps, "reps", 7, "repetitions of every interleaved measurement (median reported)")
	flag.IntVar(&o.calls, "calls", 1_000_000, "getppid calls per overhead measurement")
	flag.IntVar(&o.containers, "containers", 1000, "containers for the agent CPU and memory measurement")
	flag.BoolVar(&o.smoke, "smoke", false, "tiny sizes: checks the harness runs, figures mean little")
	flag.StringVar(&o.only, "only", "", "run only these steps (comma-separated): overhead, sampling, scale, scoring, events, order")
	flag.Parse()
	if o.smoke {
		o.reps, o.calls, o.containers = 2, 20_000, 20
	}
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cagewatch-bench:", err)
		os.Exit(1)
	}
}

func run(o options, stdout io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (BPF programs, cgroups)")
	}
	if _, err := os.Stat(o.agent); err != nil {
		return fmt.Errorf("agent binary: %w (run make build)", err)
	}
	agent, err := filepath.Abs(o.agent)
	if err != nil {
		return err
	}
	o.agent = agent
	r := &report{Time: time.Now().UTC(), Kernel: kernelRelease(), CPUs: runtime.NumCPU(), Reps: o.reps}
	start := time.Now()
	steps := []struct {
		name string
		fn   func(options, *report) error
	}{
		{"overhead", measureOverhead},
		{"sampling", measureSampling},
		{"scoring", measureScoring},
		{"scale", measureAgentAtScale},
		{"events", measureEvents},
		{"order", measureOrder},
	}
	for _, s := range steps {
		if o.only != "" && !slices.Contains(strings.Split(o.only, ","), s.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "measuring %s…\n", s.name)
		if err := s.fn(o, r); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	printTable(stdout, r, time.Since(start))
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(o.out, "bench.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nmachine-readable copy: %s\n", path)
	return nil
}

func printTable(w io.Writer, r *report, took time.Duration) {
	fmt.Fprintf(w, "cagewatch bench — kernel %s, %d CPUs, median of %d interleaved repetitions, %s\n\n",
		r.Kernel, r.CPUs, r.Reps, took.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := ""
	for _, row := range r.Rows {
		if row.Section != section {
			if section != "" {
				fmt.Fprintln(tw, "\t\t\t\t")
			}
			section = row.Section
			fmt.Fprintf(tw, "%s\t\t\t\t\n", strings.ToUpper(section))
		}
		fmt.Fprintf(tw, "  %s\t%s %s\t%s\t%s\n", row.Name, formatValue(row.Value), row.Unit, row.Target, row.Note)
	}
	_ = tw.Flush()
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "skipped: %s\n", s)
	}
}

func formatValue(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000 || v <= -1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10 || v <= -10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
