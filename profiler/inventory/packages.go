package inventory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/cagewatch/cagewatch/model"
)

// ErrNoPackageDB: the image has no package database this reads (dpkg, apk).
var ErrNoPackageDB = errors.New("no dpkg or apk package database")

// Package database locations inside an image.
const (
	dpkgStatus   = "/var/lib/dpkg/status"
	dpkgStatusD  = "/var/lib/dpkg/status.d" // distroless: one stanza file per package
	dpkgInfo     = "/var/lib/dpkg/info"
	apkInstalled = "/lib/apk/db/installed"
)

// Bounds on what one image's package database can make the agent read and
// hold: a file, all files together, and the runnable files kept.
const (
	maxDBBytes    = 64 << 20
	maxTotalBytes = 256 << 20
	maxDBFiles    = 200_000
)

// dbBudget is what is left of those bounds while one database is read.
type dbBudget struct {
	bytes int64
	files int
}

var errBudget = errors.New("package database larger than this reads")

// ReadPackages reads the image's package database through its root: dpkg
// (status, or distroless status.d) or apk. Each package keeps its files that
// can run or be loaded, resolved to canonical paths in the root.
func ReadPackages(root Root) (source string, pkgs []model.Package, err error) {
	b := &dbBudget{bytes: maxTotalBytes, files: maxDBFiles}
	switch {
	case exists(root, dpkgStatus):
		pkgs, err = readDpkg(root, b)
		return "dpkg", pkgs, err
	case exists(root, dpkgStatusD):
		pkgs, err = readDistroless(root, b)
		return "dpkg", pkgs, err
	case exists(root, apkInstalled):
		pkgs, err = readApk(root, b)
		return "apk", pkgs, err
	}
	return "", nil, ErrNoPackageDB
}

func exists(root Root, p string) bool { return root.Exists(p) }

func (b *dbBudget) readFile(root Root, p string) ([]byte, error) {
	if b.bytes <= 0 {
		return nil, fmt.Errorf("%s: %w (%d MiB read)", p, errBudget, maxTotalBytes>>20)
	}
	data, err := root.ReadFile(p, min(maxDBBytes, b.bytes))
	b.bytes -= int64(len(data))
	return data, err
}

// stanzas splits an RFC 822-style database (dpkg status, apk installed) into
// its paragraphs of key → value; continuation lines are dropped (no field
// this reads continues).
func stanzas(data []byte, sep byte) []map[string][]string {
	var out []map[string][]string
	cur := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = map[string][]string{}
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := strings.Cut(line, string(sep))
		if !ok {
			continue
		}
		cur[k] = append(cur[k], strings.TrimSpace(v))
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func first(st map[string][]string, k string) string {
	if v := st[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func readDpkg(root Root, b *dbBudget) ([]model.Package, error) {
	data, err := b.readFile(root, dpkgStatus)
	if err != nil {
		return nil, err
	}
	var pkgs []model.Package
	seen := map[string]bool{}
	for _, st := range stanzas(data, ':') {
		name, status := first(st, "Package"), first(st, "Status")
		if name == "" || !strings.HasSuffix(status, " installed") || seen[name] {
			continue // one .list per name (a second architecture's stanza shares it)
		}
		seen[name] = true
		p := model.Package{Name: name, Version: first(st, "Version"), Type: "deb"}
		list, err := b.readFile(root, path.Join(dpkgInfo, name+".list"))
		if errors.Is(err, fs.ErrNotExist) {
			list, err = b.readFile(root, path.Join(dpkgInfo, name+":"+first(st, "Architecture")+".list"))
		}
		if err == nil {
			p.Files = b.runnableFiles(root, strings.Split(string(list), "\n"))
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// readDistroless reads distroless images' status.d: a stanza per package and
// its files in NAME.md5sums ("md5  relative/path").
func readDistroless(root Root, b *dbBudget) ([]model.Package, error) {
	names, err := root.ReadDir(dpkgStatusD)
	if err != nil {
		return nil, err
	}
	var pkgs []model.Package
	for _, name := range names {
		if strings.Contains(name, ".") {
			continue // NAME.md5sums
		}
		data, err := b.readFile(root, path.Join(dpkgStatusD, name))
		if err != nil {
			return nil, err
		}
		for _, st := range stanzas(data, ':') {
			p := model.Package{Name: first(st, "Package"), Version: first(st, "Version"), Type: "deb"}
			if p.Name == "" {
				continue
			}
			if sums, err := b.readFile(root, path.Join(dpkgStatusD, name+".md5sums")); err == nil {
				var files []string
				for _, line := range strings.Split(string(sums), "\n") {
					if fields := strings.Fields(line); len(fields) == 2 {
						files = append(files, "/"+fields[1])
					}
				}
				p.Files = b.runnableFiles(root, files)
			}
			pkgs = append(pkgs, p)
		}
	}
	return pkgs, nil
}

func readApk(root Root, b *dbBudget) ([]model.Package, error) {
	data, err := b.readFile(root, apkInstalled)
	if err != nil {
		return nil, err
	}
	var pkgs []model.Package
	// apk's F: (directory) and R: (file in it) lines pair up in order, so the
	// stanza map (which keeps each key's values apart) cannot be used.
	var cur *model.Package
	var dir string
	var files []string
	flush := func() {
		if cur != nil && cur.Name != "" {
			cur.Files = b.runnableFiles(root, files)
			pkgs = append(pkgs, *cur)
		}
		cur, dir, files = nil, "", nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if cur == nil {
			cur = &model.Package{Type: "apk"}
		}
		switch k {
		case "P":
			cur.Name = v
		case "V":
			cur.Version = v
		case "F":
			dir = v
		case "R":
			files = append(files, "/"+path.Join(dir, v))
		}
	}
	flush()
	return pkgs, nil
}

// runnableFiles keeps the files that can run or be loaded, as canonical paths:
// directories resolved, a file that is itself a symlink dropped (its target,
// which may be another package's, is what runs).
func (b *dbBudget) runnableFiles(root Root, files []string) []string {
	var out []string
	for _, f := range files {
		if b.files <= 0 {
			break
		}
		b.files--
		f = strings.TrimSpace(f)
		if f == "" || f == "/." || !runnable(f) {
			continue
		}
		resolved, regular, err := root.ResolveDir(f)
		if err != nil || !regular {
			continue
		}
		out = append(out, resolved)
	}
	sort.Strings(out)
	return out
}
