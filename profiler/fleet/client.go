package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cagewatch/cagewatch/model"
)

// Observer receives the fleet's metrics (cagewatch_fleet_*); nil: none.
type Observer interface {
	SetConnected(bool)
	SetNodes(profile string, nodes int)
}

// Client publishes this node's learning and keeps the fleet's aggregates.
// Learning calls (Update, AddWindow) never wait on etcd: they only touch the
// pending delta, which Run publishes.
type Client struct {
	cfg   Config
	learn model.LearnConfig
	log   *slog.Logger
	etcd  *clientv3.Client
	obs   Observer

	publishMu sync.Mutex // one publisher at a time: it owns sealed batches
	mu        sync.Mutex
	profiles  map[string]*profile
	connected bool
	down      bool // unavailability logged, not yet recovered
	lastPub   time.Time
	lease     clientv3.LeaseID
	watching  map[string]context.CancelFunc
	refresh   chan string

	// onStable, when set, is called (on its own goroutine) when an aggregate
	// read shows the profile's fleet baseline became stable.
	onStable func(key string)

	// afterCommit, in tests, turns a committed publish into an error, as if
	// its response had been lost.
	afterCommit func() error
	// onPublish, in the simulation, sees each publish: its duration, the part
	// of it spent waiting on etcd, compare-and-swap attempts and the
	// aggregate's encoded size.
	onPublish func(key string, d, inEtcd time.Duration, attempts, bytes int, err error)
}

// profile is one profile key's fleet state on this node.
type profile struct {
	key     string
	epoch   uint64          // of pending and sealed; 0 until first seen
	pending *model.Baseline // learned since the last seal
	sealed  []*batch        // sent or about to be, not known applied
	seq     uint64          // last sealed batch number
	// published: the items this node put in batches of this epoch, so each
	// adds one node to an item's support once.
	published  items
	attemptRev int64 // agg revision the last failed attempt compared
	// The last aggregate read, kept encoded (a large image's is 2 MB in
	// memory, 300 KB encoded); view is decoded from it when asked for.
	raw         []byte
	sum         summary
	aggRev      int64
	view        *model.Baseline // guarded; nil: to build
	gen         uint64          // counts adopted aggregates
	next        time.Time
	lastPublish time.Time
	took        time.Duration // the last publish, conflicts included
	// prior: a new tag's baseline started from its previous tag's, offered
	// until the profile has an aggregate; the publish that creates the
	// aggregate starts it from the prior (priorTrusted: read from the fleet).
	prior        *model.Baseline
	priorTrusted bool
	// Changes to what the outbox keeps, and the last saved ones.
	stateGen, savedState uint64
	pubGen, savedPub     uint64
}

// summary is what status and scheduling need of the last aggregate read.
type summary struct {
	Nodes   int
	Windows uint64
	State   model.BaselineState
	Prior   *model.Prior // without its statistics: status shows where a tag started from
}

// batch is an immutable delta with its number: "was batch n applied?" is
// answered by the node's watermark.
type batch struct {
	seq   uint64
	delta *model.Baseline
	fresh items // items first published in this batch
}

// Watermark is what etcd keeps per node and profile: the last applied batch.
type Watermark struct {
	Epoch   uint64    `json:"epoch"`
	Seq     uint64    `json:"seq"`
	Windows uint64    `json:"windows"` // this node's windows in the aggregate, this epoch
	At      time.Time `json:"at"`
}

// State is the per-profile state key: admin actions, revisioned.
type State struct {
	Rev    uint64    `json:"rev"`
	Epoch  uint64    `json:"epoch"`
	Action string    `json:"action"` // promote, reset, import, import-merge
	Node   string    `json:"node"`
	At     time.Time `json:"at"`
}

// New builds a client. It does not wait for etcd: an unreachable etcd at start
// leaves the agent on its local baselines until the first call succeeds.
func New(cfg Config, learn model.LearnConfig, obs Observer, log *slog.Logger) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, TLS: tlsCfg, DialTimeout: cfg.RequestTimeout,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: cfg.RequestTimeout,
		Logger: zap.NewNop(), // its retries would flood the agent's log during an outage
	})
	if err != nil {
		return nil, fmt.Errorf("fleet.etcd.endpoints %v: %w", cfg.Endpoints, err)
	}
	if learn.SampleSize <= 0 {
		learn.SampleSize = model.DefaultSampleSize
	}
	c := &Client{cfg: cfg, learn: learn, log: log, etcd: cli, obs: obs, profiles: map[string]*profile{},
		watching: map[string]context.CancelFunc{}, refresh: make(chan string, 64)}
	if cfg.Outbox != nil {
		c.mu.Lock()
		err := c.restore()
		c.mu.Unlock()
		if err != nil {
			_ = cli.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close saves the outbox, ends the node's lease (a stopped node shows stale
// at once rather than after the lease's TTL) and releases the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	for _, cancel := range c.watching {
		cancel()
	}
	lease := c.lease
	c.mu.Unlock()
	if lease != 0 {
		ctx, cancel := c.ctx(context.Background())
		_, _ = c.etcd.Revoke(ctx, lease) // best effort: the TTL ends it otherwise
		cancel()
	}
	return errors.Join(c.SaveOutbox(), c.etcd.Close())
}

// OnStable calls fn with a profile's key when the fleet baseline of it is
// seen becoming stable (the agent logs a new tag's changes then).
func (c *Client) OnStable(fn func(key string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onStable = fn
}

// Node is this node's name in the fleet.
func (c *Client) Node() string { return c.cfg.Node }

func (c *Client) aggKey(key string) string {
	return c.cfg.Prefix + "/images/" + url.PathEscape(key) + "/agg"
}
func (c *Client) stateKey(key string) string {
	return c.cfg.Prefix + "/images/" + url.PathEscape(key) + "/state"
}
func (c *Client) priorKey(key string) string {
	return c.cfg.Prefix + "/images/" + url.PathEscape(key) + "/prior"
}
func (c *Client) familyKey(family string) string {
	return c.cfg.Prefix + "/families/" + url.PathEscape(family) + "/stable"
}
func (c *Client) publishedKey() string { return c.cfg.Prefix + "/nodes/" + c.cfg.Node + "/published" }
func (c *Client) aliveKey() string     { return c.cfg.Prefix + "/nodes/" + c.cfg.Node + "/alive" }

// Update applies a learning change to the profile's pending delta: the same
// change the learner makes to the local baseline.
func (c *Client) Update(ct model.Container, fn func(b *model.Baseline)) {
	key := ct.ProfileKey()
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.profileLocked(key)
	if p.pending == nil {
		p.pending = model.NewProfileBaseline(ct)
	}
	fn(p.pending)
	p.stateGen++
}

// Seed offers a baseline this node learned before it joined the fleet (its
// local store's): it becomes the node's first contribution, unless the node
// already has fleet history for the profile (the outbox remembers it), so a
// restart never seeds twice. A baseline imported from another node's export
// would count that node's windows again: seed only what was learned here.
func (c *Client) Seed(b *model.Baseline) {
	if b == nil || b.Windows == 0 && len(b.Startup) == 0 && len(b.Binaries) == 0 && len(b.Exceptions) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.profileLocked(b.Key())
	if p.epoch != 0 || p.seq != 0 || p.pending != nil || len(p.sealed) > 0 {
		return
	}
	seed := b.Clone()
	seed.State, seed.Convergence = model.StateLearning, model.Convergence{}
	p.pending = seed
	p.stateGen++
}

// OfferPrior offers the prior of a new tag's baseline started from its
// previous tag's (model.NewPriorBaseline; b may have learned since). The publish that creates the tag's aggregate
// starts it from the prior, so the prior enters the fleet once, whichever
// nodes offered it; once the aggregate exists, offers are ignored.
// trusted: the prior was read from the fleet's view of the old tag, so its
// items count as known fleet-wide; otherwise as one node's.
func (c *Client) OfferPrior(b *model.Baseline, trusted bool) {
	start := b.PriorStart() // what b learned since is its own, published as windows
	if start == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.profileLocked(b.Key())
	if p.raw == nil && p.prior == nil {
		p.prior, p.priorTrusted = start, trusted
	}
}

// PriorRecord is the fleet-level record of a tag started from another's
// (P/images/<key>/prior), written once, with the aggregate it started.
type PriorRecord struct {
	From    string    `json:"from"`
	Windows uint64    `json:"windows"`
	Trusted bool      `json:"trusted"` // from the fleet's view of the old tag
	Node    string    `json:"node"`
	At      time.Time `json:"at"`
}

// FamilyRecord names the most recently stable tag of an upgrade family
// (model.Baseline.UpgradeFamily) fleet-wide (P/families/<family>/stable): a
// node that never ran the old tag starts a new tag from it all the same.
type FamilyRecord struct {
	Profile string    `json:"profile"`
	At      time.Time `json:"at"`
	Node    string    `json:"node"`
}

// familyOps names key its family's newest stable tag when a transaction
// takes its aggregate to stable (wasStable: it was stable before).
func (c *Client) familyOps(key string, wasStable bool, next *Aggregate) ([]clientv3.Op, error) {
	family := next.Baseline.UpgradeFamily()
	if wasStable || next.Baseline.State != model.StateStable || family == "" {
		return nil, nil
	}
	rec, err := json.Marshal(FamilyRecord{Profile: key, At: time.Now().UTC(), Node: c.cfg.Node})
	if err != nil {
		return nil, err
	}
	return []clientv3.Op{clientv3.OpPut(c.familyKey(family), string(rec))}, nil
}

// familyPrior is the prior a new tag's aggregate starts from when no node
// offered one: its family's newest stable tag in the fleet, guarded as every
// node would see it (so its items count as known fleet-wide). Nil when the
// family has none, or it is this tag; a record that no longer decodes is
// logged and skipped, never a reason not to publish.
func (c *Client) familyPrior(ctx context.Context, key string, fresh *model.Baseline) (*model.Baseline, error) {
	family := fresh.UpgradeFamily()
	if c.learn.PriorWindows == 0 || family == "" {
		return nil, nil
	}
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.etcd.Get(cctx, c.familyKey(family))
	if err != nil {
		return nil, fmt.Errorf("reading %s from %v: %w", c.familyKey(family), c.cfg.Endpoints, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var rec FamilyRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		c.log.Warn("fleet: unreadable family record; the new tag learns from nothing", "key", c.familyKey(family), "err", err.Error())
		return nil, nil
	}
	if rec.Profile == key {
		return nil, nil
	}
	if resp, err = c.etcd.Get(cctx, c.aggKey(rec.Profile)); err != nil {
		return nil, fmt.Errorf("reading %s from %v: %w", c.aggKey(rec.Profile), c.cfg.Endpoints, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil // reset since
	}
	agg, err := decodeAggregate(resp.Kvs[0].Value)
	if err != nil {
		c.log.Warn("fleet: the previous tag's aggregate does not decode; the new tag learns from nothing",
			"profile", key, "from", rec.Profile, "err", err.Error())
		return nil, nil
	}
	old := model.PriorSource(fresh, []*model.Baseline{agg.guard(c.cfg.Guard, newItems())})
	if old == nil {
		return nil, nil // not stable any more (reset, replaced)
	}
	b := model.NewPriorBaseline(fresh, old, c.learn, time.Now().UTC())
	if b == nil {
		return nil, nil
	}
	c.log.Info("new tag starts from its previous tag's fleet baseline", "profile", key, "from", rec.Profile, "windows", b.Prior.Windows)
	return b.PriorStart(), nil
}

// AddWindow learns one window into the pending delta.
func (c *Client) AddWindow(w model.Window) {
	c.Update(w.Container, func(b *model.Baseline) { b.AddWindow(w, c.learn.SampleSize) })
}

func (c *Client) profileLocked(key string) *profile {
	p := c.profiles[key]
	if p == nil {
		// A random first publish: nodes that start together (a rollout) must
		// not all publish an image at the same instant.
		first := time.Now().Add(time.Duration(rand.Int64N(int64(c.cfg.PublishInterval))))
		p = &profile{key: key, published: newItems(), next: first}
		c.profiles[key] = p
	}
	return p
}

// View is the fleet baseline the agent decides with: the aggregate without
// the items fewer than K nodes published, unless this node learned them
// itself. It is rebuilt only when a new aggregate is read or this node
// publishes new items, so callers may cache calibrations on its identity;
// they must not change it. This node's windows not yet published join at its
// next publish. ok is false before any aggregate was read.
func (c *Client) View(key string) (b *model.Baseline, ok bool) {
	c.mu.Lock()
	p := c.profiles[key]
	if p == nil || p.raw == nil {
		c.mu.Unlock()
		return nil, false
	}
	if p.view != nil {
		defer c.mu.Unlock()
		return p.view, true
	}
	raw, gen, own := p.raw, p.gen, newItems()
	own.add(p.published)
	c.mu.Unlock()
	// Decoded outside the lock: learning must not wait on it.
	agg, err := decodeAggregate(raw)
	if err != nil { // read and checked once already: cannot happen
		c.log.Error("fleet: decoding the aggregate", "profile", key, "err", err.Error())
		return nil, false
	}
	v := agg.guard(c.cfg.Guard, own)
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.gen == gen { // no newer aggregate meanwhile
		p.view = v
	}
	return v, true
}

// Aggregate returns a copy of the last aggregate read for key, unguarded.
func (c *Client) Aggregate(key string) (*Aggregate, bool) {
	c.mu.Lock()
	p := c.profiles[key]
	var raw []byte
	if p != nil {
		raw = p.raw
	}
	c.mu.Unlock()
	if raw == nil {
		return nil, false
	}
	a, err := decodeAggregate(raw)
	return a, err == nil
}

// Connected reports whether the last etcd call succeeded.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// noteErr tracks reachability: an outage is logged once, and its end once.
func (c *Client) noteErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		if c.down {
			c.log.Info("fleet: etcd reachable again, publishing what was learned meanwhile", "endpoints", c.cfg.Endpoints)
		}
		c.connected, c.down = true, false
	} else {
		if !c.down {
			// Decisions stay on the last fleet view read: falling back to this
			// node's partial baselines would send a profile the fleet made
			// stable back to learning here, and stop scoring it.
			c.log.Warn("fleet: etcd unavailable; learning locally, deciding with the last fleet baselines read (local ones where there is none)",
				"endpoints", c.cfg.Endpoints, "err", err.Error())
		}
		c.connected, c.down = false, true
	}
	if c.obs != nil {
		c.obs.SetConnected(c.connected)
	}
}

func (c *Client) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.cfg.RequestTimeout)
}

// read fetches the aggregate and this node's watermarks in one snapshot.
// readResult is one snapshot of a profile's aggregate and this node's watermarks.
type readResult struct {
	agg    *Aggregate // nil: none yet
	raw    []byte
	aggRev int64
	wms    map[string]Watermark
	wmRev  int64
}

func (c *Client) read(ctx context.Context, key string) (readResult, error) {
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.etcd.Txn(cctx).Then(clientv3.OpGet(c.aggKey(key)), clientv3.OpGet(c.publishedKey())).Commit()
	if err != nil {
		return readResult{}, fmt.Errorf("reading %s from %v: %w", c.aggKey(key), c.cfg.Endpoints, err)
	}
	r := readResult{wms: map[string]Watermark{}}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		if r.agg, err = decodeAggregate(kvs[0].Value); err != nil {
			return readResult{}, fmt.Errorf("%s: %w", c.aggKey(key), err)
		}
		r.raw, r.aggRev = kvs[0].Value, kvs[0].ModRevision
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := json.Unmarshal(kvs[0].Value, &r.wms); err != nil {
			return readResult{}, fmt.Errorf("%s: %w", c.publishedKey(), err)
		}
		r.wmRev = kvs[0].ModRevision
	}
	return r, nil
}

// adoptLocked takes a freshly read aggregate; a new epoch (reset, replacing
// import) drops what this node learned under the old one.
func (c *Client) adoptLocked(p *profile, agg *Aggregate, raw []byte, rev int64) {
	if agg == nil {
		if p.epoch == 0 {
			p.epoch = 1
		}
		return
	}
	if p.epoch != 0 && agg.Epoch != p.epoch {
		c.log.Info("fleet: profile reset or replaced elsewhere; dropping windows learned before it",
			"profile", p.key, "epoch", agg.Epoch)
		p.pending, p.sealed, p.seq, p.published = nil, nil, 0, newItems()
		p.stateGen++
		p.pubGen++
	}
	if p.raw != nil && p.sum.State != model.StateStable && agg.Baseline.State == model.StateStable {
		from := ""
		if agg.Baseline.Prior != nil {
			from = agg.Baseline.Prior.From
		}
		c.log.Info("fleet baseline stable", "profile", p.key, "windows", agg.Baseline.Windows, "nodes", agg.Nodes,
			"containers", len(agg.Baseline.Containers), "prior_from", from)
		if c.onStable != nil {
			go c.onStable(p.key) // it reads the view, which takes c.mu
		}
	}
	p.epoch, p.raw, p.aggRev, p.view, p.prior = agg.Epoch, raw, rev, nil, nil
	p.gen++
	was := p.sum.Prior
	p.sum = summary{Nodes: agg.Nodes, Windows: agg.Baseline.Windows, State: agg.Baseline.State}
	if pr := agg.Baseline.Prior; pr != nil {
		if was != nil && was.Outcome == "" && pr.Outcome != "" {
			c.log.Info("fleet: new tag's prior judged", "profile", p.key, "from", pr.From, "outcome", pr.Outcome, "why", pr.Why)
		}
		p.sum.Prior = &model.Prior{From: pr.From, Windows: pr.Windows, At: pr.At, Outcome: pr.Outcome, Why: pr.Why}
	}
	if c.obs != nil {
		c.obs.SetNodes(p.key, agg.Nodes)
	}
}

// errConflict: another node published first; read again.
var errConflict = errors.New("compare-and-swap lost")

// Publish publishes every profile with unpublished windows now, ignoring the
// schedule (tests; Run publishes on its schedule).
func (c *Client) Publish(ctx context.Context) error {
	var errs []error
	for _, key := range c.keys() {
		if err := c.publishProfile(ctx, key, 100); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Client) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.profiles {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// errDeferred: the compare-and-swap was lost a few times; the batches wait
// for the next scheduled publish.
var errDeferred = errors.New("publish deferred: other nodes were publishing this profile")

// publishProfile merges this node's unpublished batches into the aggregate,
// retrying lost compare-and-swaps up to attempts times.
func (c *Client) publishProfile(ctx context.Context, key string, attempts int) error {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	start := time.Now()
	var m publishMeasure
	for attempt := 0; ; attempt++ {
		err := c.publishOnce(ctx, key, &m)
		if !errors.Is(err, errConflict) {
			if c.onPublish != nil && m.size > 0 {
				c.onPublish(key, time.Since(start), m.inEtcd, attempt+1, m.size, err)
			}
			return err
		}
		if attempt+1 >= attempts {
			if c.onPublish != nil {
				c.onPublish(key, time.Since(start), m.inEtcd, attempt+1, m.size, errDeferred)
			}
			return fmt.Errorf("publishing %s: %w (%d compare-and-swaps lost)", key, errDeferred, attempt+1)
		}
		// Each lost round costs a read, a merge and an encode of the whole
		// aggregate: back off exponentially (jittered) rather than pile on.
		backoff := min(10*time.Millisecond<<min(attempt, 8), 2*time.Second)
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(backoff)))):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// publishMeasure is what the simulation reports of a publish.
type publishMeasure struct {
	size   int
	inEtcd time.Duration
}

func (c *Client) publishOnce(ctx context.Context, key string, m *publishMeasure) error {
	readStart := time.Now()
	r, err := c.read(ctx, key)
	m.inEtcd += time.Since(readStart)
	c.noteErr(err)
	if err != nil {
		return err
	}
	agg, aggRev, wms, wmRev := r.agg, r.aggRev, r.wms, r.wmRev
	c.mu.Lock()
	p := c.profileLocked(key)
	c.adoptLocked(p, agg, r.raw, aggRev)
	wm, had := wms[key]
	if had && wm.Epoch == p.epoch {
		// Batches up to the watermark were applied by an attempt whose answer
		// was lost: never again.
		p.sealed = slices.DeleteFunc(p.sealed, func(b *batch) bool { return b.seq <= wm.Seq })
		p.seq = max(p.seq, wm.Seq)
		p.stateGen++
	}
	// Every earlier attempt compared an older revision of the aggregate: it
	// applied (the watermark says so) or it never will, so what is left can
	// be folded into one batch.
	if len(p.sealed) > 1 && aggRev != p.attemptRev {
		folded := p.sealed[len(p.sealed)-1]
		for _, b := range p.sealed[:len(p.sealed)-1] {
			if err := folded.delta.Merge(b.delta, c.learn.SampleSize); err != nil {
				c.mu.Unlock()
				return err
			}
			folded.fresh.add(b.fresh)
		}
		p.sealed = []*batch{folded}
		p.stateGen++
	}
	if p.pending != nil && p.pending.Windows+uint64(len(p.pending.Startup)+len(p.pending.Binaries)+len(p.pending.Exceptions)) > 0 {
		fresh := itemsOf(p.pending).minus(p.published)
		p.published.add(fresh)
		if len(fresh.Syscalls)+len(fresh.Startup)+len(fresh.Grams)+len(fresh.Binaries)+len(fresh.Exceptions) > 0 {
			p.view = nil // its own new items join the view
			p.pubGen++
		}
		p.stateGen++
		p.seq++
		p.sealed = append(p.sealed, &batch{seq: p.seq, delta: p.pending, fresh: fresh})
	}
	p.pending = nil
	if len(p.sealed) == 0 {
		c.mu.Unlock()
		return nil
	}
	sealed := slices.Clone(p.sealed)
	epoch := p.epoch
	prior, priorTrusted := p.prior, p.priorTrusted
	c.mu.Unlock()

	// The new aggregate: the one read (or an empty one, or a new tag's prior)
	// with the batches merged.
	next := agg // decoded for this attempt alone
	wasStable := agg != nil && agg.Baseline.State == model.StateStable
	var priorOp []clientv3.Op
	if next == nil {
		next = newAggregate(sealed[0].delta, epoch)
		if prior == nil {
			if prior, err = c.familyPrior(ctx, key, sealed[0].delta); err != nil {
				c.noteErr(err)
				return err
			}
			priorTrusted = true
		}
		if prior != nil {
			support := uint32(1)
			if priorTrusted {
				support = max(c.cfg.Guard.K, 1)
			}
			next.startFrom(prior, support)
			rec, err := json.Marshal(PriorRecord{From: prior.Prior.From, Windows: prior.Prior.Windows, Trusted: priorTrusted,
				Node: c.cfg.Node, At: time.Now().UTC()})
			if err != nil {
				return err
			}
			priorOp = append(priorOp, clientv3.OpPut(c.priorKey(key), string(rec)))
		}
	}
	first := !had || wm.Epoch != epoch
	var windows uint64
	for i, b := range sealed {
		if err := next.apply(b.delta.Clone(), b.fresh, first && i == 0, c.learn); err != nil {
			return fmt.Errorf("publishing %s: %w", key, err)
		}
		windows += b.delta.Windows
	}
	enc, err := next.encode()
	if err != nil {
		return err
	}
	m.size = len(enc)
	familyOp, err := c.familyOps(key, wasStable, next)
	if err != nil {
		return err
	}
	last := sealed[len(sealed)-1].seq
	if first {
		wm = Watermark{Epoch: epoch}
	}
	wm.Seq, wm.Windows, wm.At = last, wm.Windows+windows, time.Now().UTC()
	wms[key] = wm
	wmRaw, err := json.Marshal(wms)
	if err != nil {
		return err
	}
	cmps := []clientv3.Cmp{casOn(c.aggKey(key), aggRev), casOn(c.publishedKey(), wmRev)}
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	c.mu.Lock()
	p.attemptRev = aggRev
	c.mu.Unlock()
	commitStart := time.Now()
	ops := append([]clientv3.Op{clientv3.OpPut(c.aggKey(key), string(enc)), clientv3.OpPut(c.publishedKey(), string(wmRaw))}, priorOp...)
	ops = append(ops, familyOp...)
	resp, err := c.etcd.Txn(cctx).If(cmps...).Then(ops...).Commit()
	m.inEtcd += time.Since(commitStart)
	if err == nil && c.afterCommit != nil && resp.Succeeded {
		err = c.afterCommit()
	}
	c.noteErr(err)
	if err != nil {
		return fmt.Errorf("publishing %s to %v: %w", c.aggKey(key), c.cfg.Endpoints, err)
	}
	if !resp.Succeeded {
		return errConflict
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p.sealed = slices.DeleteFunc(p.sealed, func(b *batch) bool { return b.seq <= last })
	p.stateGen++
	c.adoptLocked(p, next, enc, resp.Header.Revision) // sets the nodes metric
	p.lastPublish, c.lastPub = time.Now(), time.Now()
	return nil
}

// casOn compares a key's revision with the one read (0: it did not exist).
func casOn(key string, rev int64) clientv3.Cmp {
	if rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
}

// Refresh reads the profile's aggregate if it moved since the last read.
func (c *Client) Refresh(ctx context.Context, key string) error {
	c.mu.Lock()
	rev := c.profileLocked(key).aggRev
	c.mu.Unlock()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.etcd.Get(cctx, c.aggKey(key), clientv3.WithKeysOnly())
	if err == nil && len(resp.Kvs) > 0 && resp.Kvs[0].ModRevision != rev {
		resp, err = c.etcd.Get(cctx, c.aggKey(key))
	}
	c.noteErr(err)
	if err != nil {
		return fmt.Errorf("reading %s from %v: %w", c.aggKey(key), c.cfg.Endpoints, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].ModRevision == rev || len(resp.Kvs[0].Value) == 0 {
		return nil
	}
	agg, err := decodeAggregate(resp.Kvs[0].Value)
	if err != nil {
		return fmt.Errorf("%s: %w", c.aggKey(key), err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.adoptLocked(c.profileLocked(key), agg, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	return nil
}

// ErrUnknownProfile: an admin action named a profile the fleet has no aggregate of.
var ErrUnknownProfile = errors.New("no fleet baseline")

// Promote marks the profile's fleet baseline stable on every node.
func (c *Client) Promote(ctx context.Context, key string) error {
	return c.admin(ctx, key, "promote", func(a *Aggregate) (*Aggregate, error) {
		if a == nil {
			return nil, fmt.Errorf("%w: %q", ErrUnknownProfile, key)
		}
		a.Baseline.Promote(time.Now())
		return a, nil
	})
}

// Reset forgets the profile's fleet baseline: a new epoch, learning from nothing.
func (c *Client) Reset(ctx context.Context, key string) error {
	return c.admin(ctx, key, "reset", func(a *Aggregate) (*Aggregate, error) {
		if a == nil {
			return nil, fmt.Errorf("%w: %q", ErrUnknownProfile, key)
		}
		n := newAggregate(a.Baseline, a.Epoch+1)
		n.StateRev = a.StateRev
		return n, nil
	})
}

// Import puts an operator's baseline into the fleet: it replaces the
// aggregate (a new epoch) or, with merge, folds into it. Its items count as
// known fleet-wide.
func (c *Client) Import(ctx context.Context, in *model.Baseline, merge bool) error {
	action := "import"
	if merge {
		action = "import-merge"
	}
	k := c.cfg.Guard.K
	return c.admin(ctx, in.Key(), action, func(a *Aggregate) (*Aggregate, error) {
		switch {
		case a == nil:
			a = newAggregate(in, 1)
		case !merge:
			n := newAggregate(in, a.Epoch+1)
			n.StateRev = a.StateRev
			a = n
		}
		state := a.Baseline.State
		if err := a.importBaseline(in.Clone(), k, c.learn); err != nil {
			return nil, err
		}
		if !merge {
			state = in.State
		}
		a.Baseline.State = state
		return a, nil
	})
}

// admin runs one action as a compare-and-swap over the aggregate and the
// profile's state key, which every node running the profile watches.
func (c *Client) admin(ctx context.Context, key, action string, fn func(*Aggregate) (*Aggregate, error)) error {
	for attempt := 0; attempt < 100; attempt++ {
		r, err := c.read(ctx, key)
		c.noteErr(err)
		if err != nil {
			return err
		}
		aggRev := r.aggRev
		wasStable := r.agg != nil && r.agg.Baseline.State == model.StateStable
		next, err := fn(r.agg)
		if err != nil {
			return err
		}
		next.StateRev++
		enc, err := next.encode()
		if err != nil {
			return err
		}
		ops, err := c.familyOps(key, wasStable, next)
		if err != nil {
			return err
		}
		st, err := json.Marshal(State{Rev: next.StateRev, Epoch: next.Epoch, Action: action, Node: c.cfg.Node, At: time.Now().UTC()})
		if err != nil {
			return err
		}
		cctx, cancel := c.ctx(ctx)
		ops = append(ops, clientv3.OpPut(c.aggKey(key), string(enc)), clientv3.OpPut(c.stateKey(key), string(st)))
		resp, err := c.etcd.Txn(cctx).If(casOn(c.aggKey(key), aggRev)).Then(ops...).Commit()
		cancel()
		c.noteErr(err)
		if err != nil {
			return fmt.Errorf("%s of %s on %v: %w", action, key, c.cfg.Endpoints, err)
		}
		if resp.Succeeded {
			c.mu.Lock()
			c.adoptLocked(c.profileLocked(key), next, enc, resp.Header.Revision)
			c.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("%s of %s: too many concurrent changes", action, key)
}

// Run keeps the node's liveness key, watches the state keys of the profiles
// it runs and publishes each on its schedule, until ctx ends. It never fails
// on etcd errors: those degrade the agent to local baselines.
func (c *Client) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.PublishInterval)
	defer t.Stop()
	for {
		c.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case key := <-c.refresh:
			if err := c.Refresh(ctx, key); err != nil {
				c.log.Debug("fleet: refresh", "profile", key, "err", err.Error())
			}
		}
	}
}

func (c *Client) round(ctx context.Context) {
	c.ensureLease(ctx)
	now := time.Now()
	for _, key := range c.keys() {
		c.ensureWatch(ctx, key)
		c.mu.Lock()
		p := c.profiles[key]
		due := !now.Before(p.next)
		hasData := p.pending != nil || len(p.sealed) > 0
		nodes := 1
		if p.raw != nil {
			nodes = max(p.sum.Nodes, 1)
		}
		took := p.took
		c.mu.Unlock()
		if !due {
			continue
		}
		var err error
		start := time.Now()
		if hasData {
			// Contended, a node yields after a few tries rather than re-read
			// a large aggregate again and again: its batches go next time.
			err = c.publishProfile(ctx, key, 3)
			took = time.Since(start)
		} else {
			err = c.Refresh(ctx, key)
		}
		if err != nil && !errors.Is(err, errDeferred) {
			c.log.Debug("fleet: publish", "profile", key, "err", err.Error())
			if !c.Connected() {
				break // etcd is out of reach: the other profiles would each wait out a timeout too
			}
			continue // this profile's problem; retried next round
		}
		// One aggregate sees about one write per Spacing however many nodes
		// run it (docs/fleet.md, rule 2), and never more than a quarter of
		// the time a publish takes here: a large aggregate's read, merge and
		// write would otherwise overlap other nodes' and lose its
		// compare-and-swap over and over. Jitter keeps nodes apart.
		every := max(c.cfg.PublishInterval, time.Duration(nodes)*max(c.cfg.Spacing, 4*took))
		every = time.Duration(float64(every) * (0.75 + rand.Float64()/2))
		c.mu.Lock()
		p.next, p.took = now.Add(every), took
		c.mu.Unlock()
	}
	if err := c.SaveOutbox(); err != nil {
		c.log.Warn("fleet: saving unpublished learning", "err", err.Error())
	}
}

// ensureLease keeps this node's liveness key under a lease; data keys never are.
func (c *Client) ensureLease(ctx context.Context) {
	c.mu.Lock()
	lease := c.lease
	c.mu.Unlock()
	if lease != 0 {
		return
	}
	ttl := int64(max(3*c.cfg.PublishInterval, 15*time.Second) / time.Second)
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	g, err := c.etcd.Grant(cctx, ttl)
	if err == nil {
		alive, _ := json.Marshal(map[string]any{"node": c.cfg.Node, "since": time.Now().UTC()})
		_, err = c.etcd.Put(cctx, c.aliveKey(), string(alive), clientv3.WithLease(g.ID))
	}
	c.noteErr(err)
	if err != nil {
		return
	}
	ch, err := c.etcd.KeepAlive(ctx, g.ID)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.lease = g.ID
	c.mu.Unlock()
	go func() {
		for range ch { //nolint:revive // drain: the client renews as long as we read
		}
		c.mu.Lock()
		c.lease = 0 // lapsed or ctx ended: granted again next round
		c.mu.Unlock()
	}()
}

// ensureWatch watches the profile's state key so an admin action anywhere
// reaches this node at once; aggregates are read, never watched (docs/fleet.md).
func (c *Client) ensureWatch(ctx context.Context, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.watching[key]; ok {
		return
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	c.watching[key] = cancel
	ch := c.etcd.Watch(wctx, c.stateKey(key))
	go func() {
		for resp := range ch {
			if len(resp.Events) == 0 {
				continue
			}
			select {
			case c.refresh <- key:
			default:
			}
		}
		cancel()
		c.mu.Lock()
		delete(c.watching, key) // lost leader or closed: watched again next round
		c.mu.Unlock()
	}()
}

// Nodes lists the fleet's nodes from etcd, keys only (names, not values:
// 5,000 nodes' watermarks would be megabytes): every node that published,
// and which of them hold a live lease. A stale node's learning still counts.
type Nodes struct {
	Published int      `json:"published"`
	Alive     int      `json:"alive"`
	Stale     []string `json:"stale,omitempty"` // published, lease lapsed; at most MaxStaleListed
	StaleN    int      `json:"stale_count"`
}

// MaxStaleListed bounds the stale node names status carries.
const MaxStaleListed = 50

// Nodes reads the node keys under the prefix.
func (c *Client) Nodes(ctx context.Context) (Nodes, error) {
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	prefix := c.cfg.Prefix + "/nodes/"
	// No noteErr: a status call's short deadline says nothing of etcd's health.
	resp, err := c.etcd.Get(cctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return Nodes{}, fmt.Errorf("listing %s on %v: %w", prefix, c.cfg.Endpoints, err)
	}
	published, alive := map[string]bool{}, map[string]bool{}
	for _, kv := range resp.Kvs {
		name, kind, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
		switch {
		case !ok:
		case kind == "published":
			published[name] = true
		case kind == "alive":
			alive[name] = true
		}
	}
	n := Nodes{Published: len(published), Alive: len(alive)}
	for _, name := range slices.Sorted(maps.Keys(published)) {
		if !alive[name] {
			n.StaleN++
			if len(n.Stale) < MaxStaleListed {
				n.Stale = append(n.Stale, name)
			}
		}
	}
	return n, nil
}

// ProfileStatus is one profile in `status --json`'s fleet field.
type ProfileStatus struct {
	Key            string              `json:"profile"`
	Nodes          int                 `json:"nodes"`
	Windows        uint64              `json:"windows"` // every node's
	State          model.BaselineState `json:"state,omitempty"`
	Epoch          uint64              `json:"epoch"`
	PendingWindows uint64              `json:"pending_windows"` // learned here, not yet in the aggregate
	LastPublish    time.Time           `json:"last_publish,omitzero"`
	// Prior: the fleet baseline started from another tag's (From, Windows,
	// At, Outcome; no statistics).
	Prior *model.Prior `json:"-"`
}

// Status is what `cagewatch fleet status` shows.
type Status struct {
	Node        string          `json:"node"`
	Endpoints   []string        `json:"endpoints"`
	Connected   bool            `json:"connected"`
	LastPublish time.Time       `json:"last_publish,omitzero"`
	Profiles    []ProfileStatus `json:"profiles"`
}

// Status reports the client's view, without calling etcd.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{Node: c.cfg.Node, Endpoints: c.cfg.Endpoints, Connected: c.connected, LastPublish: c.lastPub}
	for _, key := range slices.Sorted(maps.Keys(c.profiles)) {
		p := c.profiles[key]
		ps := ProfileStatus{Key: key, Epoch: p.epoch, LastPublish: p.lastPublish}
		if p.raw != nil {
			ps.Nodes, ps.Windows, ps.State, ps.Prior = p.sum.Nodes, p.sum.Windows, p.sum.State, p.sum.Prior
		}
		for _, b := range p.sealed {
			ps.PendingWindows += b.delta.Windows
		}
		if p.pending != nil {
			ps.PendingWindows += p.pending.Windows
		}
		s.Profiles = append(s.Profiles, ps)
	}
	return s
}
