package inventory

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
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

// maxDBBytes bounds a package database file read from a container.
const maxDBBytes = 64 << 20

// ReadPackages reads the image's package database through its root: dpkg
// (status, or distroless status.d) or apk. Each package keeps its files that
// can run or be loaded, resolved to canonical paths in the root.
func ReadPackages(root Root) (source string, pkgs []model.Package, err error) {
	switch {
	case exists(root, dpkgStatus):
		pkgs, err = readDpkg(root)
		return "dpkg", pkgs, err
	case exists(root, dpkgStatusD):
		pkgs, err = readDistroless(root)
		return "dpkg", pkgs, err
	case exists(root, apkInstalled):
		pkgs, err = readApk(root)
		return "apk", pkgs, err
	}
	return "", nil, ErrNoPackageDB
}

func exists(root Root, p string) bool {
	_, err := os.Stat(root.host(p))
	return err == nil
}

func readFile(root Root, p string) ([]byte, error) { return root.ReadFile(p, maxDBBytes) }

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

func readDpkg(root Root) ([]model.Package, error) {
	data, err := readFile(root, dpkgStatus)
	if err != nil {
		return nil, err
	}
	var pkgs []model.Package
	for _, st := range stanzas(data, ':') {
		name, status := first(st, "Package"), first(st, "Status")
		if name == "" || !strings.HasSuffix(status, " installed") {
			continue
		}
		p := model.Package{Name: name, Version: first(st, "Version"), Type: "deb"}
		list, err := readFile(root, path.Join(dpkgInfo, name+".list"))
		if errors.Is(err, fs.ErrNotExist) {
			list, err = readFile(root, path.Join(dpkgInfo, name+":"+first(st, "Architecture")+".list"))
		}
		if err == nil {
			p.Files = runnableFiles(root, strings.Split(string(list), "\n"))
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// readDistroless reads distroless images' status.d: a stanza per package and
// its files in NAME.md5sums ("md5  relative/path").
func readDistroless(root Root) ([]model.Package, error) {
	entries, err := os.ReadDir(root.host(dpkgStatusD))
	if err != nil {
		return nil, err
	}
	var pkgs []model.Package
	for _, e := range entries {
		if strings.Contains(e.Name(), ".") {
			continue // NAME.md5sums
		}
		data, err := readFile(root, path.Join(dpkgStatusD, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, st := range stanzas(data, ':') {
			p := model.Package{Name: first(st, "Package"), Version: first(st, "Version"), Type: "deb"}
			if p.Name == "" {
				continue
			}
			if sums, err := readFile(root, path.Join(dpkgStatusD, e.Name()+".md5sums")); err == nil {
				var files []string
				for _, line := range strings.Split(string(sums), "\n") {
					if fields := strings.Fields(line); len(fields) == 2 {
						files = append(files, "/"+fields[1])
					}
				}
				p.Files = runnableFiles(root, files)
			}
			pkgs = append(pkgs, p)
		}
	}
	return pkgs, nil
}

func readApk(root Root) ([]model.Package, error) {
	data, err := readFile(root, apkInstalled)
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
			cur.Files = runnableFiles(root, files)
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
func runnableFiles(root Root, files []string) []string {
	var out []string
	for _, f := range files {
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
