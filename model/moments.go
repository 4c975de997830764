package model

import "math"

// Moments are running statistics of one value over the windows in which it was
// present (Welford), mergeable exactly in the algebraic sense with Chan's formula.
type Moments struct {
	N    uint64  `json:"n"`    // windows in which the value was present
	Mean float64 `json:"mean"` // mean over those windows
	M2   float64 `json:"m2"`   // sum of squared deviations from Mean
	Max  float64 `json:"max"`
}

// Add folds in one observation.
func (m *Moments) Add(x float64) {
	m.N++
	d := x - m.Mean
	m.Mean += d / float64(m.N)
	m.M2 += d * (x - m.Mean)
	if m.N == 1 || x > m.Max {
		m.Max = x
	}
}

// Merge combines two sets of observations (Chan et al.).
func (m Moments) Merge(o Moments) Moments {
	switch {
	case o.N == 0:
		return m
	case m.N == 0:
		return o
	}
	n := m.N + o.N
	d := o.Mean - m.Mean
	return Moments{
		N:    n,
		Mean: m.Mean + d*float64(o.N)/float64(n),
		M2:   m.M2 + o.M2 + d*d*float64(m.N)*float64(o.N)/float64(n),
		Max:  math.Max(m.Max, o.Max),
	}
}

// unmerge undoes Merge(o) (exactly, up to rounding); Max is kept, an upper
// bound.
func (m Moments) unmerge(o Moments) Moments {
	if o.N == 0 {
		return m
	}
	if m.N <= o.N {
		return Moments{}
	}
	n := m.N - o.N
	mean := (m.Mean*float64(m.N) - o.Mean*float64(o.N)) / float64(n)
	d := o.Mean - mean
	m2 := m.M2 - o.M2 - d*d*float64(n)*float64(o.N)/float64(m.N)
	return Moments{N: n, Mean: mean, M2: math.Max(m2, 0), Max: m.Max}
}

// Over returns mean and sample variance over total windows, counting the windows
// in which the value was absent as zeros: Chan's merge with a block of zeros.
func (m Moments) Over(total uint64) (mean, variance float64) {
	if total == 0 || m.N == 0 {
		return 0, 0
	}
	if m.N > total { // not possible for consistent data; be safe
		total = m.N
	}
	zeros := float64(total - m.N)
	n := float64(total)
	mean = m.Mean * float64(m.N) / n
	m2 := m.M2 + m.Mean*m.Mean*float64(m.N)*zeros/n
	if total < 2 {
		return mean, 0
	}
	return mean, math.Max(m2/(n-1), 0)
}
