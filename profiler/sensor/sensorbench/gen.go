// Package sensorbench is the measurement side of the kernel sensor, for `make
// bench` (cmd/cagewatch-bench) and this package's Go benchmarks: the comparison
// programs of bpf/bench.bpf.c, the kernel's per-program run-time statistics and
// synthetic histogram slots for timing the sampler. The agent does not use it.
package sensorbench

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -mcpu=v3 -g -Wall -Werror" -target amd64 bench ../../../bpf/bench.bpf.c -- -I../../../bpf -I../../../bpf/include
