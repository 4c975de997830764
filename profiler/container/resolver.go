package container

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// PathFinder turns a cgroup id into its path; *CgroupFS is the real one.
type PathFinder interface {
	PathOf(id uint64) (string, error)
}

// Inspector asks a runtime about one container; *DockerClient and *CRIClient are real ones.
type Inspector interface {
	Inspect(ctx context.Context, id string) (Metadata, error)
}

// retryIncomplete is how long a container whose runtime did not answer keeps its
// partial identity before the runtime is asked again.
const retryIncomplete = 30 * time.Second

type cached struct {
	c       model.Container
	retryAt time.Time // zero: complete, keep until the cgroup is removed
}

// Resolver maps cgroup ids to containers and caches the answers until Forget.
type Resolver struct {
	paths      PathFinder
	static     []StaticRule
	inspectors map[model.Runtime]Inspector
	keyBy      model.KeyBy
	log        *slog.Logger
	now        func() time.Time

	mu    sync.Mutex
	cache map[uint64]cached
}

// NewResolver builds a resolver. inspectors may lack runtimes that are not
// installed. keyBy says what each container's profile key is (learning.key).
func NewResolver(paths PathFinder, static []StaticRule, inspectors map[model.Runtime]Inspector, keyBy model.KeyBy, log *slog.Logger) *Resolver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{
		paths: paths, static: static, inspectors: inspectors, keyBy: keyBy, log: log, now: time.Now,
		cache: make(map[uint64]cached),
	}
}

// Resolve returns the container owning cgroup id: a host container for host cgroups,
// RuntimeUnknown for a cgroup that is gone (or unreadable) and was never resolved.
func (r *Resolver) Resolve(ctx context.Context, id uint64) model.Container {
	r.mu.Lock()
	e, ok := r.cache[id]
	r.mu.Unlock()
	if ok && (e.retryAt.IsZero() || r.now().Before(e.retryAt)) {
		return e.c
	}

	cgPath, err := r.paths.PathOf(id)
	if err != nil {
		if !errors.Is(err, ErrCgroupGone) {
			r.log.Warn("resolving cgroup", "cgroup_id", id, "err", err)
		}
		return model.Container{Runtime: model.RuntimeUnknown}
	}
	c, complete := r.identify(ctx, cgPath)
	if r.keyBy == model.KeyByWorkload && c.IsContainer() {
		c.Workload = c.WorkloadKey()
	}
	e = cached{c: c}
	if !complete {
		e.retryAt = r.now().Add(retryIncomplete)
	}
	if complete && c.IsContainer() {
		r.log.Debug("container resolved", "cgroup_id", id, "runtime", c.Runtime, "container_id", c.ID,
			"name", c.Name, "image", c.ImageRef(), "pod", c.PodName, "namespace", c.Namespace, "pod_labels", c.PodLabels,
			"profile", c.ProfileKey())
	}
	r.mu.Lock()
	r.cache[id] = e
	r.mu.Unlock()
	return c
}

// identify classifies a cgroup path; complete is false when a runtime should have
// known more but could not be asked.
func (r *Resolver) identify(ctx context.Context, cgPath string) (c model.Container, complete bool) {
	if rule, containerPath, ok := MatchStatic(r.static, cgPath); ok {
		name := path.Base(containerPath)
		repo, tag := model.SplitImageRef(rule.Image)
		return model.Container{
			ID: name, Name: name, Runtime: model.RuntimeStatic, Image: repo, ImageTag: tag, CgroupPath: cgPath,
		}, true
	}
	ref, ok := ClassifyPath(cgPath)
	if !ok {
		return model.Container{Runtime: model.RuntimeHost, CgroupPath: cgPath}, true
	}
	c = model.Container{ID: ref.ID, Runtime: ref.Runtime, CgroupPath: cgPath}
	candidates := []model.Runtime{ref.Runtime}
	if ref.Guessed { // a bare id: any runtime may own it, the likeliest first
		for _, rt := range []model.Runtime{model.RuntimeDocker, model.RuntimeContainerd, model.RuntimeCRIO, model.RuntimePodman} {
			if rt != ref.Runtime {
				candidates = append(candidates, rt)
			}
		}
	}
	asked := 0
	var md Metadata
	var err error
	for _, rt := range candidates {
		ins := r.inspectors[rt]
		if ins == nil {
			continue
		}
		asked++
		if md, err = ins.Inspect(ctx, ref.ID); err == nil {
			c.Runtime = rt
			break
		}
	}
	if asked == 0 {
		return c, true // nothing to ask: the id is all we will know
	}
	if err != nil {
		r.log.Warn("inspecting container", "runtime", ref.Runtime, "container_id", ref.ID, "err", err)
		return c, false
	}
	c.Name, c.Image, c.ImageTag, c.ImageID = md.Name, model.FamiliarImage(md.Image), md.ImageTag, md.ImageID
	c.PodName, c.Namespace, c.PodLabels = md.PodName, md.PodNS, md.PodLabels
	c.PodOwner, c.Entrypoint = md.PodOwner, md.Entrypoint
	return c, true
}

// Forget drops a removed cgroup from the cache.
func (r *Resolver) Forget(id uint64) {
	r.mu.Lock()
	delete(r.cache, id)
	r.mu.Unlock()
}

// Cached is the number of cgroups in the cache.
func (r *Resolver) Cached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cache)
}
