package model

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Severities, most severe first, as Grype and Trivy name them (case folded).
var Severities = []string{"critical", "high", "medium", "low", "negligible", "unknown"}

// Vulnerability is one finding of a scanner's report: a vulnerability in one
// installed package.
type Vulnerability struct {
	ID       string `json:"id"` // CVE-2023-1234, GHSA-…
	Severity string `json:"severity"`
	Package  string `json:"package"`
	Version  string `json:"version"`
	Type     string `json:"type,omitempty"` // deb, apk, go-module, …
	FixedIn  string `json:"fixed_in,omitempty"`
	// InUse is set by the inventory: the package runs in the image's containers.
	InUse bool `json:"in_use"`
}

// VulnReport is one imported scanner report of an image.
type VulnReport struct {
	Image    string          `json:"image"`
	Tag      string          `json:"tag"`
	Scanner  string          `json:"scanner"` // "grype 0.74.0", "trivy 0.50.1 (schema 2)"
	Imported time.Time       `json:"imported"`
	Findings []Vulnerability `json:"findings"`
}

// NormalizeSeverity folds a scanner's severity word into one of Severities.
func NormalizeSeverity(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if slices.Contains(Severities, s) {
		return s
	}
	return "unknown"
}

// SeverityRank orders severities, 0 the most severe.
func SeverityRank(s string) int {
	if i := slices.Index(Severities, s); i >= 0 {
		return i
	}
	return len(Severities)
}

// MarkInUse sets each finding's InUse from the inventory, and sorts the
// findings: in-use first, then by severity and id.
func (r *VulnReport) MarkInUse(inv *Inventory) {
	var inUse map[string]bool
	if inv != nil {
		inUse = inv.InUseByName()
	}
	for i := range r.Findings {
		r.Findings[i].InUse = inUse[r.Findings[i].Package]
	}
	slices.SortStableFunc(r.Findings, func(a, b Vulnerability) int {
		if a.InUse != b.InUse {
			if a.InUse {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(SeverityRank(a.Severity), SeverityRank(b.Severity)), cmp.Compare(a.ID, b.ID),
			cmp.Compare(a.Package, b.Package))
	})
}

// Counts gives the number of distinct vulnerability ids per severity, of
// in-use findings only when inUseOnly.
func (r *VulnReport) Counts(inUseOnly bool) map[string]int {
	seen := map[[2]string]bool{}
	counts := map[string]int{}
	for _, f := range r.Findings {
		if inUseOnly && !f.InUse {
			continue
		}
		k := [2]string{f.ID, f.Severity}
		if !seen[k] {
			seen[k] = true
			counts[f.Severity]++
		}
	}
	return counts
}

// TopInUse gives up to n distinct in-use vulnerability ids, most severe first.
func (r *VulnReport) TopInUse(n int) []string {
	var ids []string
	for _, f := range r.Findings { // MarkInUse sorted them
		if f.InUse && !slices.Contains(ids, f.ID) {
			ids = append(ids, f.ID)
			if len(ids) == n {
				break
			}
		}
	}
	return ids
}

// Ref is the image reference the report belongs to.
func (r *VulnReport) Ref() string { return ImageRef(r.Image, r.Tag) }

// Validate refuses a report that could not have been imported.
func (r *VulnReport) Validate() error {
	if r.Image == "" {
		return fmt.Errorf("vulnerability report without an image")
	}
	for i, f := range r.Findings {
		if f.ID == "" || f.Package == "" {
			return fmt.Errorf("vulnerability report of %s: finding %d has no id or package", r.Ref(), i)
		}
		if !slices.Contains(Severities, f.Severity) {
			return fmt.Errorf("vulnerability report of %s: finding %s has severity %q (want one of %s)",
				r.Ref(), f.ID, f.Severity, strings.Join(Severities, ", "))
		}
	}
	return nil
}
