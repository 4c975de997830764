// Package model holds cagewatch's pure logic: windows of syscall counts, security
// events, containers, baselines, scoring and rules. It does no I/O, so everything in
// it can be tested without root and fuzzed.
package model
