// SPDX-License-Identifier: GPL-2.0
/* Programs for `make bench` only: an empty sys_enter program (the floor) and the
 * histogram on both attach types, to measure what the histogram adds per syscall
 * and whether tp_btf or raw_tp is cheaper. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "sensor.h"
#include "histogram.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(empty_tp_btf, struct pt_regs *regs, long id)
{
	return 0;
}

SEC("raw_tp/sys_enter")
int empty_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(hist_tp_btf, struct pt_regs *regs, long id)
{
	count_syscall(id);
	return 0;
}

SEC("raw_tp/sys_enter")
int hist_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	count_syscall((long)ctx->args[1]);
	return 0;
}

/* Cost breakdown of count_syscall. */
__u64 sink;

SEC("tp_btf/sys_enter")
int BPF_PROG(cgid_tp_btf, struct pt_regs *regs, long id)
{
	sink = bpf_get_current_cgroup_id();
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(lookup_tp_btf, struct pt_regs *regs, long id)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct hist *h = bpf_map_lookup_elem(&syscall_hist, &cgid);
	if (!h) {
		bpf_map_update_elem(&syscall_hist, &cgid, &zero_hist, BPF_NOEXIST);
		return 0;
	}
	sink = h->counts[0];
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(plainadd_tp_btf, struct pt_regs *regs, long id)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct hist *h = bpf_map_lookup_elem(&syscall_hist, &cgid);
	if (!h) {
		bpf_map_update_elem(&syscall_hist, &cgid, &zero_hist, BPF_NOEXIST);
		return 0;
	}
	__u32 slot = HIST_SLOTS - 1;
	if (id >= 0 && id < HIST_SLOTS - 1)
		slot = (__u32)id;
	h->counts[slot & (HIST_SLOTS - 1)] += 1;
	return 0;
}
