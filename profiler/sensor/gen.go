// Package sensor owns the kernel side of cagewatch: it loads and attaches the BPF
// programs, samples the per-cgroup syscall histogram and decodes ring-buffer events.
// It is the only package that imports cilium/ebpf, with its subpackages sensorbench
// (the benchmark programs, for `make bench`) and sensortest (the tests' BPF gate).
package sensor

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -mcpu=v3 -g -Wall -Werror" -target amd64 -type event -type hist -type prefix_key -type enforce_policy sensor ../../bpf/sensor.bpf.c -- -I../../bpf -I../../bpf/include
