package profiler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/alerts"
	"github.com/cagewatch/cagewatch/profiler/container"
	"github.com/cagewatch/cagewatch/profiler/metrics"
)

// Source delivers resolved windows and events: the kernel sensor (Agent), or a
// test's fake.
type Source interface {
	Run(ctx context.Context, h Handlers) error
	Stats() (Stats, error)
}

// Deps connect the pipeline to the host. Run fills them from the loaded sensor;
// tests pass fakes.
type Deps struct {
	Source   Source
	Enforcer Enforcer      // the kernel's kill side; nil: nothing is killed
	Watch    Watcher       // the kernel's write filters, set from the rules; nil: none
	Cgroups  CgroupControl // freezing and cgroup ids; nil: nothing is frozen
	Library  *Library      // the baselines
	Images   *ImageRecords // inventories, vulnerability reports, alert counts; nil: none kept
	Sinks    []alerts.Sink // alert outputs besides the file and webhook of cfg.Alerts
	Hostname string
	Version  string
	Log      *slog.Logger
}

// Pipeline is the agent's stages, declared in one place:
//
//	window round: note first sightings (start-up) → enforcement →
//	              score (model.Verdict) → record (with the verdicts) → metrics → learn
//	event:        process table (exec) → enforcement (exec) → hard rules →
//	              exec learning
//	removal:      Tracker.Forget → lift enforcement → drop the score series
//
// Alerts go through one dispatcher (de-duplication, sinks, metrics).
type Pipeline struct {
	cfg Config
	log *slog.Logger
	src Source

	state       *Tracker
	lib         *Library
	rules       activeRules
	enforcement *Enforcement
	watch       Watcher
	events      *EventRules
	scorer      *WindowScorer
	learner     *Learner
	recorder    *Recorder // nil: not recording
	images      *ImageRecords
	metrics     *metrics.Metrics
	out         *alerts.Dispatcher
}

// NewPipeline builds the stages. Close releases the alert sinks and the record file.
func NewPipeline(cfg Config, rules *model.RuleSet, d Deps) (*Pipeline, error) {
	if d.Source == nil || d.Library == nil || rules == nil {
		return nil, errors.New("pipeline: a source, a baseline library and rules are required")
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{cfg: cfg, log: log, src: d.Source, state: NewTracker(), lib: d.Library, watch: d.Watch, images: d.Images}
	// The metrics read the dispatcher's counters at scrape time; the dispatcher
	// reports each sent alert to the metrics.
	msrc := &metricsSource{lib: d.Library, src: d.Source, images: d.Images}
	p.metrics = metrics.New(msrc, d.Version)
	onSend, enrich := p.metrics.ObserveAlert, func(*model.Alert) {}
	if d.Images != nil {
		onSend = func(a model.Alert) { p.metrics.ObserveAlert(a); d.Images.ObserveAlert(a) }
		enrich = d.Images.Enrich
	}
	out, err := newDispatcher(cfg.Alerts, d.Sinks, onSend, enrich, d.Hostname, log)
	if err != nil {
		return nil, err
	}
	p.out, msrc.out = out, out
	if cfg.RecordFile != "" {
		if p.recorder, err = OpenRecorder(cfg.RecordFile, cfg.RecordMaxBytes); err != nil {
			_ = p.Close()
			return nil, err
		}
	}
	p.enforcement = NewEnforcement(cfg.Mode, d.Enforcer, d.Cgroups, container.NewPathClassifier(cfg.Containers.Static),
		p.state, log)
	p.events = &EventRules{mode: cfg.Mode, hostname: d.Hostname, rules: &p.rules, lib: p.lib, state: p.state,
		out: p.out, enforcement: p.enforcement, log: log}
	p.scorer = &WindowScorer{mode: cfg.Mode, budget: cfg.Budget, window: cfg.Window, hostname: d.Hostname,
		rules: &p.rules, lib: p.lib, thresholds: model.NewThresholdCache(), state: p.state, out: p.out,
		enforcement: p.enforcement, metrics: p.metrics}
	p.learner = NewLearner(p.lib, cfg.Mode, cfg.Learning, p.state, log)
	if err := p.SetRules(rules); err != nil {
		_ = p.Close()
		return nil, err
	}
	if err := p.enforcement.Start(); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// Watcher is the sensor's write filter, which follows the rules.
type Watcher interface {
	SetWriteWatch(trees map[string][]string) error
}

// SetRules swaps the rule set (SIGHUP reload), the kernel's write filters and,
// in enforce mode, its kill policy. On error the rules in force stay. (Opened
// paths a new rule names are watched from the next start.)
func (p *Pipeline) SetRules(rs *model.RuleSet) error {
	if err := p.enforcement.SetRules(rs); err != nil {
		return err
	}
	if p.watch != nil {
		if err := p.watch.SetWriteWatch(rs.KernelWatch().Writes); err != nil {
			return err
		}
	}
	p.rules.Store(rs)
	return nil
}

// Metrics are the pipeline's instruments.
func (p *Pipeline) Metrics() *metrics.Metrics { return p.metrics }

// Run feeds the source's windows and events through the stages until ctx is done.
func (p *Pipeline) Run(ctx context.Context) error {
	return p.src.Run(ctx, Handlers{
		Windows: p.Windows,
		Event:   p.Event,
		Removed: p.Removed,
		Sampled: p.metrics.ObserveSample,
	})
}

// Windows runs one sampling round through the window stages.
func (p *Pipeline) Windows(ws []model.Window) {
	p.state.MarkLifecycle(ws, p.cfg.Learning.IgnoreFirst)
	p.enforcement.Windows(ws, p.state.NextRound())
	verdicts := p.scorer.Windows(ws)
	if p.recorder != nil {
		if err := p.recorder.Record(ws, verdicts); err != nil {
			p.log.Error("recording windows", "file", p.cfg.RecordFile, "err", err)
		}
	}
	p.metrics.ObserveWindows(ws, p.lib.State)
	p.out.Flush() // summaries of containers past their alert cap
	res, err := p.learner.LearnWindows(ws)
	if err != nil {
		p.log.Error("persisting baselines", "store", p.cfg.Store, "err", err)
	}
	p.logRound(ws, verdicts, res)
}

// Event runs one event through the event stages.
func (p *Pipeline) Event(e model.Event) {
	switch e.Kind {
	case model.EventCgroupCreate:
		p.enforcement.CgroupCreated(e.CgroupID, e.Path, e.Flags&1 != 0)
		return
	case model.EventCgroupRemove:
		p.enforcement.Removed(e.CgroupID)
		return
	case model.EventStopSignal:
		if e.Container.HasBaseline() {
			p.state.StopSignalled(e.CgroupID, e.Time)
			p.log.Debug("container stopping", "container", ContainerLabel(e.Container), "detail", e.Describe())
		}
		return
	}
	c := e.Container
	// The runtime's init exec'ing (runc re-executing a sealed copy of itself)
	// is neither the workload starting nor one of the image's binaries.
	workloadExec := e.Kind == model.EventExec && !e.RuntimeSetup
	if workloadExec && !c.IsHost() {
		p.state.Execed(e)
		if c.IsContainer() {
			p.enforcement.WorkloadStarted(e.CgroupID) // the workload started: the runtime's setup is over
		}
	}
	if e.Kind == model.EventExec && c.HasBaseline() {
		p.state.Sighted(e.CgroupID, e.Time)
	}
	if c.HasBaseline() && (e.RuntimeSetup || (e.Exec != nil && e.Exec.EndsSetup)) {
		p.state.SetupSeen(e.CgroupID, e.Time)
	}
	p.events.Event(e)
	if e.Kind == model.EventExec {
		p.learner.ObserveExec(e)
		if p.images != nil {
			p.images.ObserveExec(e)
		}
	}
	if !c.IsHost() && e.Kind != model.EventExec {
		p.log.Debug("event", "syscall", e.Syscall, "detail", e.Describe(),
			"container", ContainerLabel(c), "image", c.ImageRef(), "comm", e.Comm, "pid", e.PID)
	}
}

// Removed forgets a cgroup whose final window has gone through the stages.
func (p *Pipeline) Removed(cgroupID uint64) {
	f := p.state.Forget(cgroupID)
	p.enforcement.Removed(cgroupID)
	if f.Scored {
		p.metrics.DeleteScore(f.ScoreAs)
	}
}

// Close flushes and closes the alert sinks and the record file.
func (p *Pipeline) Close() error {
	var errs []error
	if p.out != nil {
		errs = append(errs, p.out.Close())
	}
	if p.recorder != nil {
		if err := p.recorder.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing record file %s: %w", p.cfg.RecordFile, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Pipeline) logRound(ws []model.Window, verdicts []model.WindowVerdict, res LearnResult) {
	containers, scored := 0, 0
	for _, w := range ws {
		if !w.Container.IsHost() {
			containers++
		}
	}
	for _, v := range verdicts {
		if v.Scored {
			scored++
		}
	}
	st, err := p.src.Stats()
	if err != nil {
		p.log.Warn("reading sensor stats", "err", err)
	}
	stateCgroups, stateProcesses := p.state.Tracked()
	p.log.Info("window", "cgroups", len(ws), "containers", containers, "scored", scored, "learned", res.Learned, "startup", res.Startup, "stopping", res.Stopping,
		"poisoned", res.Poisoned, "events", st.Events, "events_lost", st.EventsLost, "hist_full", st.HistFull,
		"tracked_cgroups", st.TrackedCgroups, "state_cgroups", stateCgroups, "state_processes", stateProcesses)
}

// ContainerLabel is how logs and the CLI name a container.
func ContainerLabel(c model.Container) string {
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

// newDispatcher builds the alert outputs: the given sinks, and a file, a
// webhook and syslog when configured.
func newDispatcher(cfg AlertsConfig, sinks []alerts.Sink, onSend func(model.Alert), enrich func(*model.Alert), hostname string,
	log *slog.Logger) (*alerts.Dispatcher, error) {
	sinks = slices.Clone(sinks)
	var file *alerts.Writer
	if cfg.File != "" {
		f, err := alerts.OpenFile(cfg.File)
		if err != nil {
			return nil, err
		}
		sinks, file = append(sinks, f), f
	}
	if cfg.SyslogAddress != "" {
		s, err := alerts.NewSyslog(alerts.SyslogConfig{Address: cfg.SyslogAddress, Facility: cfg.SyslogFacility,
			Hostname: cfg.SyslogHostname, QueueSize: cfg.SyslogQueue, CAFile: cfg.SyslogCAFile, CertFile: cfg.SyslogCertFile,
			KeyFile: cfg.SyslogKeyFile, ServerName: cfg.SyslogServerName}, log)
		if err != nil {
			if file != nil {
				_ = file.Close()
			}
			return nil, fmt.Errorf("alerts.syslog: %w", err)
		}
		sinks = append(sinks, s)
	}
	if cfg.WebhookURL != "" {
		sinks = append(sinks, alerts.NewWebhook(alerts.WebhookConfig{URL: cfg.WebhookURL, QueueSize: cfg.WebhookQueue,
			MaxAttempts: cfg.WebhookAttempts, Backoff: cfg.WebhookBackoff}, log))
	}
	return alerts.NewDispatcher(alerts.DispatcherConfig{DedupInterval: cfg.DedupInterval, ContainerLimit: cfg.ContainerLimit,
		Hostname: hostname, OnSend: onSend, Enrich: enrich}, sinks...), nil
}

// metricsSource feeds the values Prometheus reads at scrape time.
type metricsSource struct {
	lib    *Library
	src    Source
	out    *alerts.Dispatcher
	images *ImageRecords
}

func (s *metricsSource) Baselines() []metrics.BaselineInfo {
	var out []metrics.BaselineInfo
	for _, b := range s.lib.Summaries() {
		out = append(out, metrics.BaselineInfo{Image: b.Image, State: b.State, Windows: b.Windows, Syscalls: b.Syscalls})
	}
	return out
}

func (s *metricsSource) Sensor() metrics.SensorInfo {
	st, _ := s.src.Stats()
	return metrics.SensorInfo{Events: st.Events, EventsLost: st.EventsLost, Killed: st.Killed, Undecodable: st.Undecodable,
		HistFull: st.HistFull, AlertsSuppressed: s.out.Suppressed(), AlertsHeldBack: s.out.HeldBack()}
}

func (s *metricsSource) SinkDrops() map[string]uint64 { return s.out.Drops() }

func (s *metricsSource) Vulnerabilities() map[string]map[string]map[bool]int {
	if s.images == nil {
		return nil
	}
	return s.images.VulnGauges()
}
