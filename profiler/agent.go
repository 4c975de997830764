package profiler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/container"
	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// Handlers receive what the agent produces. Any of them may be nil.
type Handlers struct {
	// Windows gets every window of one sampling round, resolved to containers.
	Windows func([]model.Window)
	// Event gets each security event, resolved to its container.
	Event func(model.Event)
	// Removed is told about each cgroup whose final window has been delivered.
	Removed func(cgroupID uint64)
	// Sampled gets how long each sampling round took.
	Sampled func(time.Duration)
}

// Agent owns the loaded sensor, the sampler and the container resolver.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	sensor   *sensor.Sensor
	cgroups  *container.CgroupFS
	resolver *container.Resolver
	sampler  *sensor.Sampler
	closers  []func() error

	// selfCgroup is the agent's own container's cgroup id, 0 on the host.
	selfCgroup uint64

	undecodable  atomic.Uint64
	sampleErrors atomic.Uint64
}

// New checks the host (cgroup v2, BTF), loads the sensor and connects the resolver.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cgroups, err := container.OpenCgroupFS(cfg.Containers.CgroupRoot)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, cgroups: cgroups}
	a.closers = append(a.closers, cgroups.Close)

	inspectors := map[model.Runtime]container.Inspector{}
	if cfg.Containers.DockerSocket != "" {
		inspectors[model.RuntimeDocker] = container.NewDockerClient(cfg.Containers.DockerSocket)
	}
	if cfg.Containers.PodmanSocket != "" { // podman serves the Docker Engine API
		inspectors[model.RuntimePodman] = container.NewDockerClient(cfg.Containers.PodmanSocket)
	}
	for runtime, socket := range map[model.Runtime]string{
		model.RuntimeContainerd: cfg.Containers.ContainerdSocket,
		model.RuntimeCRIO:       cfg.Containers.CRIOSocket,
	} {
		if socket == "" {
			continue
		}
		c, err := container.NewCRIClient(socket)
		if err != nil {
			a.Close()
			return nil, err
		}
		inspectors[runtime] = c
		a.closers = append(a.closers, c.Close)
	}
	a.resolver = container.NewResolver(cgroups, cfg.Containers.Static, inspectors, cfg.Learning.KeyBy, log)
	// Run as a pod, the agent's own container (its tracefs helper mounting in a
	// private namespace, its probes, its runtime socket) is not watched.
	if id, path, err := cgroups.SelfID(); err != nil {
		log.Warn("finding the agent's own cgroup", "err", err)
	} else if _, inContainer := container.ClassifyPath(path); inContainer {
		a.selfCgroup = id
		log.Info("not watching the agent's own container", "cgroup", path)
	}

	// The rules' own paths are watched too, so a rule needs no config change.
	rules, err := LoadRules(cfg.Rules)
	if err != nil {
		a.Close()
		return nil, err
	}
	watch := rules.KernelWatch()
	s, err := sensor.Load(sensor.Options{
		WatchPrefixes:  union(cfg.Sensor.WatchPrefixes, watch.OpenPrefixes),
		WatchNames:     union(cfg.Sensor.WatchNames, watch.OpenNames),
		WriteWatch:     watch.Writes,
		WatchPorts:     cfg.Sensor.WatchPorts,
		IgnoreTGID:     uint32(os.Getpid()),
		KernelBTF:      cfg.Sensor.KernelBTF,
		HistogramSlots: cfg.Sensor.HistogramSlots,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.sensor = s
	log.Info("sensor loaded", "write_opens_judged_at", s.ExitMode(), "host_mount_namespace", s.HostMountNSFrom())
	a.closers = append(a.closers, s.Close)
	a.sampler = sensor.NewSampler(s, time.Now(), cgroups.Alive)
	return a, nil
}

// Close releases the sensor and runtime connections.
func (a *Agent) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// Stats is the agent's health.
type Stats struct {
	sensor.Stats
	Undecodable       uint64
	SampleErrors      uint64
	TrackedCgroups    int
	ResolvedCgroups   int
	LastSampleSeconds float64
}

// Stats reads the sensor counters and the agent's own.
func (a *Agent) Stats() (Stats, error) {
	ss, err := a.sensor.Stats()
	return Stats{
		Stats:           ss,
		Undecodable:     a.undecodable.Load(),
		SampleErrors:    a.sampleErrors.Load(),
		TrackedCgroups:  a.sampler.Tracked(),
		ResolvedCgroups: a.resolver.Cached(),
	}, err
}

// Run samples every cfg.Window and reads events until ctx is done.
func (a *Agent) Run(ctx context.Context, h Handlers) error {
	reader, err := a.sensor.OpenEvents()
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return sensor.ReadEvents(ctx, reader, a.sensor.Decoder(), func(e model.Event) { a.handleEvent(ctx, e, h) },
			func(err error) {
				a.undecodable.Add(1)
				a.log.Warn("undecodable event", "err", err)
			})
	})
	g.Go(func() error {
		t := time.NewTicker(a.cfg.Window)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-t.C:
				began := time.Now()
				windows, removed, err := a.Sample(ctx, now)
				if h.Sampled != nil {
					h.Sampled(time.Since(began))
				}
				if err != nil { // the sampler keeps its state consistent: log and carry on
					a.sampleErrors.Add(1)
					a.log.Warn("sampling syscall histograms", "err", err)
				}
				if h.Windows != nil && len(windows) > 0 {
					h.Windows(windows)
				}
				if h.Removed != nil {
					for _, id := range removed {
						h.Removed(id)
					}
				}
			}
		}
	})
	return g.Wait()
}

func (a *Agent) handleEvent(ctx context.Context, e model.Event, h Handlers) {
	switch e.Kind {
	case model.EventCgroupRemove:
		a.sampler.CgroupRemoved(e.CgroupID)
	case model.EventCgroupCreate: // classified by its path: no runtime knows it yet
	default:
		if a.selfCgroup != 0 && e.CgroupID == a.selfCgroup {
			return
		}
		e.Container = a.resolver.Resolve(ctx, e.CgroupID)
	}
	if h.Event != nil {
		h.Event(e)
	}
}

// Sample takes one window now and resolves each cgroup to its container; removed
// lists the cgroups whose final window this was. Windows may come with an error
// when only freeing dead cgroups' entries failed.
func (a *Agent) Sample(ctx context.Context, now time.Time) (windows []model.Window, removed []uint64, err error) {
	deltas, removed, err := a.sampler.Sample(now)
	if err != nil {
		err = fmt.Errorf("sampling: %w", err)
	}
	windows = make([]model.Window, 0, len(deltas))
	for _, d := range deltas {
		if a.selfCgroup != 0 && d.CgroupID == a.selfCgroup {
			continue
		}
		windows = append(windows, d.Window(a.resolver.Resolve(ctx, d.CgroupID)))
	}
	for _, id := range removed {
		a.resolver.Forget(id)
	}
	return windows, removed, err
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
