package profiler

import (
	"log/slog"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
)

// carriedFrom is status's account of a prior: where the tag started from.
func carriedFrom(p *model.Prior) *control.CarriedFrom {
	if p == nil {
		return nil
	}
	return &control.CarriedFrom{Profile: p.From, Windows: p.Windows, Outcome: p.Outcome, Why: p.Why, At: p.At}
}

// SetLogger gives the library a logger for what it decides on its own (a new
// tag starting from its previous tag's baseline).
func (l *Library) SetLogger(log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = log
}

// start begins c's baseline: from the most recently stable tag of its
// repository (model.PriorSource), read from the fleet where it has one, or
// empty. l.mu is held.
func (l *Library) start(c model.Container) *model.Baseline {
	fresh := model.NewProfileBaseline(c)
	family := fresh.UpgradeFamily()
	if l.cfg.PriorWindows == 0 || family == "" {
		return fresh
	}
	var known []*model.Baseline
	fromFleet := map[*model.Baseline]bool{}
	for key, b := range l.cache {
		if b.UpgradeFamily() != family {
			continue
		}
		if fb, ok := l.fleetView(key); ok {
			b = fb
			fromFleet[fb] = true
		}
		known = append(known, b)
	}
	old := model.PriorSource(fresh, known)
	if old == nil {
		return fresh
	}
	b := model.NewPriorBaseline(fresh, old, l.cfg, time.Now().UTC())
	if b == nil {
		return fresh
	}
	if l.log != nil {
		l.log.Info("new tag starts from its previous tag's baseline", "profile", b.Key(), "from", old.Key(),
			"windows", b.Prior.Windows, "fleet", fromFleet[old])
	}
	if l.fleet != nil {
		l.fleet.OfferPrior(b, fromFleet[old])
	}
	return b
}

// LogUpgradeDiff logs, once a tag that started from another's baseline is
// stable, what changed between the two tags.
func (l *Library) LogUpgradeDiff(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.log == nil {
		return
	}
	now := l.cache[key]
	if fb, ok := l.fleetView(key); ok {
		now = fb
	}
	if now == nil || now.Prior == nil {
		return
	}
	was := l.cache[now.Prior.From]
	if fb, ok := l.fleetView(now.Prior.From); ok {
		was = fb
	}
	against := "previous tag"
	if was == nil && now.Prior.Baseline != nil {
		// Not on this node (a fleet prior): the windows carried over stand for it.
		was, against = now.Prior.Baseline, "previous tag's carried windows"
	}
	if was == nil {
		l.log.Info("new tag stable; its previous tag's baseline is gone, nothing to compare", "profile", key, "from", now.Prior.From)
		return
	}
	d := model.Diff(was, now, 3)
	pairs := make([]string, 0, len(d.PairsAdded))
	for _, p := range d.PairsAdded {
		pairs = append(pairs, p.Pair)
	}
	rates := make([]string, 0, len(d.RateChanges))
	for _, r := range d.RateChanges {
		rates = append(rates, r.Syscall)
	}
	l.log.Info("new tag stable; changes from its previous tag", "profile", key, "from", now.Prior.From,
		"prior", now.Prior.Outcome, "syscalls_added", d.SyscallsAdded, "syscalls_removed", d.SyscallsRemoved,
		"binaries_added", d.BinariesAdded, "binaries_removed", d.BinariesRemoved,
		"pairs_added", pairs, "pairs_added_total", d.PairsAddedTotal, "largest_rate_changes", rates, "compared_with", against)
}
