// SPDX-License-Identifier: GPL-2.0
/* cagewatch kernel sensor: a per-cgroup syscall histogram and a ring buffer of
 * security events for the syscalls the hard rules need. x86_64 only. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "sensor.h"

/* The host's mount namespace (/proc/1/ns/mnt), where container runtimes run; 0
 * when unknown, and then no process is taken for a runtime's init. Set by the
 * loader. */
const volatile __u32 host_mnt_ns = 0;

/* Where each process last exec'd, inherited at fork: the kernel's own record
 * of which processes are a container runtime's init. runc init is exec'd by the
 * runtime in the host's mount namespace and moved by the runtime into the new
 * container's cgroup after that exec; it may exec itself again there (runc 1.1
 * re-executes a sealed copy of its binary), still in the host's mount
 * namespace, before it enters the container's namespaces and finally exec's
 * the workload inside the container's mount namespace. So a process is the
 * runtime setting up while
 * - its last exec was in the host's mount namespace and another process has
 *   moved it to another cgroup since (a process moving itself counts as having
 *   exec'd where it went), or
 * - it was such a process when it exec'd again in the host's mount namespace;
 * and an exec in any other mount namespace (the workload's) ends it. Unlike the
 * comm ("runc:[2:INIT]"), which prctl sets to anything, a container process
 * cannot fake this: it exec's inside the container, and reaching the host's
 * mount namespace takes a setns that the rules report. Processes that predate
 * the agent have no entry and are never taken for the runtime. The fact is the
 * process's and lives on the thread group's leader, which the cgroup_attach
 * tracepoint names; every thread also carries a copy, made when it starts,
 * because an exec from a thread that is not the leader (Go's runtime picks
 * any) turns that thread into the leader and frees the old leader with its
 * storage. The leader's entry is read first. */
struct exec_site {
	__u64 cgroup_id; /* cgroup of the last exec */
	__u32 mnt_ns;    /* mount namespace of the last exec */
	__u32 runtime;   /* the runtime's init, carried across its own re-exec */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct exec_site);
} exec_sites SEC(".maps");

static __always_inline int runtime_setup(struct exec_site *s, __u64 cgroup_id)
{
	return s && host_mnt_ns && s->mnt_ns == host_mnt_ns && (s->runtime || s->cgroup_id != cgroup_id);
}

/* The process's entry: its leader's, or the thread's own copy. */
static __always_inline struct exec_site *exec_site_of(struct task_struct *task)
{
	struct exec_site *s = bpf_task_storage_get(&exec_sites, task->group_leader, 0, 0);
	return s ? s : bpf_task_storage_get(&exec_sites, task, 0, 0);
}

/* The histogram leaves out the runtime's init: its setup (mounts, its Go
 * runtime starting) happens in the container's cgroup but is not the
 * container's behaviour, and would make a window of it look anomalous. */
#define histogram_skips(task, cgid) runtime_setup(exec_site_of(task), cgid)

#include "histogram.h"

char LICENSE[] SEC("license") = "GPL";

/* x86_64 syscall numbers of the events we capture. */
#define SIGINT 2
#define SIGQUIT 3
#define SIGKILL 9
#define SIGTERM 15
#define SIGPWR 30

#define NR_open 2
#define NR_truncate 76
#define NR_ftruncate 77
#define NR_rename 82
#define NR_creat 85
#define NR_link 86
#define NR_unlink 87
#define NR_symlink 88
#define NR_chown 92
#define NR_fchown 93
#define NR_lchown 94
#define NR_mknod 133
#define NR_mknodat 259
#define NR_fchownat 260
#define NR_unlinkat 263
#define NR_renameat 264
#define NR_linkat 265
#define NR_symlinkat 266
#define NR_renameat2 316
#define NR_socket 41
#define NR_chmod 90
#define NR_fchmod 91
#define NR_fchmodat 268
#define NR_fchmodat2 452
#define NR_connect 42
#define NR_clone 56
#define NR_ptrace 101
#define NR_capset 126
#define NR_pivot_root 155
#define NR_mount 165
#define NR_umount2 166
#define NR_init_module 175
#define NR_delete_module 176
#define NR_keyctl 250
#define NR_openat 257
#define NR_unshare 272
#define NR_perf_event_open 298
#define NR_open_by_handle_at 304
#define NR_setns 308
#define NR_finit_module 313
#define NR_bpf 321
#define NR_userfaultfd 323
#define NR_io_uring_setup 425
#define NR_open_tree 428
#define NR_move_mount 429
#define NR_fsopen 430
#define NR_fsmount 432
#define NR_clone3 435
#define NR_openat2 437
#define NR_mount_setattr 442

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_RAW 3
#define SOCK_TYPE_MASK 0xf

#define AT_FDCWD -100
#define ETXTBSY 26
#define O_WRITES (01 | 02 | 0100 | 01000) /* O_WRONLY | O_RDWR | O_CREAT | O_TRUNC */
#define O_TRUNC 01000
#define FMODE_WRITE 0x2
#define FMODE_CREATED 0x100000

#define S_ISUID 04000
#define S_ISGID 02000
#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define OVERLAYFS_SUPER_MAGIC 0x794c7630

/* CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET; CLONE_NEWTIME only in clone3. */
#define CLONE_NEW_MASK 0x7E020000ULL
#define CLONE_NEWTIME 0x80ULL

/* Set by the loader before load. */
const volatile __u32 agent_tgid = 0;

/* Bit n set: syscall n produces an event (the loader fills it). */
__u64 event_syscalls[HIST_SLOTS / 64] = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} scratch SEC(".maps");

/* Path prefixes whose opens (and unix socket connects) are reported. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct prefix_key);
	__type(value, __u8);
} watch_prefixes SEC(".maps");

/* Trees whose writes are reported, with the write_op bits that count there
 * (/var/log: only truncation and removal; /dev: only new files). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct prefix_key);
	__type(value, __u32);
} write_prefixes SEC(".maps");

struct name_key {
	__u64 words[NAME_LEN / 8]; /* a NUL-padded file name; words make zeroing cheap */
};

/* Final path components reported wherever they are (release_agent under any cgroupfs mount). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct name_key);
	__type(value, __u8);
} watch_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct name_key);
} name_scratch SEC(".maps");

/* TCP/UDP destination ports whose connects are reported; key 0 means every port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} watch_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enforce_policy);
} enforce SEC(".maps");

/* Cgroup path prefixes below which new cgroups are containers' (/docker/, the
 * literal part of a static glob): a cgroup created there is enforced from its
 * first syscall, before user space has classified it, and user space releases
 * it if it is no container after all. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 256);
	__type(key, struct prefix_key);
	__type(value, __u8);
} enforce_prefixes SEC(".maps");

#define MAX_ANCESTOR_LEVEL 8

/* Container cgroups under enforcement, with every cgroup below them: added at
 * mkdir (enforce_prefixes), by user space once it has classified a cgroup, and
 * deleted at rmdir. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} enforced_cgroups SEC(".maps");

/* Fills the scratch event e with everything but the path, which the caller may
 * already have read (an open is filtered on its path before anything else). */
static __always_inline void fill_event(struct event *e, __u32 kind, __s32 nr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	e->ts_boot_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->kind = kind;
	e->nr = nr;
	e->pid = (__u32)pid_tgid;
	e->tgid = pid_tgid >> 32;
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->proc_start_ns = BPF_CORE_READ(task, group_leader, start_time);
	e->cap_effective = BPF_CORE_READ(task, cred, cap_effective.val);
	e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->net_ns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	e->cgroup_ns = BPF_CORE_READ(task, nsproxy, cgroup_ns, ns.inum);
	e->runtime_setup = runtime_setup(exec_site_of(task), e->cgroup_id);
	e->user_ns = BPF_CORE_READ(task, cred, user_ns, ns.inum);
	unsigned int level = BPF_CORE_READ(task, thread_pid, level);
	e->pid_ns = BPF_CORE_READ(task, thread_pid, numbers[level & 31].ns, ns.inum);
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	__builtin_memset(e->args, 0, sizeof(e->args));
	e->flags = 0;
	e->cap_req_effective = 0;
	e->cap_req_permitted = 0;
	e->cap_req_inheritable = 0;
	e->family = 0;
	e->port = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	e->fstype[0] = 0;
	e->killed = 0;
	e->write_op = 0;
	e->file_flags = 0;
}

static __always_inline void clear_path2(struct event *e)
{
	e->path2[0] = 0;
	e->path2_len = 0;
}

static __always_inline struct event *scratch_event(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline struct event *new_event(__u32 kind, __s32 nr)
{
	struct event *e = scratch_event();
	if (!e)
		return NULL;
	fill_event(e, kind, nr);
	clear_path2(e);
	e->path_bits = 0;
	e->path[0] = 0;
	return e;
}

static __always_inline void submit(struct event *e)
{
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
		stat_inc(STAT_EVENTS_LOST);
	else
		stat_inc(STAT_EVENTS);
}

/* Reads a user string into e->path and sets path_bits for the trie lookup. */
static __always_inline long read_user_path(struct event *e, const void *src)
{
	long n = bpf_probe_read_user_str(e->path, sizeof(e->path), src);
	if (n <= 0) {
		e->path[0] = 0;
		e->path_bits = 0;
		stat_inc(STAT_PATH_FAULT);
		return 0;
	}
	e->path_bits = (n - 1) * 8;
	return n;
}

#define PATH_NONCANONICAL 0x10000
#define PATH_BASE_MASK 0x1ff
#define NAME_FILTER_BITS 1024
#define FIRST_FILTER_BITS 256

/* Which final components and first components the watch lists name, as bits of
 * their path_base hashes: most opens miss both and skip the trie and the name
 * lookup. all_firsts: a prefix ends inside its first component ("/e"). */
struct watch_filter {
	__u64 names[NAME_FILTER_BITS / 64];
	__u64 firsts[FIRST_FILTER_BITS / 64];
	__u32 all_firsts;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct watch_filter);
} watch_filter SEC(".maps");

static __always_inline int filter_bit(__u64 *bits, __u32 nbits, __u32 hash)
{
	__u32 bit = hash & (nbits - 1);
	return (bits[(bit / 64) & (nbits / 64 - 1)] >> (bit % 64)) & 1;
}

/* One pass over a path: the offset of its final component, PATH_NONCANONICAL
 * when it has "//", "/./" or "/../" (which could slip past the prefix trie:
 * user space normalises and judges those), and above bit 32 a hash of its
 * final component (h = h*31 + c) for the watch filter. A global
 * function: the verifier checks its loop once instead of at every call site. */
__noinline __u64 path_base(struct event *e, long n)
{
	if (!e)
		return 0;
	__u32 base = 0, odd = 0, name_hash = 0;
	char prev = 0, prev2 = 0;
	for (int i = 0; i < PATH_LEN && i < n; i++) {
		char c = e->path[i];
		if (c == '/' || c == 0) {
			if (prev == '/' || (prev == '.' && (prev2 == '/' || prev2 == '.')))
				odd = 1;
			if (c == 0)
				break;
			base = i + 1;
			name_hash = 0;
		} else {
			name_hash = name_hash * 31 + (__u8)c;
		}
		prev2 = prev;
		prev = c;
	}
	return base | (odd ? PATH_NONCANONICAL : 0) | ((__u64)(name_hash & 0xffff) << 32);
}

#define FIRST_COMPONENT_MAX 32

/* Whether an absolute path's first component may start a watched prefix: its
 * hash (as path_base's) is in the filter, or it is too long to hash here. */
static __always_inline int first_component_watched(struct event *e, struct watch_filter *wf)
{
	if (wf->all_firsts)
		return 1;
	__u32 h = 0;
	for (int i = 1; i < FIRST_COMPONENT_MAX; i++) {
		char c = e->path[i];
		if (c == '/' || c == 0)
			return filter_bit(wf->firsts, FIRST_FILTER_BITS, h & 0xffff);
		h = h * 31 + (__u8)c;
	}
	return 1;
}

/* Returns the watch flags of a path: the prefix entry's and the file name entry's. */
static __always_inline __u8 path_watch_flags(struct event *e, long n)
{
	if (n <= 1)
		return 0;
	__u32 zero = 0;
	struct watch_filter *wf = bpf_map_lookup_elem(&watch_filter, &zero);
	if (!wf)
		return 0;
	__u64 scan = path_base(e, n);
	__u8 flags = (scan & PATH_NONCANONICAL) ? WATCH_REPORT : 0;
	__u8 *v;
	if (e->path[0] == '/' && first_component_watched(e, wf)) {
		v = bpf_map_lookup_elem(&watch_prefixes, &e->path_bits);
		if (v)
			flags |= *v;
	}
	if (!filter_bit(wf->names, NAME_FILTER_BITS, (scan >> 32) & 0xffff))
		return flags;
	struct name_key *name = bpf_map_lookup_elem(&name_scratch, &zero);
	if (!name)
		return flags;
	__builtin_memset(name, 0, sizeof(*name));
	bpf_probe_read_kernel_str(name, sizeof(*name), e->path + ((scan & PATH_BASE_MASK) & (PATH_LEN - 1)));
	v = bpf_map_lookup_elem(&watch_names, name);
	if (v)
		flags |= *v;
	return flags;
}

/* The runtime's init (runc init) sets up a new container, or enters one for
 * docker exec, before the workload starts: that is not the workload. */
static __always_inline int is_runtime_init(struct event *e)
{
	return e->runtime_setup;
}

static __always_inline int cgroup_enforced(struct event *e)
{
	if (bpf_map_lookup_elem(&enforced_cgroups, &e->cgroup_id))
		return 1;
	for (int level = 1; level <= MAX_ANCESTOR_LEVEL; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id || id == e->cgroup_id)
			return 0;
		if (bpf_map_lookup_elem(&enforced_cgroups, &id))
			return 1;
	}
	return 0;
}

/* In enforce mode, SIGKILL the caller if policy says so. The signal is delivered
 * on return from this syscall: the syscall itself still runs (an O_TRUNC open of
 * a regular file truncates it; cgroupfs files ignore O_TRUNC), but the process
 * never runs another instruction, so the write that would follow never happens.
 * (bpf_probe_write_user, which could blank the path first, is not allowed in
 * tp_btf programs, and LSM hooks do not load on this kind of kernel.) */
static __always_inline void enforce_kill(struct event *e, int kill)
{
	if (!kill)
		return;
	__u32 zero = 0;
	struct enforce_policy *p = bpf_map_lookup_elem(&enforce, &zero);
	if (!p || !p->enabled || is_runtime_init(e) || !cgroup_enforced(e))
		return;
	if (bpf_send_signal(SIGKILL) == 0) {
		e->killed = 1;
		stat_inc(STAT_KILLED);
	}
}

static __always_inline int syscall_kills(__s32 nr)
{
	__u32 zero = 0;
	struct enforce_policy *p = bpf_map_lookup_elem(&enforce, &zero);
	if (!p || nr < 0 || nr >= HIST_SLOTS)
		return 0;
	__u32 slot = (__u32)nr;
	return (p->kill_syscalls[(slot / 64) & (HIST_SLOTS / 64 - 1)] >> (slot % 64)) & 1;
}

static __always_inline int unshare_by_flags(void)
{
	__u32 zero = 0;
	struct enforce_policy *p = bpf_map_lookup_elem(&enforce, &zero);
	return p && p->kill_unshare_by_flags;
}

static __always_inline int clone_kills(__u64 flags)
{
	__u32 zero = 0;
	struct enforce_policy *p = bpf_map_lookup_elem(&enforce, &zero);
	return p && (flags & p->kill_clone_flags);
}

static __always_inline int fill_connect(struct event *e, const void *uaddr)
{
	__u16 family = 0;
	if (bpf_probe_read_user(&family, sizeof(family), uaddr))
		return 0;
	e->family = family;
	__u16 port_be = 0;
	switch (family) {
	case AF_INET:
		bpf_probe_read_user(&port_be, 2, uaddr + 2);
		bpf_probe_read_user(e->addr, 4, uaddr + 4);
		break;
	case AF_INET6:
		bpf_probe_read_user(&port_be, 2, uaddr + 2);
		bpf_probe_read_user(e->addr, 16, uaddr + 8);
		break;
	case AF_UNIX:
		return -1; /* the caller checks the socket path like an opened path */
	default:
		return 0;
	}
	__u16 port = __builtin_bswap16(port_be);
	e->port = port;
	__u16 any = 0;
	return bpf_map_lookup_elem(&watch_ports, &port) || bpf_map_lookup_elem(&watch_ports, &any);
}

static __always_inline void read_user_str2(struct event *e, const void *src)
{
	long n = bpf_probe_read_user_str(e->path2, sizeof(e->path2), src);
	e->path2_len = n > 0 ? n : 0;
}

struct path_buf {
	char buf[PATH_LEN * 2]; /* the path is built backwards in the first half; the second is scratch */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} path_scratch SEC(".maps");

#define PATH_WALK_STEPS 40 /* dentries and mount crossings */

/* Writes into e->path the path of dentry on vfsmnt as the task sees it from
 * its root directory, followed by the name in s->buf[PATH_LEN..] when
 * tail_len > 0, and returns EXEC_FILE_* flags. It walks dentries and mounts
 * with CO-RE reads, as d_path does: bpf_d_path is not allowed in tp_btf
 * programs. */
static __always_inline __u64 resolve_path(struct event *e, struct path_buf *s, struct dentry *dentry,
					  struct vfsmount *vfsmnt, struct task_struct *task, __u32 tail_len)
{
	struct dentry *root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	__u32 mnt_off = bpf_core_field_offset(struct mount, mnt);
	struct mount *mnt = (void *)vfsmnt - mnt_off;
	__u64 flags = 0;
	__u32 off = PATH_LEN - 1;
	s->buf[PATH_LEN - 1] = 0;
	if (tail_len > 0 && tail_len + 1 < off) {
		off -= tail_len;
		bpf_probe_read_kernel(&s->buf[off & (PATH_LEN - 1)], tail_len & (PATH_LEN - 1), &s->buf[PATH_LEN]);
		off--;
		s->buf[off & (PATH_LEN - 1)] = '/';
	}
	int i;
	for (i = 0; i < PATH_WALK_STEPS; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt)
			break;
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
			if (!up || up == mnt) { /* the top of a tree the root is not in */
				flags |= EXEC_FILE_OUTSIDE_ROOT;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			vfsmnt = (void *)up + mnt_off;
			continue;
		}
		__u32 len = BPF_CORE_READ(dentry, d_name.len);
		if (len + 1 > off) {
			flags |= EXEC_FILE_TRUNCATED;
			break;
		}
		off -= len;
		bpf_probe_read_kernel(&s->buf[off & (PATH_LEN - 1)], len & (PATH_LEN - 1), BPF_CORE_READ(dentry, d_name.name));
		off--;
		s->buf[off & (PATH_LEN - 1)] = '/';
		if (dentry == parent) { /* a pseudo file's lone dentry: a memfd's, a pipe's */
			flags |= EXEC_FILE_OUTSIDE_ROOT;
			break;
		}
		dentry = parent;
	}
	if (i == PATH_WALK_STEPS)
		flags |= EXEC_FILE_TRUNCATED;
	if (off == PATH_LEN - 1) { /* the root itself */
		off--;
		s->buf[off] = '/';
	}
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), &s->buf[off & (PATH_LEN - 1)]);
	e->path_bits = n > 0 ? (n - 1) * 8 : 0;
	return flags;
}

static __always_inline struct file *fd_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if (fd < 0 || (unsigned int)fd >= max)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* Writes into e->path the file a write names, as the caller sees it from its
 * root: with name 0, the file open on fd; otherwise the user string name,
 * made absolute from the directory open on fd (AT_FDCWD: the working
 * directory), so "cd /etc; echo > f" and openat(dirfd, "passwd") are judged
 * on /etc/... Returns EXEC_FILE_* and FILE_* flags. A global function: the
 * verifier checks the path walk once, not at every caller. */
__noinline int resolve_at(struct event *e, struct path_buf *s, int fd, __u64 name)
{
	if (!e || !s)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tail = 0;
	if (name) {
		long n = bpf_probe_read_user_str(&s->buf[PATH_LEN], PATH_LEN, (void *)name);
		if (n <= 1) {
			e->path[0] = 0;
			e->path_bits = 0;
			return 0;
		}
		if (s->buf[PATH_LEN] == '/' || (fd != AT_FDCWD && fd < 0)) {
			n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), &s->buf[PATH_LEN]);
			e->path_bits = n > 0 ? (n - 1) * 8 : 0;
			return 0;
		}
		tail = n - 1;
	}
	struct dentry *dentry;
	struct vfsmount *mnt;
	if (name && fd == AT_FDCWD) {
		dentry = BPF_CORE_READ(task, fs, pwd.dentry);
		mnt = BPF_CORE_READ(task, fs, pwd.mnt);
	} else {
		struct file *f = fd_file(task, fd);
		if (!f) {
			long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), &s->buf[PATH_LEN]);
			e->path_bits = n > 0 ? (n - 1) * 8 : 0;
			return FILE_UNRESOLVED;
		}
		dentry = BPF_CORE_READ(f, f_path.dentry);
		mnt = BPF_CORE_READ(f, f_path.mnt);
	}
	return resolve_path(e, s, dentry, mnt, task, tail);
}

/* The write_op bits that count for e->path: those of its longest watched tree. */
static __always_inline __u32 write_watch(struct event *e)
{
	if (e->path_bits == 0)
		return 0;
	__u32 *ops = bpf_map_lookup_elem(&write_prefixes, &e->path_bits);
	return ops ? *ops : 0;
}

static __always_inline struct path_buf *path_scratch_buf(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&path_scratch, &zero);
}

/* Unlink, rename, link, symlink, chmod, chown, truncate and mknod, judged on
 * the names resolved in the kernel. A link or symlink is also reported when
 * its source is watched (a link onto /etc/shadow), and a chmod that sets
 * setuid or setgid always. */
static __noinline int capture_write(struct pt_regs *regs, __s32 nr)
{
	__u64 a0 = regs->di, a1 = regs->si, a2 = regs->dx, a3 = regs->r10;
	int fd = AT_FDCWD, src_fd = AT_FDCWD;
	__u64 name = 0, src = 0, mode = 0;
	__u32 op = 0;
	switch (nr) {
	case NR_unlink:
		name = a0, op = WRITE_UNLINK;
		break;
	case NR_unlinkat:
		fd = a0, name = a1, op = WRITE_UNLINK;
		break;
	case NR_rename:
		src = a0, name = a1, op = WRITE_RENAME;
		break;
	case NR_renameat:
	case NR_renameat2:
		src_fd = a0, src = a1, fd = a2, name = a3, op = WRITE_RENAME;
		break;
	case NR_link:
		src = a0, name = a1, op = WRITE_LINK;
		break;
	case NR_linkat:
		src_fd = a0, src = a1, fd = a2, name = a3, op = WRITE_LINK;
		break;
	case NR_symlink:
		src = a0, name = a1, op = WRITE_SYMLINK;
		break;
	case NR_symlinkat:
		src = a0, fd = a1, name = a2, op = WRITE_SYMLINK;
		break;
	case NR_chmod:
		name = a0, mode = a1, op = WRITE_CHMOD;
		break;
	case NR_fchmodat:
	case NR_fchmodat2:
		fd = a0, name = a1, mode = a2, op = WRITE_CHMOD;
		break;
	case NR_fchmod:
		fd = a0, mode = a1, op = WRITE_CHMOD;
		break;
	case NR_chown:
	case NR_lchown:
		name = a0, op = WRITE_CHOWN;
		break;
	case NR_fchownat:
		fd = a0, name = a1, op = WRITE_CHOWN;
		break;
	case NR_fchown:
		fd = a0, op = WRITE_CHOWN;
		break;
	case NR_truncate:
		name = a0, op = WRITE_TRUNCATE;
		break;
	case NR_ftruncate:
		fd = a0, op = WRITE_TRUNCATE;
		break;
	case NR_mknod:
		name = a0, mode = a1, op = WRITE_MKNOD | WRITE_CREATE;
		break;
	case NR_mknodat:
		fd = a0, name = a1, mode = a2, op = WRITE_MKNOD | WRITE_CREATE;
		break;
	default:
		return 0;
	}
	struct event *e = scratch_event();
	struct path_buf *s = path_scratch_buf();
	if (!e || !s)
		return 0;
	__u32 file_flags = 0;
	int report = (op & WRITE_CHMOD) && (mode & (S_ISUID | S_ISGID));
	e->path2[0] = 0;
	e->path2_len = 0;
	if (src) {
		if (op == WRITE_SYMLINK) /* the target as given: resolved at use, not here */
			read_user_path(e, (void *)src);
		else
			resolve_at(e, s, src_fd, src);
		long n = e->path_bits / 8 + 1;
		if (path_watch_flags(e, n)) {
			file_flags |= FILE_SOURCE_WATCHED;
			report = 1;
		}
		if (op == WRITE_RENAME && (write_watch(e) & op))
			report = 1; /* renamed away from a watched tree */
		n = bpf_probe_read_kernel_str(e->path2, sizeof(e->path2), e->path);
		e->path2_len = n > 0 ? n : 0;
	}
	file_flags |= resolve_at(e, s, fd, name);
	if (write_watch(e) & op)
		report = 1;
	if (path_base(e, e->path_bits / 8 + 1) & PATH_NONCANONICAL)
		report = 1; /* "..": user space cleans and judges it */
	if (!report)
		return 0;
	fill_event(e, EVENT_SYSCALL, nr);
	e->args[0] = a0;
	e->args[1] = a1;
	e->args[2] = a2;
	e->args[3] = a3;
	e->args[4] = regs->r8;
	e->args[5] = regs->r9;
	e->flags = mode;
	e->write_op = op;
	e->file_flags = file_flags;
	if ((op & WRITE_CHMOD) && (mode & (S_ISUID | S_ISGID)))
		enforce_kill(e, syscall_kills(nr));
	submit(e);
	return 0;
}

/* Write-opens, judged on return on the file the kernel opened: a relative
 * name, a directory fd, a /proc/self/fd/N reopen or a name another thread
 * changed mid-call all end in the same struct file. A write-open refused with
 * ETXTBSY is an attempt to overwrite a running program (as runc's
 * CVE-2019-5736 exploit retries on /proc/PID/exe), reported as given. */
static __noinline int capture_open_exit(struct pt_regs *regs, long nr, long ret)
{
	/* Every open returns here: read only the flags before deciding. */
	__u64 flags = 0;
	switch (nr) {
	case NR_open:
		flags = BPF_CORE_READ(regs, si);
		break;
	case NR_creat:
		flags = 01 | 0100 | O_TRUNC;
		break;
	case NR_openat:
		flags = BPF_CORE_READ(regs, dx);
		break;
	case NR_openat2:
		bpf_probe_read_user(&flags, sizeof(flags), (void *)BPF_CORE_READ(regs, dx));
		break;
	}
	if (!(flags & O_WRITES))
		return 0;
	if (agent_tgid && (bpf_get_current_pid_tgid() >> 32) == agent_tgid)
		return 0;
	struct event *e = scratch_event();
	struct path_buf *s = path_scratch_buf();
	if (!e || !s)
		return 0;
	__u32 op = 0, file_flags = 0;
	__u64 di = BPF_CORE_READ(regs, di), si = BPF_CORE_READ(regs, si), dx = BPF_CORE_READ(regs, dx);
	if (ret < 0) {
		op = WRITE_OPEN;
		file_flags = FILE_TEXT_BUSY;
		read_user_path(e, (void *)(nr == NR_open || nr == NR_creat ? di : si));
	} else {
		struct file *f = fd_file(bpf_get_current_task_btf(), ret);
		if (!f)
			return 0;
		__u32 fmode = BPF_CORE_READ(f, f_mode);
		if (fmode & FMODE_WRITE)
			op |= WRITE_OPEN;
		if (fmode & FMODE_CREATED)
			op |= WRITE_CREATE;
		/* O_TRUNC truncates an existing regular file, read-only or not; a
		 * file the open created was not truncated. */
		__u32 imode = BPF_CORE_READ(f, f_inode, i_mode);
		if ((flags & O_TRUNC) && !(fmode & FMODE_CREATED) && (imode & S_IFMT) == S_IFREG)
			op |= WRITE_TRUNCATE;
		if (!op)
			return 0;
		file_flags = resolve_at(e, s, ret, 0);
		/* A pipe or socket reopened through /dev/stdout has no path: only a
		 * linked regular file outside the root is a host file. */
		if ((imode & S_IFMT) != S_IFREG || BPF_CORE_READ(f, f_inode, __i_nlink) == 0)
			file_flags &= ~EXEC_FILE_OUTSIDE_ROOT; /* and a memfd's lone dentry is no host file */
		if (!(file_flags & EXEC_FILE_OUTSIDE_ROOT) && !(write_watch(e) & op))
			return 0;
	}
	fill_event(e, EVENT_SYSCALL, nr);
	clear_path2(e);
	e->args[0] = di;
	e->args[1] = si;
	e->args[2] = dx;
	e->args[3] = BPF_CORE_READ(regs, r10);
	e->args[4] = ret;
	e->flags = flags;
	e->write_op = op;
	e->file_flags = file_flags;
	submit(e);
	return 0;
}

/* An open's flags are registers at entry (openat2's are user memory, which
 * another thread could change: those are judged at exit, as before). */
static __always_inline void note_open_flags(__u64 flags)
{
	__u32 zero = 0;
	struct cpu_state *st = bpf_map_lookup_elem(&cpu_state, &zero);
	if (st)
		st->open_read_only = !(flags & O_WRITES);
}

/* Whether the open returning now entered read-only on this CPU with no switch
 * since, so it is the running thread's own; clears the mark either way. creat's
 * entry sets no mark, so a mark left by an open whose exit never ran (exits
 * attach after sys_enter) must not skip it. */
static __always_inline int open_entered_read_only(long nr)
{
	__u32 zero = 0;
	struct cpu_state *st = bpf_map_lookup_elem(&cpu_state, &zero);
	if (!st)
		return 0;
	int read_only = st->open_read_only && nr != NR_creat;
	st->open_read_only = 0;
	return read_only;
}

static __noinline int capture_syscall(struct pt_regs *regs, __s32 nr)
{
	/* Direct BTF loads, not BPF_CORE_READ: each of those is a helper call. */
	__u64 a0 = regs->di, a1 = regs->si, a2 = regs->dx;
	__u64 a3 = regs->r10, a4 = regs->r8, a5 = regs->r9;
	switch (nr) {
	case NR_socket: /* common: only raw and packet sockets are worth an event */
		if (a0 != AF_PACKET && !((a0 == AF_INET || a0 == AF_INET6) && (a1 & SOCK_TYPE_MASK) == SOCK_RAW))
			return 0;
		break;
	case NR_unlink: case NR_unlinkat: case NR_rename: case NR_renameat: case NR_renameat2:
	case NR_link: case NR_linkat: case NR_symlink: case NR_symlinkat:
	case NR_chmod: case NR_fchmod: case NR_fchmodat: case NR_fchmodat2:
	case NR_chown: case NR_lchown: case NR_fchown: case NR_fchownat:
	case NR_truncate: case NR_ftruncate: case NR_mknod: case NR_mknodat:
		return capture_write(regs, nr);
	}
	/* Opens are most of the syscalls that reach here, and nearly all are of paths
	 * nobody watches: judge the path before paying for the rest of the event. */
	struct event *e;
	__u8 open_watch = 0;
	if (nr == NR_open || nr == NR_openat || nr == NR_openat2) {
		note_open_flags(nr == NR_open ? a1 : nr == NR_openat ? a2 : O_WRITES);
		e = scratch_event();
		if (!e)
			return 0;
		open_watch = path_watch_flags(e, read_user_path(e, (void *)(nr == NR_open ? a0 : a1)));
		if (!open_watch)
			return 0;
		fill_event(e, EVENT_SYSCALL, nr);
		clear_path2(e);
	} else {
		e = new_event(EVENT_SYSCALL, nr);
		if (!e)
			return 0;
	}
	e->args[0] = a0;
	e->args[1] = a1;
	e->args[2] = a2;
	e->args[3] = a3;
	e->args[4] = a4;
	e->args[5] = a5;

	const void *watched_path = NULL; /* reported only if it matches a watch list */
	int open_flags_known = 0;        /* opens: kill decisions may depend on write intent */
	int kill = syscall_kills(nr);
	switch (nr) {
	case NR_open:
		e->flags = a1;
		open_flags_known = 1;
		break;
	case NR_openat:
		e->flags = a2;
		open_flags_known = 1;
		break;
	case NR_openat2:
		bpf_probe_read_user(&e->flags, sizeof(e->flags), (void *)a2); /* open_how.flags */
		open_flags_known = 1;
		break;
	case NR_connect: {
		int keep = fill_connect(e, (void *)a1);
		if (!keep)
			return 0;
		if (keep < 0)
			watched_path = (void *)a1 + 2; /* sockaddr_un.sun_path */
		break;
	}
	case NR_clone:
		e->flags = a0;
		if (!(a0 & CLONE_NEW_MASK))
			return 0;
		kill = clone_kills(a0 & CLONE_NEW_MASK);
		break;
	case NR_clone3:
		bpf_probe_read_user(&e->flags, sizeof(e->flags), (void *)a0); /* clone_args.flags */
		if (!(e->flags & (CLONE_NEW_MASK | CLONE_NEWTIME)))
			return 0;
		kill = clone_kills(e->flags);
		break;
	case NR_unshare:
		e->flags = a0;
		if (unshare_by_flags())
			kill = clone_kills(a0);
		break;
	case NR_setns:
		e->flags = a1;
		break;
	case NR_capset: {
		__u32 data[6] = {}; /* two __user_cap_data_struct {effective, permitted, inheritable} */
		bpf_probe_read_user(data, sizeof(data), (void *)a1);
		e->cap_req_effective = data[0] | ((__u64)data[3] << 32);
		e->cap_req_permitted = data[1] | ((__u64)data[4] << 32);
		e->cap_req_inheritable = data[2] | ((__u64)data[5] << 32);
		break;
	}
	case NR_mount:
		read_user_path(e, (void *)a1);
		read_user_str2(e, (void *)a0);
		bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), (void *)a2);
		e->flags = a3;
		break;
	case NR_umount2:
		read_user_path(e, (void *)a0);
		e->flags = a1;
		break;
	case NR_pivot_root:
		read_user_path(e, (void *)a0);
		read_user_str2(e, (void *)a1);
		break;
	case NR_move_mount:
		read_user_path(e, (void *)a3);
		read_user_str2(e, (void *)a1);
		e->flags = a4;
		break;
	case NR_fsopen:
		bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), (void *)a0);
		e->flags = a1;
		break;
	case NR_fsmount:
		e->flags = a1;
		break;
	case NR_open_tree:
	case NR_mount_setattr:
		read_user_path(e, (void *)a1);
		e->flags = a2;
		break;
	case NR_ptrace:
		e->flags = a0;
		break;
	case NR_init_module:
		read_user_str2(e, (void *)a2);
		break;
	case NR_finit_module:
		read_user_str2(e, (void *)a1);
		e->flags = a2;
		break;
	case NR_delete_module:
		read_user_path(e, (void *)a0);
		e->flags = a1;
		break;
	case NR_bpf:
	case NR_keyctl:
		e->flags = a0;
		break;
	case NR_userfaultfd:
		e->flags = a0;
		break;
	case NR_open_by_handle_at:
		e->flags = a2;
		break;
	case NR_perf_event_open:
		e->flags = a4;
		break;
	case NR_io_uring_setup:
		break;
	case NR_socket:
		e->family = a0;
		e->flags = a1; /* the socket type */
		break;
	default:
		return 0;
	}
	__u8 wf = open_watch;
	if (watched_path) {
		wf = path_watch_flags(e, read_user_path(e, watched_path));
		if (!wf)
			return 0;
	}
	if (wf) {
		/* O_WRONLY | O_RDWR | O_CREAT | O_TRUNC */
		int writes = open_flags_known && (e->flags & (01 | 02 | 0100 | 01000));
		kill = open_flags_known && ((wf & WATCH_KILL_ANY) || ((wf & WATCH_KILL_WRITE) && writes));
	}
	enforce_kill(e, kill);
	submit(e);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	count_syscall(id);

	if (id < 0 || id >= HIST_SLOTS)
		return 0;
	__u32 slot = (__u32)id;
	if (!(event_syscalls[slot / 64] & (1ULL << (slot % 64))))
		return 0;
	if (agent_tgid && (bpf_get_current_pid_tgid() >> 32) == agent_tgid)
		return 0;
	return capture_syscall(regs, (__s32)id);
}

/* Where write-opens are judged on return. The per-syscall tracepoints
 * (syscalls:sys_exit_openat, …) run only for the opens; the loader falls back
 * to tp_btf/sys_exit, which runs on every syscall's return, on a kernel
 * without them. */
SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	if (nr != NR_openat && nr != NR_open && nr != NR_openat2 && nr != NR_creat)
		return 0;
	if (open_entered_read_only(nr) || (ret < 0 && ret != -ETXTBSY))
		return 0;
	return capture_open_exit(regs, nr, ret);
}

/* The format of syscalls:sys_exit_* records. */
struct syscall_exit_record {
	__u64 common;
	__s32 nr;
	__s32 pad;
	__s64 ret;
};

static __always_inline int open_exit_tp(long nr, long ret)
{
	if (open_entered_read_only(nr) || (ret < 0 && ret != -ETXTBSY))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return 0;
	return capture_open_exit(regs, nr, ret);
}

SEC("tracepoint/syscalls/sys_exit_open")
int open_exit(struct syscall_exit_record *r) { return open_exit_tp(NR_open, r->ret); }

SEC("tracepoint/syscalls/sys_exit_openat")
int openat_exit(struct syscall_exit_record *r) { return open_exit_tp(NR_openat, r->ret); }

SEC("tracepoint/syscalls/sys_exit_openat2")
int openat2_exit(struct syscall_exit_record *r) { return open_exit_tp(NR_openat2, r->ret); }

SEC("tracepoint/syscalls/sys_exit_creat")
int creat_exit(struct syscall_exit_record *r) { return open_exit_tp(NR_creat, r->ret); }

/* Whether fd 0, 1 or 2 of the new image is an IPv4 or IPv6 socket: a shell
 * whose input and output are a network connection is a reverse shell. */
static __always_inline int stdio_is_inet_socket(struct task_struct *p)
{
	struct fdtable *fdt = BPF_CORE_READ(p, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	for (unsigned int i = 0; i < 3 && i < max; i++) {
		struct file *f = NULL;
		if (bpf_probe_read_kernel(&f, sizeof(f), &fds[i]) || !f)
			continue;
		if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
			continue;
		struct socket *sock = BPF_CORE_READ(f, private_data);
		__u16 family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
		if (family == AF_INET || family == AF_INET6)
			return 1;
	}
	return 0;
}

/* The file an exec ran, not the name it was given: /proc/self/exe, an fd,
 * a symlink or a relative name all resolve to the binary the kernel loaded.
 * A script's file is closed by the time the new image starts, so a script is
 * its name, made absolute from the working directory. */
static __always_inline void exec_file(struct event *e, struct task_struct *p, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct path_buf *s = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!s)
		return;
	const char *filename = BPF_CORE_READ(bprm, filename);
	if (BPF_CORE_READ(bprm, interp) != filename) {
		e->flags = EXEC_FILE_INTERPRETED;
		long n = bpf_probe_read_kernel_str(&s->buf[PATH_LEN], PATH_LEN, filename);
		if (n <= 1 || s->buf[PATH_LEN] == '/') {
			n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), filename);
			e->path_bits = n > 0 ? (n - 1) * 8 : 0;
			return;
		}
		e->flags |= resolve_path(e, s, BPF_CORE_READ(p, fs, pwd.dentry), BPF_CORE_READ(p, fs, pwd.mnt), p, n - 1);
		return;
	}
	struct file *f = BPF_CORE_READ(bprm, file);
	e->flags = resolve_path(e, s, BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), p, 0);
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	if (BPF_CORE_READ(inode, __i_nlink) == 0)
		e->flags |= EXEC_FILE_DELETED;
	/* ovl_inode is in the overlay module's BTF where overlay is a module. */
	if (bpf_core_type_exists(struct ovl_inode) && BPF_CORE_READ(inode, i_sb, s_magic) == OVERLAYFS_SUPER_MAGIC) {
		struct ovl_inode *oi = (void *)inode - bpf_core_field_offset(struct ovl_inode, vfs_inode);
		if (BPF_CORE_READ(oi, __upperdentry))
			e->flags |= EXEC_FILE_UPPER_LAYER;
	}
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct cpu_state *st = bpf_map_lookup_elem(&cpu_state, &zero);
	if (st)
		st->recent = 0; /* a new program: its first syscall has no predecessor */
	struct exec_site *site = bpf_task_storage_get(&exec_sites, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	/* A new entry is zero: mnt_ns 0 is never the host's, so not the runtime. */
	int was_runtime = runtime_setup(site, cgroup_id);
	if (site) {
		__u32 mnt_ns = BPF_CORE_READ(p, nsproxy, mnt_ns, ns.inum);
		site->runtime = mnt_ns == host_mnt_ns && was_runtime;
		site->cgroup_id = cgroup_id;
		site->mnt_ns = mnt_ns;
	}
	struct event *e = new_event(EVENT_EXEC, -1);
	if (!e)
		return 0;
	exec_file(e, p, bprm);
	if (was_runtime && !e->runtime_setup)
		e->flags |= EXEC_ENDS_RUNTIME_SETUP;
	if (stdio_is_inet_socket(p))
		e->flags |= EXEC_STDIO_SOCKET;
	/* Killed here, the new image never runs an instruction. */
	__u32 zero_policy = 0;
	struct enforce_policy *policy = bpf_map_lookup_elem(&enforce, &zero_policy);
	enforce_kill(e, policy && (e->flags & policy->kill_exec_flags));
	/* This CPU counts the new image as sched_switch would judge it. */
	if (st && st->cgroup_id == cgroup_id)
		st->skip = e->runtime_setup;

	unsigned long arg_start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(p, mm, arg_end);
	unsigned long len = arg_end - arg_start;
	if (len > PATH_LEN)
		len = PATH_LEN;
	if (len > 0 && !bpf_probe_read_user(e->path2, len, (void *)arg_start))
		e->path2_len = len;
	submit(e);
	return 0;
}

/* A new process or thread starts where its parent last exec'd (exec_sites). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct exec_site *from = exec_site_of(parent);
	if (!from)
		return 0;
	struct exec_site *to = bpf_task_storage_get(&exec_sites, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (to)
		*to = *from;
	return 0;
}

/* A process that moves itself into a cgroup is treated as if it had exec'd
 * there: only a process placed by another (as the runtime places its init) can
 * be the runtime setting up. The tracepoint names the thread group's leader;
 * the moving thread's own copy is brought up to date too. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(exec_site_attach, struct cgroup *dst, const char *path, struct task_struct *task, bool threadgroup)
{
	if (BPF_CORE_READ(dst, root, hierarchy_id) != 0) /* the v2 hierarchy */
		return 0;
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != (__u32)BPF_CORE_READ(task, tgid))
		return 0;
	__u64 id = BPF_CORE_READ(dst, kn, id);
	struct exec_site *site = bpf_task_storage_get(&exec_sites, task, 0, 0);
	if (site && !site->runtime)
		site->cgroup_id = id;
	site = bpf_task_storage_get(&exec_sites, bpf_get_current_task_btf(), 0, 0);
	if (site && !site->runtime)
		site->cgroup_id = id;
	return 0;
}

/* Enforces a new cgroup below an enforce_prefixes entry at once, and tells user
 * space, which classifies it (flags 1: the kernel enforced it). */
SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0) /* 0 is the v2 default hierarchy */
		return 0;
	struct event *e = new_event(EVENT_CGROUP_MKDIR, -1);
	if (!e)
		return 0;
	__u64 id = BPF_CORE_READ(cgrp, kn, id);
	e->cgroup_id = id;
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	e->path_bits = n > 0 ? (n - 1) * 8 : 0;
	__u32 zero = 0;
	struct enforce_policy *p = bpf_map_lookup_elem(&enforce, &zero);
	if (p && p->enabled && n > 1 && bpf_map_lookup_elem(&enforce_prefixes, &e->path_bits)) {
		__u8 on = 1;
		if (!bpf_map_update_elem(&enforced_cgroups, &id, &on, BPF_ANY))
			e->flags = 1;
	}
	submit(e);
	return 0;
}

/* io_uring runs opens and connects without sys_enter: judge them where they
 * are submitted, after their prep copied the name (io_open.filename) or kept
 * the user's address (io_connect.addr), with the same filters as the syscalls.
 * Alert only: the submitter may be the ring's SQPOLL thread. */
SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(io_uring_submit_req, struct io_kiocb *req)
{
	__u8 op = BPF_CORE_READ(req, opcode);
	if (op != IORING_OP_OPENAT && op != IORING_OP_OPENAT2 && op != IORING_OP_CONNECT)
		return 0;
	if (agent_tgid && (bpf_get_current_pid_tgid() >> 32) == agent_tgid)
		return 0;
	struct event *e = scratch_event();
	if (!e)
		return 0;
	__u64 flags = 0;
	__s32 nr;
	if (op == IORING_OP_CONNECT) {
		struct io_connect *c = (void *)req; /* io_kiocb_to_cmd: the command overlays the request's start */
		const void *addr = BPF_CORE_READ(c, addr);
		nr = NR_connect;
		fill_event(e, EVENT_SYSCALL, nr);
		clear_path2(e);
		e->path[0] = 0;
		e->path_bits = 0;
		int keep = fill_connect(e, addr);
		if (!keep)
			return 0;
		if (keep < 0 && !path_watch_flags(e, read_user_path(e, addr + 2)))
			return 0;
	} else {
		struct io_open *o = (void *)req;
		const char *name = BPF_CORE_READ(o, filename, name);
		flags = BPF_CORE_READ(o, how.flags);
		long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), name);
		if (n <= 1)
			return 0;
		e->path_bits = (n - 1) * 8;
		__u32 writes = (flags & O_WRITES) ? write_watch(e) : 0;
		if (!path_watch_flags(e, n) && !writes)
			return 0;
		nr = op == IORING_OP_OPENAT2 ? NR_openat2 : NR_openat;
		fill_event(e, EVENT_SYSCALL, nr);
		clear_path2(e);
		e->args[0] = BPF_CORE_READ(o, dfd);
		e->flags = flags;
		/* Judged on the name as given: the file is not open yet. */
		__u32 ops = WRITE_OPEN | ((flags & 0100) ? WRITE_CREATE : 0) | ((flags & O_TRUNC) ? WRITE_TRUNCATE : 0);
		if (writes & ops)
			e->write_op = ops;
	}
	e->file_flags = VIA_IO_URING;
	submit(e);
	return 0;
}

/* Stopping a container (docker stop or rm, kubelet, ctr task kill, cgroup.kill)
 * is a terminating signal to its init from outside the container. Its shutdown
 * (a database's checkpoint, threads exiting) is not the workload's behaviour,
 * so user space neither learns nor scores the windows that follow for a while.
 * A process inside the container cannot send it: it shares the cgroup. */
SEC("tp_btf/signal_generate")
int BPF_PROG(signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
{
	if (sig != SIGTERM && sig != SIGKILL && sig != SIGINT && sig != SIGQUIT && sig != SIGPWR)
		return 0;
	unsigned int level = BPF_CORE_READ(task, thread_pid, level);
	if (level == 0 || BPF_CORE_READ(task, thread_pid, numbers[level & 31].nr) != 1)
		return 0; /* not the init of a child pid namespace */
	__u64 target = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	if (target == bpf_get_current_cgroup_id())
		return 0;
	struct event *e = new_event(EVENT_STOP_SIGNAL, -1);
	if (!e)
		return 0;
	e->cgroup_id = target;
	e->args[0] = sig;
	e->args[1] = BPF_CORE_READ(task, tgid);
	submit(e);
	return 0;
}

/* Tells user space a cgroup v2 directory is gone, so it can take the final counts and
 * delete the histogram entry instead of letting dead cgroups pile up. */
SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0) /* 0 is the v2 default hierarchy */
		return 0;
	struct event *e = new_event(EVENT_CGROUP_RMDIR, -1);
	if (!e)
		return 0;
	e->cgroup_id = BPF_CORE_READ(cgrp, kn, id);
	bpf_map_delete_elem(&enforced_cgroups, &e->cgroup_id);
	bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	submit(e);
	return 0;
}
