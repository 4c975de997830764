package sensor

import (
	"reflect"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

func TestGramNames(t *testing.T) {
	tests := []struct {
		name string
		nrs  []int
		want string
	}{
		{"four syscalls, oldest first", []int{257, 0, 3, 59}, "openat,read,close,execve"},
		{"a run's first syscall", []int{0}, "read"},
		{"read four times is not the empty key", []int{0, 0, 0, 0}, "read,read,read,read"},
		{"two after a switch", []int{1, 0}, "write,read"},
		{"beyond the table is other", []int{600, 0}, "other,read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := GramKey(tc.nrs...)
			if k == 0 {
				t.Fatal("a key packed 0: the kernel's empty entry")
			}
			if got := gramName(k); got != tc.want {
				t.Errorf("gramName(GramKey(%v)) = %q, want %q", tc.nrs, got, tc.want)
			}
		})
	}
}

func TestDiffGrams(t *testing.T) {
	a, b, c := GramKey(0), GramKey(0, 1), GramKey(1, 0)
	tests := []struct {
		name      string
		prev, cur []GramCount
		want      []GramCount
	}{
		{"first read is all new", nil, []GramCount{{a, 3}}, []GramCount{{a, 3}}},
		{"differences, unchanged left out",
			[]GramCount{{a, 3}, {b, 5}}, []GramCount{{a, 3}, {b, 9}, {c, 1}}, []GramCount{{b, 4}, {c, 1}}},
		{"count wrapped in the kernel's width",
			[]GramCount{{a, gramCountMask - 1}}, []GramCount{{a, 2}}, []GramCount{{a, 4}}},
		{"a vanished key means the slots were recounted",
			[]GramCount{{a, 3}, {b, 5}}, []GramCount{{b, 1}}, []GramCount{{b, 1}}},
		{"a vanished last key too",
			[]GramCount{{a, 3}, {c, 5}}, []GramCount{{a, 4}}, []GramCount{{a, 4}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := diffGrams(tc.prev, tc.cur); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("diffGrams = %v, want %v", got, tc.want)
			}
		})
	}
}

// The sampler hands each window the grams made in it, by name.
func TestSamplerGrams(t *testing.T) {
	f := newFakeHistograms()
	start := time.Unix(1000, 0)
	s := NewSampler(f, start, nil)
	f.hists[7] = &Counts{0: 2}
	f.grams[7] = []GramCount{{GramKey(0), 1}, {GramKey(0, 0), 1}}
	d, _, err := s.Sample(start.Add(time.Second))
	if err != nil || len(d) != 1 {
		t.Fatalf("first sample: %v, %d deltas", err, len(d))
	}
	f.hists[7] = &Counts{0: 2, 1: 1}
	f.grams[7] = []GramCount{{GramKey(0), 1}, {GramKey(0, 0), 1}, {GramKey(0, 0, 1), 1}}
	d, _, err = s.Sample(start.Add(2 * time.Second))
	if err != nil || len(d) != 1 {
		t.Fatalf("second sample: %v, %d deltas", err, len(d))
	}
	w := d[0].Window(model.Container{ID: "c"})
	if want := map[string]uint64{"read,read,write": 1}; !reflect.DeepEqual(w.Grams, want) {
		t.Errorf("second window's grams %v, want %v", w.Grams, want)
	}
}
