package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cagewatch/cagewatch/model"
)

// defaultReplayImage keys windows that name no image (third-party traces).
const defaultReplayImage = "replay"

func newReplayCommand(g *globalOptions) *cobra.Command {
	var train, baselineFile, score string
	var summary bool
	var budget float64
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "replay (--train FILE | --baseline FILE) --score FILE",
		Short: "Score recorded windows offline with the agent's model: what would detection have alerted?",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (train == "") == (baselineFile == "") {
				return errors.New("give exactly one of --train or --baseline")
			}
			if score == "" {
				return errors.New("--score is required")
			}
			if !(budget > 0) {
				return fmt.Errorf("--budget %v: must be a positive number of false alerts per container-day", budget)
			}
			if window <= 0 {
				return fmt.Errorf("--window %v: must be positive", window)
			}
			var baselines map[string]*model.Baseline
			var err error
			if train != "" {
				baselines, err = learnFromFile(train, g.stderr)
			} else {
				baselines, err = baselinesFromExport(baselineFile)
			}
			if err != nil {
				return err
			}
			r := &replayer{baselines: baselines, budget: budget, window: window, thresholds: model.NewThresholdCache()}
			sum, err := r.scoreFile(score, g.stdout, g.stderr)
			if err != nil {
				return err
			}
			w := g.stderr
			if summary {
				w = g.stdout
			}
			sum.print(w)
			return nil
		},
	}
	cmd.Flags().StringVar(&train, "train", "", "recorded windows (JSON lines) to learn baselines from")
	cmd.Flags().StringVar(&baselineFile, "baseline", "", "baselines exported with `baseline export`")
	cmd.Flags().StringVar(&score, "score", "", "recorded windows (JSON lines) to score")
	cmd.Flags().BoolVar(&summary, "summary", false, "print the summary on stdout (default: stderr)")
	cmd.Flags().Float64Var(&budget, "budget", 1, "false-positive budget: false alerts per container-day (scoring.false_positive_budget)")
	cmd.Flags().DurationVar(&window, "window", 10*time.Second, "window length assumed for windows without a duration (sets the per-window false-positive probability)")
	return cmd
}

// eachWindow reads JSON-line windows, reporting malformed lines by number.
func eachWindow(path string, stderr io.Writer, fn func(model.RecordedWindow)) (malformed int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		w, err := model.DecodeRecordedWindow([]byte(line))
		if err != nil {
			malformed++
			fmt.Fprintf(stderr, "%s:%d: skipped: %v\n", path, n, err)
			continue
		}
		fn(w)
	}
	if err := sc.Err(); err != nil {
		return malformed, fmt.Errorf("reading %s: %w", path, err)
	}
	return malformed, nil
}

// replayKey is the baseline a recorded window's profile key names.
func replayKey(profile string) string { return cmp.Or(profile, defaultReplayImage) }

// learnFromFile learns one baseline per image from recorded windows; the result
// is stable, as if promoted.
func learnFromFile(path string, stderr io.Writer) (map[string]*model.Baseline, error) {
	out := map[string]*model.Baseline{}
	_, err := eachWindow(path, stderr, func(r model.RecordedWindow) {
		key := replayKey(r.ProfileKey())
		b := out[key]
		if b == nil {
			repo, tag := model.SplitImageRef(replayKey(r.Image))
			b = model.NewBaseline(repo, tag, "")
			b.Workload = r.Workload
			out[key] = b
		}
		b.AddWindow(r.Window(), model.DefaultSampleSize)
	})
	for _, b := range out {
		b.Promote(b.LastSeen)
	}
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%s: no windows to learn from", path)
	}
	return out, err
}

func baselinesFromExport(path string) (map[string]*model.Baseline, error) {
	bs, err := readBaselineFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]*model.Baseline{}
	for _, b := range bs {
		out[b.Key()] = b
	}
	return out, nil
}

type replayer struct {
	baselines  map[string]*model.Baseline
	budget     float64
	window     time.Duration // for windows without a duration
	thresholds *model.ThresholdCache
}

// baselineFor finds a window's baseline: by profile key, or the only one there is.
func (r *replayer) baselineFor(profile string) *model.Baseline {
	if b, ok := r.baselines[replayKey(profile)]; ok {
		return b
	}
	if len(r.baselines) == 1 && profile == "" {
		for _, b := range r.baselines {
			return b
		}
	}
	return nil
}

// verdict decides a recorded window exactly as the live agent does.
func (r *replayer) verdict(b *model.Baseline, w model.Window) model.WindowVerdict {
	return model.Verdict(model.VerdictInput{Baseline: b, Window: w, Budget: r.budget, DefaultWindow: r.window, Thresholds: r.thresholds})
}

// replayLine is one replayed window's JSON line: the decision, and the same
// explanation a live alert carries (views, top shares, rare pairs). Top, views
// and pairs are empty arrays, never absent, when there is nothing to list.
type replayLine struct {
	ID        string                   `json:"id"`
	Scored    bool                     `json:"scored"` // false: a start-up window, or the baseline is not stable
	Score     float64                  `json:"score"`  // the combined score of the composition and order views
	Threshold float64                  `json:"threshold"`
	Alert     bool                     `json:"alert"`
	Novel     []string                 `json:"novel,omitempty"`
	Views     []replayView             `json:"views"` // composition, order, volume: those the window was scored on
	Top       []replayContrib          `json:"top"`   // composition: the syscalls whose share moved most
	Pairs     []model.PairContribution `json:"pairs"` // order: pairs learning saw rarely (learned) or never (0)
}

// replayView is one view's part of the score (volume is reported, never decides).
type replayView struct {
	View   string  `json:"view"`
	Z      float64 `json:"z"`       // standardized on held-out learning windows
	PValue float64 `json:"p_value"` // share of normal windows scoring higher
}

// replayContrib is a syscall's share of the window's calls against its learned
// mean share: shares (0 to 1), not rates.
type replayContrib struct {
	Syscall       string  `json:"syscall"`
	ObservedShare float64 `json:"observed_share"`
	ExpectedShare float64 `json:"expected_share"`
	Novel         bool    `json:"novel,omitempty"` // never seen while learning
}

type replaySummary struct {
	Scored, Alerts, Malformed, NoBaseline, NotScored int
	// LiveRecorded windows carry the live agent's decision; DiffersFromLive of
	// them were decided otherwise on replay (0 with the same baseline and budget).
	LiveRecorded, DiffersFromLive int
	NormalAlerts, AttackAlerts    int
	PerImage                      map[string]int
	PerHour                       map[time.Time]int
	scores                        []float64
	attack                        []bool
}

// scoreFile decides every window with model.Verdict, as the live agent does.
func (r *replayer) scoreFile(path string, stdout, stderr io.Writer) (*replaySummary, error) {
	sum := &replaySummary{PerImage: map[string]int{}, PerHour: map[time.Time]int{}}
	enc := json.NewEncoder(stdout)
	var werr error
	malformed, err := eachWindow(path, stderr, func(rw model.RecordedWindow) {
		b := r.baselineFor(rw.ProfileKey())
		if b == nil {
			sum.NoBaseline++
			return
		}
		v := r.verdict(b, rw.Window())
		s := v.Score
		line := replayLine{ID: rw.ID, Scored: v.Scored, Score: s.Value, Threshold: v.Threshold.Value, Novel: s.Novel,
			Alert: v.Alert(), Views: []replayView{}, Top: []replayContrib{}, Pairs: []model.PairContribution{}}
		for _, vs := range s.Views {
			line.Views = append(line.Views, replayView{View: vs.View, Z: vs.Z, PValue: vs.PValue})
		}
		for _, c := range s.Top {
			line.Top = append(line.Top, replayContrib{Syscall: c.Syscall, ObservedShare: c.Observed, ExpectedShare: c.Expected, Novel: c.Novel})
		}
		line.Pairs = append(line.Pairs, s.Pairs...)
		if err := enc.Encode(line); err != nil && werr == nil {
			werr = err
		}
		if rw.Live != nil {
			sum.LiveRecorded++
			if rw.Live.Scored != v.Scored || rw.Live.Alert != v.Alert() {
				sum.DiffersFromLive++
			}
		}
		if !v.Scored {
			sum.NotScored++
			return
		}
		sum.Scored++
		if rw.Label != "" {
			sum.scores = append(sum.scores, s.Value)
			sum.attack = append(sum.attack, strings.HasPrefix(rw.Label, "attack"))
		}
		if line.Alert && rw.Label != "" {
			if strings.HasPrefix(rw.Label, "attack") {
				sum.AttackAlerts++
			} else {
				sum.NormalAlerts++
			}
		}
		if line.Alert {
			sum.Alerts++
			sum.PerImage[replayKey(rw.ProfileKey())]++
			if !rw.Time.IsZero() {
				sum.PerHour[rw.Time.Truncate(time.Hour)]++
			}
		}
	})
	sum.Malformed = malformed
	return sum, cmp.Or(err, werr)
}

func (s *replaySummary) print(w io.Writer) {
	fmt.Fprintf(w, "windows scored: %d, alerts: %d, malformed lines skipped: %d, without a baseline: %d, not scored (start-up or baseline not stable): %d\n",
		s.Scored, s.Alerts, s.Malformed, s.NoBaseline, s.NotScored)
	if s.LiveRecorded > 0 {
		fmt.Fprintf(w, "  windows recorded with the live decision: %d, decided otherwise on replay: %d\n", s.LiveRecorded, s.DiffersFromLive)
	}
	images := sortedKeys(s.PerImage)
	for _, im := range images {
		fmt.Fprintf(w, "  alerts for %s: %d\n", im, s.PerImage[im])
	}
	var busiest time.Time
	for h, n := range s.PerHour {
		if n > s.PerHour[busiest] || (n == s.PerHour[busiest] && h.Before(busiest)) {
			busiest = h
		}
	}
	if !busiest.IsZero() {
		fmt.Fprintf(w, "  busiest hour: %s (%d alerts)\n", busiest.Format(time.RFC3339), s.PerHour[busiest])
	}
	if len(s.scores) > 0 {
		r := model.ComputeROC(s.scores, s.attack, []float64{0.01, 0.05})
		fmt.Fprintf(w, "labelled windows: %d attack, %d normal\n", r.Positives, r.Negatives)
		fmt.Fprintf(w, "| model | AUC | detection at 1%% FPR | detection at 5%% FPR |\n|---|---|---|---|\n")
		fmt.Fprintf(w, "| cagewatch (live scorer) | %.3f | %.3f | %.3f |\n", r.AUC, r.DetectionAt["1%"], r.DetectionAt["5%"])
		fmt.Fprintf(w, "alerts on normal windows: %d of %d (%.4f); alerts on attack windows: %d of %d\n",
			s.NormalAlerts, r.Negatives, float64(s.NormalAlerts)/float64(max(r.Negatives, 1)), s.AttackAlerts, r.Positives)
	}
}
