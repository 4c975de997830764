// Package metrics exposes cagewatch's Prometheus metrics from its own registry.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cagewatch/cagewatch/model"
)

// TopDeviating and TopPairs are how many syscalls and pairs of the last
// statistical alert per image are exported: enough to explain it, bounded to
// keep cardinality flat.
const (
	TopDeviating = 5
	TopPairs     = 5
)

// views are the model's views, each with its own z series per container.
var views = []string{model.ViewComposition, model.ViewOrder, model.ViewVolume}

// Metrics are the agent's instruments. Gauges and counters fed by the pipeline
// live here; values read at scrape time come from the Source.
type Metrics struct {
	reg *prometheus.Registry

	anomalyScore     *prometheus.GaugeVec
	anomalyThreshold *prometheus.GaugeVec
	viewZ            *prometheus.GaugeVec
	alerts           *prometheus.CounterVec
	containerCalls   *prometheus.CounterVec
	containers       *prometheus.GaugeVec
	sampleDuration   prometheus.Histogram
	share            *prometheus.GaugeVec
	lastShares       map[string][]string // image → syscalls exported in share
	pair             *prometheus.GaugeVec
	lastPairs        map[string][]string // image → pairs exported in pair
	mu               sync.Mutex
}

// Source is read at every scrape.
type Source interface {
	// Baselines are the current baselines (state, windows, syscalls).
	Baselines() []BaselineInfo
	// Sensor are cumulative sensor and agent counters.
	Sensor() SensorInfo
	// SinkDrops are alerts each sink gave up on.
	SinkDrops() map[string]uint64
	// Vulnerabilities are each image's imported findings: image → severity →
	// in use (the affected package runs) → distinct vulnerability ids.
	Vulnerabilities() map[string]map[string]map[bool]int
}

// BaselineInfo is one image's baseline as the metrics see it.
type BaselineInfo struct {
	Image    string
	State    model.BaselineState
	Windows  uint64
	Syscalls int
}

// SensorInfo are the sensor's counters.
type SensorInfo struct {
	Events, EventsLost, Killed, Undecodable, HistFull uint64
	AlertsSuppressed, AlertsHeldBack                  uint64
}

// New registers every collector on a fresh registry.
func New(src Source, version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		anomalyScore: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cagewatch_anomaly_score", Help: "Anomaly score of the container's last scored window.",
		}, []string{"image", "container", "namespace"}),
		anomalyThreshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cagewatch_anomaly_threshold", Help: "Calibrated anomaly threshold of the image's baseline.",
		}, []string{"image"}),
		viewZ: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cagewatch_anomaly_view_z",
			Help: "Standardized score (z) of each view (composition, order, volume) of the container's last scored window; volume never decides.",
		}, []string{"image", "container", "namespace", "view"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cagewatch_alerts_total", Help: "Alerts sent, by rule, priority, image and Kubernetes namespace (empty outside Kubernetes).",
		}, []string{"rule", "priority", "image", "namespace"}),
		containerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cagewatch_container_syscalls_total", Help: "Syscalls made by containers, by image.",
		}, []string{"image"}),
		containers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cagewatch_containers", Help: "Containers seen in the last window, by their image's baseline state.",
		}, []string{"state"}),
		sampleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cagewatch_sample_duration_seconds", Help: "Time to sample the kernel histogram and resolve containers.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		share: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cagewatch_last_alert_syscall_share",
			Help: "Observed and expected shares (0 to 1 of the window's calls) of the top deviating syscalls of the image's last statistical alert.",
		}, []string{"image", "syscall", "kind"}),
		lastShares: map[string][]string{},
		pair: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cagewatch_last_alert_pair",
			Help: "Consecutive syscall pairs of the image's last statistical alert that learning rarely or never saw: count in the window (observed) and while learning (learned, 0: never).",
		}, []string{"image", "pair", "kind"}),
		lastPairs: map[string][]string{},
	}
	for _, s := range []string{string(model.StateLearning), string(model.StateStable), "none"} {
		m.containers.WithLabelValues(s)
	}
	revision, goVersion := BuildInfo()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cagewatch_build_info", Help: "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(m.anomalyScore, m.anomalyThreshold, m.viewZ, m.alerts, m.containerCalls, m.containers,
		m.sampleDuration, m.share, m.pair, buildInfo, &scrapeCollector{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry the handler serves (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ScoreSeries names one container's anomaly-score series.
type ScoreSeries struct{ Image, Container, Namespace string }

// ObserveScore records a scored window and returns the series it set, which the
// caller deletes (DeleteScore) when the container goes. A view the window was
// not scored on loses its z series rather than keep an older window's.
func (m *Metrics) ObserveScore(w model.Window, s model.WindowScore, t model.Threshold) ScoreSeries {
	series := ScoreSeries{Image: w.Container.ImageRef(), Container: containerName(w.Container), Namespace: w.Container.Namespace}
	m.anomalyScore.WithLabelValues(series.Image, series.Container, series.Namespace).Set(s.Value)
	// Thresholds are a baseline's: labelled by its key, the image reference
	// or, under learning.key: workload, the workload.
	m.anomalyThreshold.WithLabelValues(w.Container.ProfileKey()).Set(t.Value)
	for _, view := range views {
		scored := false
		for _, v := range s.Views {
			if v.View == view {
				m.viewZ.WithLabelValues(series.Image, series.Container, series.Namespace, view).Set(v.Z)
				scored = true
				break
			}
		}
		if !scored {
			m.viewZ.DeleteLabelValues(series.Image, series.Container, series.Namespace, view)
		}
	}
	return series
}

// DeleteScore drops a removed container's score and view series, so container
// churn does not grow the series count.
func (m *Metrics) DeleteScore(series ScoreSeries) {
	m.anomalyScore.DeleteLabelValues(series.Image, series.Container, series.Namespace)
	for _, view := range views {
		m.viewZ.DeleteLabelValues(series.Image, series.Container, series.Namespace, view)
	}
}

// ObserveWindows counts container syscalls and containers by state.
func (m *Metrics) ObserveWindows(ws []model.Window, state func(profileKey string) (model.BaselineState, bool)) {
	counts := map[string]int{string(model.StateLearning): 0, string(model.StateStable): 0, "none": 0}
	for _, w := range ws {
		c := w.Container
		if !c.IsContainer() {
			continue
		}
		m.containerCalls.WithLabelValues(c.ImageRef()).Add(float64(w.Total()))
		if st, ok := state(c.ProfileKey()); ok {
			counts[string(st)]++
		} else {
			counts["none"]++
		}
	}
	for s, n := range counts {
		m.containers.WithLabelValues(s).Set(float64(n))
	}
}

// ObserveSample records how long a sampling round took.
func (m *Metrics) ObserveSample(d time.Duration) { m.sampleDuration.Observe(d.Seconds()) }

// ObserveAlert counts a sent alert and, for statistical ones, exports its top
// deviating syscalls' shares and its rare or never-seen pairs, replacing the
// image's previous sets (an alert without pairs clears them).
func (m *Metrics) ObserveAlert(a model.Alert) {
	m.mu.Lock()
	defer m.mu.Unlock()
	image := a.Container.ImageRef()
	m.alerts.WithLabelValues(a.Rule, string(a.Priority), image, a.Container.Namespace).Inc()
	top, ok := a.OutputFields["cagewatch.top"].([]map[string]any)
	if !ok {
		return
	}
	m.lastShares[image] = replace(m.share, image, m.lastShares[image], top[:min(TopDeviating, len(top))], "syscall",
		kindField{"observed", "observed"}, kindField{"expected", "expected"})
	pairs, _ := a.OutputFields["cagewatch.pairs"].([]map[string]any)
	m.lastPairs[image] = replace(m.pair, image, m.lastPairs[image], pairs[:min(TopPairs, len(pairs))], "pair",
		kindField{"observed", "count"}, kindField{"learned", "learned"})
}

// kindField maps a series' kind label to the alert entry's field holding its value.
type kindField struct{ kind, field string }

// replace deletes an image's previous series of g and sets one series per
// entry and kind, named by the entry's key field. It returns the keys set.
func replace(g *prometheus.GaugeVec, image string, previous []string, entries []map[string]any, key string, kinds ...kindField) []string {
	for _, k := range previous {
		for _, kf := range kinds {
			g.DeleteLabelValues(image, k, kf.kind)
		}
	}
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		k, _ := e[key].(string)
		for _, kf := range kinds {
			g.WithLabelValues(image, k, kf.kind).Set(number(e[kf.field]))
		}
		keys = append(keys, k)
	}
	return keys
}

// number reads an alert field's number, whichever numeric type built it.
func number(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case uint64:
		return float64(x)
	case int:
		return float64(x)
	case int64:
		return float64(x)
	}
	return 0
}

func containerName(c model.Container) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

// scrapeCollector reads baselines and counters at scrape time.
type scrapeCollector struct{ src Source }

var (
	descBaselineState    = prometheus.NewDesc("cagewatch_baseline_state", "1 for the image baseline's current state.", []string{"image", "state"}, nil)
	descBaselineWindows  = prometheus.NewDesc("cagewatch_baseline_windows", "Windows learned into the image's baseline.", []string{"image"}, nil)
	descBaselineSyscalls = prometheus.NewDesc("cagewatch_baseline_syscalls", "Distinct syscalls in the image's baseline.", []string{"image"}, nil)
	descEvents           = prometheus.NewDesc("cagewatch_events_total", "Security events read from the kernel.", nil, nil)
	descEventsLost       = prometheus.NewDesc("cagewatch_events_lost_total", "Security events lost because the ring buffer was full.", nil, nil)
	descUndecodable      = prometheus.NewDesc("cagewatch_events_undecodable_total", "Ring-buffer records that did not decode.", nil, nil)
	descHistFull         = prometheus.NewDesc("cagewatch_syscalls_uncounted_total", "Syscalls not counted because no histogram slot was free (raise sensor.histogram_slots).", nil, nil)
	descKilled           = prometheus.NewDesc("cagewatch_enforce_kills_total", "Processes killed in enforce mode.", nil, nil)
	descSuppressed       = prometheus.NewDesc("cagewatch_alerts_suppressed_total", "Duplicate alerts counted instead of sent.", nil, nil)
	descHeldBack         = prometheus.NewDesc("cagewatch_alerts_held_back_total", "Alerts held back because their container passed alerts.container_limit for the rule (summarised by alerts_held_back alerts).", nil, nil)
	descSinkDropped      = prometheus.NewDesc("cagewatch_alert_sink_dropped_total", "Alerts a sink gave up on.", []string{"sink"}, nil)
	descImageVulns       = prometheus.NewDesc("cagewatch_image_vulnerabilities",
		"Distinct vulnerabilities of the image's last imported scanner report, by severity and by whether the affected package runs (in_use).",
		[]string{"image", "severity", "in_use"}, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBaselineState, descBaselineWindows, descBaselineSyscalls, descEvents,
		descEventsLost, descUndecodable, descHistFull, descKilled, descSuppressed, descHeldBack, descSinkDropped, descImageVulns} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.src.Baselines() {
		for _, st := range []model.BaselineState{model.StateLearning, model.StateStable} {
			v := 0.0
			if b.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descBaselineState, prometheus.GaugeValue, v, b.Image, string(st))
		}
		ch <- prometheus.MustNewConstMetric(descBaselineWindows, prometheus.GaugeValue, float64(b.Windows), b.Image)
		ch <- prometheus.MustNewConstMetric(descBaselineSyscalls, prometheus.GaugeValue, float64(b.Syscalls), b.Image)
	}
	s := c.src.Sensor()
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(s.Events))
	ch <- prometheus.MustNewConstMetric(descEventsLost, prometheus.CounterValue, float64(s.EventsLost))
	ch <- prometheus.MustNewConstMetric(descUndecodable, prometheus.CounterValue, float64(s.Undecodable))
	ch <- prometheus.MustNewConstMetric(descHistFull, prometheus.CounterValue, float64(s.HistFull))
	ch <- prometheus.MustNewConstMetric(descKilled, prometheus.CounterValue, float64(s.Killed))
	ch <- prometheus.MustNewConstMetric(descSuppressed, prometheus.CounterValue, float64(s.AlertsSuppressed))
	ch <- prometheus.MustNewConstMetric(descHeldBack, prometheus.CounterValue, float64(s.AlertsHeldBack))
	drops := c.src.SinkDrops()
	names := make([]string, 0, len(drops))
	for n := range drops {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ch <- prometheus.MustNewConstMetric(descSinkDropped, prometheus.CounterValue, float64(drops[n]), n)
	}
	for image, bySeverity := range c.src.Vulnerabilities() {
		for severity, byUse := range bySeverity {
			for inUse, n := range byUse {
				ch <- prometheus.MustNewConstMetric(descImageVulns, prometheus.GaugeValue, float64(n), image, severity,
					strconv.FormatBool(inUse))
			}
		}
	}
}

// Serve serves /metrics on listen until ctx is done.
func Serve(ctx context.Context, listen string, reg *prometheus.Registry, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("metrics.listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	})
	defer stop()
	log.Info("metrics listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics.listen %s: %w", listen, err)
	}
	return nil
}

// BuildInfo returns the VCS revision and Go version the binary was built from.
func BuildInfo() (revision, goVersion string) {
	revision, goVersion = "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	return revision, goVersion
}
