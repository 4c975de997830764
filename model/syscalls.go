package model

import (
	"strconv"
	"strings"
)

var x86_64SyscallNumbers = func() map[string]int {
	m := make(map[string]int, len(x86_64SyscallNames))
	for nr, name := range x86_64SyscallNames {
		m[name] = nr
	}
	return m
}()

// SyscallName returns the x86_64 name of syscall nr, or "sys_<nr>" for a number
// this build does not know (a kernel newer than its table).
func SyscallName(nr int) string {
	if name, ok := x86_64SyscallNames[nr]; ok {
		return name
	}
	return "sys_" + strconv.Itoa(nr)
}

// SyscallNumber is the inverse of SyscallName.
func SyscallNumber(name string) (int, bool) {
	if nr, ok := x86_64SyscallNumbers[name]; ok {
		return nr, true
	}
	if rest, ok := strings.CutPrefix(name, "sys_"); ok {
		// Only the spelling SyscallName produces: "sys_999", not "sys_+5" or "sys_257".
		if nr, err := strconv.Atoi(rest); err == nil && nr >= 0 && SyscallName(nr) == name {
			return nr, true
		}
	}
	return 0, false
}
