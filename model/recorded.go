package model

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// RecordedWindow is one window as `run --record` writes it and `replay` reads it.
// Duration is in seconds; 0 (or absent) means counts without a rate.
type RecordedWindow struct {
	ID        string            `json:"id"`
	Time      time.Time         `json:"time,omitzero"`
	Duration  float64           `json:"duration,omitempty"`
	Image     string            `json:"image,omitempty"`
	Workload  string            `json:"workload,omitempty"` // the profile key under learning.key: workload
	Container string            `json:"container,omitempty"`
	Label     string            `json:"label,omitempty"`    // for labelled benchmark data: "normal" or "attack:<class>"
	Startup   bool              `json:"startup,omitempty"`  // in the container's setup seconds (model.Window.Startup)
	Stopping  bool              `json:"stopping,omitempty"` // after the runtime signalled it to stop (model.Window.Stopping)
	Syscalls  map[string]uint64 `json:"syscalls"`
	// Grams are the window's order counts (Window.Grams). Third-party traces
	// give Sequence instead: one thread's syscalls in order.
	Grams    map[string]uint64 `json:"grams,omitempty"`
	Sequence []string          `json:"sequence,omitempty"`
	// Live is the live agent's decision on the window, when it scored windows.
	Live *LiveVerdict `json:"live,omitempty"`
}

// LiveVerdict is a decision as recorded: replaying the window with the same
// baseline and budget must reach the same one.
type LiveVerdict struct {
	Scored    bool    `json:"scored"`
	Alert     bool    `json:"alert"`
	Score     float64 `json:"score,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
}

// Recorded is the verdict in its recorded form.
func (v WindowVerdict) Recorded() *LiveVerdict {
	return &LiveVerdict{Scored: v.Scored, Alert: v.Alert(), Score: v.Score.Value, Threshold: v.Threshold.Value}
}

// DecodeRecordedWindow parses and checks one JSON line.
func DecodeRecordedWindow(line []byte) (RecordedWindow, error) {
	var w RecordedWindow
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&w); err != nil {
		return RecordedWindow{}, fmt.Errorf("not a window: %w", err)
	}
	if dec.More() {
		return RecordedWindow{}, errors.New("not a window: trailing data")
	}
	switch {
	case w.Syscalls == nil:
		return RecordedWindow{}, errors.New("window without syscalls")
	case w.Duration < 0 || math.IsNaN(w.Duration) || math.IsInf(w.Duration, 0):
		return RecordedWindow{}, fmt.Errorf("duration %v is not a non-negative number of seconds", w.Duration)
	}
	for name := range w.Syscalls {
		if name == "" {
			return RecordedWindow{}, errors.New("syscall with an empty name")
		}
	}
	if len(w.Grams) > 0 && len(w.Sequence) > 0 {
		return RecordedWindow{}, errors.New("window with both grams and a sequence")
	}
	if w.Workload != "" {
		if err := ValidWorkloadKey(w.Workload); err != nil {
			return RecordedWindow{}, err
		}
	}
	for _, name := range w.Sequence {
		if name == "" || strings.Contains(name, gramSep) {
			return RecordedWindow{}, fmt.Errorf("sequence entry %q is not a syscall name", name)
		}
	}
	for g := range w.Grams {
		if err := validGram(g); err != nil {
			return RecordedWindow{}, err
		}
	}
	return w, nil
}

// Window converts a recorded window for learning or scoring.
func (r RecordedWindow) Window() Window {
	repo, tag := SplitImageRef(r.Image)
	id := r.Container
	if id == "" {
		id = r.ID
	}
	return Window{
		Container: Container{ID: id, Name: r.Container, Runtime: RuntimeStatic, Image: repo, ImageTag: tag, Workload: r.Workload},
		Start:     r.Time, Duration: time.Duration(math.Round(r.Duration * float64(time.Second))), Counts: r.Syscalls,
		Grams:    r.grams(),
		Startup:  r.Startup,
		Stopping: r.Stopping,
	}
}

// Record turns a live window into its recorded form; live is the agent's
// decision on it, nil when the agent does not score.
func Record(w Window, id string, live *LiveVerdict) RecordedWindow {
	return RecordedWindow{ID: id, Time: w.Start, Duration: w.Duration.Seconds(), Image: w.Container.ImageRef(),
		Workload: w.Container.Workload, Container: w.Container.Name, Syscalls: w.Counts, Grams: w.Grams, Startup: w.Startup,
		Stopping: w.Stopping, Live: live}
}

// ProfileKey is the baseline the window belongs to: its workload, else its
// image; "" when it names neither.
func (r RecordedWindow) ProfileKey() string { return cmp.Or(r.Workload, r.Image) }

func (r RecordedWindow) grams() map[string]uint64 {
	if len(r.Sequence) > 0 {
		return GramsOfSequence(r.Sequence)
	}
	return r.Grams
}

// ROC summarises how well scores separate attacks (positive) from normal windows.
type ROC struct {
	AUC         float64            `json:"auc"`
	DetectionAt map[string]float64 `json:"detection_at_fpr"` // "1%" → true positive rate
	Positives   int                `json:"attacks"`
	Negatives   int                `json:"normal"`
}

// ComputeROC computes the AUC (ties counted half) and the detection rate at the
// given false-positive rates (threshold set on the normal scores' quantile).
func ComputeROC(scores []float64, positive []bool, fprs []float64) ROC {
	var pos, neg []float64
	for i, s := range scores {
		if positive[i] {
			pos = append(pos, s)
		} else {
			neg = append(neg, s)
		}
	}
	r := ROC{Positives: len(pos), Negatives: len(neg), DetectionAt: map[string]float64{}}
	if len(pos) == 0 || len(neg) == 0 {
		return r
	}
	slices.Sort(neg)
	var wins float64
	for _, p := range pos {
		lo, _ := slices.BinarySearch(neg, p)
		hi := lo
		for hi < len(neg) && neg[hi] == p {
			hi++
		}
		wins += float64(lo) + 0.5*float64(hi-lo)
	}
	r.AUC = wins / float64(len(pos)*len(neg))
	for _, f := range fprs {
		// The threshold lets at most f of the normal windows through.
		k := int(math.Floor(f * float64(len(neg))))
		t := neg[len(neg)-1-min(k, len(neg)-1)]
		detected := 0
		for _, p := range pos {
			if p > t {
				detected++
			}
		}
		r.DetectionAt[fmt.Sprintf("%g%%", f*100)] = float64(detected) / float64(len(pos))
	}
	return r
}
