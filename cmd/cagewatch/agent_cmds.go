package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
)

// startAgent loads the validated config and the sensor.
func (g *globalOptions) startAgent(cmd *cobra.Command, bind map[string]string, window time.Duration) (*profiler.Agent, *slog.Logger, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	v, err := g.viper(cmd.Flags(), bind)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(v)
	if err != nil {
		return nil, nil, err
	}
	if window > 0 {
		cfg.Window = window
	}
	a, err := profiler.New(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	log.Info("sensor attached", "mode", cfg.Mode, "window", cfg.Window)
	return a, log, nil
}

func newRunCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: sample syscall windows per container, learn baselines, read security events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.runAgent(cmd)
		},
	}
	cmd.Flags().String("mode", "", "learn, detect, enforce or auto (config key mode)")
	cmd.Flags().String("window", "", "sampling interval, e.g. 10s (config key window)")
	cmd.Flags().String("store", "", "bbolt file for baselines (config key store)")
	cmd.Flags().String("record", "", "append every container window to this JSON-lines file (config key record.file)")
	return cmd
}

// runAgent reads the config and runs the agent (profiler.Run) until a signal
// stops it; SIGHUP reloads the rules.
func (g *globalOptions) runAgent(cmd *cobra.Command) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	v, err := g.viper(cmd.Flags(), map[string]string{"mode": keyMode, "window": keyWindow, "store": keyStore, "record": keyRecordFile})
	if err != nil {
		return err
	}
	cfg, err := loadConfig(v)
	if err != nil {
		return err
	}
	return profiler.Run(cmd.Context(), cfg, profiler.RunOptions{Log: log, AlertOut: g.stdout, Version: version,
		Reload: notifyHUP(cmd.Context())})
}

// notifyHUP turns SIGHUP into rule-reload requests until ctx is done.
func notifyHUP(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{})
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return reload
}

// topRow is one line of `top --json`.
type topRow struct {
	CgroupID      uint64            `json:"cgroup_id"`
	CgroupPath    string            `json:"cgroup_path"`
	ContainerID   string            `json:"container_id"`
	ContainerName string            `json:"container_name"`
	Image         string            `json:"image"`
	Runtime       model.Runtime     `json:"runtime"`
	Seconds       float64           `json:"seconds"`
	Syscalls      map[string]uint64 `json:"syscalls"`
	total         uint64
}

func topRows(ws []model.Window) []topRow {
	rows := make([]topRow, 0, len(ws))
	for _, w := range ws {
		rows = append(rows, topRow{
			CgroupID: w.CgroupID, CgroupPath: w.Container.CgroupPath,
			ContainerID: w.Container.ID, ContainerName: w.Container.Name,
			Image: w.Container.ImageRef(), Runtime: w.Container.Runtime,
			Seconds: w.Duration.Seconds(), Syscalls: w.Counts, total: w.Total(),
		})
	}
	slices.SortFunc(rows, func(a, b topRow) int {
		return cmp.Or(cmp.Compare(b.total, a.total), cmp.Compare(a.CgroupID, b.CgroupID))
	})
	return rows
}

func newTopCommand(g *globalOptions) *cobra.Command {
	var once, asJSON bool
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live per-container syscall rates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window <= 0 {
				return fmt.Errorf("--window must be positive, got %v", window)
			}
			a, _, err := g.startAgent(cmd, nil, window)
			if err != nil {
				return err
			}
			defer a.Close()
			print := func(ws []model.Window) error {
				rows := topRows(ws)
				if asJSON {
					return json.NewEncoder(g.stdout).Encode(rows)
				}
				return printTop(g.stdout, rows, !once)
			}
			if once {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(window):
				}
				ws, _, err := a.Sample(cmd.Context(), time.Now())
				if err != nil {
					return err
				}
				return print(ws)
			}
			ctx, cancel := context.WithCancelCause(cmd.Context())
			defer cancel(nil)
			err = a.Run(ctx, profiler.Handlers{Windows: func(ws []model.Window) {
				if err := print(ws); err != nil {
					cancel(err)
				}
			}})
			if cause := context.Cause(ctx); err == nil && cause != nil && cause != cmd.Context().Err() {
				return cause
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "print one window and exit")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one array per window)")
	cmd.Flags().DurationVar(&window, "window", time.Second, "sampling interval")
	return cmd
}

func printTop(w io.Writer, rows []topRow, clear bool) error {
	if clear {
		fmt.Fprint(w, "\033[H\033[2J")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CONTAINER\tIMAGE\tCGROUP\tSYSCALLS/s\tTOP SYSCALLS\n")
	for i, r := range rows {
		if i == 25 {
			break
		}
		name := r.ContainerName
		if name == "" {
			name = profiler.ContainerLabel(model.Container{ID: r.ContainerID, Runtime: r.Runtime})
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\n", name, dash(r.Image), r.CgroupPath, float64(r.total)/r.Seconds, topSyscalls(r.Syscalls, r.Seconds, 4))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func topSyscalls(counts map[string]uint64, seconds float64, n int) string {
	names := make([]string, 0, len(counts))
	for name := range counts {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b)) })
	var parts []string
	for _, name := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s:%.0f", name, float64(counts[name])/seconds))
	}
	return strings.Join(parts, " ")
}

func newEventsCommand(g *globalOptions) *cobra.Command {
	var asJSON, containersOnly bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream decoded security events (exec, namespaces, mounts, sensitive opens, …)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, _, err := g.startAgent(cmd, nil, 0)
			if err != nil {
				return err
			}
			defer a.Close()
			enc := json.NewEncoder(g.stdout)
			return a.Run(cmd.Context(), profiler.Handlers{Event: func(e model.Event) {
				if containersOnly && e.Container.IsHost() {
					return
				}
				if asJSON {
					_ = enc.Encode(e)
					return
				}
				fmt.Fprintf(g.stdout, "%s %-14s %-24s %s[%d] %s\n", e.Time.Format("15:04:05.000"),
					profiler.ContainerLabel(e.Container), dash(e.Container.ImageRef()), e.Comm, e.PID, e.Describe())
			}})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.Flags().BoolVar(&containersOnly, "containers-only", false, "hide host processes' events")
	return cmd
}
