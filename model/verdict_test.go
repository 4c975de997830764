package model

import (
	"testing"
	"time"
)

func TestVerdict(t *testing.T) {
	wl := newScoreWorkload(7, 0.15)
	stable := learnScoreBaseline(wl, 200)
	learning := stable.Clone()
	learning.State = StateLearning
	normal := wl.next(1)
	busy := wl.next(1)
	busy.Counts["read"] *= 50
	novel := wl.next(1)
	novel.Counts["ptrace"] = 1
	startup := busy
	startup.Startup = true
	stopping := novel
	stopping.Stopping = true
	loaded := scaled(normal, 4) // the same mix at 4x the rate
	// A container's exit or an idle tick: too few calls to judge, however off.
	tiny := wl.next(1)
	tiny.Counts = map[string]uint64{"read": MinJudgedCalls - 1}

	tests := []struct {
		name          string
		b             *Baseline
		w             Window
		scored        bool
		novel, anomal bool
		tooFew        bool // scores above the threshold, yet is not judged
	}{
		{name: "no baseline", b: nil, w: busy},
		{name: "baseline still learning", b: learning, w: busy},
		{name: "start-up window", b: stable, w: startup},
		{name: "shutdown window, novel syscall and all", b: stable, w: stopping},
		{name: "normal window", b: stable, w: normal, scored: true},
		{name: "read's share far above learned", b: stable, w: busy, scored: true, anomal: true},
		{name: "4x the load, the learned mix", b: stable, w: loaded, scored: true},
		{name: "a syscall never learned", b: stable, w: novel, scored: true, novel: true},
		{name: "too few calls to judge", b: stable, w: tiny, scored: true, tooFew: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Verdict(VerdictInput{Baseline: tt.b, Window: tt.w, Budget: 1, DefaultWindow: time.Second})
			if v.Scored != tt.scored || v.Novel != tt.novel || v.Anomalous != tt.anomal || v.Alert() != (tt.novel || tt.anomal) {
				t.Fatalf("verdict scored %v novel %v anomalous %v (score %v, threshold %v); want %v %v %v",
					v.Scored, v.Novel, v.Anomalous, v.Score.Value, v.Threshold.Value, tt.scored, tt.novel, tt.anomal)
			}
			if !tt.scored {
				return
			}
			want := tt.b.Calibrate(1, tt.w.Duration.Seconds())
			if tt.tooFew {
				if v.Score.Value <= want.Value {
					t.Errorf("score %v not above threshold %v: the case tests nothing", v.Score.Value, want.Value)
				}
				return
			}
			if v.Threshold != want || v.Anomalous != (v.Score.Value > want.Value) {
				t.Errorf("threshold %+v, want %+v", v.Threshold, want)
			}
		})
	}
}

func TestCalibrationWindow(t *testing.T) {
	for _, tt := range []struct{ d, def, want time.Duration }{
		{10*time.Second + 3*time.Millisecond, time.Second, 10 * time.Second}, // ticker jitter
		{9*time.Second + 960*time.Millisecond, time.Second, 10 * time.Second},
		{2340 * time.Millisecond, time.Second, 2300 * time.Millisecond}, // a short final window
		{0, 10 * time.Second, 10 * time.Second},                         // counts only: the default
		{20 * time.Millisecond, time.Second, 100 * time.Millisecond},    // never below one step
	} {
		if got := CalibrationWindow(tt.d, tt.def); got != tt.want {
			t.Errorf("CalibrationWindow(%v, %v) = %v, want %v", tt.d, tt.def, got, tt.want)
		}
	}
}

func TestVerdictCalibratesForTheWindowLength(t *testing.T) {
	wl := newScoreWorkload(3, 0.2)
	b := learnScoreBaseline(wl, 300)
	w := wl.next(1)
	cache := NewThresholdCache()
	at := func(d time.Duration) Threshold {
		w.Duration = d
		return Verdict(VerdictInput{Baseline: b, Window: w, Budget: 5, DefaultWindow: time.Second, Thresholds: cache}).Threshold
	}
	long, short := at(10*time.Second), at(time.Second)
	// A shorter window takes a smaller share of the daily budget: a higher bar.
	if !(short.Value > long.Value) || short.Exceedance >= long.Exceedance {
		t.Errorf("1 s threshold %+v, 10 s threshold %+v: want the 1 s one higher", short, long)
	}
	if got := at(10*time.Second + 20*time.Millisecond); got != long {
		t.Errorf("a jittered 10 s window got %+v, want the cached %+v", got, long)
	}
}

func TestThresholdCache(t *testing.T) {
	wl := newScoreWorkload(11, 0.2)
	b1 := learnScoreBaseline(wl, 150)
	cache := NewThresholdCache()
	get := func(b *Baseline) Threshold { _, th := cache.get(b, time.Second, 1); return th }

	if got, want := get(b1), b1.Calibrate(1, 1); got != want {
		t.Fatalf("first calibration %+v, want %+v", got, want)
	}
	cal := cache.images[b1.Key()]
	if get(b1); cache.images[b1.Key()] != cal {
		t.Error("an unchanged baseline was recalibrated")
	}
	b1.AddWindow(wl.next(3), 0) // learns another window: a new version
	if got, want := get(b1), b1.Calibrate(1, 1); got != want {
		t.Errorf("after learning: %+v, want %+v", got, want)
	}
	b2 := learnScoreBaseline(newScoreWorkload(12, 0.4), int(b1.Windows)) // replaced, same window count
	if got, want := get(b2), b2.Calibrate(1, 1); got != want {
		t.Errorf("after replacement: %+v, want %+v", got, want)
	}
	cache.Forget(b2.Key())
	if _, ok := cache.images[b2.Key()]; ok {
		t.Error("Forget kept the image's calibrations")
	}
}
