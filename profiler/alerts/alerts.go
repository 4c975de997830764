// Package alerts delivers alerts in Falco's JSON format to stdout, a file and an
// HTTP webhook, deduplicating repeats and counting what it drops.
package alerts

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// Sink takes alerts; Send must not block the caller for long.
type Sink interface {
	Name() string
	Send(a model.Alert)
	Close() error
}

// Writer writes one JSON object per line to w (stdout, a file).
type Writer struct {
	name string
	mu   sync.Mutex
	w    io.Writer
	c    io.Closer
	enc  *json.Encoder
	errs atomic.Uint64
}

// NewWriter writes to w; name labels it in logs and metrics.
func NewWriter(name string, w io.Writer) *Writer {
	return &Writer{name: name, w: w, enc: json.NewEncoder(w)}
}

// OpenFile appends alerts to path (created 0600).
func OpenFile(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("alerts file: %w", err)
	}
	w := NewWriter("file", f)
	w.c = f
	return w, nil
}

func (w *Writer) Name() string { return w.name }

// Send encodes one alert line; a failed write is counted (Errors).
func (w *Writer) Send(a model.Alert) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enc.Encode(a); err != nil {
		w.errs.Add(1)
	}
}

// Errors is the number of failed writes.
func (w *Writer) Errors() uint64 { return w.errs.Load() }

func (w *Writer) Close() error {
	if w.c == nil {
		return nil
	}
	return w.c.Close()
}

// WebhookConfig configures the HTTP sink.
type WebhookConfig struct {
	URL         string
	QueueSize   int           // alerts waiting; beyond it new alerts are dropped and counted
	MaxAttempts int           // per alert, including the first
	Backoff     time.Duration // first retry delay, doubled each time (with jitter)
	Timeout     time.Duration // per request
}

// Webhook POSTs each alert as JSON from a bounded queue, retrying with backoff.
// Alerts it cannot deliver are dropped and counted, never block the agent.
type Webhook struct {
	sinkQueue
	cfg    WebhookConfig
	client *http.Client
	log    *slog.Logger
	done   chan struct{}
	cancel context.CancelFunc
}

// sinkQueue is a sink's bounded queue: Send never blocks the agent, and what
// cannot be queued or delivered is dropped and counted.
type sinkQueue struct {
	queue   chan model.Alert
	dropped atomic.Uint64
	sent    atomic.Uint64
	mu      sync.Mutex
	closed  bool
}

// Send queues an alert, or drops and counts it when the queue is full or the
// sink is closed.
func (q *sinkQueue) Send(a model.Alert) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.dropped.Add(1)
		return
	}
	select {
	case q.queue <- a:
	default:
		q.dropped.Add(1)
	}
}

// Dropped is the number of alerts given up on (queue full, delivery failed,
// or still queued at Close).
func (q *sinkQueue) Dropped() uint64 { return q.dropped.Load() }

// Sent is the number of alerts delivered.
func (q *sinkQueue) Sent() uint64 { return q.sent.Load() }

// stopTaking refuses further alerts; closeQueue also closes the channel, for
// a delivery loop that drains it with range.
func (q *sinkQueue) stopTaking(closeQueue bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed && closeQueue {
		close(q.queue)
	}
	q.closed = true
}

// NewWebhook starts the delivery goroutine.
func NewWebhook(cfg WebhookConfig, log *slog.Logger) *Webhook {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Webhook{sinkQueue: sinkQueue{queue: make(chan model.Alert, cfg.QueueSize)}, cfg: cfg,
		client: &http.Client{Timeout: cfg.Timeout}, log: log, done: make(chan struct{}), cancel: cancel}
	go w.run(ctx)
	return w
}

func (w *Webhook) Name() string { return "webhook" }

func (w *Webhook) run(ctx context.Context) {
	defer close(w.done)
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.queue:
			if err := w.deliver(ctx, a); err != nil {
				w.dropped.Add(1)
				w.log.Warn("alert webhook: dropped alert", "url", w.cfg.URL, "rule", a.Rule, "err", err)
			} else {
				w.sent.Add(1)
			}
		}
	}
}

func (w *Webhook) deliver(ctx context.Context, a model.Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	delay := w.cfg.Backoff
	var last error
	for attempt := 1; attempt <= w.cfg.MaxAttempts; attempt++ {
		if last = w.post(ctx, body); last == nil {
			return nil
		}
		if attempt == w.cfg.MaxAttempts {
			break
		}
		jitter := time.Duration(rand.Int64N(int64(delay)/2 + 1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay + jitter):
		}
		delay *= 2
	}
	return fmt.Errorf("%d attempts: %w", w.cfg.MaxAttempts, last)
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// Close stops delivery; alerts still queued are counted as dropped.
func (w *Webhook) Close() error {
	w.stopTaking(false)
	w.cancel()
	<-w.done
	w.dropped.Add(uint64(len(w.queue)))
	return nil
}

// Dispatcher deduplicates alerts and fans them out to sinks.
type Dispatcher struct {
	sinks    []Sink
	interval time.Duration
	limit    int           // alerts per container and rule per limitWindow; 0: no cap
	window   time.Duration // limitWindow
	hostname string
	now      func() time.Time
	onSend   func(model.Alert)
	enrich   func(*model.Alert)

	mu         sync.Mutex
	last       map[string]time.Time // dedup key → when last sent
	suppressed map[string]uint64
	budgets    map[string]*containerBudget // container → its alerts this window
	total      atomic.Uint64
	dups       atomic.Uint64
	held       atomic.Uint64
}

// DispatcherConfig are the dispatcher's settings.
type DispatcherConfig struct {
	// DedupInterval: identical alerts within it are counted instead of sent, and
	// the next one sent carries the count (output_fields["cagewatch.suppressed"]).
	DedupInterval time.Duration
	// ContainerLimit caps each container's alerts of each rule per LimitWindow
	// (0: no cap). Past it, that rule's alerts are held back and counted, and
	// one summary alert per window says how many of which rules (rule
	// alerts_held_back). The cap is per rule so that a flood of one rule (a
	// loop exec'ing a new binary) cannot hold back another's alert.
	ContainerLimit int
	LimitWindow    time.Duration // default one minute
	Hostname       string        // of the summary alerts
	// OnSend, when set, sees each sent alert (metrics).
	OnSend func(model.Alert)
	// Enrich, when set, adds fields to each alert before the sinks see it
	// (the image's vulnerabilities).
	Enrich func(*model.Alert)
}

// containerBudget is one container's alerts in the current limit window.
type containerBudget struct {
	start     time.Time
	sent      map[string]int    // rule → alerts sent
	held      map[string]uint64 // rule → alerts held back
	container model.Container
	cgroupID  uint64
}

// NewDispatcher sends to sinks, de-duplicating and capping per container.
func NewDispatcher(cfg DispatcherConfig, sinks ...Sink) *Dispatcher {
	return &Dispatcher{sinks: sinks, interval: cfg.DedupInterval, limit: cfg.ContainerLimit,
		window: cmp.Or(cfg.LimitWindow, time.Minute), hostname: cfg.Hostname, now: time.Now, onSend: cfg.OnSend, enrich: cfg.Enrich,
		last: map[string]time.Time{}, suppressed: map[string]uint64{}, budgets: map[string]*containerBudget{}}
}

// Duplicate reports whether an alert with this DedupKey would be suppressed now,
// and if so counts it as Send would.
func (d *Dispatcher) Duplicate(key string) bool {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.suppressLocked(key, now)
}

func (d *Dispatcher) suppressLocked(key string, now time.Time) bool {
	if t, ok := d.last[key]; ok && d.interval > 0 && now.Sub(t) < d.interval {
		d.suppressed[key]++
		d.dups.Add(1)
		return true
	}
	return false
}

// Send dispatches one alert and reports whether it was sent (neither a
// duplicate nor held back by the container's cap).
func (d *Dispatcher) Send(a model.Alert) bool {
	key := a.DedupKey()
	now := d.now()
	d.mu.Lock()
	if d.suppressLocked(key, now) {
		d.mu.Unlock()
		return false
	}
	summary, capped := d.budgetLocked(a, now)
	if capped {
		d.mu.Unlock()
		d.deliver(summary)
		return false
	}
	d.last[key] = now
	if n := d.suppressed[key]; n > 0 {
		a.OutputFields = maps.Clone(a.OutputFields) // the caller's alert stays as it was
		a.OutputFields["cagewatch.suppressed"] = n
		delete(d.suppressed, key)
	}
	if len(d.last) > 100000 { // bound memory: forget keys older than the interval
		for k, t := range d.last {
			if now.Sub(t) >= d.interval && d.suppressed[k] == 0 {
				delete(d.last, k)
			}
		}
	}
	d.mu.Unlock()
	d.deliver(summary)
	d.deliver(&a)
	return true
}

// budgetLocked counts a against its container's cap. It reports whether a is
// held back, and returns the summary of the container's previous window when
// that window just ended with alerts held back.
func (d *Dispatcher) budgetLocked(a model.Alert, now time.Time) (summary *model.Alert, capped bool) {
	if d.limit <= 0 {
		return nil, false
	}
	ckey := a.Container.ID + "\x00" + a.Container.CgroupPath
	b := d.budgets[ckey]
	if b != nil && now.Sub(b.start) >= d.window {
		summary = d.summaryLocked(b, now)
		b = nil
	}
	if b == nil {
		b = &containerBudget{start: now, sent: map[string]int{}, held: map[string]uint64{}, container: a.Container, cgroupID: a.CgroupID}
		d.budgets[ckey] = b
	}
	if b.sent[a.Rule] >= d.limit {
		b.held[a.Rule]++
		d.held.Add(1)
		return summary, true
	}
	b.sent[a.Rule]++
	return summary, false
}

func (d *Dispatcher) summaryLocked(b *containerBudget, now time.Time) *model.Alert {
	if len(b.held) == 0 {
		return nil
	}
	s := model.HeldBackAlert(b.container, b.cgroupID, b.held, b.start, now, d.limit, d.hostname)
	return &s
}

// Flush sends the summaries of the containers whose cap window has ended, and
// forgets their budgets. The pipeline calls it every sampling round, so a
// summary goes out even if the container never alerts again.
func (d *Dispatcher) Flush() {
	now := d.now()
	var out []*model.Alert
	d.mu.Lock()
	for k, b := range d.budgets {
		if now.Sub(b.start) >= d.window {
			if s := d.summaryLocked(b, now); s != nil {
				out = append(out, s)
			}
			delete(d.budgets, k)
		}
	}
	d.mu.Unlock()
	for _, s := range out {
		d.deliver(s)
	}
}

func (d *Dispatcher) deliver(a *model.Alert) {
	if a == nil {
		return
	}
	d.total.Add(1)
	if d.enrich != nil && a.OutputFields != nil {
		d.enrich(a)
	}
	for _, s := range d.sinks {
		s.Send(*a)
	}
	if d.onSend != nil {
		d.onSend(*a)
	}
}

// Drops reports, per sink, the alerts it gave up on (webhook and syslog drops,
// failed writes).
func (d *Dispatcher) Drops() map[string]uint64 {
	out := map[string]uint64{}
	for _, s := range d.sinks {
		switch c := s.(type) {
		case interface{ Dropped() uint64 }: // Webhook, Syslog
			out[s.Name()] = c.Dropped()
		case *Writer:
			out[s.Name()] = c.Errors()
		}
	}
	return out
}

// Suppressed is the number of duplicates counted instead of sent.
func (d *Dispatcher) Suppressed() uint64 { return d.dups.Load() }

// HeldBack is the number of alerts held back by the per-container cap.
func (d *Dispatcher) HeldBack() uint64 { return d.held.Load() }

// Sent is the number of alerts sent.
func (d *Dispatcher) Sent() uint64 { return d.total.Load() }

// Close closes every sink.
func (d *Dispatcher) Close() error {
	var first error
	for _, s := range d.sinks {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
