package model

// UpgradeViews gives a baseline learned before the views existed (export
// format and store schema 1) its composition and volume views. Only the sampled
// windows' counts survive, so the views are rebuilt from them and cover exactly
// those windows: leave-one-out calibration then holds out windows the views
// contain, as it does for a baseline learned with views. The order view cannot
// be rebuilt (v1 windows carried no grams); it stays empty and learns from the
// next window on, and scoring leaves it out until it has enough windows.
//
// A baseline that already has views, or learned nothing, keeps them: the
// upgrade is idempotent. Nil view maps become empty so learning can go on.
func (b *Baseline) UpgradeViews() {
	if b.Composition.Shares == nil {
		b.Composition.Shares = map[string]Moments{}
	}
	if b.Order.Grams == nil {
		b.Order.Grams = map[string]uint64{}
	}
	if b.Windows == 0 || b.Composition.Windows > 0 || len(b.Composition.Shares) > 0 || b.Volume.N > 0 {
		return
	}
	for _, w := range b.Sample {
		total := sumCounts(w.Counts)
		b.Composition.add(w.Counts, total)
		if total > 0 {
			b.Volume.Add(logVolume(total, w.Seconds))
		}
	}
	// v1 checkpoints summed rates; convergence now watches shares, so it
	// restarts from here (a stable baseline stays stable).
	if b.Composition.Windows == 0 {
		return // nothing rebuilt: the next upgrade finds the same baseline
	}
	b.Convergence = Convergence{CheckpointWindows: b.Windows, CheckpointSums: b.shareSums(), LastNovelty: b.Convergence.LastNovelty}
}
