package model

import "strings"

// Path globs in rules: "*" matches within one path element, "**" across
// elements (any run of characters, "/" included). Nothing else is special, so
// a path with "[" or "?" matches itself.

// GlobMatch reports whether p matches the glob pattern.
func GlobMatch(pattern, p string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == p
	}
	if !strings.HasPrefix(p, pattern[:star]) {
		return false
	}
	p, rest := p[star:], pattern[star+1:]
	acrossElements := strings.HasPrefix(rest, "*")
	if acrossElements {
		rest = rest[1:]
	}
	for i := 0; i <= len(p); i++ { // the wildcard takes p[:i]
		if GlobMatch(rest, p[i:]) {
			return true
		}
		if i < len(p) && p[i] == '/' && !acrossElements {
			return false
		}
	}
	return false
}

// globLiteralDir is the directory part of a glob before its first wildcard
// ("/home/*/.ssh/id_*" gives "/home/"), or "" when the glob starts with one.
func globLiteralDir(pattern string) string {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		star = len(pattern)
	}
	slash := strings.LastIndexByte(pattern[:star], '/')
	if slash < 0 {
		return ""
	}
	return pattern[:slash+1]
}

// globLiteralName is a glob's last element when it has no wildcard, else "".
func globLiteralName(pattern string) string {
	name := pattern[strings.LastIndexByte(pattern, '/')+1:]
	if strings.Contains(name, "*") {
		return ""
	}
	return name
}
