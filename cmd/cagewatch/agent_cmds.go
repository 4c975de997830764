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
	"golang.org/x/sync/errgroup"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/alerts"
	"github.com/cagewatch/cagewatch/profiler/container"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/metrics"
	"github.com/cagewatch/cagewatch/store"
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

// runAgent wires the sensor, the learner, the detector, the alert sinks and the
// control socket for `run`.
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
	return runPipeline(cmd.Context(), cfg, log, g.stdout, nil)
}

// runPipeline runs the whole agent until ctx is done. Alerts go to alertOut as
// JSON lines; ready, when set, gets the baseline library once everything runs.
func runPipeline(ctx context.Context, cfg profiler.Config, log *slog.Logger, alertOut io.Writer, ready func(*profiler.Library)) error {
	rules, err := profiler.LoadRules(cfg.Rules)
	if err != nil {
		return err
	}
	out, err := newDispatcher(cfg.Alerts, alertOut, log)
	if err != nil {
		return err
	}
	defer out.Close()
	st, err := store.Open(cfg.Store, time.Second)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "store", cfg.Store, "err", err)
		}
	}()
	lib, err := profiler.NewLibrary(st, cfg.Learning.LearnConfig, cfg.Mode, true)
	if err != nil {
		return err
	}
	trip := profiler.NewTripLog()
	learner := profiler.NewLearner(lib, cfg.Mode, cfg.Learning, trip, log)
	a, err := profiler.New(cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	hostname, _ := os.Hostname()
	det, err := profiler.NewDetector(profiler.DetectorConfig{Mode: cfg.Mode, Budget: cfg.Budget, Window: cfg.Window, Hostname: hostname},
		rules, lib, trip, out, a.Sensor(), a.Cgroups(), log)
	if err != nil {
		return err
	}
	if cfg.Mode == profiler.ModeEnforce {
		var ids []uint64
		for _, dir := range container.ContainerParents(cfg.Containers.Static) {
			if id, err := a.Cgroups().IDOf(dir); err == nil {
				ids = append(ids, id)
			}
		}
		if err := a.Sensor().SetEnforcedAncestors(ids); err != nil {
			return err
		}
	}
	var rec *profiler.Recorder
	if cfg.RecordFile != "" {
		if rec, err = profiler.OpenRecorder(cfg.RecordFile, cfg.RecordMaxBytes); err != nil {
			return err
		}
		defer func() {
			if err := rec.Close(); err != nil {
				log.Error("closing record file", "file", cfg.RecordFile, "err", err)
			}
		}()
	}
	m := metrics.New(&metricsSource{lib: lib, agent: a, out: out}, version)
	det.Scored = m.ObserveScore
	det.InStartup = learner.InStartup
	out.OnSend(m.ObserveAlert)
	log.Info("agent started", "mode", cfg.Mode, "window", cfg.Window, "store", cfg.Store, "rules", len(rules.Rules))

	g2, ctx := errgroup.WithContext(ctx)
	if ready != nil {
		ready(lib)
	}
	if cfg.MetricsListen != "" {
		g2.Go(func() error { return metrics.Serve(ctx, cfg.MetricsListen, m.Registry(), log) })
	}
	g2.Go(func() error { return control.Serve(ctx, control.SocketPath(cfg.Store), lib, log) })
	g2.Go(func() error { return reloadRulesOnHUP(ctx, cfg.Rules, det, log) })
	g2.Go(func() error {
		return a.Run(ctx, profiler.Handlers{
			Windows: func(ws []model.Window) {
				det.EnforceWindows(ws)
				if rec != nil {
					if err := rec.Record(ws); err != nil {
						log.Error("recording windows", "file", cfg.RecordFile, "err", err)
					}
				}
				m.ObserveWindows(ws, lib.State)
				det.OnWindows(ws)
				res, err := learner.LearnWindows(ws)
				if err != nil {
					log.Error("persisting baselines", "store", cfg.Store, "err", err)
				}
				logWindows(log, a, ws, res)
			},
			Event: func(e model.Event) {
				det.OnEvent(e)
				if e.Kind == model.EventExec {
					learner.ObserveExec(e)
				}
				if !e.Container.IsHost() && e.Kind != model.EventExec {
					log.Debug("event", "syscall", e.Syscall, "detail", e.Describe(),
						"container", containerLabel(e.Container), "image", e.Container.ImageRef(), "comm", e.Comm, "pid", e.PID)
				}
			},
			Sampled: m.ObserveSample,
			Removed: func(id uint64) {
				trip.Forget(id)
				learner.Forget(id)
				det.Forget(id)
				m.ForgetCgroup(id)
			},
		})
	})
	err = g2.Wait()
	log.Info("stopped", "alerts_sent", out.Sent(), "alerts_suppressed", out.Suppressed())
	return err
}

// metricsSource feeds the values Prometheus reads at scrape time.
type metricsSource struct {
	lib   *profiler.Library
	agent *profiler.Agent
	out   *alerts.Dispatcher
}

func (s *metricsSource) Baselines() []metrics.BaselineInfo {
	var out []metrics.BaselineInfo
	for _, b := range s.lib.Summaries() {
		out = append(out, metrics.BaselineInfo{Image: b.Image, State: b.State, Windows: b.Windows, Syscalls: b.Syscalls})
	}
	return out
}

func (s *metricsSource) Sensor() metrics.SensorInfo {
	st, _ := s.agent.Stats()
	return metrics.SensorInfo{Events: st.Events, EventsLost: st.EventsLost, Killed: st.Killed, Undecodable: st.Undecodable,
		HistFull: st.HistFull, AlertsSuppressed: s.out.Suppressed()}
}

func (s *metricsSource) SinkDrops() map[string]uint64 { return s.out.Drops() }

// newDispatcher builds the alert outputs: stdout always, a file and a webhook
// when configured.
func newDispatcher(cfg profiler.AlertsConfig, stdout io.Writer, log *slog.Logger) (*alerts.Dispatcher, error) {
	sinks := []alerts.Sink{alerts.NewWriter("stdout", stdout)}
	if cfg.File != "" {
		f, err := alerts.OpenFile(cfg.File)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, f)
	}
	if cfg.WebhookURL != "" {
		sinks = append(sinks, alerts.NewWebhook(alerts.WebhookConfig{URL: cfg.WebhookURL, QueueSize: cfg.WebhookQueue,
			MaxAttempts: cfg.WebhookAttempts, Backoff: cfg.WebhookBackoff}, log))
	}
	return alerts.NewDispatcher(cfg.DedupInterval, nil, sinks...), nil
}

// reloadRulesOnHUP reloads the rules file on SIGHUP; a broken file is refused and
// the rules in force stay.
func reloadRulesOnHUP(ctx context.Context, path string, det *profiler.Detector, log *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			rs, err := profiler.LoadRules(path)
			if err == nil {
				err = det.SetRules(rs)
			}
			if err != nil {
				log.Error("rules reload refused; the previous rules stay active", "err", err)
				continue
			}
			log.Info("rules reloaded", "rules", len(rs.Rules))
		}
	}
}

func logWindows(log *slog.Logger, a *profiler.Agent, ws []model.Window, res profiler.LearnResult) {
	containers := 0
	for _, w := range ws {
		if !w.Container.IsHost() {
			containers++
		}
	}
	st, err := a.Stats()
	if err != nil {
		log.Warn("reading sensor stats", "err", err)
	}
	log.Info("window", "cgroups", len(ws), "containers", containers, "learned", res.Learned, "startup", res.Startup,
		"poisoned", res.Poisoned, "events", st.Events, "events_lost", st.EventsLost, "hist_full", st.HistFull,
		"tracked_cgroups", st.TrackedCgroups)
}

func containerLabel(c model.Container) string {
	switch {
	case c.IsHost():
		return "host"
	case c.Name != "":
		return c.Name
	case len(c.ID) > 12:
		return c.ID[:12]
	case c.ID != "":
		return c.ID
	}
	return string(c.Runtime)
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
			name = containerLabel(model.Container{ID: r.ContainerID, Runtime: r.Runtime})
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
					containerLabel(e.Container), dash(e.Container.ImageRef()), e.Comm, e.PID, e.Describe())
			}})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.Flags().BoolVar(&containersOnly, "containers-only", false, "hide host processes' events")
	return cmd
}
