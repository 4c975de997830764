package model

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Inventory is what an image holds and what of it runs: its packages (from
// the image's own package database or an SBOM) and the binaries its
// containers executed, each with the shared libraries it loads. A scanner
// lists every package's CVEs; the inventory says which packages actually run.
type Inventory struct {
	Image string `json:"image"` // repository
	Tag   string `json:"tag"`
	// Source says where Packages came from: "dpkg", "apk", "spdx", or "" while
	// no package database has been read.
	Source    string    `json:"source,omitempty"`
	Collected time.Time `json:"collected,omitzero"` // when Packages were read
	Packages  []Package `json:"packages,omitempty"`
	// Executed maps an executed binary's path inside the container (as exec
	// events give it: symlinks resolved) to what was seen of it.
	Executed map[string]Execution `json:"executed,omitempty"`
}

// Package is one installed package and the files of it that can run or be
// loaded (executables and shared libraries), as canonical paths in the image.
type Package struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Type    string   `json:"type"` // deb, apk, binary, …
	Files   []string `json:"files,omitempty"`
}

// Execution is one executed binary.
type Execution struct {
	Count     uint64    `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Libraries are the shared objects it loads (DT_NEEDED, transitively,
	// resolved in the container's root), or nil when not read yet.
	Libraries []string `json:"libraries"`
}

// Package statuses of InUse.
const (
	PackageInUse         = "in-use"
	PackageInstalledOnly = "installed-only"
)

// PackageUse is one package's status: in use when a binary of it ran, or a
// binary that ran loads a library of it.
type PackageUse struct {
	Package
	Status string `json:"status"`
	// Binaries are the executed binaries behind the status: the package's
	// own, or those that load one of its libraries.
	Binaries []string  `json:"binaries,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// NewInventory starts an empty inventory of one image.
func NewInventory(image, tag string) *Inventory {
	return &Inventory{Image: image, Tag: tag, Executed: map[string]Execution{}}
}

// Ref is the image reference the inventory belongs to.
func (inv *Inventory) Ref() string { return ImageRef(inv.Image, inv.Tag) }

// ImageRef joins a repository and a tag as repository:tag.
func ImageRef(image, tag string) string {
	if tag == "" {
		return image
	}
	return image + ":" + tag
}

// AddExec counts one exec of path at t. It reports whether the path is new,
// so the caller knows to read its libraries.
func (inv *Inventory) AddExec(path string, t time.Time) bool {
	if inv.Executed == nil {
		inv.Executed = map[string]Execution{}
	}
	e, seen := inv.Executed[path]
	e.Count++
	if !seen || t.Before(e.FirstSeen) {
		e.FirstSeen = t
	}
	if t.After(e.LastSeen) {
		e.LastSeen = t
	}
	inv.Executed[path] = e
	return !seen
}

// ForgetLeastRecent drops the executed binary seen least recently.
func (inv *Inventory) ForgetLeastRecent() {
	var oldest string
	for path, e := range inv.Executed {
		if oldest == "" || e.LastSeen.Before(inv.Executed[oldest].LastSeen) ||
			(e.LastSeen.Equal(inv.Executed[oldest].LastSeen) && path < oldest) {
			oldest = path
		}
	}
	delete(inv.Executed, oldest)
}

// SetLibraries records the libraries an executed binary loads.
func (inv *Inventory) SetLibraries(path string, libs []string) {
	e, ok := inv.Executed[path]
	if !ok {
		return
	}
	e.Libraries = sortedUnique(libs)
	if e.Libraries == nil {
		e.Libraries = []string{} // read, none: not read again
	}
	inv.Executed[path] = e
}

// SetPackages replaces the package list (a package database read again, or
// an SBOM imported).
func (inv *Inventory) SetPackages(source string, at time.Time, pkgs []Package) {
	inv.Source, inv.Collected = source, at
	inv.Packages = normalizePackages(pkgs)
}

// Merge folds o (the same image, e.g. from another node) into inv: counts add,
// times widen, packages and libraries unite. The newer package list decides
// the source.
func (inv *Inventory) Merge(o *Inventory) error {
	if inv.Ref() != o.Ref() {
		return fmt.Errorf("merging inventories of %s and %s: different images", inv.Ref(), o.Ref())
	}
	if inv.Executed == nil {
		inv.Executed = map[string]Execution{}
	}
	for path, oe := range o.Executed {
		e, seen := inv.Executed[path]
		if !seen {
			oe.Libraries = slices.Clone(oe.Libraries)
			inv.Executed[path] = oe
			continue
		}
		e.Count += oe.Count
		if oe.FirstSeen.Before(e.FirstSeen) {
			e.FirstSeen = oe.FirstSeen
		}
		if oe.LastSeen.After(e.LastSeen) {
			e.LastSeen = oe.LastSeen
		}
		if oe.Libraries != nil {
			e.Libraries = sortedUnique(append(slices.Clone(e.Libraries), oe.Libraries...))
		}
		inv.Executed[path] = e
	}
	if len(o.Packages) > 0 {
		if o.Collected.After(inv.Collected) || inv.Source == "" {
			inv.Source, inv.Collected = o.Source, o.Collected
		}
		inv.Packages = normalizePackages(append(slices.Clone(inv.Packages), o.Packages...))
	}
	return nil
}

// Clone is a deep copy.
func (inv *Inventory) Clone() *Inventory {
	c := *inv
	c.Packages = make([]Package, len(inv.Packages))
	for i, p := range inv.Packages {
		p.Files = slices.Clone(p.Files)
		c.Packages[i] = p
	}
	c.Executed = make(map[string]Execution, len(inv.Executed))
	for path, e := range inv.Executed {
		e.Libraries = slices.Clone(e.Libraries)
		c.Executed[path] = e
	}
	return &c
}

// Validate refuses an inventory that could not have been recorded.
func (inv *Inventory) Validate() error {
	if inv.Image == "" {
		return fmt.Errorf("inventory without an image")
	}
	for i, p := range inv.Packages {
		if p.Name == "" {
			return fmt.Errorf("inventory of %s: package %d has no name", inv.Ref(), i)
		}
	}
	for path, e := range inv.Executed {
		if path == "" || path[0] != '/' {
			return fmt.Errorf("inventory of %s: executed path %q is not absolute", inv.Ref(), path)
		}
		if e.Count == 0 {
			return fmt.Errorf("inventory of %s: executed path %s has a zero count", inv.Ref(), path)
		}
	}
	return nil
}

// InUse gives every package's status, in-use ones first, then by name.
func (inv *Inventory) InUse() []PackageUse {
	owner := map[string][]int{} // file → packages holding it
	for i, p := range inv.Packages {
		for _, f := range p.Files {
			owner[f] = append(owner[f], i)
		}
	}
	binaries := make([]map[string]bool, len(inv.Packages))
	last := make([]time.Time, len(inv.Packages))
	mark := func(file, binary string, seen time.Time) {
		for _, i := range owner[file] {
			if binaries[i] == nil {
				binaries[i] = map[string]bool{}
			}
			binaries[i][binary] = true
			if seen.After(last[i]) {
				last[i] = seen
			}
		}
	}
	for path, e := range inv.Executed {
		mark(path, path, e.LastSeen)
		for _, lib := range e.Libraries {
			mark(lib, path, e.LastSeen)
		}
	}
	uses := make([]PackageUse, len(inv.Packages))
	for i, p := range inv.Packages {
		u := PackageUse{Package: p, Status: PackageInstalledOnly}
		if len(binaries[i]) > 0 {
			u.Status, u.LastSeen = PackageInUse, last[i]
			for b := range binaries[i] {
				u.Binaries = append(u.Binaries, b)
			}
			slices.Sort(u.Binaries)
		}
		uses[i] = u
	}
	slices.SortStableFunc(uses, func(a, b PackageUse) int {
		if a.Status != b.Status {
			return cmp.Compare(statusRank(a.Status), statusRank(b.Status))
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	return uses
}

// InUseByName maps package name to whether any version of it is in use.
func (inv *Inventory) InUseByName() map[string]bool {
	m := map[string]bool{}
	for _, u := range inv.InUse() {
		m[u.Name] = m[u.Name] || u.Status == PackageInUse
	}
	return m
}

func statusRank(s string) int {
	if s == PackageInUse {
		return 0
	}
	return 1
}

// normalizePackages sorts packages, folds duplicates (same name, version and
// type) and sorts each one's files.
func normalizePackages(pkgs []Package) []Package {
	byID := map[[3]string]int{}
	var out []Package
	for _, p := range pkgs {
		id := [3]string{p.Name, p.Version, p.Type}
		if i, ok := byID[id]; ok {
			out[i].Files = append(out[i].Files, p.Files...)
			continue
		}
		byID[id] = len(out)
		p.Files = slices.Clone(p.Files)
		out = append(out, p)
	}
	for i := range out {
		out[i].Files = sortedUnique(out[i].Files)
	}
	slices.SortFunc(out, func(a, b Package) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version), cmp.Compare(a.Type, b.Type))
	})
	return out
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
