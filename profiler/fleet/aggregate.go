// Package fleet shares baselines between nodes through etcd (#17): each node
// publishes the windows it learned as idempotent delta merges into one
// aggregate per profile key, and scores with the aggregate's guarded view.
// See docs/fleet.md for the layout and its arithmetic.
package fleet

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/cagewatch/cagewatch/model"
)

// aggregateFormat is the version of the aggregate's encoding.
const aggregateFormat = 1

// MaxAggregateBytes bounds an encoded aggregate: etcd refuses requests over
// 1.5 MiB, and the node's watermark key rides in the same transaction.
const MaxAggregateBytes = 1 << 20

// ErrTooLarge means an aggregate outgrew MaxAggregateBytes.
var ErrTooLarge = errors.New("aggregate too large for etcd")

// Aggregate is the fleet's merged baseline of one profile key with what the
// poisoning guard needs: how many distinct nodes published each item.
type Aggregate struct {
	// Epoch changes on reset and replacing import; batches learned under
	// another epoch are never merged into this one.
	Epoch uint64 `json:"epoch"`
	// StateRev counts admin actions (promote, reset, import).
	StateRev uint64 `json:"state_rev"`
	// Nodes is how many distinct nodes contributed in this epoch.
	Nodes    int             `json:"nodes"`
	Baseline *model.Baseline `json:"baseline"`
	Support  Support         `json:"support"`
	// PriorSupport is what a new tag's prior added to each of its items'
	// support (startFrom), taken back if the tag rejects the prior.
	PriorSupport uint32 `json:"prior_support,omitempty"`
}

// Support counts, per item, the distinct nodes that published it (an import
// counts as GuardK nodes).
type Support struct {
	Syscalls   map[string]uint32 `json:"syscalls"`
	Startup    map[string]uint32 `json:"startup"`
	Grams      map[string]uint32 `json:"grams"`
	Binaries   map[string]uint32 `json:"binaries"`
	Exceptions map[string]uint32 `json:"exceptions"` // exceptionKey(rule, binary, detail)
}

func newSupport() Support {
	return Support{Syscalls: map[string]uint32{}, Startup: map[string]uint32{}, Grams: map[string]uint32{},
		Binaries: map[string]uint32{}, Exceptions: map[string]uint32{}}
}

// items are the distinct items of a baseline the guard counts, by kind.
type items struct {
	Syscalls, Startup, Grams, Binaries, Exceptions map[string]bool
}

func newItems() items {
	return items{Syscalls: map[string]bool{}, Startup: map[string]bool{}, Grams: map[string]bool{},
		Binaries: map[string]bool{}, Exceptions: map[string]bool{}}
}

func (it items) kinds() []map[string]bool {
	return []map[string]bool{it.Syscalls, it.Startup, it.Grams, it.Binaries, it.Exceptions}
}

func (s *Support) kinds() []map[string]uint32 {
	return []map[string]uint32{s.Syscalls, s.Startup, s.Grams, s.Binaries, s.Exceptions}
}

// exceptionKey joins a learned exception's parts; NUL appears in none of them.
func exceptionKey(rule, binary, detail string) string {
	return rule + "\x00" + binary + "\x00" + detail
}

// itemsOf lists the items b holds.
func itemsOf(b *model.Baseline) items {
	it := newItems()
	for k := range b.Syscalls {
		it.Syscalls[k] = true
	}
	for k, n := range b.Startup {
		if n > 0 {
			it.Startup[k] = true
		}
	}
	for k, n := range b.Order.Grams {
		if n > 0 {
			it.Grams[k] = true
		}
	}
	for k := range b.Binaries {
		it.Binaries[k] = true
	}
	for rule, byBinary := range b.Exceptions {
		for binary, details := range byBinary {
			for detail, n := range details {
				if n > 0 {
					it.Exceptions[exceptionKey(rule, binary, detail)] = true
				}
			}
		}
	}
	return it
}

// minus returns the items of it that seen lacks.
func (it items) minus(seen items) items {
	out := newItems()
	seenKinds, outKinds := seen.kinds(), out.kinds()
	for i, kind := range it.kinds() {
		for k := range kind {
			if !seenKinds[i][k] {
				outKinds[i][k] = true
			}
		}
	}
	return out
}

// add puts o's items into it.
func (it items) add(o items) {
	kinds := it.kinds()
	for i, kind := range o.kinds() {
		maps.Copy(kinds[i], kind)
	}
}

// newAggregate starts an empty aggregate for the profile of b.
func newAggregate(like *model.Baseline, epoch uint64) *Aggregate {
	b := model.NewBaseline(like.Image, like.Tag, like.ImageID)
	b.Workload = like.Workload
	return &Aggregate{Epoch: epoch, Baseline: b, Support: newSupport()}
}

// apply merges one node's batch: its windows, and +1 node for each item the
// node publishes for the first time (fresh). firstFromNode: the node had not
// contributed in this epoch.
func (a *Aggregate) apply(delta *model.Baseline, fresh items, firstFromNode bool, cfg model.LearnConfig) error {
	b := a.Baseline
	novel := false
	for k := range delta.Syscalls {
		novel = novel || !b.Knows(k)
	}
	for k := range delta.Binaries {
		_, seen := b.Binaries[k]
		novel = novel || !seen
	}
	// Merge restarts convergence and demotes to learning; the aggregate's
	// state machine runs on its own checkpoints across publishes instead.
	state, conv := b.State, b.Convergence
	if err := b.Merge(delta, cfg.SampleSize); err != nil {
		return err
	}
	b.State, b.Convergence = state, conv
	if novel {
		b.Convergence.LastNovelty = b.Windows
	}
	for i, kind := range fresh.kinds() {
		sup := a.Support.kinds()[i]
		for k := range kind {
			sup[k]++
		}
	}
	if firstFromNode {
		a.Nodes++
	}
	priorCounted := b.Prior != nil && b.Prior.Outcome != model.PriorRejected
	b.UpdateState(cfg)
	if priorCounted && b.Prior.Outcome == model.PriorRejected {
		a.addSupport(itemsOf(b.Prior.Baseline), -int64(a.PriorSupport))
		a.PriorSupport = 0
	}
	return nil
}

// startFrom starts a new aggregate from a new tag's prior (its statistics,
// once), each of its items supported by k nodes.
func (a *Aggregate) startFrom(prior *model.Baseline, k uint32) {
	a.Baseline = prior.Clone()
	a.PriorSupport = k
	a.addSupport(itemsOf(prior.Prior.Baseline), int64(k))
}

// addSupport adds n (negative: takes it back, down to 0) to every item's support.
func (a *Aggregate) addSupport(it items, n int64) {
	for i, kind := range it.kinds() {
		sup := a.Support.kinds()[i]
		for key := range kind {
			sup[key] = uint32(max(int64(sup[key])+n, 0))
		}
	}
}

// importBaseline folds an operator's baseline in: trusted, so each of its
// items counts as k nodes.
func (a *Aggregate) importBaseline(in *model.Baseline, k uint32, cfg model.LearnConfig) error {
	if err := a.Baseline.Merge(in, cfg.SampleSize); err != nil {
		return err
	}
	for i, kind := range itemsOf(in).kinds() {
		sup := a.Support.kinds()[i]
		for key := range kind {
			sup[key] += k
		}
	}
	return nil
}

// GuardConfig is the poisoning guard: an item counts as known fleet-wide once
// K nodes published it, when at least MinNodes nodes contribute (else 1).
type GuardConfig struct {
	K        uint32
	MinNodes int
}

// DefaultGuard is the default: K = 2 when 3 or more nodes contribute.
var DefaultGuard = GuardConfig{K: 2, MinNodes: 3}

// threshold is the node count an item needs.
func (g GuardConfig) threshold(nodes int) uint32 {
	if nodes >= g.MinNodes && g.K > 1 {
		return g.K
	}
	return 1
}

// guard removes from the aggregate's baseline, in place, the items fewer
// than the guard's threshold of nodes published, except those in own (what
// this node learned itself), and returns the baseline.
func (a *Aggregate) guard(g GuardConfig, own items) *model.Baseline {
	b := a.Baseline
	need := g.threshold(a.Nodes)
	if need <= 1 {
		return b
	}
	weak := func(sup map[string]uint32, mine map[string]bool, k string) bool { return sup[k] < need && !mine[k] }
	for k := range b.Syscalls {
		if weak(a.Support.Syscalls, own.Syscalls, k) {
			delete(b.Syscalls, k)
			delete(b.Composition.Shares, k)
		}
	}
	for k := range b.Startup {
		if weak(a.Support.Startup, own.Startup, k) {
			delete(b.Startup, k)
		}
	}
	for k := range b.Order.Grams {
		if weak(a.Support.Grams, own.Grams, k) {
			delete(b.Order.Grams, k)
		}
	}
	for k := range b.Binaries {
		if weak(a.Support.Binaries, own.Binaries, k) {
			delete(b.Binaries, k)
		}
	}
	for rule, byBinary := range b.Exceptions {
		for binary, details := range byBinary {
			for detail := range details {
				if weak(a.Support.Exceptions, own.Exceptions, exceptionKey(rule, binary, detail)) {
					delete(details, detail)
				}
			}
		}
	}
	return b
}

// wireAggregate is the aggregate as stored: each kind's node counts are a
// list aligned with the baseline's sorted items of that kind, so the 26,000
// gram keys of a large image are not stored twice (docs/fleet.md).
type wireAggregate struct {
	Format   int             `json:"format"`
	Epoch    uint64          `json:"epoch"`
	StateRev uint64          `json:"state_rev"`
	Nodes    int             `json:"nodes"`
	Baseline *model.Baseline `json:"baseline"`
	Support  [][]uint32      `json:"support"` // syscalls, startup, grams, binaries, exceptions
	// PriorSupport: see Aggregate.
	PriorSupport uint32 `json:"prior_support,omitempty"`
}

// encode is gzip'd JSON: the order view and the sample are most of an
// aggregate and compress about sevenfold.
func (a *Aggregate) encode() ([]byte, error) {
	w := wireAggregate{Format: aggregateFormat, Epoch: a.Epoch, StateRev: a.StateRev, Nodes: a.Nodes, Baseline: a.Baseline, PriorSupport: a.PriorSupport}
	sup := a.Support.kinds()
	for i, kind := range itemsOf(a.Baseline).kinds() {
		keys := slices.Sorted(maps.Keys(kind))
		counts := make([]uint32, len(keys))
		for j, k := range keys {
			counts[j] = sup[i][k]
		}
		w.Support = append(w.Support, counts)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(w); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() > MaxAggregateBytes {
		return nil, fmt.Errorf("%w: profile %q encodes to %d bytes (limit %d)", ErrTooLarge, a.Baseline.Key(), buf.Len(), MaxAggregateBytes)
	}
	return buf.Bytes(), nil
}

// decodeAggregate reads and checks an encoded aggregate.
func decodeAggregate(raw []byte) (*Aggregate, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("aggregate: %w", err)
	}
	// A corrupt or hostile value must not inflate without bound.
	body, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("aggregate: %w", err)
	}
	var w wireAggregate
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("aggregate: %w", err)
	}
	if w.Format != aggregateFormat {
		return nil, fmt.Errorf("aggregate: format %d, this build reads %d", w.Format, aggregateFormat)
	}
	if w.Baseline == nil {
		return nil, errors.New("aggregate: no baseline")
	}
	w.Baseline.FillEmpty()
	if err := w.Baseline.Validate(); err != nil {
		return nil, fmt.Errorf("aggregate of %q: %w", w.Baseline.Key(), err)
	}
	a := &Aggregate{Epoch: w.Epoch, StateRev: w.StateRev, Nodes: w.Nodes, Baseline: w.Baseline, Support: newSupport(), PriorSupport: w.PriorSupport}
	kinds := itemsOf(w.Baseline).kinds()
	if len(w.Support) != len(kinds) {
		return nil, fmt.Errorf("aggregate of %q: %d support lists, want %d", w.Baseline.Key(), len(w.Support), len(kinds))
	}
	sup := a.Support.kinds()
	for i, kind := range kinds {
		keys := slices.Sorted(maps.Keys(kind))
		if len(w.Support[i]) != len(keys) {
			return nil, fmt.Errorf("aggregate of %q: support list %d has %d counts for %d items", w.Baseline.Key(), i, len(w.Support[i]), len(keys))
		}
		for j, k := range keys {
			if n := w.Support[i][j]; n > 0 {
				sup[i][k] = n
			}
		}
	}
	return a, nil
}
