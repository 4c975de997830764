package profiler

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cagewatch/cagewatch/profiler/alerts"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/fleet"
	"github.com/cagewatch/cagewatch/profiler/metrics"
	"github.com/cagewatch/cagewatch/store"
)

// RunOptions are what the caller adds to the config.
type RunOptions struct {
	Log      *slog.Logger
	AlertOut io.Writer // alerts as JSON lines (stdout)
	Version  string
	// Reload asks for the rules file to be read again (SIGHUP); a broken file is
	// refused and the rules in force stay.
	Reload <-chan struct{}
	// Ready, when set, gets the baseline library once everything runs.
	Ready func(*Library)
}

// Run is the agent: it loads the rules, opens the store, loads the kernel sensor,
// builds the pipeline and serves metrics and the control socket until ctx is done.
// `cagewatch run` and `cagewatch demo` both start here.
func Run(ctx context.Context, cfg Config, opts RunOptions) error {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rules, err := LoadRules(cfg.Rules)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Store, time.Second)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "store", cfg.Store, "err", err)
		}
	}()
	lib, err := NewLibrary(st, cfg.Learning, cfg.Mode, true)
	if err != nil {
		return err
	}
	lib.SetLogger(log)
	images, err := NewImageRecords(st, lib, log)
	if err != nil {
		return err
	}
	a, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	hostname, _ := os.Hostname()
	p, err := NewPipeline(cfg, rules, Deps{Source: a, Enforcer: a.sensor, Watch: a.sensor, Cgroups: a.cgroups, Library: lib, Images: images,
		Sinks: []alerts.Sink{alerts.NewWriter("stdout", opts.AlertOut)}, Hostname: hostname, Version: opts.Version, Log: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Close(); err != nil {
			log.Error("closing alert outputs", "err", err)
		}
	}()
	log.Info("agent started", "mode", cfg.Mode, "window", cfg.Window, "store", cfg.Store, "rules", len(rules.Rules))

	g, ctx := errgroup.WithContext(ctx)
	var svc control.Service = Control{Library: lib, Images: images}
	if cfg.Fleet.Enabled() {
		fc, err := startFleet(cfg, st, lib, p, log)
		if err != nil {
			return err
		}
		defer fc.Close() //nolint:errcheck // closing the etcd connection at exit
		svc = FleetControl{Control: Control{Library: lib, Images: images}, Fleet: fc}
		g.Go(func() error { return fc.Run(ctx) })
	}
	if opts.Ready != nil {
		opts.Ready(lib)
	}
	if cfg.MetricsListen != "" {
		g.Go(func() error { return metrics.Serve(ctx, cfg.MetricsListen, p.Metrics().Registry(), log) })
	}
	g.Go(func() error {
		return control.Serve(ctx, control.SocketPath(cfg.Store), svc, images, log)
	})
	g.Go(func() error { return images.Run(ctx, imageFlushInterval) })
	g.Go(func() error { p.reloadRules(ctx, opts.Reload); return nil })
	g.Go(func() error { return p.Run(ctx) })
	err = g.Wait()
	log.Info("stopped", "alerts_sent", p.out.Sent(), "alerts_suppressed", p.out.Suppressed())
	return err
}

// startFleet connects the library to etcd (#17). It does not wait for etcd:
// an unreachable one leaves the agent on its local baselines.
func startFleet(cfg Config, st *store.Bolt, lib *Library, p *Pipeline, log *slog.Logger) (*fleet.Client, error) {
	fm, err := metrics.NewFleet(p.Metrics().Registry())
	if err != nil {
		return nil, err
	}
	fcfg := cfg.Fleet
	fcfg.Outbox = st // unpublished learning survives a restart during an outage
	fc, err := fleet.New(fcfg, cfg.Learning.LearnConfig, fm, log)
	if err != nil {
		return nil, err
	}
	// What this node learned before it joined the fleet is its first
	// contribution (once: the outbox remembers).
	local, err := lib.List(context.Background())
	if err != nil {
		_ = fc.Close()
		return nil, err
	}
	for _, b := range local {
		fc.Seed(b)
		// A tag started from a prior before a restart: the fleet still takes
		// it if no node created the tag's aggregate yet. Trusted only when
		// read from the fleet; after a restart that is not known, so not.
		fc.OfferPrior(b, false)
	}
	lib.SetFleet(fc)
	fc.OnStable(lib.LogUpgradeDiff)
	log.Info("fleet baselines through etcd", "endpoints", cfg.Fleet.Endpoints, "prefix", cfg.Fleet.Prefix,
		"node", cfg.Fleet.Node, "publish_interval", cfg.Fleet.PublishInterval)
	return fc, nil
}

// imageFlushInterval is how often changed image records (inventories, alert
// counts) are written; they are written at stop too.
const imageFlushInterval = 30 * time.Second

// reloadRules reads the rules file again on each request until ctx is done.
func (p *Pipeline) reloadRules(ctx context.Context, reload <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			rs, err := LoadRules(p.cfg.Rules)
			if err == nil {
				err = p.SetRules(rs)
			}
			if err != nil {
				p.log.Error("rules reload refused; the previous rules stay active", "err", err)
				continue
			}
			p.log.Info("rules reloaded", "rules", len(rs.Rules))
		}
	}
}
