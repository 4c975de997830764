package model

import (
	"path"
	"strconv"
	"strings"
)

// Exceptions are what learnable rules saw an image do while its baseline was
// learning: rule id -> binary -> decisive detail -> hits. They merge by
// summing, like the rest of a baseline.
type Exceptions map[string]map[string]map[string]uint64

// AddException records a learnable rule's hit and reports whether it is new.
func (b *Baseline) AddException(rule, binary, detail string) bool {
	if b.Exceptions == nil {
		b.Exceptions = Exceptions{}
	}
	byBinary := b.Exceptions[rule]
	if byBinary == nil {
		byBinary = map[string]map[string]uint64{}
		b.Exceptions[rule] = byBinary
	}
	details := byBinary[binary]
	if details == nil {
		details = map[string]uint64{}
		byBinary[binary] = details
	}
	_, seen := details[detail]
	details[detail]++
	return !seen
}

// Excepted reports whether the baseline learned this hit (false for nil).
func (b *Baseline) Excepted(rule, binary, detail string) bool {
	return b != nil && b.Exceptions[rule][binary][detail] > 0
}

// subtract undoes merge(o) for counts o is part of.
func (x Exceptions) subtract(o Exceptions) {
	for rule, byBinary := range o {
		for binary, details := range byBinary {
			if have := x[rule][binary]; have != nil {
				subtractCounts(have, details)
				if len(have) == 0 {
					delete(x[rule], binary)
				}
			}
		}
		if len(x[rule]) == 0 {
			delete(x, rule)
		}
	}
}

func (x Exceptions) merge(o Exceptions) Exceptions {
	if len(o) == 0 {
		return x
	}
	if x == nil {
		x = Exceptions{}
	}
	for rule, byBinary := range o {
		for binary, details := range byBinary {
			for detail, n := range details {
				if x[rule] == nil {
					x[rule] = map[string]map[string]uint64{}
				}
				if x[rule][binary] == nil {
					x[rule][binary] = map[string]uint64{}
				}
				x[rule][binary][detail] += n
			}
		}
	}
	return x
}

func (x Exceptions) clone() Exceptions {
	return Exceptions(nil).merge(x)
}

// ExceptionBinary is the binary a learned exception names: the process's
// executable, or its comm when the agent did not see it exec.
func ExceptionBinary(e Event) string {
	if e.Exe != "" {
		return e.Exe
	}
	return "comm:" + e.Comm
}

// ExceptionDetail is the decisive detail of an event for a learned exception:
// what must be the same for a later hit to be what was learned.
//   - a file write: its WriteClass;
//   - an exec: the file;
//   - an open or unix connect: the path;
//   - an IP connect: family and port;
//   - a socket: family and type;
//   - anything else: the syscall.
func ExceptionDetail(e Event) string {
	switch {
	case e.Write != nil:
		return WriteClass(e.Path)
	case e.Kind == EventExec, e.Path != "":
		if strings.HasPrefix(e.Path, "/") {
			return path.Clean(e.Path)
		}
		return e.Path
	case e.Syscall == "connect" && e.Port != 0:
		return e.Family + ":" + strconv.Itoa(int(e.Port))
	case e.Syscall == "socket":
		return e.Family + "/" + strconv.FormatUint(e.Flags&0xf, 10)
	}
	return e.Syscall
}

// WriteClass is the part of a written path an image learns to write: its first
// two elements ("/etc/passwd", "/etc/nginx/"), three below /home, /var and /usr
// ("/var/log/nginx/", "/home/*/.bashrc", the user left out). A file directly in
// a tree is its own class, so learning /etc/app/ never allows /etc/passwd.
func WriteClass(p string) string {
	if !strings.HasPrefix(p, "/") {
		return p
	}
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	depth := 2
	switch parts[0] {
	case "home", "var", "usr":
		depth = 3
	}
	if parts[0] == "home" && len(parts) > 1 {
		parts[1] = "*"
	}
	if len(parts) <= depth {
		return "/" + strings.Join(parts, "/")
	}
	return "/" + strings.Join(parts[:depth], "/") + "/"
}
