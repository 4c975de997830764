package inventory

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// Bounds on what a container's files can make the agent read or hold.
const (
	maxLibraries   = 512      // one binary's library closure
	maxInterpBytes = 4096     // PT_INTERP, a path
	maxConfBytes   = 1 << 20  // ld.so.conf and musl's path file
	maxDynBytes    = 16 << 20 // an ELF file's dynamic section and its strings
	maxELFRead     = 64 << 20 // all the ELF reader may read of one file
	maxNeeded      = 256      // DT_NEEDED entries followed per file
	maxConfFiles   = 64       // ld.so.conf and its includes
	maxSearchDirs  = 256      // directories in one search path
)

// budgetReaderAt fails once its reads pass a budget: the ELF reader allocates
// what a file's headers claim (a sparse file can claim gigabytes).
type budgetReaderAt struct {
	r    io.ReaderAt
	left int64
}

var errELFBudget = fmt.Errorf("ELF file reads more than %d bytes", maxELFRead)

func (b *budgetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if int64(len(p)) > b.left {
		return 0, errELFBudget
	}
	b.left -= int64(len(p))
	return b.r.ReadAt(p, off)
}

// elfFile is an ELF file of the image and the file under it.
type elfFile struct {
	*elf.File
	file *os.File
}

func (f elfFile) Close() error { return f.file.Close() }

// openELF opens an ELF file of the image inside its root, refusing one whose
// dynamic section or its string table claims more than maxDynBytes: the
// ELF reader would allocate that much.
func (l *libResolver) openELF(p string) (elfFile, error) {
	file, err := l.root.Open(p)
	if err != nil {
		return elfFile{}, err
	}
	f, err := elf.NewFile(&budgetReaderAt{r: file, left: maxELFRead})
	if err != nil {
		file.Close()
		return elfFile{}, err
	}
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_DYNAMIC {
			continue
		}
		if sec.Size > maxDynBytes || (int(sec.Link) < len(f.Sections) && f.Sections[sec.Link].Size > maxDynBytes) {
			file.Close()
			return elfFile{}, fmt.Errorf("%s: dynamic section larger than %d bytes", p, maxDynBytes)
		}
	}
	return elfFile{File: f, file: file}, nil
}

// Libraries gives what running the binary at p (a canonical path in the root)
// loads: its ELF interpreter and its DT_NEEDED libraries, transitively, each
// resolved as the dynamic loader would in the root (RPATH/RUNPATH with $ORIGIN,
// ld.so.conf or musl's path file, the default directories). For a script it
// gives the interpreter of its #! line and what that loads. Libraries that
// cannot be found are left out: the loader would fail on them too.
func Libraries(root Root, p string) ([]string, error) {
	l := &libResolver{root: root, seen: map[string]bool{}}
	target, err := l.interpreterOf(p)
	if err != nil {
		return nil, err
	}
	if target != p { // a script: its interpreter runs
		l.add(target)
	}
	if err := l.walk(target); err != nil && target == p {
		return nil, err
	}
	out := make([]string, 0, len(l.seen))
	for lib := range l.seen {
		if lib != p {
			out = append(out, lib)
		}
	}
	slices.Sort(out)
	return out, nil
}

type libResolver struct {
	root     Root
	seen     map[string]bool
	dirs     []string // system search path, read once
	dirsRead bool
	musl     bool
}

func (l *libResolver) add(lib string) bool {
	if l.seen[lib] || len(l.seen) >= maxLibraries {
		return false
	}
	l.seen[lib] = true
	return true
}

// interpreterOf returns p itself for an ELF file, or the resolved interpreter
// of a #! script.
func (l *libResolver) interpreterOf(p string) (string, error) {
	f, err := l.root.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if !bytes.HasPrefix(head, []byte("#!")) {
		return p, nil
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return "", fmt.Errorf("%s: empty #! line", p)
	}
	interp, err := l.root.Resolve(fields[0])
	if err != nil {
		return "", err
	}
	return interp, nil
}

// walk adds the interpreter and the DT_NEEDED closure of the ELF file at p.
func (l *libResolver) walk(p string) error {
	queue := []string{p}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		f, err := l.openELF(cur)
		if err != nil {
			if cur == p {
				return fmt.Errorf("%s: %w", p, err)
			}
			continue
		}
		needed, _ := f.ImportedLibraries()
		var runpath, rpath []string
		if v, err := f.DynString(elf.DT_RUNPATH); err == nil {
			runpath = splitSearchPath(strings.Join(v, ":"), path.Dir(cur))
		}
		if v, err := f.DynString(elf.DT_RPATH); err == nil && len(runpath) == 0 {
			rpath = splitSearchPath(strings.Join(v, ":"), path.Dir(cur))
		}
		class, machine := f.Class, f.Machine
		var interp string
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP && prog.Filesz <= maxInterpBytes {
				buf := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(buf, 0); err == nil {
					interp = strings.TrimRight(string(buf), "\x00")
				}
			}
		}
		_ = f.Close() // read-only: nothing to lose
		if interp != "" {
			if strings.Contains(interp, "musl") {
				l.musl = true
			}
			if r, err := l.root.Resolve(interp); err == nil && l.add(r) {
				queue = append(queue, r)
			}
		}
		for _, name := range needed[:min(len(needed), maxNeeded)] {
			if len(l.seen) >= maxLibraries {
				return nil
			}
			if r := l.find(name, rpath, runpath, class, machine); r != "" && l.add(r) {
				queue = append(queue, r)
			}
		}
	}
	return nil
}

// find looks a DT_NEEDED name up as the loader does, keeping only a library
// of the same ELF class and machine (a 32-bit copy in the path is skipped).
func (l *libResolver) find(name string, rpath, runpath []string, class elf.Class, machine elf.Machine) string {
	if strings.Contains(name, "/") {
		r, _ := l.root.Resolve(name)
		return r
	}
	var dirs []string
	dirs = append(dirs, rpath[:min(len(rpath), maxSearchDirs)]...)
	dirs = append(dirs, runpath[:min(len(runpath), maxSearchDirs)]...)
	dirs = append(dirs, l.systemDirs()...)
	for _, dir := range dirs {
		r, err := l.root.Resolve(path.Join(dir, name))
		if err != nil {
			continue
		}
		f, err := l.openELF(r)
		if err != nil {
			continue
		}
		ok := f.Class == class && f.Machine == machine
		_ = f.Close()
		if ok {
			return r
		}
	}
	return ""
}

// systemDirs is the loader's own search path in the root: glibc's
// ld.so.conf (with includes) then its defaults, or musl's path file.
func (l *libResolver) systemDirs() []string {
	if l.dirsRead {
		return l.dirs
	}
	l.dirsRead = true
	if matches := l.root.Glob("/etc/ld-musl-*.path"); len(matches) > 0 {
		if data, err := l.root.ReadFile(matches[0], maxConfBytes); err == nil {
			l.dirs = strings.FieldsFunc(string(data), func(r rune) bool { return r == ':' || r == '\n' || r == ' ' })
		}
	}
	if len(l.dirs) == 0 {
		l.dirs = l.ldSoConf("/etc/ld.so.conf", 0, map[string]bool{})
	}
	l.dirs = append(l.dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")
	return l.dirs
}

// ldSoConf reads an ld.so.conf and its includes, each file once, at most
// maxConfFiles of them and maxSearchDirs directories in all.
func (l *libResolver) ldSoConf(file string, depth int, visited map[string]bool) []string {
	if depth > 4 || visited[file] || len(visited) >= maxConfFiles {
		return nil
	}
	visited[file] = true
	data, err := l.root.ReadFile(file, maxConfBytes)
	if err != nil {
		return nil
	}
	var dirs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "include "):
			pattern := strings.TrimSpace(strings.TrimPrefix(line, "include "))
			if !path.IsAbs(pattern) {
				pattern = path.Join(path.Dir(file), pattern)
			}
			for _, m := range l.root.Glob(pattern) {
				dirs = append(dirs, l.ldSoConf(m, depth+1, visited)...)
			}
		default:
			dirs = append(dirs, line)
		}
		if len(dirs) >= maxSearchDirs {
			return dirs[:maxSearchDirs]
		}
	}
	return dirs
}

// splitSearchPath splits an RPATH/RUNPATH, expanding $ORIGIN.
func splitSearchPath(v, origin string) []string {
	var dirs []string
	for _, d := range strings.Split(v, ":") {
		d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}
