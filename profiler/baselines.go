package profiler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/store"
)

// Library is the agent's view of the baselines: an in-memory copy of the store
// that learning changes and Flush persists, one transaction per batch.
type Library struct {
	store store.Store
	cfg   model.LearnConfig
	keyBy model.KeyBy
	mode  Mode
	// running is true inside the agent, so Status says whether it is live.
	running bool

	mu    sync.Mutex
	cache map[string]*model.Baseline
	dirty map[string]bool
	// fleet, when set, has the fleet's view of profiles (#17, fleetlib.go).
	fleet Fleet
	log   *slog.Logger // nil: decisions are not logged (offline commands)
}

// NewLibrary loads every baseline from st.
func NewLibrary(st store.Store, cfg LearnerConfig, mode Mode, running bool) (*Library, error) {
	all, err := st.Baselines()
	if err != nil {
		return nil, err
	}
	l := &Library{store: st, cfg: cfg.LearnConfig, keyBy: cmp.Or(cfg.KeyBy, model.KeyByImage), mode: mode, running: running,
		cache: make(map[string]*model.Baseline, len(all)), dirty: map[string]bool{}}
	for _, b := range all {
		l.cache[b.Key()] = b
	}
	return l, nil
}

// List returns copies of all baselines, sorted by image.
func (l *Library) List(context.Context) ([]*model.Baseline, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*model.Baseline, 0, len(l.cache))
	for _, b := range l.cache {
		out = append(out, b.Clone())
	}
	slices.SortFunc(out, func(a, b *model.Baseline) int { return strings.Compare(a.Key(), b.Key()) })
	return out, nil
}

// Get returns a copy of one baseline.
func (l *Library) Get(_ context.Context, key string) (*model.Baseline, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key = l.storedKey(key)
	b, ok := l.cache[key]
	if !ok {
		return nil, fmt.Errorf("%w: %q", store.ErrNotFound, key)
	}
	return b.Clone(), nil
}

// Import writes the baselines in one transaction, replacing or merging.
func (l *Library) Import(_ context.Context, bs []*model.Baseline, merge bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := make([]*model.Baseline, 0, len(bs))
	for _, in := range bs {
		b := in.Clone()
		// Keyed as the agent keys images (docker.io/library/nginx is nginx),
		// so an export from before schema 4 lands where learning goes on.
		b.Image = model.FamiliarImage(b.Image)
		if old, ok := l.cache[b.Key()]; ok && merge {
			merged := old.Clone()
			if err := merged.Merge(b, l.cfg.SampleSize); err != nil {
				return err
			}
			b = merged
		}
		if err := b.Validate(); err != nil { // never store what the store would refuse to read
			return fmt.Errorf("%w: %v", store.ErrBadImport, err)
		}
		next = append(next, b)
	}
	if err := l.store.PutBaselines(next...); err != nil {
		return err
	}
	for _, b := range next {
		l.cache[b.Key()] = b
		delete(l.dirty, b.Key())
	}
	return nil
}

// Promote marks a baseline stable now.
func (l *Library) Promote(_ context.Context, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key = l.storedKey(key)
	b, ok := l.cache[key]
	if !ok {
		return fmt.Errorf("%w: %q", store.ErrNotFound, key)
	}
	promoted := b.Clone()
	promoted.Promote(time.Now())
	if err := l.store.PutBaselines(promoted); err != nil {
		return err
	}
	l.cache[key] = promoted
	delete(l.dirty, key)
	return nil
}

// Reset forgets a baseline: the image starts learning from nothing.
func (l *Library) Reset(_ context.Context, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key = l.storedKey(key)
	// A baseline learned but not yet flushed is only in the cache: that is fine.
	if err := l.store.DeleteBaseline(key); err != nil && (!errors.Is(err, store.ErrNotFound) || l.cache[key] == nil) {
		return err
	}
	delete(l.cache, key)
	delete(l.dirty, key)
	return nil
}

// Status reports each image's state and progress.
func (l *Library) Status(context.Context) (control.Status, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := control.Status{AgentRunning: l.running, Key: string(l.keyBy), Images: []control.ImageStatus{}}
	if l.running {
		st.Mode = string(l.mode)
	}
	for _, b := range l.cache {
		is := control.ImageStatus{Image: b.Key(), State: b.State, Progress: b.Progress(l.cfg), Updated: b.Updated}
		if b.Workload != "" {
			is.ImageRef = model.Container{Image: b.Image, ImageTag: b.Tag, ImageID: b.ImageID}.ImageRef()
		}
		is.CarriedFrom = carriedFrom(b.Prior)
		st.Images = append(st.Images, is)
	}
	slices.SortFunc(st.Images, func(a, b control.ImageStatus) int { return strings.Compare(a.Image, b.Image) })
	return st, nil
}

// storedKey is the key a named image is stored under: the name itself, or
// its familiar form ("docker.io/library/nginx:1.27" is nginx:1.27). l.mu is held.
func (l *Library) storedKey(key string) string {
	if _, ok := l.cache[key]; ok {
		return key
	}
	return model.FamiliarRef(key)
}

// update runs fn on the named baseline (created empty if missing) under the lock
// and marks it for the next Flush when fn reports a change.
func (l *Library) update(c model.Container, fn func(b *model.Baseline) bool) {
	key := c.ProfileKey()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.cache[key]
	if !ok {
		b = l.start(c)
	}
	if fn(b) {
		l.cache[key] = b
		l.dirty[key] = true
	}
}

// State returns the state of an image's baseline, and whether there is one.
func (l *Library) State(key string) (model.BaselineState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fb, ok := l.fleetView(key); ok { // the fleet decides when it learns
		return fb.State, true
	}
	b, ok := l.cache[key]
	if !ok {
		return "", false
	}
	return b.State, true
}

// Flush writes every changed baseline in one transaction.
func (l *Library) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.dirty) == 0 {
		return nil
	}
	batch := make([]*model.Baseline, 0, len(l.dirty))
	for key := range l.dirty {
		batch = append(batch, l.cache[key])
	}
	if err := l.store.PutBaselines(batch...); err != nil {
		return err
	}
	clear(l.dirty)
	return nil
}

// view runs fn on an image's baseline (nil when there is none) under the lock,
// without copying it; fn must not keep b.
func (l *Library) view(key string, fn func(b *model.Baseline)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fb, ok := l.fleetView(key); ok {
		fn(fb)
		return
	}
	fn(l.cache[key])
}

// Summary is a baseline's headline numbers.
type Summary struct {
	Image    string
	State    model.BaselineState
	Windows  uint64
	Syscalls int
}

// Summaries lists every baseline's headline numbers without copying them.
func (l *Library) Summaries() []Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Summary, 0, len(l.cache))
	for key, b := range l.cache {
		out = append(out, Summary{Image: key, State: b.State, Windows: b.Windows, Syscalls: len(b.Syscalls)})
	}
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.Image, b.Image) })
	return out
}
