package model

import (
	"errors"
	"fmt"
	"math"
)

// Validate checks a baseline read from outside (an import file, the store) for
// values no learning could have produced. The error names the image and field.
func (b *Baseline) Validate() error {
	key := b.Key()
	if key == "" {
		return errors.New("baseline without image, tag or image_id")
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("baseline %q: %s", key, fmt.Sprintf(format, args...))
	}
	if b.Workload != "" {
		if err := ValidWorkloadKey(b.Workload); err != nil {
			return bad("%v", err)
		}
		if (Container{Image: b.Image, ImageTag: b.Tag, ImageID: b.ImageID}).ImageRef() == "" {
			return bad("workload without image, tag or image_id")
		}
	}
	if err := b.Prior.validate(key, b.Windows); err != nil {
		return bad("%v", err)
	}
	if b.State != StateLearning && b.State != StateStable {
		return bad("state %q is not %q or %q", b.State, StateLearning, StateStable)
	}
	if !finiteNonNeg(b.Seconds) {
		return bad("seconds %v is not a finite non-negative number", b.Seconds)
	}
	if err := b.Total.validate(b.Windows); err != nil {
		return bad("total: %v", err)
	}
	if b.Total.N != b.Windows {
		return bad("total.n %d differs from windows %d", b.Total.N, b.Windows)
	}
	for name, m := range b.Syscalls {
		if name == "" {
			return bad("syscall with an empty name")
		}
		if err := m.validate(b.Windows); err != nil {
			return bad("syscalls[%q]: %v", name, err)
		}
	}
	var containerWindows uint64
	for id, n := range b.Containers {
		if n == 0 {
			return bad("containers[%q] contributed 0 windows", id)
		}
		containerWindows += n
	}
	if containerWindows != b.Windows {
		return bad("containers contributed %d windows in all, but windows is %d", containerWindows, b.Windows)
	}
	for i, s := range b.Sample {
		if !finiteNonNeg(s.Seconds) {
			return bad("sample[%d].seconds %v is not a finite non-negative number", i, s.Seconds)
		}
		if i > 0 && s.Priority < b.Sample[i-1].Priority {
			return bad("sample is not sorted by priority at %d", i)
		}
	}
	if uint64(len(b.Sample)) > b.Windows {
		return bad("sample holds %d windows, more than the %d learned", len(b.Sample), b.Windows)
	}
	if err := b.validateViews(); err != nil {
		return bad("%v", err)
	}
	for rule, byBinary := range b.Exceptions {
		for binary, details := range byBinary {
			for detail, n := range details {
				if rule == "" || binary == "" || detail == "" || n == 0 {
					return bad("exceptions[%q][%q][%q] = %d: rule, binary and detail must be named and hits at least 1", rule, binary, detail, n)
				}
			}
		}
	}
	if c := b.Convergence; c.CheckpointWindows > b.Windows {
		return bad("convergence.checkpoint_windows %d exceeds windows %d", c.CheckpointWindows, b.Windows)
	} else if c.PreviousWindows > c.CheckpointWindows {
		return bad("convergence.previous_windows %d exceeds checkpoint_windows %d", c.PreviousWindows, c.CheckpointWindows)
	}
	learned := b.shareSums()
	for field, sums := range map[string]map[string]RateSums{
		"checkpoint_sums": b.Convergence.CheckpointSums, "previous_sums": b.Convergence.PreviousSums,
	} {
		for name, rs := range sums {
			now := learned[name]
			if !finiteNonNeg(rs.Sum) || !finiteNonNeg(rs.SumSq) || rs.Sum > now.Sum*(1+1e-9)+1e-9 || rs.SumSq > now.SumSq*(1+1e-9)+1e-9 || rs.N > now.N {
				return bad("convergence.%s[%q] must be finite, non-negative and within the learned sums", field, name)
			}
		}
	}
	if !finiteNonNeg(b.Convergence.Drift) {
		return bad("convergence.drift %v is not a finite non-negative number", b.Convergence.Drift)
	}
	return nil
}

// validateViews checks the composition, order and volume views and that they
// cover the sampled windows, which leave-one-out calibration subtracts from them.
func (b *Baseline) validateViews() error {
	c := b.Composition
	if c.Windows > b.Windows {
		return fmt.Errorf("composition.windows %d exceeds windows %d", c.Windows, b.Windows)
	}
	for name, m := range c.Shares {
		switch {
		case name == "":
			return errors.New("composition.shares: syscall with an empty name")
		case m.N == 0: // would make a never-seen syscall count as known
			return fmt.Errorf("composition.shares[%q]: n is 0", name)
		case m.Mean > 1+1e-9 || m.Max > 1: // a mean of shares of 1 may round above it
			return fmt.Errorf("composition.shares[%q]: mean %v and max %v must be shares within [0, 1]", name, m.Mean, m.Max)
		}
		if err := m.validate(c.Windows); err != nil {
			return fmt.Errorf("composition.shares[%q]: %v", name, err)
		}
	}
	o := b.Order
	if o.Windows > b.Windows {
		return fmt.Errorf("order.windows %d exceeds windows %d", o.Windows, b.Windows)
	}
	if o.Windows == 0 && len(o.Grams) > 0 {
		return fmt.Errorf("order.grams holds %d grams, but order.windows is 0", len(o.Grams))
	}
	for g, n := range o.Grams {
		if err := validGram(g); err != nil {
			return fmt.Errorf("order.grams: %v", err)
		}
		if n == 0 {
			return fmt.Errorf("order.grams[%q] is 0", g)
		}
	}
	// Volume is the log of a rate: negative below one call per second.
	v := b.Volume
	switch {
	case v.N > b.Windows:
		return fmt.Errorf("volume.n %d exceeds windows %d", v.N, b.Windows)
	case v.N != c.Windows: // both count the windows that made a call
		return fmt.Errorf("volume.n %d differs from composition.windows %d", v.N, c.Windows)
	case !finite(v.Mean) || !finiteNonNeg(v.M2) || !finite(v.Max):
		return fmt.Errorf("volume: mean %v and max %v must be finite, m2 %v finite and non-negative", v.Mean, v.Max, v.M2)
	case v.N > 0 && v.Max < v.Mean-1e-9*math.Abs(v.Mean):
		return fmt.Errorf("volume: max %v below mean %v", v.Max, v.Mean)
	}
	var withCalls, withGrams uint64
	for i, s := range b.Sample {
		if sumCounts(s.Counts) > 0 {
			withCalls++
		}
		if len(s.Grams) > 0 {
			withGrams++
		}
		for g := range s.Grams {
			if err := validGram(g); err != nil {
				return fmt.Errorf("sample[%d].grams: %v", i, err)
			}
		}
	}
	if withCalls > c.Windows {
		return fmt.Errorf("sample holds %d windows with calls, more than composition.windows %d", withCalls, c.Windows)
	}
	if withGrams > o.Windows {
		return fmt.Errorf("sample holds %d windows with grams, more than order.windows %d", withGrams, o.Windows)
	}
	return nil
}

func (m Moments) validate(windows uint64) error {
	switch {
	case m.N > windows:
		return fmt.Errorf("n %d exceeds windows %d", m.N, windows)
	case !finiteNonNeg(m.Mean) || !finiteNonNeg(m.M2) || !finiteNonNeg(m.Max):
		return fmt.Errorf("mean %v, m2 %v, max %v must be finite and non-negative", m.Mean, m.M2, m.Max)
	case m.N > 0 && m.Max < m.Mean*(1-1e-9):
		return fmt.Errorf("max %v below mean %v", m.Max, m.Mean)
	}
	return nil
}

func finiteNonNeg(x float64) bool { return x >= 0 && finite(x) }

func finite(x float64) bool { return !math.IsInf(x, 0) && !math.IsNaN(x) }
