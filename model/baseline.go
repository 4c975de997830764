package model

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// BaselineState is where an image is in its learning life cycle.
type BaselineState string

const (
	StateLearning BaselineState = "learning"
	StateStable   BaselineState = "stable"
)

// DefaultSampleSize is how many learning windows a baseline keeps for calibration.
const DefaultSampleSize = 256

// Baseline is what one container image normally does: statistics over the windows
// of every container of that image. All of its statistics merge exactly, so
// baselines learned on many nodes combine as if learned on one (see Merge).
type Baseline struct {
	Image   string `json:"image"` // repository
	Tag     string `json:"tag"`   // tag, or "" when only the id is known
	ImageID string `json:"image_id,omitempty"`
	// Workload, when set, is the profile key (learning.key: workload): the
	// baseline is one workload's, and Image and Tag name the image it ran.
	Workload string        `json:"workload,omitempty"`
	State    BaselineState `json:"state"`
	// StableAt is when the baseline became stable (the end of the window that
	// made it so, or a promotion); zero while learning and in older files.
	StableAt time.Time `json:"stable_at,omitzero"`
	// Prior, when set, says the baseline started from another tag's (an image
	// upgrade, upgrade.go).
	Prior *Prior `json:"prior,omitempty"`

	Windows   uint64    `json:"windows"` // learned windows
	Seconds   float64   `json:"seconds"` // learned time
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"` // end of the newest learned window
	Updated   time.Time `json:"updated"`   // end of the newest learned or merged window

	// Containers maps container id to the windows it contributed.
	Containers map[string]uint64 `json:"containers"`
	// Syscalls are per-syscall rate statistics (calls per second, or per window for
	// windows without a duration) over the windows in which the syscall was made.
	Syscalls map[string]Moments `json:"syscalls"`
	// Total is the statistics of the total rate over all windows.
	Total Moments `json:"total"`
	// The three views the model scores (see views.go); Volume is the log of
	// the total rate over windows that made any call.
	Composition Composition `json:"composition"`
	Order       Order       `json:"order"`
	Volume      Moments     `json:"volume"`
	// Startup counts syscalls seen in containers' first seconds, which are not
	// learned as rates but must be allowed by a generated seccomp profile.
	Startup map[string]uint64 `json:"startup_syscalls"`
	// Binaries counts the executed paths (exec events) of the image's containers.
	Binaries map[string]uint64 `json:"binaries"`
	// Exceptions are the learnable rules' hits while learning (exceptions.go).
	Exceptions Exceptions `json:"exceptions,omitempty"`
	// Sample is a uniform sample of learned windows (bottom-k by a hash of the
	// window's identity), so held-out scores for calibration can be computed and
	// two samples merge into the sample of the union.
	Sample []SampledWindow `json:"sample"`

	Convergence Convergence `json:"convergence"`
}

// SampledWindow is one learning window kept for calibration.
type SampledWindow struct {
	Priority  uint64            `json:"priority"`
	Container string            `json:"container"`
	Start     time.Time         `json:"start"`
	Seconds   float64           `json:"seconds"`
	Counts    map[string]uint64 `json:"syscalls"`
	Grams     map[string]uint64 `json:"grams,omitempty"`
}

// Convergence tracks what the learning state machine needs: per-syscall sums of
// shares and squared shares at the last two checkpoints, so the two most recent
// blocks of windows can be compared, and when something new last appeared.
type Convergence struct {
	CheckpointWindows uint64              `json:"checkpoint_windows"`
	CheckpointSums    map[string]RateSums `json:"checkpoint_sums"`
	PreviousWindows   uint64              `json:"previous_windows"`
	PreviousSums      map[string]RateSums `json:"previous_sums"`
	LastNovelty       uint64              `json:"last_novelty"` // Windows when a new syscall or binary appeared
	Drift             float64             `json:"drift"`        // at the last checkpoint, in standard errors
}

// RateSums are a syscall's sum of shares and of squared shares over windows
// (rates before format 2; the name stays for the JSON it shares with v1).
type RateSums struct {
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
	N     uint64  `json:"n,omitempty"` // windows in which the syscall was made
}

// LearnConfig decides when a baseline has converged.
type LearnConfig struct {
	MinWindows    uint64  // at least this many learned windows
	MinContainers int     // from at least this many containers
	StableWindows uint64  // nothing new and no drift over this many windows
	MaxDrift      float64 // largest block-mean change, in standard errors, that counts as no drift
	SampleSize    int     // windows kept for calibration
	// PriorWindows: a new tag of an image starts from this many of its most
	// recently stable tag's sampled windows (upgrade.go); 0: from nothing.
	PriorWindows int
}

// DefaultLearnConfig is what the embedded config uses.
func DefaultLearnConfig() LearnConfig {
	return LearnConfig{MinWindows: 60, MinContainers: 1, StableWindows: 20, MaxDrift: 3, SampleSize: DefaultSampleSize, PriorWindows: 40}
}

// NewBaseline starts an empty baseline for an image.
func NewBaseline(image, tag, imageID string) *Baseline {
	return &Baseline{
		Image: image, Tag: tag, ImageID: imageID, State: StateLearning,
		Containers: map[string]uint64{}, Syscalls: map[string]Moments{},
		Startup: map[string]uint64{}, Binaries: map[string]uint64{},
		Composition: Composition{Shares: map[string]Moments{}}, Order: Order{Grams: map[string]uint64{}},
	}
}

// FillEmpty turns maps a decoded baseline left absent into empty ones, so
// learning can continue on it.
func (b *Baseline) FillEmpty() {
	if b.Containers == nil {
		b.Containers = map[string]uint64{}
	}
	if b.Syscalls == nil {
		b.Syscalls = map[string]Moments{}
	}
	if b.Startup == nil {
		b.Startup = map[string]uint64{}
	}
	if b.Binaries == nil {
		b.Binaries = map[string]uint64{}
	}
	if b.Composition.Shares == nil {
		b.Composition.Shares = map[string]Moments{}
	}
	if b.Order.Grams == nil {
		b.Order.Grams = map[string]uint64{}
	}
}

// Key is the profile key the baseline is stored under: its workload, or its
// image reference ("repo:tag", "repo", or the image id when the repository is
// unknown).
func (b *Baseline) Key() string {
	return Container{Image: b.Image, ImageTag: b.Tag, ImageID: b.ImageID, Workload: b.Workload}.ProfileKey()
}

// NewProfileBaseline starts an empty baseline for c's profile.
func NewProfileBaseline(c Container) *Baseline {
	b := NewBaseline(c.Image, c.ImageTag, c.ImageID)
	b.Workload = c.Workload
	return b
}

// Rate is the per-second rate of count in a window, or the count itself when the
// window has no duration (recorded traces scored offline).
func Rate(count uint64, seconds float64) float64 {
	if seconds <= 0 {
		return float64(count)
	}
	return float64(count) / seconds
}

// AddWindow learns one window and returns the syscalls it saw for the first time.
func (b *Baseline) AddWindow(w Window, sampleSize int) (novel []string) {
	secs := max(w.Duration.Seconds(), 0)
	for name, c := range w.Counts {
		if c == 0 {
			continue
		}
		m, seen := b.Syscalls[name]
		if !seen && !b.Knows(name) {
			novel = append(novel, name)
		}
		m.Add(Rate(c, secs))
		b.Syscalls[name] = m
	}
	total := w.Total()
	b.Total.Add(Rate(total, secs))
	b.Composition.add(w.Counts, total)
	b.Order.add(w.Grams)
	if total > 0 {
		b.Volume.Add(logVolume(total, secs))
	}
	b.Windows++
	b.Seconds += secs
	b.Containers[w.Container.ID]++
	end := w.Start.Add(w.Duration)
	if b.FirstSeen.IsZero() || w.Start.Before(b.FirstSeen) {
		b.FirstSeen = w.Start
	}
	if end.After(b.LastSeen) {
		b.LastSeen = end
	}
	if b.Updated.Before(end) {
		b.Updated = end
	}
	b.sample(SampledWindow{
		Priority: windowPriority(w), Container: w.Container.ID, Start: w.Start, Seconds: secs,
		Counts: cloneCounts(w.Counts), Grams: cloneGrams(w.Grams),
	}, sampleSize)
	if len(novel) > 0 {
		b.Convergence.LastNovelty = b.Windows
	}
	slices.Sort(novel)
	return novel
}

// AddStartup records the syscalls of a window from a container's first seconds.
// They are not learned as rates, but a seccomp profile must allow them.
func (b *Baseline) AddStartup(w Window) {
	for name, c := range w.Counts {
		if c > 0 {
			b.Startup[name] += c
		}
	}
}

// AddExec records an executed binary and reports whether it is new.
func (b *Baseline) AddExec(path string) bool {
	_, seen := b.Binaries[path]
	b.Binaries[path]++
	if !seen {
		b.Convergence.LastNovelty = b.Windows
	}
	return !seen
}

// SyscallStats returns the mean and standard deviation of a syscall's rate over
// all learned windows (absent windows count as zero).
func (b *Baseline) SyscallStats(name string) (mean, std float64) {
	mean, v := b.Syscalls[name].Over(b.Windows)
	return mean, math.Sqrt(v)
}

// windowPriority hashes a window's identity: the same window gets the same
// priority on every node, which makes bottom-k samples merge exactly.
func windowPriority(w Window) uint64 {
	h := fnv.New64a()
	h.Write([]byte(w.Container.ID))
	h.Write([]byte{0})
	h.Write(strconv.AppendUint(nil, w.CgroupID, 10))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, w.Start.UnixNano(), 10))
	return h.Sum64()
}

func (b *Baseline) sample(sw SampledWindow, size int) {
	if size <= 0 {
		size = DefaultSampleSize
	}
	b.Sample = bottomK(append(b.Sample, sw), size)
}

// bottomK keeps the k windows with the smallest priority, sorted by priority.
func bottomK(ws []SampledWindow, k int) []SampledWindow {
	slices.SortFunc(ws, func(a, b SampledWindow) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), a.Start.Compare(b.Start), cmp.Compare(a.Container, b.Container))
	})
	ws = slices.CompactFunc(ws, func(a, b SampledWindow) bool {
		return a.Priority == b.Priority && a.Start.Equal(b.Start) && a.Container == b.Container
	})
	if len(ws) > k {
		ws = ws[:k]
	}
	return ws
}

func cloneGrams(m map[string]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	return cloneCounts(m)
}

func cloneCounts(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// ErrImageMismatch means two baselines of different images were to be merged.
var ErrImageMismatch = errors.New("baselines are of different images")

// Merge folds o into b: the result equals learning o's windows after b's. The
// state is stable only if both were, and convergence restarts from the merged data.
func (b *Baseline) Merge(o *Baseline, sampleSize int) error {
	if b.Key() != o.Key() {
		return fmt.Errorf("%w: %q and %q", ErrImageMismatch, b.Key(), o.Key())
	}
	if b.ImageID == "" {
		b.ImageID = o.ImageID
	}
	for name, m := range o.Syscalls {
		b.Syscalls[name] = b.Syscalls[name].Merge(m)
	}
	b.Total = b.Total.Merge(o.Total)
	b.Composition.Windows += o.Composition.Windows
	for name, m := range o.Composition.Shares {
		b.Composition.Shares[name] = b.Composition.Shares[name].Merge(m)
	}
	b.Order.Windows += o.Order.Windows
	for g, n := range o.Order.Grams {
		b.Order.Grams[g] += n
	}
	b.Volume = b.Volume.Merge(o.Volume)
	b.Windows += o.Windows
	b.Seconds += o.Seconds
	for id, n := range o.Containers {
		b.Containers[id] += n
	}
	for name, n := range o.Startup {
		b.Startup[name] += n
	}
	for path, n := range o.Binaries {
		b.Binaries[path] += n
	}
	b.Exceptions = b.Exceptions.merge(o.Exceptions)
	// Each side that carries a prior counts its statistics: keep b's copy.
	oSample := o.Sample
	if b.Prior.counted() && o.Prior.counted() {
		b.subtract(o.Prior.Baseline)
		oSample = withoutSampled(o.Sample, o.Prior.Baseline.Sample)
	} else if !b.Prior.counted() && o.Prior != nil {
		b.Prior = o.Prior.clone()
	}
	if o.StableAt.After(b.StableAt) {
		b.StableAt = o.StableAt
	}
	if !o.FirstSeen.IsZero() && (b.FirstSeen.IsZero() || o.FirstSeen.Before(b.FirstSeen)) {
		b.FirstSeen = o.FirstSeen
	}
	if o.LastSeen.After(b.LastSeen) {
		b.LastSeen = o.LastSeen
	}
	if o.Updated.After(b.Updated) {
		b.Updated = o.Updated
	}
	if sampleSize <= 0 {
		sampleSize = max(len(b.Sample), len(o.Sample), DefaultSampleSize)
	}
	b.Sample = bottomK(append(slices.Clone(b.Sample), oSample...), sampleSize)
	if b.State != StateStable || o.State != StateStable {
		b.State, b.StableAt = StateLearning, time.Time{}
	}
	b.Convergence = Convergence{CheckpointWindows: b.Windows, CheckpointSums: b.shareSums(), LastNovelty: b.Windows}
	return nil
}

// Clone returns a deep copy.
func (b *Baseline) Clone() *Baseline {
	c := *b
	c.Containers = cloneCounts(b.Containers)
	c.Startup = cloneCounts(b.Startup)
	c.Binaries = cloneCounts(b.Binaries)
	c.Exceptions = b.Exceptions.clone()
	c.Syscalls = make(map[string]Moments, len(b.Syscalls))
	for k, v := range b.Syscalls {
		c.Syscalls[k] = v
	}
	c.Composition.Shares = maps.Clone(b.Composition.Shares)
	c.Order.Grams = cloneCounts(b.Order.Grams)
	c.Sample = make([]SampledWindow, len(b.Sample))
	for i, s := range b.Sample {
		s.Counts = cloneCounts(s.Counts)
		s.Grams = cloneGrams(s.Grams)
		c.Sample[i] = s
	}
	c.Prior = b.Prior.clone()
	c.Convergence.CheckpointSums = maps.Clone(b.Convergence.CheckpointSums)
	c.Convergence.PreviousSums = maps.Clone(b.Convergence.PreviousSums)
	return &c
}
