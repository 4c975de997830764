/* The per-cgroup syscall histogram, shared by the sensor and its benchmark programs.
 * Include after vmlinux.h, the libbpf headers and sensor.h. */
#ifndef CAGEWATCH_HISTOGRAM_H
#define CAGEWATCH_HISTOGRAM_H

struct hist zero_hist = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u64); /* cgroup v2 id */
	__type(value, struct hist);
} syscall_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline void count_syscall(long id)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct hist *h = bpf_map_lookup_elem(&syscall_hist, &cgid);
	if (!h) {
		long err = bpf_map_update_elem(&syscall_hist, &cgid, &zero_hist, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST: another CPU won the race */) {
			stat_inc(STAT_HIST_FULL);
			return;
		}
		h = bpf_map_lookup_elem(&syscall_hist, &cgid);
		if (!h)
			return;
	}
	__u32 slot = HIST_SLOTS - 1;
	if (id >= 0 && id < HIST_SLOTS - 1)
		slot = (__u32)id;
	__sync_fetch_and_add(&h->counts[slot & (HIST_SLOTS - 1)], 1); /* mask: for the verifier */
}

#endif
