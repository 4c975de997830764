/* The per-cgroup syscall histogram, shared by the sensor and its benchmark programs.
 * Include after vmlinux.h, the libbpf headers and sensor.h. It defines the
 * sched_switch and cgroup_attach_task programs that keep each CPU's cgroup id.
 *
 * Every syscall pays for this, so the hot path makes no helper call (a call costs
 * about 20 ns on mitigated CPUs, more than everything else together) and no
 * atomic operation. The running task's cgroup id is kept per CPU, written at each
 * context switch from the switch's own arguments and dropped when a task changes
 * cgroup. The same per-CPU record names the histogram slot this CPU uses for that
 * cgroup, and the slot's owner field confirms it is still right. Each (cgroup,
 * CPU) pair has its own slot, so plain increments never race; user space sums a
 * cgroup's slots. Only a CPU switching between cgroups looks its pair up in a
 * hash, and only a pair's first syscall takes a free slot from the stack user
 * space fills. Slots live in an mmapable array, so user space samples without a
 * syscall. */
#ifndef CAGEWATCH_HISTOGRAM_H
#define CAGEWATCH_HISTOGRAM_H

/* Histograms by slot; slot 0 is never handed out. The loader sets max_entries. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct hist);
} hist_slots SEC(".maps");

/* Slots user space has zeroed and released. A stack, so the lowest slots are
 * reused first and user space maps only the prefix in use. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4096);
	__type(value, __u32);
} free_slots SEC(".maps");

struct slot_key {
	__u64 cgroup_id;
	__u32 cpu;
	__u32 pad;
};

/* The slot of each (cgroup, CPU) pair; user space deletes a dead cgroup's keys. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct slot_key);
	__type(value, __u32);
} pair_slots SEC(".maps");

/* Whether a task's syscalls are left out of its cgroup's histogram. A program
 * including this header may define it before: the sensor leaves out a
 * container runtime setting a container up, whose syscalls are not the
 * container's behaviour. */
#ifndef histogram_skips
#define histogram_skips(task, cgid) 0
#endif

struct cpu_state {
	__u64 cgroup_id;   /* the running task's cgroup v2 id; 0: unknown */
	__u64 slot_cgroup; /* the cgroup whose slot is cached */
	__u32 slot;
	__u32 cpu;  /* this CPU, so the hot path checks the owner with no helper call */
	__u32 skip; /* the running task is not counted (histogram_skips) */
	/* Set when this CPU's running thread entered a read-only open, cleared at
	 * every switch and by the open's exit: still set there, the exit has
	 * nothing to judge and skips reading the flags (three helper calls). */
	__u32 open_read_only;
	__u64 recent;    /* the running thread's last three syscalls as gram fields; 0: none */
	__u64 recent_in; /* recent as restored at switch-in: unchanged, nothing to save */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} cpu_state SEC(".maps");

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

/* Returns this CPU's histogram for cgid, taking a free slot on the pair's first use. */
static __noinline struct hist *claim_slot(__u64 cgid, __u32 cpu, __u32 *slot_out)
{
	struct slot_key key = {.cgroup_id = cgid, .cpu = cpu};
	struct hist *h;
	__u32 *known = bpf_map_lookup_elem(&pair_slots, &key);
	if (known) {
		__u32 slot = *known;
		h = bpf_map_lookup_elem(&hist_slots, &slot);
		if (h && h->cgroup_id == cgid && h->cpu == key.cpu) {
			*slot_out = slot;
			return h;
		}
		/* user space released it (a removal misjudged): take a new one */
	}
	__u32 fresh;
	if (bpf_map_pop_elem(&free_slots, &fresh)) {
		stat_inc(STAT_HIST_FULL);
		return NULL;
	}
	h = bpf_map_lookup_elem(&hist_slots, &fresh);
	if (!h)
		return NULL;
	if (bpf_map_update_elem(&pair_slots, &key, &fresh, BPF_ANY)) {
		bpf_map_push_elem(&free_slots, &fresh, 0);
		stat_inc(STAT_HIST_FULL);
		return NULL;
	}
	h->cpu = key.cpu;
	h->cgroup_id = cgid;
	*slot_out = fresh;
	return h;
}

static __always_inline __u64 task_cgroup_id(struct task_struct *task)
{
	return task->cgroups->dfl_cgrp->kn->id;
}

/* Counts the syscall with its thread's predecessors on this CPU. Linear probing
 * from a multiplicative hash; the table is the slot's, so plain stores suffice. */
static __always_inline void count_gram(struct hist *h, struct cpu_state *st, long id)
{
	__u64 field = GRAM_OTHER;
	if (id >= 0 && id < GRAM_OTHER - 1)
		field = (__u64)id + 1;
	__u64 key = ((st->recent << GRAM_BITS) | field) & GRAM_KEY_MASK;
	st->recent = key & GRAM_RECENT_MASK;
	__u32 at = (__u32)((key * 0x9E3779B97F4A7C15ULL) >> (64 - GRAM_TABLE_LOG2));
	for (__u32 i = 0; i < GRAM_PROBES; i++) {
		__u64 *e = &h->grams[(at + i) & (GRAM_TABLE - 1)];
		__u64 cur = *e;
		if ((cur & GRAM_KEY_MASK) == key) {
			*e = cur + GRAM_ONE;
			return;
		}
		if (!cur) {
			*e = key | GRAM_ONE;
			return;
		}
	}
	h->grams_lost += 1;
}

/* Counts one syscall of the current task's cgroup v2, and its 4-gram when
 * grams is set (a constant: the benchmark compares both). */
static __always_inline void count_syscall_with(long id, bool grams)
{
	__u32 zero = 0;
	struct cpu_state *st = bpf_map_lookup_elem(&cpu_state, &zero);
	if (!st)
		return;
	__u64 cgid = st->cgroup_id;
	__u32 skip = st->skip;
	/* No switch seen since load, or a task moved: ask the task, and leave the cache
	 * to sched_switch (storing here could race a move on another CPU and keep a
	 * stale id until the next switch). */
	if (!cgid) {
		struct task_struct *task = bpf_get_current_task_btf();
		cgid = task_cgroup_id(task);
		skip = histogram_skips(task, cgid);
	}
	if (skip)
		return;
	struct hist *h = NULL;
	if (st->slot_cgroup == cgid) {
		__u32 slot = st->slot;
		h = bpf_map_lookup_elem(&hist_slots, &slot);
		if (h && (h->cgroup_id != cgid || h->cpu != st->cpu))
			h = NULL;
	}
	if (!h) {
		__u32 slot = 0, cpu = bpf_get_smp_processor_id();
		h = claim_slot(cgid, cpu, &slot);
		if (!h)
			return;
		st->slot_cgroup = cgid;
		st->slot = slot;
		st->cpu = cpu;
	}
	__u32 nr = HIST_SLOTS - 1;
	if (id >= 0 && id < HIST_SLOTS - 1)
		nr = (__u32)id;
	nr &= HIST_SLOTS - 1; /* for the verifier */
	__u64 bit = 1ULL << (nr & 63);
	if (!(h->seen[nr >> 6] & bit)) /* a store only the first time */
		h->seen[nr >> 6] |= bit;
	h->counts[nr] += 1;
	if (grams)
		count_gram(h, st, id);
}

static __always_inline void count_syscall(long id)
{
	count_syscall_with(id, true);
}

/* Each thread's last three syscalls, kept while it is switched out, so its
 * 4-grams are its own consecutive syscalls whatever the scheduler did: a
 * preemption or a wake-up on another CPU must not make pairs that depend on
 * load. An array indexed by a hash of the thread id, tagged with the thread's
 * id and start time: an array lookup is inlined, where task storage cost two
 * helper calls and about 700 ns a switch. Two live threads sharing an entry
 * only lose a run's context; a reused id never inherits one (the start time
 * differs). Only switches touch it; the syscall path keeps the running
 * thread's run in cpu_state. */
#define THREAD_RUNS (1 << 16)

struct thread_run {
	__u32 tid;
	__u32 start; /* low bits of the thread's start time */
	__u64 recent;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, THREAD_RUNS);
	__type(key, __u32);
	__type(value, struct thread_run);
} thread_runs SEC(".maps");

#define PF_KTHREAD 0x00200000 /* include/linux/sched.h: kernel threads make no syscalls */

static __always_inline struct thread_run *thread_run_of(struct task_struct *t, __u32 *tid, __u32 *start)
{
	*tid = t->pid;
	*start = (__u32)t->start_time;
	__u32 idx = (*tid * 2654435761u) >> 16; /* THREAD_RUNS = 2^16 */
	return bpf_map_lookup_elem(&thread_runs, &idx);
}

static __always_inline void switch_recent(struct cpu_state *st, struct task_struct *prev, struct task_struct *next)
{
	__u32 tid, start;
	/* Only a run that changed while its thread ran is saved: most switches are
	 * to or from idle and kernel threads. */
	if (st->recent != st->recent_in && !(prev->flags & PF_KTHREAD)) {
		struct thread_run *r = thread_run_of(prev, &tid, &start);
		if (r) {
			r->tid = tid;
			r->start = start;
			r->recent = st->recent;
		}
	}
	__u64 recent = 0;
	if (!(next->flags & PF_KTHREAD)) {
		struct thread_run *r = thread_run_of(next, &tid, &start);
		if (r && r->tid == tid && r->start == start)
			recent = r->recent;
	}
	st->recent = recent;
	st->recent_in = recent;
}

/* The task about to run is the one whose syscalls count next. */
SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 zero = 0;
	struct cpu_state *st = bpf_map_lookup_elem(&cpu_state, &zero);
	if (st) {
		__u64 cgid = task_cgroup_id(next);
		st->cgroup_id = cgid;
		st->skip = histogram_skips(next, cgid);
		st->open_read_only = 0;
		switch_recent(st, prev, next);
	}
	return 0;
}

/* Possible CPUs, set by the loader. */
const volatile __u32 nr_cpus = 1;

#define MAX_CPUS 4096

/* Tasks moved without a context switch, on any CPU (the tracepoint names only a
 * thread group's leader), so every CPU forgets its running cgroup and asks the
 * task again at its next syscall. Moves are rare. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(cgroup_attach_task, struct cgroup *dst, const char *path, struct task_struct *task, bool threadgroup)
{
	if (BPF_CORE_READ(dst, root, hierarchy_id) != 0) /* only v2 is counted */
		return 0;
	__u32 zero = 0;
	for (__u32 cpu = 0; cpu < nr_cpus && cpu < MAX_CPUS; cpu++) {
		struct cpu_state *st = bpf_map_lookup_percpu_elem(&cpu_state, &zero, cpu);
		if (st)
			st->cgroup_id = 0;
	}
	return 0;
}

#endif
