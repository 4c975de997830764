package sensor

import (
	"slices"

	"github.com/cagewatch/cagewatch/model"
)

// The kernel's gram table layout (bpf/sensor.h, GRAM_*): four fields of
// gramFieldBits, oldest first, 0 for "no predecessor" and n+1 for syscall n;
// the count sits above the key and wraps in its width.
const (
	gramFieldBits = 9
	gramOther     = 1<<gramFieldBits - 1
	gramKeyBits   = model.GramOrder * gramFieldBits
	gramKeyMask   = 1<<gramKeyBits - 1
	gramCountMask = 1<<(64-gramKeyBits) - 1
	// GramTableEntries is the size of each slot's gram table.
	GramTableEntries = len(sensorHist{}.Grams)
)

// GramCount is one gram's count: cumulative (modulo the kernel's count width)
// as read, or a window's difference in a Delta.
type GramCount struct {
	Key   uint64 // packed as the kernel packs it
	Count uint32
}

// GramKey packs syscall numbers, oldest first, as the kernel does; the
// inverse of gramNames, for tests and fakes.
func GramKey(nrs ...int) uint64 {
	var k uint64
	for _, nr := range nrs {
		f := uint64(gramOther)
		if nr >= 0 && nr < gramOther-1 {
			f = uint64(nr) + 1
		}
		k = k<<gramFieldBits | f
	}
	return k & gramKeyMask
}

// gramName turns a packed key into the model's gram key, by syscall name.
func gramName(key uint64) string {
	names := make([]string, 0, model.GramOrder)
	for i := model.GramOrder - 1; i >= 0; i-- {
		f := key >> (i * gramFieldBits) & gramOther
		switch f {
		case 0:
			continue // before the thread's run began
		case gramOther:
			names = append(names, "other")
		default:
			names = append(names, model.SyscallName(int(f-1)))
		}
	}
	return model.GramKey(names...)
}

// diffGrams returns cur - prev, both cumulative by ascending key, modulo the
// count width; nil when nothing changed. A key that vanished means the slots
// were released and counted again since prev: then every count is new.
func diffGrams(prev, cur []GramCount) []GramCount {
	if len(cur) == 0 {
		return nil
	}
	var diff []GramCount
	j := 0
	for _, c := range cur {
		for ; j < len(prev) && prev[j].Key < c.Key; j++ {
			return slices.Clone(cur) // counted before, gone now
		}
		var p uint32
		if j < len(prev) && prev[j].Key == c.Key {
			p = prev[j].Count
			j++
		}
		if d := (c.Count - p) & gramCountMask; d != 0 {
			diff = append(diff, GramCount{Key: c.Key, Count: d})
		}
	}
	if j < len(prev) {
		return slices.Clone(cur)
	}
	return diff
}

// gramsByName converts a window's gram differences to the model's keys.
func gramsByName(grams []GramCount) map[string]uint64 {
	if len(grams) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(grams))
	for _, g := range grams {
		out[gramName(g.Key)] += uint64(g.Count)
	}
	return out
}
