package model

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// AlertTally counts one image's alerts by day (UTC, "2006-01-02") and rule,
// so a report can say what fired over a period after the agent restarted.
type AlertTally struct {
	Image string                       `json:"image"`
	Tag   string                       `json:"tag"`
	Days  map[string]map[string]uint64 `json:"days"`
}

// TallyDays is how many days of alert counts are kept.
const TallyDays = 400

const dayLayout = "2006-01-02"

// Ref is the image reference the tally belongs to.
func (t *AlertTally) Ref() string { return ImageRef(t.Image, t.Tag) }

// Add counts one alert of rule at time at, and forgets days past TallyDays.
func (t *AlertTally) Add(rule string, at time.Time) {
	if t.Days == nil {
		t.Days = map[string]map[string]uint64{}
	}
	day := at.UTC().Format(dayLayout)
	if t.Days[day] == nil {
		t.Days[day] = map[string]uint64{}
		oldest := at.UTC().AddDate(0, 0, -TallyDays).Format(dayLayout)
		for d := range t.Days {
			if d < oldest {
				delete(t.Days, d)
			}
		}
	}
	t.Days[day][rule]++
}

// Since sums the counts by rule over the days from since (its day included).
func (t *AlertTally) Since(since time.Time) map[string]uint64 {
	from := since.UTC().Format(dayLayout)
	out := map[string]uint64{}
	for day, rules := range t.Days {
		if day < from {
			continue
		}
		for rule, n := range rules {
			out[rule] += n
		}
	}
	return out
}

// Validate refuses a tally that could not have been recorded.
func (t *AlertTally) Validate() error {
	if t.Image == "" {
		return fmt.Errorf("alert tally without an image")
	}
	for day := range t.Days {
		if _, err := time.Parse(dayLayout, day); err != nil {
			return fmt.Errorf("alert tally of %s: day %q is not YYYY-MM-DD", t.Ref(), day)
		}
	}
	return nil
}

// ImageReport is one image's row of `cagewatch report`: what a ticketing or
// vulnerability-management system ingests.
type ImageReport struct {
	Image string `json:"image"` // repository:tag
	// Learning is the image's baseline state ("" when nothing was learned);
	// with learning.key: workload, the least advanced of its workloads.
	Learning      BaselineState     `json:"learning"`
	Workloads     int               `json:"workloads"`
	PeriodStart   time.Time         `json:"period_start"`
	Alerts        map[string]uint64 `json:"alerts_by_rule"`
	AlertsTotal   uint64            `json:"alerts_total"`
	PackageSource string            `json:"package_source,omitempty"`
	Packages      int               `json:"packages"`
	InUse         int               `json:"packages_in_use"`
	Scanner       string            `json:"scanner,omitempty"`
	// VulnsInUse and VulnsInstalledOnly count distinct vulnerability ids by
	// severity, split by whether the affected package runs.
	VulnsInUse         map[string]int `json:"vulns_in_use"`
	VulnsInstalledOnly map[string]int `json:"vulns_installed_only"`
	// VulnerablePackages lists each vulnerable package once, in-use ones first.
	VulnerablePackages []VulnerablePackage `json:"vulnerable_packages"`
}

// VulnerablePackage is one package with findings.
type VulnerablePackage struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	InUse    bool     `json:"in_use"`
	Worst    string   `json:"worst_severity"`
	IDs      []string `json:"ids"`
	Binaries []string `json:"binaries,omitempty"` // what runs it, for in-use packages
}

// BuildImageReport joins one image's records; any of them may be nil.
func BuildImageReport(ref string, states []BaselineState, inv *Inventory, vulns *VulnReport, tally *AlertTally, since time.Time) ImageReport {
	r := ImageReport{Image: ref, Workloads: len(states), PeriodStart: since.UTC(), Alerts: map[string]uint64{},
		VulnsInUse: map[string]int{}, VulnsInstalledOnly: map[string]int{}}
	for _, s := range states {
		if r.Learning == "" || stateRank(s) < stateRank(r.Learning) {
			r.Learning = s
		}
	}
	if tally != nil {
		r.Alerts = tally.Since(since)
		for _, n := range r.Alerts {
			r.AlertsTotal += n
		}
	}
	binaries := map[string][]string{}
	if inv != nil {
		r.PackageSource, r.Packages = inv.Source, len(inv.Packages)
		for _, u := range inv.InUse() {
			if u.Status == PackageInUse {
				r.InUse++
				binaries[u.Name] = append(binaries[u.Name], u.Binaries...)
			}
		}
	}
	if vulns != nil {
		vr := *vulns
		vr.Findings = slices.Clone(vulns.Findings)
		vr.MarkInUse(inv)
		r.Scanner = vr.Scanner
		r.VulnsInUse, r.VulnsInstalledOnly = vr.Counts(true), map[string]int{}
		all := vr.Counts(false)
		for sev, n := range all {
			if rest := n - r.VulnsInUse[sev]; rest > 0 {
				r.VulnsInstalledOnly[sev] = rest
			}
		}
		byPkg := map[[2]string]*VulnerablePackage{}
		var order [][2]string
		for _, f := range vr.Findings {
			k := [2]string{f.Package, f.Version}
			p, ok := byPkg[k]
			if !ok {
				p = &VulnerablePackage{Name: f.Package, Version: f.Version, InUse: f.InUse, Worst: f.Severity}
				if f.InUse {
					p.Binaries = sortedUnique(binaries[f.Package])
				}
				byPkg[k] = p
				order = append(order, k)
			}
			if SeverityRank(f.Severity) < SeverityRank(p.Worst) {
				p.Worst = f.Severity
			}
			if !slices.Contains(p.IDs, f.ID) {
				p.IDs = append(p.IDs, f.ID)
			}
		}
		for _, k := range order {
			r.VulnerablePackages = append(r.VulnerablePackages, *byPkg[k])
		}
		slices.SortStableFunc(r.VulnerablePackages, func(a, b VulnerablePackage) int {
			if a.InUse != b.InUse {
				if a.InUse {
					return -1
				}
				return 1
			}
			return cmp.Or(cmp.Compare(SeverityRank(a.Worst), SeverityRank(b.Worst)), cmp.Compare(a.Name, b.Name))
		})
	}
	return r
}

// stateRank orders states from least to most advanced.
func stateRank(s BaselineState) int {
	return slices.Index([]BaselineState{StateLearning, StateStable}, s)
}

// SortedRules gives the report's rules, most alerts first.
func (r ImageReport) SortedRules() []string {
	rules := slices.Collect(maps.Keys(r.Alerts))
	slices.SortFunc(rules, func(a, b string) int { return cmp.Or(cmp.Compare(r.Alerts[b], r.Alerts[a]), cmp.Compare(a, b)) })
	return rules
}
