package fleet

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// adfa is the largest realistic baseline at hand: ADFA-LD's training traces,
// a whole web server's processes (shared/data, beside the repository).
const adfa = "../../../shared/data/adfa-ld/train.jsonl"

func gzipLen(t *testing.T, v any) (raw, packed int) {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(j); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return len(j), buf.Len()
}

// TestAggregateSize measures what docs/fleet.md's arithmetic rests on: the
// encoded aggregate of a large image must fit one etcd request with room.
func TestAggregateSize(t *testing.T) {
	f, err := os.Open(adfa)
	if err != nil {
		t.Skipf("no ADFA-LD data beside the repository: %v", err)
	}
	defer f.Close() //nolint:errcheck // read-only
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	agg := newAggregate(model.NewBaseline("adfa", "1", ""), 1)
	i := 0
	for sc.Scan() {
		r, err := model.DecodeRecordedWindow(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		w := r.Window()
		w.Container.Image, w.Container.ImageTag = "adfa", "1"
		w.Start, w.Duration = time.Unix(int64(i)*10, 0), 10*time.Second
		// Each trace from its own node: the most support entries there can be.
		d := model.NewProfileBaseline(w.Container)
		d.AddWindow(w, model.DefaultSampleSize)
		if err := agg.apply(d, itemsOf(d), true, model.LearnConfig{SampleSize: model.DefaultSampleSize, StableWindows: 20, MaxDrift: 3}); err != nil {
			t.Fatal(err)
		}
		i++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	enc, err := agg.encode()
	if err != nil {
		t.Fatal(err)
	}
	b := agg.Baseline
	for _, part := range []struct {
		name string
		v    any
	}{
		{"syscalls", b.Syscalls}, {"composition", b.Composition}, {"order", b.Order}, {"sample", b.Sample},
		{"containers", b.Containers}, {"whole baseline", b},
	} {
		raw, packed := gzipLen(t, part.v)
		t.Logf("%-15s %9d B JSON %8d B gzip", part.name, raw, packed)
	}
	_, whole := gzipLen(t, b)
	t.Logf("%d windows, %d syscalls, %d grams, %d sampled; encoded aggregate %d B (node counts %d B of it; limit %d)",
		b.Windows, len(b.Syscalls), len(b.Order.Grams), len(b.Sample), len(enc), len(enc)-whole, MaxAggregateBytes)
	if len(enc) > MaxAggregateBytes/2 {
		t.Errorf("a large image's aggregate takes %d B, over half the %d B limit", len(enc), MaxAggregateBytes)
	}
	back, err := decodeAggregate(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.Baseline.Windows != b.Windows || len(back.Support.Grams) != len(agg.Support.Grams) || back.Nodes != agg.Nodes {
		t.Errorf("decoded aggregate differs: %d windows, %d grams' support, %d nodes", back.Baseline.Windows,
			len(back.Support.Grams), back.Nodes)
	}
}
