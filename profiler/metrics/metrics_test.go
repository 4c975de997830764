package metrics

import (
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
}

func (f *fakeSource) Baselines() []BaselineInfo    { return f.baselines }
func (f *fakeSource) Sensor() SensorInfo           { return f.sensor }
func (f *fakeSource) SinkDrops() map[string]uint64 { return f.drops }

var web = model.Container{ID: "c1", Name: "web1", Runtime: model.RuntimeStatic, Image: "e2e/web", ImageTag: "1"}

func TestScrapeCollector(t *testing.T) {
	src := &fakeSource{
		baselines: []BaselineInfo{{Image: "e2e/web:1", State: model.StateStable, Windows: 120, Syscalls: 31}},
		sensor:    SensorInfo{Events: 10, EventsLost: 2, Killed: 1, Undecodable: 0, HistFull: 3, AlertsSuppressed: 4, AlertsHeldBack: 5},
		drops:     map[string]uint64{"stdout": 0, "webhook": 5},
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
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"cagewatch_baseline_state", "cagewatch_baseline_windows", "cagewatch_baseline_syscalls",
		"cagewatch_events_total", "cagewatch_events_lost_total", "cagewatch_alert_sink_dropped_total"); err != nil {
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
	w := model.Window{CgroupID: 7, Container: web, Duration: time.Second, Counts: map[string]uint64{"read": 10, "write": 5}}
	series := m.ObserveScore(w, model.WindowScore{Value: 2.5}, model.Threshold{Value: 9})
	if want := (ScoreSeries{Image: "e2e/web:1", Container: "web1"}); series != want {
		t.Errorf("ObserveScore series %+v, want %+v", series, want)
	}
	if got := testutil.ToFloat64(m.anomalyScore.WithLabelValues("e2e/web:1", "web1")); got != 2.5 {
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
	if got := testutil.ToFloat64(m.alerts.WithLabelValues("syscall_anomaly", "Warning", "e2e/web:1")); got != 1 {
		t.Errorf("alerts_total %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.deviation.WithLabelValues("e2e/web:1", "socket", "observed")); got != 0.5 {
		t.Errorf("deviating socket observed %v, want 0.5", got)
	}
	// The next alert of the image replaces the set: series never pile up.
	m.ObserveAlert(model.WindowAlert(rule, w, model.WindowScore{Value: 11, Top: []model.Contribution{{Syscall: "write", Observed: 0.9, Expected: 0.1}}},
		model.Threshold{Value: 9}, "host"))
	if n := testutil.CollectAndCount(m.deviation); n != 2 {
		t.Errorf("%d deviation series after a second alert, want 2 (write observed/expected)", n)
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
