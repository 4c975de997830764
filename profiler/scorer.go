package profiler

import (
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/metrics"
)

// WindowScorer is the statistical stage: it asks model.Verdict about each
// container window of an image with a stable baseline and sends the alerts it
// decides on.
type WindowScorer struct {
	mode        Mode
	budget      float64       // false alerts per container-day
	window      time.Duration // the sampling interval, for windows without a duration
	hostname    string
	rules       *activeRules
	lib         *Library
	thresholds  *model.ThresholdCache
	state       *Tracker
	out         AlertSender
	enforcement *Enforcement
	metrics     *metrics.Metrics
}

// Windows scores one sampling round's container windows and returns the
// verdicts, one per window (nil in learn mode, which does not score).
func (s *WindowScorer) Windows(ws []model.Window) []model.WindowVerdict {
	if s.mode == ModeLearn {
		return nil
	}
	rs := s.rules.Load()
	novelRule, anomalyRule := rs.Rule(model.RuleSyscallNovel), rs.Rule(model.RuleSyscallAnomaly)
	verdicts := make([]model.WindowVerdict, len(ws))
	for i, w := range ws {
		if !w.Container.HasBaseline() {
			continue
		}
		v := s.verdict(w)
		verdicts[i] = v
		if !v.Scored {
			continue
		}
		s.state.Scored(w.CgroupID, s.metrics.ObserveScore(w, v.Score, v.Threshold))
		if v.Novel && novelRule != nil {
			s.alert(novelRule, w, v)
		}
		if v.Anomalous && anomalyRule != nil {
			s.alert(anomalyRule, w, v)
		}
	}
	return verdicts
}

func (s *WindowScorer) verdict(w model.Window) model.WindowVerdict {
	var v model.WindowVerdict
	s.lib.view(w.Container.ProfileKey(), func(b *model.Baseline) {
		v = model.Verdict(model.VerdictInput{Baseline: b, Window: w, Budget: s.budget, DefaultWindow: s.window, Thresholds: s.thresholds})
	})
	return v
}

func (s *WindowScorer) alert(r *model.Rule, w model.Window, v model.WindowVerdict) {
	s.out.Send(model.WindowAlert(r, w, v.Score, v.Threshold, s.hostname))
	if r.Action == model.ActionFreeze {
		s.enforcement.Freeze(r.ID, w.CgroupID, w.Container)
	}
}
