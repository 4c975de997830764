package model

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestDecodeRecordedWindow(t *testing.T) {
	tests := []struct {
		name, line, wantErr string
	}{
		{name: "live window", line: `{"id":"a","time":"2026-11-01T12:00:00Z","duration":10,"image":"e2e/app:1","container":"web","syscalls":{"read":5}}`},
		{name: "no duration (ADFA)", line: `{"id":"train/1","label":"normal","syscalls":{"read":5,"exit":1}}`},
		{name: "not JSON", line: `{"id":`, wantErr: "not a window"},
		{name: "negative count", line: `{"id":"a","syscalls":{"read":-1}}`, wantErr: "not a window"},
		{name: "negative duration", line: `{"id":"a","duration":-1,"syscalls":{}}`, wantErr: "duration"},
		{name: "no syscalls", line: `{"id":"a"}`, wantErr: "without syscalls"},
		{name: "empty syscall name", line: `{"id":"a","syscalls":{"":1}}`, wantErr: "empty name"},
		{name: "trailing data", line: `{"id":"a","syscalls":{}} {}`, wantErr: "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRecordedWindow([]byte(tt.line))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzDecodeRecordedWindow(f *testing.F) {
	for _, s := range []string{`{"id":"a","duration":1.5,"syscalls":{"read":5}}`, `{"syscalls":{}}`, `{`, `null`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		w, err := DecodeRecordedWindow(line)
		if err != nil {
			return
		}
		if w.Syscalls == nil || w.Duration < 0 || math.IsNaN(w.Duration) {
			t.Fatalf("accepted an invalid window: %+v", w)
		}
		// What decodes re-encodes and decodes to the same window.
		raw, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		w2, err := DecodeRecordedWindow(raw)
		if err != nil || len(w2.Syscalls) != len(w.Syscalls) || w2.ID != w.ID || w2.Duration != w.Duration {
			t.Fatalf("round trip: %v %+v vs %+v", err, w2, w)
		}
		_ = w.Window() // never panics
	})
}

func TestComputeROC(t *testing.T) {
	r := ComputeROC([]float64{1, 2, 3, 10, 11}, []bool{false, false, false, true, true}, []float64{0.01})
	if r.AUC != 1 || r.DetectionAt["1%"] != 1 {
		t.Errorf("perfect separation: %+v", r)
	}
	r = ComputeROC([]float64{1, 1, 1, 1}, []bool{false, true, false, true}, []float64{0.5})
	if r.AUC != 0.5 {
		t.Errorf("ties count half: AUC %v", r.AUC)
	}
	r = ComputeROC([]float64{5, 1}, []bool{false, true}, nil)
	if r.AUC != 0 {
		t.Errorf("inverted: AUC %v", r.AUC)
	}
}
