package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cagewatch/cagewatch/model"
)

type fakeSource struct {
	baselines []BaselineInfo
	sensor    SensorInfo
	drops     map[string]uint64
	vulns     map[string]map[string]map[bool]int
}

func (f *fakeSource) Baselines() []BaselineInfo    { return f.baselines }
func (f *fakeSource) Sensor() SensorInfo           { return f.sensor }
func (f *fakeSource) SinkDrops() map[string]uint64 { return f.drops }
func (f *fakeSource) Vulnerabilities() map[string]map[string]map[bool]int {
	return f.vulns
}

var web = model.Container{ID: "c1", Name: "web1", Runtime: model.RuntimeStatic, Image: "e2e/web", ImageTag: "1"}

func TestScrapeCollector(t *testing.T) {
	src := &fakeSource{
		baselines: []BaselineInfo{{Image: "e2e/web:1", State: model.StateStable, Windows: 120, Syscalls: 31}},
		sensor:    SensorInfo{Events: 10, EventsLost: 2, Killed: 1, Undecodable: 0, HistFull: 3, AlertsSuppressed: 4, AlertsHeldBack: 5},
		drops:     map[string]uint64{"stdout": 0, "webhook": 5},
		vulns:     map[string]map[string]map[bool]int{"e2e/web:1": {"critical": {true: 1, false: 2}}},
	}
	m := New(src, "test")
	want := `
# HELP cagewatch_baseline_state 1 for the image baseline's current state.
# TYPE cagewatch_baseline_state gauge
cagewatch_baseline_state{image="e2e/web:1",state="learning"} 0
cagewatch_baseline_state{image="e2e/web:1",state="stable"} 1
# HELP cagewatch_baseline_windows Windows learned into the image's baseline.
# TYPE cagewatch_baseline_windows gauge
cagewatch_baseline_windows{image="e2e/web:1"} 120
# HELP cagewatch_baseline_syscalls Distinct syscalls in the image's baseline.
# TYPE cagewatch_baseline_syscalls gauge
cagewatch_baseline_syscalls{image="e2e/web:1"} 31
# HELP cagewatch_events_total Security events read from the kernel.
# TYPE cagewatch_events_total counter
cagewatch_events_total 10
# HELP cagewatch_events_lost_total Security events lost because the ring buffer was full.
# TYPE cagewatch_events_lost_total counter
cagewatch_events_lost_total 2
# HELP cagewatch_alert_sink_dropped_total Alerts a sink gave up on.
# TYPE cagewatch_alert_sink_dropped_total counter
cagewatch_alert_sink_dropped_total{sink="stdout"} 0
cagewatch_alert_sink_dropped_total{sink="webhook"} 5
# HELP cagewatch_image_vulnerabilities Distinct vulnerabilities of the image's last imported scanner report, by severity and by whether the affected package runs (in_use).
# TYPE cagewatch_image_vulnerabilities gauge
cagewatch_image_vulnerabilities{image="e2e/web:1",in_use="false",severity="critical"} 2
cagewatch_image_vulnerabilities{image="e2e/web:1",in_use="true",severity="critical"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"cagewatch_baseline_state", "cagewatch_baseline_windows", "cagewatch_baseline_syscalls",
		"cagewatch_events_total", "cagewatch_events_lost_total", "cagewatch_alert_sink_dropped_total",
		"cagewatch_image_vulnerabilities"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "cagewatch_build_info"); err != nil || n != 1 {
		t.Errorf("build info: %d series, %v", n, err)
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP cagewatch_enforce_kills_total Processes killed in enforce mode.
# TYPE cagewatch_enforce_kills_total counter
cagewatch_enforce_kills_total 1
# HELP cagewatch_alerts_suppressed_total Duplicate alerts counted instead of sent.
# TYPE cagewatch_alerts_suppressed_total counter
cagewatch_alerts_suppressed_total 4
# HELP cagewatch_alerts_held_back_total Alerts held back because their container passed alerts.container_limit for the rule (summarised by alerts_held_back alerts).
# TYPE cagewatch_alerts_held_back_total counter
cagewatch_alerts_held_back_total 5
`), "cagewatch_enforce_kills_total", "cagewatch_alerts_suppressed_total", "cagewatch_alerts_held_back_total"); err != nil {
		t.Error(err)
	}
}

func TestScoresAlertsAndCardinality(t *testing.T) {
	m := New(&fakeSource{}, "test")
	webPod := web
	webPod.PodName, webPod.Namespace = "web-7d9f8c6b5-x2k4q", "shop" // a pod's: the namespace labels its series
	w := model.Window{CgroupID: 7, Container: webPod, Duration: time.Second, Counts: map[string]uint64{"read": 10, "write": 5}}
	series := m.ObserveScore(w, model.WindowScore{Value: 2.5}, model.Threshold{Value: 9})
	if want := (ScoreSeries{Image: "e2e/web:1", Container: "web1", Namespace: "shop"}); series != want {
		t.Errorf("ObserveScore series %+v, want %+v", series, want)
	}
	if got := testutil.ToFloat64(m.anomalyScore.WithLabelValues("e2e/web:1", "web1", "shop")); got != 2.5 {
		t.Errorf("anomaly score %v, want 2.5", got)
	}
	if got := testutil.ToFloat64(m.anomalyThreshold.WithLabelValues("e2e/web:1")); got != 9 {
		t.Errorf("threshold %v, want 9", got)
	}

	m.ObserveWindows([]model.Window{w, {Container: model.Container{Runtime: model.RuntimeHost}, Counts: map[string]uint64{"read": 100}}},
		func(string) (model.BaselineState, bool) { return model.StateStable, true })
	if got := testutil.ToFloat64(m.containerCalls.WithLabelValues("e2e/web:1")); got != 15 {
		t.Errorf("container syscalls %v, want 15 (host windows excluded)", got)
	}
	if got := testutil.ToFloat64(m.containers.WithLabelValues("stable")); got != 1 {
		t.Errorf("stable containers %v, want 1", got)
	}

	rule := &model.Rule{ID: model.RuleSyscallAnomaly, Priority: "Warning"}
	top := model.WindowScore{Value: 12, Top: []model.Contribution{
		{Syscall: "socket", Observed: 0.5, Expected: 0}, {Syscall: "read", Observed: 0.1, Expected: 0.6}}}
	m.ObserveAlert(model.WindowAlert(rule, w, top, model.Threshold{Value: 9}, "host"))
	if got := testutil.ToFloat64(m.alerts.WithLabelValues("syscall_anomaly", "Warning", "e2e/web:1", "shop")); got != 1 {
		t.Errorf("alerts_total %v, want 1", got)
	}
	if err := testutil.CollectAndCompare(m.share, strings.NewReader(`
# HELP cagewatch_last_alert_syscall_share Observed and expected shares (0 to 1 of the window's calls) of the top deviating syscalls of the image's last statistical alert.
# TYPE cagewatch_last_alert_syscall_share gauge
cagewatch_last_alert_syscall_share{image="e2e/web:1",kind="expected",syscall="read"} 0.6
cagewatch_last_alert_syscall_share{image="e2e/web:1",kind="expected",syscall="socket"} 0
cagewatch_last_alert_syscall_share{image="e2e/web:1",kind="observed",syscall="read"} 0.1
cagewatch_last_alert_syscall_share{image="e2e/web:1",kind="observed",syscall="socket"} 0.5
`)); err != nil {
		t.Error(err)
	}
	// The next alert of the image replaces the set: series never pile up.
	m.ObserveAlert(model.WindowAlert(rule, w, model.WindowScore{Value: 11, Top: []model.Contribution{{Syscall: "write", Observed: 0.9, Expected: 0.1}}},
		model.Threshold{Value: 9}, "host"))
	if n := testutil.CollectAndCount(m.share); n != 2 {
		t.Errorf("%d share series after a second alert, want 2 (write observed/expected)", n)
	}

	// A removed container's score series goes away.
	m.DeleteScore(series)
	if n := testutil.CollectAndCount(m.anomalyScore); n != 0 {
		t.Errorf("%d anomaly score series after the container left, want 0", n)
	}
	m.ObserveSample(3 * time.Millisecond)
	if n := testutil.CollectAndCount(m.sampleDuration); n != 1 {
		t.Errorf("sample duration histogram: %d series", n)
	}
}

func TestViewZSeries(t *testing.T) {
	m := New(&fakeSource{}, "test")
	w := model.Window{Container: web, Duration: time.Second, Counts: map[string]uint64{"read": 10}}
	db := model.Window{Container: model.Container{ID: "c2", Name: "db1", Runtime: model.RuntimeStatic, Image: "e2e/db", ImageTag: "2"},
		Duration: time.Second, Counts: map[string]uint64{"read": 10}}
	all := model.WindowScore{Value: 7, Views: []model.ViewScore{
		{View: model.ViewComposition, Z: 1.5}, {View: model.ViewOrder, Z: 6.25}, {View: model.ViewVolume, Z: -0.5}}}
	webSeries := m.ObserveScore(w, all, model.Threshold{Value: 9})
	m.ObserveScore(db, model.WindowScore{Value: 1, Views: []model.ViewScore{{View: model.ViewComposition, Z: 1}}}, model.Threshold{Value: 9})
	if err := testutil.CollectAndCompare(m.viewZ, strings.NewReader(`
# HELP cagewatch_anomaly_view_z Standardized score (z) of each view (composition, order, volume) of the container's last scored window; volume never decides.
# TYPE cagewatch_anomaly_view_z gauge
cagewatch_anomaly_view_z{container="db1",image="e2e/db:2",namespace="",view="composition"} 1
cagewatch_anomaly_view_z{container="web1",image="e2e/web:1",namespace="",view="composition"} 1.5
cagewatch_anomaly_view_z{container="web1",image="e2e/web:1",namespace="",view="order"} 6.25
cagewatch_anomaly_view_z{container="web1",image="e2e/web:1",namespace="",view="volume"} -0.5
`)); err != nil {
		t.Error(err)
	}
	// A window without grams scores no order: the older window's order z goes.
	m.ObserveScore(w, model.WindowScore{Value: 2, Views: []model.ViewScore{{View: model.ViewComposition, Z: 2}, {View: model.ViewVolume, Z: 0.25}}},
		model.Threshold{Value: 9})
	if n := testutil.CollectAndCount(m.viewZ); n != 3 {
		t.Errorf("%d view series after a window without order, want 3", n)
	}
	if got := testutil.ToFloat64(m.viewZ.WithLabelValues("e2e/web:1", "web1", "", model.ViewComposition)); got != 2 {
		t.Errorf("composition z %v, want 2 (the newest window's)", got)
	}
	// Container churn: a removed container's view series go, the others stay.
	m.DeleteScore(webSeries)
	if err := testutil.CollectAndCompare(m.viewZ, strings.NewReader(`
# HELP cagewatch_anomaly_view_z Standardized score (z) of each view (composition, order, volume) of the container's last scored window; volume never decides.
# TYPE cagewatch_anomaly_view_z gauge
cagewatch_anomaly_view_z{container="db1",image="e2e/db:2",namespace="",view="composition"} 1
`)); err != nil {
		t.Error(err)
	}
}

func TestLastAlertPairs(t *testing.T) {
	m := New(&fakeSource{}, "test")
	w := model.Window{Container: web, Duration: time.Second, Counts: map[string]uint64{"socket": 40, "close": 40}}
	rule := &model.Rule{ID: model.RuleSyscallAnomaly, Priority: "Warning"}
	s := model.WindowScore{Value: 12, Top: []model.Contribution{{Syscall: "socket", Observed: 0.5, Novel: true}}}
	for i := range TopPairs + 2 { // more than are exported
		s.Pairs = append(s.Pairs, model.PairContribution{Pair: fmt.Sprintf("s%d → close", i), Count: uint64(40 - i), Learned: uint64(i)})
	}
	m.ObserveAlert(model.WindowAlert(rule, w, s, model.Threshold{Value: 9}, "host"))
	if n := testutil.CollectAndCount(m.pair); n != 2*TopPairs {
		t.Errorf("%d pair series, want %d (top %d pairs, observed and learned)", n, 2*TopPairs, TopPairs)
	}
	if got := testutil.ToFloat64(m.pair.WithLabelValues("e2e/web:1", "s0 → close", "observed")); got != 40 {
		t.Errorf("observed count of s0 → close %v, want 40", got)
	}
	if got := testutil.ToFloat64(m.pair.WithLabelValues("e2e/web:1", "s3 → close", "learned")); got != 3 {
		t.Errorf("learned count of s3 → close %v, want 3", got)
	}

	// Another image's alert leaves this image's pairs alone; a hard rule's alert
	// (no cagewatch.top) leaves them too.
	other := w
	other.Container = model.Container{ID: "c2", Name: "db1", Runtime: model.RuntimeStatic, Image: "e2e/db", ImageTag: "2"}
	m.ObserveAlert(model.WindowAlert(rule, other, model.WindowScore{Value: 12, Pairs: []model.PairContribution{{Pair: "read → execve", Count: 1}}},
		model.Threshold{Value: 9}, "host"))
	m.ObserveAlert(model.Alert{Rule: "shadow_read", Priority: "Critical", Container: web, OutputFields: map[string]any{}})
	if n := testutil.CollectAndCount(m.pair); n != 2*TopPairs+2 {
		t.Errorf("%d pair series after another image's alert and a hard rule's, want %d", n, 2*TopPairs+2)
	}

	// The image's next statistical alert replaces its pairs, even with none.
	m.ObserveAlert(model.WindowAlert(rule, w, model.WindowScore{Value: 11, Top: s.Top}, model.Threshold{Value: 9}, "host"))
	if err := testutil.CollectAndCompare(m.pair, strings.NewReader(`
# HELP cagewatch_last_alert_pair Consecutive syscall pairs of the image's last statistical alert that learning rarely or never saw: count in the window (observed) and while learning (learned, 0: never).
# TYPE cagewatch_last_alert_pair gauge
cagewatch_last_alert_pair{image="e2e/db:2",kind="learned",pair="read → execve"} 0
cagewatch_last_alert_pair{image="e2e/db:2",kind="observed",pair="read → execve"} 1
`)); err != nil {
		t.Error(err)
	}
}
