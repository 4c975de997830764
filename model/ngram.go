package model

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// GramOrder is the longest run of consecutive syscalls of one thread that is
// counted: each syscall is counted once, with up to GramOrder-1 predecessors.
// Four measured best on ADFA-LD (see README, Model); the kernel packs a 4-gram
// into one table entry.
const GramOrder = 4

// gramSep joins a gram's syscall names. A gram shorter than GramOrder starts
// a run: the thread had just been switched in or had exec'd.
const gramSep = ","

// GramKey names a gram, oldest syscall first.
func GramKey(names ...string) string { return strings.Join(names, gramSep) }

// GramNames splits a gram key.
func GramNames(key string) []string { return strings.Split(key, gramSep) }

// GramsOfSequence counts the grams of one thread's syscalls in order: what the
// kernel counts for a thread that ran them with no context switch.
func GramsOfSequence(seq []string) map[string]uint64 {
	out := make(map[string]uint64, len(seq))
	for i := range seq {
		out[GramKey(seq[max(0, i-GramOrder+1):i+1]...)]++
	}
	return out
}

// PairKey names a consecutive pair for explanations: "openat → execve".
func PairKey(prev, next string) string { return prev + " → " + next }

// suffixes calls fn with each suffix of a gram key, shortest first: "c", "b,c",
// "a,b,c" (the grams of lower order the position also counts as), until fn
// returns false.
func suffixes(key string, fn func(suffix string) bool) {
	for j := len(key); j >= 0; {
		j = strings.LastIndex(key[:j], gramSep)
		if !fn(key[j+1:]) {
			return
		}
	}
}

// context splits a gram into what came before its last syscall and that syscall.
func context(gram string) (ctx, last string) {
	j := strings.LastIndex(gram, gramSep)
	if j < 0 {
		return "", gram
	}
	return gram[:j], gram[j+1:]
}

// gramTables are the counts of a language model over grams of every order up
// to GramOrder: each gram, each context's total and its distinct followers.
type gramTables struct {
	grams     map[string]float64 // every suffix of every counted gram
	totals    map[string]float64 // by context ("" for no context)
	followers map[string]float64 // distinct grams with the context
}

func newGramTables(counted map[string]uint64) *gramTables {
	t := &gramTables{grams: map[string]float64{}, totals: map[string]float64{}, followers: map[string]float64{}}
	for key, c := range counted {
		if c == 0 {
			continue
		}
		suffixes(key, func(s string) bool { t.grams[s] += float64(c); return true })
	}
	for s, c := range t.grams {
		ctx, _ := context(s)
		t.totals[ctx] += c
		t.followers[ctx]++
	}
	return t
}

// heldOut is a window's own tables, to score it against the model without it
// (leave-one-out): its counts are subtracted, and a context loses a follower
// that only this window produced.
type heldOut struct {
	own    *gramTables
	vanish map[string]float64 // followers per context that only the window made
}

func (t *gramTables) without(own *gramTables) *heldOut {
	h := &heldOut{own: own, vanish: map[string]float64{}}
	for s, c := range own.grams {
		if t.grams[s] <= c {
			ctx, _ := context(s)
			h.vanish[ctx]++
		}
	}
	return h
}

func (t *gramTables) count(s string, h *heldOut) float64 {
	c := t.grams[s]
	if h != nil {
		c -= h.own.grams[s]
	}
	return max(c, 0)
}

func (t *gramTables) context(ctx string, h *heldOut) (total, followers float64) {
	total, followers = t.totals[ctx], t.followers[ctx]
	if h != nil {
		total -= h.own.totals[ctx]
		followers -= h.vanish[ctx]
	}
	return max(total, 0), max(followers, 0)
}

// lmVocabulary is the uniform base of the model: about the number of syscalls.
// Fixed, so that merged baselines score exactly as one learned on all windows.
const lmVocabulary = 512

// surprisal is -ln P(last syscall | its predecessors) under an interpolated
// Witten-Bell model: each longer context refines the shorter one's estimate in
// proportion to how often it was seen against how many different followers it had.
func (t *gramTables) surprisal(gram string, h *heldOut) float64 {
	p := 1.0 / lmVocabulary
	suffixes(gram, func(s string) bool {
		ctx, _ := context(s)
		total, followers := t.context(ctx, h)
		if total == 0 { // never seen: no longer context was either
			return false
		}
		p = (t.count(s, h) + followers*p) / (total + followers)
		return true
	})
	return -math.Log(p)
}

// orderStats are the order view's measures of a window: the median surprisal
// of its syscalls given their predecessors, the share of its consecutive pairs
// never seen while learning, and its distinct never-seen trigrams. The first
// two weigh a distinct gram (or pair) by the square root of its count in the
// window, not by the count: a loop that repeats one gram a thousand times
// weighs about as much as thirty grams made once each. On ADFA-LD dev
// (learned on train) this lifted detection at 1% FPR from 0.193 to 0.261 with
// the same AUC, and on each of ten random halves of train (README, Model):
// whole programs absent from learning mostly run tight loops of a few unseen
// grams, while an intrusion makes many different ones.
type orderStats struct {
	median float64
	unseen float64
	pairs  float64 // weight of the distinct consecutive pairs (square roots of their counts)
	// novelTrigrams counts each distinct never-seen trigram once, per syscall
	// of the window, for the same reason: it grows with how many different new
	// sequences a window makes, not with how often it repeats one.
	novelTrigrams float64
}

type weighted struct{ value, weight float64 }

// addSorted adds xs to sum in increasing order (sorting xs), so that a
// map's iteration order cannot change the last bits of the result.
func addSorted(sum float64, xs []float64) float64 {
	slices.Sort(xs)
	for _, x := range xs {
		sum += x
	}
	return sum
}

// repeatWeight is the weight of a distinct gram or pair made c times.
func repeatWeight(c uint64) float64 { return math.Sqrt(float64(c)) }

func (t *gramTables) score(window map[string]uint64, h *heldOut) orderStats {
	var st orderStats
	vals := make([]weighted, 0, len(window))
	pairs := make(map[string]uint64, len(window))
	novelTrigrams := map[string]bool{}
	var calls uint64
	for g, c := range window {
		if c == 0 {
			continue
		}
		calls += c
		vals = append(vals, weighted{t.surprisal(g, h), repeatWeight(c)})
		if pair, ok := lastPair(g); ok {
			pairs[pair] += c
		}
		if tri, ok := lastTrigram(g); ok && t.count(tri, h) == 0 {
			novelTrigrams[tri] = true
		}
	}
	if len(vals) == 0 {
		return st
	}
	st.novelTrigrams = float64(len(novelTrigrams)) / float64(calls)
	// Sorted, and summed in sorted order: map order must not change the
	// result, not even its last bits.
	slices.SortFunc(vals, func(a, b weighted) int { return cmp.Or(cmp.Compare(a.value, b.value), cmp.Compare(a.weight, b.weight)) })
	var total float64
	for _, v := range vals {
		total += v.weight
	}
	seen := make([]float64, 0, len(pairs))
	var novel []float64
	for pair, c := range pairs {
		if t.count(pair, h) == 0 {
			novel = append(novel, repeatWeight(c))
		} else {
			seen = append(seen, repeatWeight(c))
		}
	}
	unseen := addSorted(0, novel)
	st.pairs = addSorted(unseen, seen)
	half, acc := total/2, 0.0
	for _, v := range vals {
		acc += v.weight
		if acc >= half {
			st.median = v.value
			break
		}
	}
	if st.pairs > 0 {
		st.unseen = unseen / st.pairs
	}
	return st
}

// lastPair is the gram's last two syscalls, if it has a predecessor.
func lastPair(gram string) (string, bool) {
	j := strings.LastIndex(gram, gramSep)
	if j < 0 {
		return "", false
	}
	if k := strings.LastIndex(gram[:j], gramSep); k >= 0 {
		return gram[k+1:], true
	}
	return gram, true
}

// lastTrigram is the gram's last three syscalls, if it has two predecessors.
func lastTrigram(gram string) (string, bool) {
	j := len(gram)
	for range 3 {
		if j < 0 {
			return "", false
		}
		j = strings.LastIndex(gram[:j], gramSep)
	}
	return gram[j+1:], true
}

// PairCounts sums grams into consecutive-pair counts ("prev,next").
func PairCounts(grams map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for g, c := range grams {
		if p, ok := lastPair(g); ok && c > 0 {
			out[p] += c
		}
	}
	return out
}

// validGram checks a gram key read from a file: 1 to GramOrder names.
func validGram(g string) error {
	names := GramNames(g)
	if len(names) > GramOrder {
		return fmt.Errorf("gram %q: more than %d syscalls", g, GramOrder)
	}
	if slices.Contains(names, "") {
		return fmt.Errorf("gram %q: empty syscall name", g)
	}
	return nil
}
