package alerts

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

var testRules = func() *model.RuleSet {
	rs, err := model.CompileRules([]model.RuleSpec{
		{ID: "sensitive_file", Priority: "Critical", Action: "kill", Tags: []string{"container"},
			Match: model.MatchSpec{Syscalls: []string{"openat"}, PathPrefixes: []string{"/etc/shadow"}}},
		{ID: "ptrace", Priority: "Warning", Action: "alert", Match: model.MatchSpec{Syscalls: []string{"ptrace"}}},
	})
	if err != nil {
		panic(err)
	}
	return rs
}()

func container(id string) model.Container {
	return model.Container{ID: id, Name: "name-" + id, Runtime: model.RuntimeDocker, Image: "docker.io/library/nginx",
		ImageTag: "1.27", CgroupPath: "/system.slice/docker-" + id + ".scope"}
}

// alert is a sensitive_file alert of container id, opening path.
func alert(id, path string) model.Alert {
	e := model.Event{Time: t0, Kind: model.EventSyscall, Syscall: "openat", Path: path, PID: 42, Comm: "cat",
		CgroupID: 7, Container: container(id)}
	return model.EventAlert(testRules.Rule("sensitive_file"), e, "cat "+path, "node-1")
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// decodeLines decodes every line of raw as one JSON object.
func decodeLines(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d %q is not one JSON object: %v", len(out)+1, sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func fieldOf(m map[string]any, key string) any {
	f, _ := m["output_fields"].(map[string]any)
	return f[key]
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriter(t *testing.T) {
	tests := []struct {
		name   string
		alerts []model.Alert
	}{
		{name: "one alert", alerts: []model.Alert{alert("a", "/etc/shadow")}},
		{name: "several alerts", alerts: []model.Alert{alert("a", "/etc/shadow"), alert("b", "/etc/shadow-"), alert("a", "/etc/shadow")}},
		{name: "newline in a field stays on its line", alerts: []model.Alert{alert("a", "/etc/shadow\nforged: line")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter("stdout", &buf)
			if w.Name() != "stdout" {
				t.Errorf("Name() = %q", w.Name())
			}
			for _, a := range tt.alerts {
				w.Send(a)
			}
			if n := bytes.Count(buf.Bytes(), []byte("\n")); n != len(tt.alerts) {
				t.Fatalf("%d lines for %d alerts:\n%s", n, len(tt.alerts), buf.String())
			}
			lines := decodeLines(t, buf.Bytes())
			for i, m := range lines {
				a := tt.alerts[i]
				if m["rule"] != a.Rule || m["priority"] != string(a.Priority) || fieldOf(m, "container.id") != a.Container.ID ||
					fieldOf(m, "fd.name") != a.OutputFields["fd.name"] {
					t.Errorf("line %d = %v, want alert %+v", i+1, m, a)
				}
			}
			if w.Errors() != 0 {
				t.Errorf("Errors() = %d", w.Errors())
			}
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestWriterCountsFailedWrites(t *testing.T) {
	w := NewWriter("file", failingWriter{})
	w.Send(alert("a", "/etc/shadow"))
	w.Send(alert("a", "/etc/shadow"))
	if got := w.Errors(); got != 2 {
		t.Errorf("Errors() = %d, want 2", got)
	}
}

func TestOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	w, err := OpenFile(path)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	w.Send(alert("a", "/etc/shadow"))
	w.Send(alert("b", "/etc/shadow"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %o, want 600", perm)
	}
	// Reopen (agent restart): appends, does not truncate.
	w, err = OpenFile(path)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	w.Send(alert("c", "/etc/shadow"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := decodeLines(t, raw)
	var ids []string
	for _, m := range lines {
		ids = append(ids, fieldOf(m, "container.id").(string))
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Errorf("containers in the file %v, want a,b,c", ids)
	}
}

func TestOpenFileErrorNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "alerts.json")
	if _, err := OpenFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenFile(%s) error %v, want one naming the file", path, err)
	}
}

// countingTransport counts round trips.
type countingTransport struct {
	n    atomic.Int64
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// closedURL is the URL of a listener that was closed: nothing answers there.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String() + "/"
	l.Close()
	return url
}

type received struct {
	contentType string
	body        []byte
}

func newWebhook(t *testing.T, cfg WebhookConfig) *Webhook {
	t.Helper()
	w := NewWebhook(cfg, discard())
	t.Cleanup(func() { w.Close() })
	return w
}

func TestWebhookDelivers(t *testing.T) {
	got := make(chan received, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- received{r.Header.Get("Content-Type"), body}
	}))
	t.Cleanup(srv.Close)
	w := newWebhook(t, WebhookConfig{URL: srv.URL, Backoff: time.Millisecond})
	if w.Name() != "webhook" {
		t.Errorf("Name() = %q", w.Name())
	}
	a := alert("a", "/etc/shadow")
	w.Send(a)
	select {
	case r := <-got:
		if r.contentType != "application/json" {
			t.Errorf("content type %q", r.contentType)
		}
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		if m["rule"] != "sensitive_file" || m["priority"] != "Critical" || fieldOf(m, "container.id") != "a" || m["output"] != a.Output {
			t.Errorf("body %s", r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no request")
	}
	waitFor(t, "Sent() == 1", func() bool { return w.Sent() == 1 })
	if w.Dropped() != 0 {
		t.Errorf("Dropped() = %d", w.Dropped())
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name         string
		failures     int // 500s before a 200
		maxAttempts  int
		wantAttempts int64
		wantSent     uint64
		wantDropped  uint64
	}{
		{name: "succeeds first time", failures: 0, maxAttempts: 3, wantAttempts: 1, wantSent: 1},
		{name: "500 twice then 200", failures: 2, maxAttempts: 5, wantAttempts: 3, wantSent: 1},
		{name: "500 until the last attempt", failures: 3, maxAttempts: 4, wantAttempts: 4, wantSent: 1},
		{name: "500 more often than attempts", failures: 10, maxAttempts: 3, wantAttempts: 3, wantDropped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attempts atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				if attempts.Add(1) <= int64(tt.failures) {
					rw.WriteHeader(http.StatusInternalServerError)
				}
			}))
			t.Cleanup(srv.Close)
			w := newWebhook(t, WebhookConfig{URL: srv.URL, MaxAttempts: tt.maxAttempts, Backoff: time.Millisecond})
			w.Send(alert("a", "/etc/shadow"))
			waitFor(t, "delivery or drop", func() bool { return w.Sent()+w.Dropped() == 1 })
			if got := attempts.Load(); got != tt.wantAttempts {
				t.Errorf("%d attempts, want %d", got, tt.wantAttempts)
			}
			if w.Sent() != tt.wantSent || w.Dropped() != tt.wantDropped {
				t.Errorf("sent %d dropped %d, want %d and %d", w.Sent(), w.Dropped(), tt.wantSent, tt.wantDropped)
			}
		})
	}
}

func TestWebhookServerDown(t *testing.T) {
	const maxAttempts = 4
	w := newWebhook(t, WebhookConfig{URL: closedURL(t), MaxAttempts: maxAttempts, Backoff: time.Millisecond, QueueSize: 4})
	ct := &countingTransport{base: http.DefaultTransport}
	w.client.Transport = ct // before the first Send: the queue orders it before any request

	w.Send(alert("a", "/etc/shadow"))
	waitFor(t, "the alert dropped", func() bool { return w.Dropped() == 1 })
	if got := ct.n.Load(); got != maxAttempts {
		t.Errorf("%d attempts, want %d", got, maxAttempts)
	}
	if w.Sent() != 0 {
		t.Errorf("Sent() = %d", w.Sent())
	}

	// Send never blocks the agent, however many alerts arrive.
	const burst = 1000
	start := time.Now()
	for range burst {
		w.Send(alert("a", "/etc/shadow"))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("%d sends took %v", burst, took)
	}
	waitFor(t, "every alert dropped", func() bool { return w.Dropped() == burst+1 })
	if w.Sent() != 0 {
		t.Errorf("Sent() = %d", w.Sent())
	}
}

// blockingServer answers only when released; arrived gets a value per request.
func blockingServer(t *testing.T) (srv *httptest.Server, arrived chan struct{}, release func()) {
	t.Helper()
	arrived = make(chan struct{}, 100)
	gate := make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release) // runs before srv.Close, which waits for handlers
	return srv, arrived, release
}

func waitArrived(t *testing.T, arrived chan struct{}) {
	t.Helper()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no request arrived")
	}
}

func TestWebhookQueueFull(t *testing.T) {
	srv, arrived, release := blockingServer(t)
	w := newWebhook(t, WebhookConfig{URL: srv.URL, QueueSize: 1, MaxAttempts: 1, Backoff: time.Millisecond, Timeout: 10 * time.Second})
	w.Send(alert("a", "/etc/shadow")) // in flight
	waitArrived(t, arrived)
	w.Send(alert("b", "/etc/shadow")) // queued
	w.Send(alert("c", "/etc/shadow")) // dropped
	w.Send(alert("d", "/etc/shadow")) // dropped
	if got := w.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d with a full queue, want 2", got)
	}
	release()
	waitFor(t, "the in-flight and queued alerts", func() bool { return w.Sent() == 2 })
	if got := w.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}
}

func TestWebhookClose(t *testing.T) {
	srv, arrived, _ := blockingServer(t)
	w := NewWebhook(WebhookConfig{URL: srv.URL, QueueSize: 4, MaxAttempts: 3, Backoff: time.Millisecond, Timeout: 10 * time.Second}, discard())
	w.Send(alert("a", "/etc/shadow")) // in flight, never answered
	waitArrived(t, arrived)
	w.Send(alert("b", "/etc/shadow"))
	w.Send(alert("c", "/etc/shadow"))
	done := make(chan error, 1)
	go func() { done <- w.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on an unanswered request")
	}
	if got := w.Dropped(); got != 3 {
		t.Errorf("Dropped() = %d after Close, want 3 (one in flight, two queued)", got)
	}
	if w.Sent() != 0 {
		t.Errorf("Sent() = %d", w.Sent())
	}
	// An alert sent after Close cannot be delivered: it is dropped, and counted.
	w.Send(alert("d", "/etc/shadow"))
	if got := w.Dropped(); got != 4 {
		t.Errorf("Dropped() = %d after a Send following Close, want 4", got)
	}
}

// recordingSink keeps what it is sent.
type recordingSink struct {
	name   string
	mu     sync.Mutex
	alerts []model.Alert
	closed bool
	err    error
}

func (s *recordingSink) Name() string { return s.name }

func (s *recordingSink) Send(a model.Alert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
}

func (s *recordingSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.err
}

func (s *recordingSink) take() []model.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.alerts
	s.alerts = nil
	return out
}

// fakeClock is the dispatcher's clock, moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(d time.Duration) {
	c.mu.Lock()
	c.now = t0.Add(d)
	c.mu.Unlock()
}

func TestDispatcherDedup(t *testing.T) {
	type step struct {
		at        time.Duration
		alert     model.Alert
		sent      bool
		suppCount uint64 // cagewatch.suppressed of the sent alert (0: absent)
	}
	shadowA, shadowB := alert("a", "/etc/shadow"), alert("b", "/etc/shadow")
	tests := []struct {
		name     string
		interval time.Duration
		steps    []step
	}{
		{
			name: "duplicates within the interval are counted, the next one carries the count", interval: time.Minute,
			steps: []step{
				{at: 0, alert: shadowA, sent: true},
				{at: 10 * time.Second, alert: shadowA},
				{at: 59 * time.Second, alert: shadowA},
				{at: 60 * time.Second, alert: shadowA, sent: true, suppCount: 2},
				{at: 70 * time.Second, alert: shadowA},
				{at: 200 * time.Second, alert: shadowA, sent: true, suppCount: 1},
				{at: 300 * time.Second, alert: shadowA, sent: true},
			},
		},
		{
			name: "different containers are not deduplicated", interval: time.Minute,
			steps: []step{
				{at: 0, alert: shadowA, sent: true},
				{at: 0, alert: shadowB, sent: true},
				{at: time.Second, alert: shadowB},
				{at: time.Second, alert: alert("a", "/etc/shadow-"), sent: true}, // another path
			},
		},
		{
			name: "interval 0 disables dedup", interval: 0,
			steps: []step{
				{at: 0, alert: shadowA, sent: true},
				{at: 0, alert: shadowA, sent: true},
				{at: time.Second, alert: shadowA, sent: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink1, sink2 := &recordingSink{name: "one"}, &recordingSink{name: "two"}
			var onSend []model.Alert
			d := NewDispatcher(DispatcherConfig{DedupInterval: tt.interval, OnSend: func(a model.Alert) { onSend = append(onSend, a) }}, sink1, sink2)
			clock := &fakeClock{}
			d.now = clock.Now
			var wantSent, wantSupp uint64
			for i, s := range tt.steps {
				clock.set(s.at)
				// A fresh copy per step, as the rules stage builds a new alert per event.
				a := s.alert
				a.OutputFields = cloneFields(s.alert.OutputFields)
				if got := d.Send(a); got != s.sent {
					t.Fatalf("step %d at %v: Send = %v, want %v", i, s.at, got, s.sent)
				}
				for _, sink := range []*recordingSink{sink1, sink2} {
					got := sink.take()
					if !s.sent {
						if len(got) > 0 {
							t.Errorf("step %d: sink %s got a suppressed alert", i, sink.name)
						}
						continue
					}
					if len(got) != 1 {
						t.Fatalf("step %d: sink %s got %d alerts, want 1", i, sink.name, len(got))
					}
					supp, has := got[0].OutputFields["cagewatch.suppressed"]
					if s.suppCount == 0 && has {
						t.Errorf("step %d: cagewatch.suppressed = %v, want absent", i, supp)
					}
					if s.suppCount > 0 && supp != s.suppCount {
						t.Errorf("step %d: cagewatch.suppressed = %#v, want %d", i, supp, s.suppCount)
					}
				}
				if s.sent {
					wantSent++
				} else {
					wantSupp++
				}
			}
			if d.Sent() != wantSent || d.Suppressed() != wantSupp {
				t.Errorf("Sent() %d Suppressed() %d, want %d and %d", d.Sent(), d.Suppressed(), wantSent, wantSupp)
			}
			if uint64(len(onSend)) != wantSent {
				t.Errorf("onSend saw %d alerts, want the %d sent", len(onSend), wantSent)
			}
		})
	}
}

func cloneFields(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestDispatcherDoesNotModifyCallersAlert(t *testing.T) {
	// The suppressed count belongs to one sent alert: a caller that sends the
	// same alert value again must not find a stale count in it.
	sink := &recordingSink{name: "one"}
	d := NewDispatcher(DispatcherConfig{DedupInterval: time.Minute}, sink)
	clock := &fakeClock{now: t0}
	d.now = clock.Now
	a := alert("a", "/etc/shadow")
	d.Send(a)
	clock.set(time.Second)
	d.Send(a) // suppressed
	clock.set(2 * time.Minute)
	d.Send(a) // carries 1
	clock.set(10 * time.Minute)
	d.Send(a) // nothing suppressed since
	got := sink.take()
	if len(got) != 3 {
		t.Fatalf("%d alerts sent, want 3", len(got))
	}
	if v, ok := a.OutputFields["cagewatch.suppressed"]; ok {
		t.Errorf("the caller's alert was changed: cagewatch.suppressed = %v", v)
	}
	if v, ok := got[2].OutputFields["cagewatch.suppressed"]; ok {
		t.Errorf("third sent alert carries cagewatch.suppressed = %v, nothing was suppressed before it", v)
	}
}

func TestDispatcherClose(t *testing.T) {
	errSink := errors.New("sink close failed")
	s1, s2, s3 := &recordingSink{name: "one"}, &recordingSink{name: "two", err: errSink}, &recordingSink{name: "three"}
	d := NewDispatcher(DispatcherConfig{DedupInterval: time.Minute}, s1, s2, s3)
	if err := d.Close(); !errors.Is(err, errSink) {
		t.Errorf("Close = %v, want %v", err, errSink)
	}
	for _, s := range []*recordingSink{s1, s2, s3} {
		if !s.closed {
			t.Errorf("sink %s not closed", s.name)
		}
	}
}

func TestDispatcherConcurrentSend(t *testing.T) {
	sink := &recordingSink{name: "one"}
	var seen atomic.Int64
	d := NewDispatcher(DispatcherConfig{DedupInterval: time.Hour, OnSend: func(model.Alert) { seen.Add(1) }}, sink)
	var wg sync.WaitGroup
	const goroutines, each = 8, 100
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				d.Send(alert(string(rune('a'+g)), "/etc/shadow"+strings.Repeat("x", i%5)))
			}
		}()
	}
	wg.Wait()
	// Each goroutine has its own container and five distinct paths: 5 sent each.
	if d.Sent() != goroutines*5 || d.Suppressed() != goroutines*(each-5) || seen.Load() != goroutines*5 {
		t.Errorf("Sent %d Suppressed %d onSend %d, want %d, %d, %d", d.Sent(), d.Suppressed(), seen.Load(),
			goroutines*5, goroutines*(each-5), goroutines*5)
	}
	if got := len(sink.take()); got != goroutines*5 {
		t.Errorf("sink got %d alerts", got)
	}
}

// TestDispatcherDuplicate: the rules stage asks before building an alert; a repeat
// it drops is counted exactly as a suppressed Send and reported on the next one.
func TestDispatcherDuplicate(t *testing.T) {
	sink := &recordingSink{name: "one"}
	d := NewDispatcher(DispatcherConfig{DedupInterval: time.Minute}, sink)
	clock := &fakeClock{}
	d.now = clock.Now
	clock.set(0)
	a := alert("a", "/etc/shadow")
	key := a.DedupKey()
	if d.Duplicate(key) {
		t.Fatal("Duplicate before any alert was sent")
	}
	d.Send(a)
	clock.set(10 * time.Second)
	for range 2 {
		if !d.Duplicate(key) {
			t.Fatal("a repeat within the interval is not a duplicate")
		}
	}
	if d.Duplicate(alert("b", "/etc/shadow").DedupKey()) {
		t.Error("another container's alert is a duplicate")
	}
	if got := d.Suppressed(); got != 2 {
		t.Errorf("Suppressed = %d, want 2", got)
	}
	clock.set(61 * time.Second)
	if d.Duplicate(key) {
		t.Fatal("still a duplicate after the interval")
	}
	b := alert("a", "/etc/shadow")
	b.OutputFields = cloneFields(b.OutputFields)
	d.Send(b)
	got := sink.take()
	if len(got) != 2 || got[1].OutputFields["cagewatch.suppressed"] != uint64(2) {
		t.Fatalf("alerts %+v, want the second to carry cagewatch.suppressed=2", got)
	}
}

// TestDispatcherContainerLimit: past its cap a container's alerts of a rule are
// held back and counted, one summary per window says so, other rules and other
// containers are not touched, and the next window starts afresh.
func TestDispatcherContainerLimit(t *testing.T) {
	sink := &recordingSink{name: "one"}
	var seen []model.Alert
	d := NewDispatcher(DispatcherConfig{ContainerLimit: 3, Hostname: "node-1", OnSend: func(a model.Alert) { seen = append(seen, a) }}, sink)
	clock := &fakeClock{}
	d.now = clock.Now
	clock.set(0)
	for i := range 10 { // a flood of distinct alerts: none is a duplicate
		d.Send(alert("a", fmt.Sprintf("/etc/secret-%d", i)))
	}
	if !d.Send(alert("b", "/etc/shadow")) {
		t.Error("another container's alert was held back")
	}
	other := model.EventAlert(testRules.Rule("ptrace"), model.Event{Time: t0, Kind: model.EventSyscall, Syscall: "ptrace",
		PID: 42, Comm: "gdb", CgroupID: 7, Container: container("a")}, "", "node-1")
	if !d.Send(other) {
		t.Error("the flood of one rule held back another rule's alert")
	}
	if got := len(sink.take()); got != 5 {
		t.Fatalf("%d alerts sent in the first window, want 3 of a's flood, b's and a's ptrace", got)
	}
	if d.HeldBack() != 7 {
		t.Errorf("HeldBack = %d, want 7", d.HeldBack())
	}
	clock.set(30 * time.Second)
	d.Flush()
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("a summary before the window ended: %v", got)
	}
	clock.set(61 * time.Second)
	d.Flush()
	got := sink.take()
	if len(got) != 1 {
		t.Fatalf("%d alerts at the window's end, want one summary", len(got))
	}
	s := got[0]
	if s.Rule != model.RuleAlertsHeldBack || s.Container.ID != "a" || s.Hostname != "node-1" ||
		s.OutputFields["cagewatch.held_back_total"] != uint64(7) ||
		!reflect.DeepEqual(s.OutputFields["cagewatch.held_back"], map[string]uint64{"sensitive_file": 7}) {
		t.Errorf("summary %s %v", s.Rule, s.OutputFields)
	}
	if len(seen) != 6 || seen[5].Rule != model.RuleAlertsHeldBack {
		t.Errorf("OnSend saw %d alerts, want the 5 sent and the summary", len(seen))
	}
	d.Flush()
	if got := sink.take(); len(got) != 0 {
		t.Errorf("a second summary for the same window: %v", got)
	}
	if !d.Send(alert("a", "/etc/secret-0")) {
		t.Error("the next window's first alert was held back")
	}
}
