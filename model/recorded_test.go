package model

import (
	"encoding/json"
	"maps"
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
		{name: "sequence (ADFA)", line: `{"id":"a","syscalls":{"read":2,"write":1},"sequence":["read","write","read"]}`},
		{name: "grams (run --record)", line: `{"id":"a","syscalls":{"read":2},"grams":{"read":1,"read,read":1,"a,b,c,d":0}}`},
		{name: "empty sequence entry", line: `{"id":"a","syscalls":{"read":1},"sequence":["read",""]}`, wantErr: "not a syscall name"},
		{name: "sequence entry with the gram separator", line: `{"id":"a","syscalls":{"read":1},"sequence":["read,write"]}`, wantErr: "not a syscall name"},
		{name: "empty gram", line: `{"id":"a","syscalls":{"read":1},"grams":{"":1}}`, wantErr: "empty syscall name"},
		{name: "gram with an empty name", line: `{"id":"a","syscalls":{"read":1},"grams":{"read,,write":1}}`, wantErr: "empty syscall name"},
		{name: "gram ending in the separator", line: `{"id":"a","syscalls":{"read":1},"grams":{"read,":1}}`, wantErr: "empty syscall name"},
		{name: "gram longer than GramOrder", line: `{"id":"a","syscalls":{"read":1},"grams":{"a,b,c,d,e":1}}`, wantErr: "more than 4"},
		{name: "both grams and a sequence", line: `{"id":"a","syscalls":{"read":1},"grams":{"read":1},"sequence":["read"]}`, wantErr: "both"},
		{name: "negative gram count", line: `{"id":"a","syscalls":{"read":1},"grams":{"read":-1}}`, wantErr: "not a window"},
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

func TestRecordedWindowGrams(t *testing.T) {
	tests := []struct {
		name, line string
		want       map[string]uint64
	}{
		{name: "counts only", line: `{"id":"a","syscalls":{"read":1}}`},
		{name: "grams as recorded", line: `{"id":"a","syscalls":{"read":2},"grams":{"read":1,"read,read":1}}`,
			want: map[string]uint64{"read": 1, "read,read": 1}},
		{name: "a sequence is one thread's grams", line: `{"id":"a","syscalls":{"open":1,"read":3,"close":1},"sequence":["open","read","read","read","close"]}`,
			want: map[string]uint64{"open": 1, "open,read": 1, "open,read,read": 1, "open,read,read,read": 1, "read,read,read,close": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRecordedWindow([]byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Window().Grams; !maps.Equal(got, tt.want) {
				t.Errorf("grams %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzDecodeRecordedWindow(f *testing.F) {
	for _, s := range []string{`{"id":"a","duration":1.5,"syscalls":{"read":5}}`, `{"syscalls":{}}`, `{`, `null`, `[]`,
		`{"syscalls":{"read":2},"sequence":["read","read"]}`, `{"syscalls":{"read":2},"grams":{"read,read":1}}`} {
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
		// Whatever is accepted is a set of grams scoring can split.
		for g := range w.Window().Grams {
			if err := validGram(g); err != nil {
				t.Fatalf("accepted gram %q: %v", g, err)
			}
		}
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
