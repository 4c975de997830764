package fleet

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cagewatch/cagewatch/model"
)

func TestGuardThreshold(t *testing.T) {
	tests := []struct {
		name  string
		guard GuardConfig
		nodes int
		want  uint32
	}{
		{"one node learns alone", DefaultGuard, 1, 1},
		{"two nodes: each still teaches", DefaultGuard, 2, 1},
		{"three nodes: two needed", DefaultGuard, 3, 2},
		{"many nodes", DefaultGuard, 500, 2},
		{"K=1 never guards", GuardConfig{K: 1, MinNodes: 3}, 10, 1},
		{"K=3 from five nodes", GuardConfig{K: 3, MinNodes: 5}, 5, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.guard.threshold(tt.nodes); got != tt.want {
				t.Errorf("threshold(%d) = %d, want %d", tt.nodes, got, tt.want)
			}
		})
	}
}

// TestAggregateRoundTrip: node counts survive encoding, aligned with items.
func TestAggregateRoundTrip(t *testing.T) {
	wl := newWorkload(3)
	a := newAggregate(model.NewBaseline("app", "1", ""), 4)
	for i := range 3 {
		d := model.NewBaseline("app", "1", "")
		d.AddWindow(wl.window("n", "c"), 16)
		d.AddExec("/bin/sh")
		d.AddException("write_below_etc", "/bin/sh", "/etc/app/")
		if err := a.apply(d, itemsOf(d).minus(itemsOf(a.Baseline)), i == 0, learnCfg); err != nil {
			t.Fatal(err)
		}
	}
	a.Nodes = 5
	enc, err := a.encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeAggregate(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.Epoch != 4 || back.Nodes != 5 || back.Baseline.Windows != 3 {
		t.Errorf("decoded epoch %d nodes %d windows %d", back.Epoch, back.Nodes, back.Baseline.Windows)
	}
	for i, kind := range a.Support.kinds() {
		if !maps.Equal(kind, back.Support.kinds()[i]) {
			t.Errorf("support list %d differs after a round trip", i)
		}
	}
	if back.Support.Binaries["/bin/sh"] != 1 || back.Support.Exceptions[exceptionKey("write_below_etc", "/bin/sh", "/etc/app/")] != 1 {
		t.Errorf("binary and exception support %v %v", back.Support.Binaries, back.Support.Exceptions)
	}
}

func TestDecodeAggregateRefuses(t *testing.T) {
	good := newAggregate(model.NewBaseline("app", "1", ""), 1)
	d := model.NewBaseline("app", "1", "")
	d.AddWindow(newWorkload(4).window("n", "c"), 16)
	if err := good.apply(d, itemsOf(d), true, learnCfg); err != nil {
		t.Fatal(err)
	}
	enc, err := good.encode()
	if err != nil {
		t.Fatal(err)
	}
	gz := func(v any) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if err := json.NewEncoder(zw).Encode(v); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"not gzip", []byte(`{"format": 1, "epoch": 1}`), "gzip"},
		{"truncated", enc[:len(enc)/2], "unexpected EOF"},
		{"other format", gz(wireAggregate{Format: 99, Baseline: good.Baseline}), "format 99"},
		{"no baseline", gz(wireAggregate{Format: aggregateFormat}), "no baseline"},
		{"counts not aligned with items", gz(wireAggregate{Format: aggregateFormat, Baseline: good.Baseline,
			Support: [][]uint32{{1}, {}, {}, {}, {}}}), "support list 0"},
		{"too few lists", gz(wireAggregate{Format: aggregateFormat, Baseline: good.Baseline}), "support lists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeAggregate(tt.raw); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestAggregateTooLarge: an aggregate past the cap is refused, naming the
// profile, instead of failing inside etcd.
func TestAggregateTooLarge(t *testing.T) {
	a := newAggregate(model.NewBaseline("huge", "1", ""), 1)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 16)
	for range 120_000 { // incompressible grams
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		a.Baseline.Order.Grams[hex.EncodeToString(buf)] = 1
	}
	_, err := a.encode()
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), `"huge:1"`) {
		t.Fatalf("error %v, want ErrTooLarge naming huge:1", err)
	}
}
