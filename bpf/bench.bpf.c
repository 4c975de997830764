// SPDX-License-Identifier: GPL-2.0
/* Programs for `make bench` only: an empty sys_enter program (the floor), the
 * sensor's histogram on both attach types, and the designs it replaced, so the
 * benchmark shows what each costs per syscall. */
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

/* The first design: a hash of cgroup id to counts, found with two helper calls. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct hist);
} hash_hist SEC(".maps");

struct hist zero_hist = {};

static __always_inline __u32 syscall_slot(long id)
{
	__u32 nr = HIST_SLOTS - 1;
	if (id >= 0 && id < HIST_SLOTS - 1)
		nr = (__u32)id;
	return nr & (HIST_SLOTS - 1);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(hash_tp_btf, struct pt_regs *regs, long id)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct hist *h = bpf_map_lookup_elem(&hash_hist, &cgid);
	if (!h) {
		bpf_map_update_elem(&hash_hist, &cgid, &zero_hist, BPF_NOEXIST);
		return 0;
	}
	__sync_fetch_and_add(&h->counts[syscall_slot(id)], 1);
	return 0;
}

/* Counts kept in the cgroup's local storage itself, looked up on every syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct hist);
} storage_hist SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(storage_tp_btf, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct hist *h = bpf_cgrp_storage_get(&storage_hist, task->cgroups->dfl_cgrp, 0,
					      BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (h)
		__sync_fetch_and_add(&h->counts[syscall_slot(id)], 1);
	return 0;
}

/* The histogram without the 4-grams: the difference to hist_tp_btf is what the
 * order view costs per syscall. */
SEC("tp_btf/sys_enter")
int BPF_PROG(counts_tp_btf, struct pt_regs *regs, long id)
{
	count_syscall_with(id, false);
	return 0;
}
