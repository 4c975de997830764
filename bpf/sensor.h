/* Structs shared by the sensor's BPF programs and its Go decoder (bpf2go -type). */
#ifndef CAGEWATCH_SENSOR_H
#define CAGEWATCH_SENSOR_H

#define HIST_SLOTS 512 /* x86_64 syscall numbers end below 512; the last slot counts the rest */
#define PATH_LEN 256   /* also the LPM trie's key data size (LPM_DATA_SIZE_MAX) */
#define NAME_LEN 64
#define COMM_LEN 16
#define FSTYPE_LEN 16

enum event_kind {
	EVENT_SYSCALL = 1,
	EVENT_EXEC = 2,
	EVENT_CGROUP_RMDIR = 3,
	EVENT_CGROUP_MKDIR = 4,
	/* A terminating signal sent from outside a container to its init: the
	 * runtime stopping it. cgroup_id is the container's; args[0] the signal,
	 * args[1] the init's tgid; the other fields describe the sender. */
	EVENT_STOP_SIGNAL = 5,
};

/* Indexes of the per-CPU stats array; user space sums them. */
enum stat_index {
	STAT_EVENTS = 0,      /* events written to the ring buffer */
	STAT_EVENTS_LOST = 1, /* ring buffer full: event dropped */
	STAT_HIST_FULL = 2,   /* no free histogram slot: syscall not counted */
	STAT_PATH_FAULT = 3,  /* user path unreadable at syscall entry */
	STAT_KILLED = 4,      /* processes sent SIGKILL in enforce mode */
	STAT_MAX = 5,
};

/* Values in the watch maps: report the open, and in enforce mode kill the caller. */
enum watch_flag {
	WATCH_REPORT = 1,
	WATCH_KILL_WRITE = 2, /* kill when opened for writing */
	WATCH_KILL_ANY = 4,   /* kill on any open */
};

/* Exec events: what kind of file ran (in event.flags). */
enum exec_file_flag {
	EXEC_FILE_DELETED = 1,      /* unlinked when it ran: a memfd, or fexecve of a deleted file */
	EXEC_FILE_OUTSIDE_ROOT = 2, /* not below the process's root directory (a memfd, a host file via an fd) */
	EXEC_FILE_TRUNCATED = 4,    /* path too long or too deep: path is its tail */
	/* A script: path is the script as named, made absolute from the working
	 * directory (its interpreter is argv[0]); the kernel no longer holds the
	 * script's file when the new image starts. */
	EXEC_FILE_INTERPRETED = 8,
	/* The runtime's init exec'd the workload (or a docker exec's command): the
	 * runtime's setup of the container ends here. */
	EXEC_ENDS_RUNTIME_SETUP = 16,
	EXEC_STDIO_SOCKET = 32, /* fd 0, 1 or 2 is an IPv4/IPv6 socket */
	/* File writes (event.file_flags; OUTSIDE_ROOT and TRUNCATED as above). */
	FILE_TEXT_BUSY = 64,   /* write-open refused (ETXTBSY): the file is a running program */
	FILE_SOURCE_WATCHED = 128, /* link/symlink/rename: its source is on the watch lists */
	FILE_UNRESOLVED = 256, /* the directory fd was not open: path is the name as given */
	VIA_IO_URING = 512,    /* an open or connect submitted through io_uring, which never passes sys_enter */
	/* Exec: the file is in an overlayfs upper layer, i.e. written or changed
	 * after the container started (Falco's exe_upper_layer). */
	EXEC_FILE_UPPER_LAYER = 1024,
};

/* What a file write did (event.write_op), judged on the file the kernel opened
 * or on the name resolved against its directory. */
enum write_op {
	WRITE_OPEN = 1,     /* opened for writing */
	WRITE_CREATE = 2,   /* created (open, creat, mknod) */
	WRITE_TRUNCATE = 4, /* O_TRUNC, truncate, ftruncate */
	WRITE_RENAME = 8,   /* renamed onto (path) or away (path2) */
	WRITE_LINK = 16,    /* hard link: path is the new name, path2 the file */
	WRITE_SYMLINK = 32, /* symlink: path is the new name, path2 the target as given */
	WRITE_UNLINK = 64,
	WRITE_CHMOD = 128,
	WRITE_CHOWN = 256,
	WRITE_MKNOD = 512,
};

/* Enforce-mode policy, one entry, filled by user space from the rules with action kill. */
struct enforce_policy {
	__u64 kill_syscalls[HIST_SLOTS / 64]; /* bit n: syscall n kills */
	__u64 kill_clone_flags;               /* clone/clone3 with any of these flags kill */
	__u32 enabled;
	__u32 kill_unshare_by_flags;          /* unshare kills when its flags meet kill_clone_flags */
	__u64 kill_exec_flags;                /* an exec with any of these exec_file_flag bits kills */
};

/* Order: each syscall is counted once more with up to three predecessors of
 * its thread (a 4-gram), in an open-addressed table per slot. A key packs four
 * GRAM_BITS fields, oldest first: 0 is "no predecessor" (the thread's first
 * syscalls, or its first since exec), n+1 is syscall n, and GRAM_OTHER the rest. A key is
 * never 0, so an empty entry is 0. The count sits above the key and wraps in
 * its GRAM_COUNT_BITS; user space takes differences modulo that. */
#define GRAM_TABLE_LOG2 10
#define GRAM_TABLE (1 << GRAM_TABLE_LOG2) /* entries per slot */
#define GRAM_PROBES 8   /* a full probe run counts in grams_lost */
#define GRAM_BITS 9
#define GRAM_OTHER ((1 << GRAM_BITS) - 1)
#define GRAM_KEY_BITS (4 * GRAM_BITS)
#define GRAM_KEY_MASK ((1ULL << GRAM_KEY_BITS) - 1)
#define GRAM_RECENT_MASK ((1ULL << (3 * GRAM_BITS)) - 1)
#define GRAM_ONE (1ULL << GRAM_KEY_BITS)
#define GRAM_COUNT_BITS (64 - GRAM_KEY_BITS)

/* One cgroup's counts on one CPU; cgroup_id and cpu name the slot's owner
 * (cgroup_id 0: free). Only that CPU writes the counts, so they need no atomics. */
struct hist {
	__u64 cgroup_id;
	__u32 cpu;
	__u32 pad;
	__u64 seen[HIST_SLOTS / 64]; /* bit n: syscall n counted; user space reads only those */
	__u64 counts[HIST_SLOTS];
	__u64 grams_lost; /* syscalls whose 4-gram found no entry */
	__u64 grams[GRAM_TABLE];
};

struct prefix_key {
	__u32 prefixlen; /* bits */
	char data[PATH_LEN];
};

struct event {
	__u64 ts_boot_ns;
	__u64 cgroup_id;
	__u64 cap_effective;
	__u64 proc_start_ns;   /* thread group leader's start time: with tgid, a process identity that survives PID reuse */
	__u64 args[6];          /* raw syscall arguments */
	__u64 flags;            /* decoded flags: clone/clone3/unshare/mount/openat2... */
	__u64 cap_req_effective; /* capset: requested sets */
	__u64 cap_req_permitted;
	__u64 cap_req_inheritable;
	__u32 kind;
	__s32 nr;
	__u32 pid;  /* thread id */
	__u32 tgid; /* process id */
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 mnt_ns;
	__u32 pid_ns;
	__u32 net_ns;
	__u32 user_ns;
	__u32 cgroup_ns;
	__u32 path2_len;
	__u32 killed; /* the sensor sent SIGKILL for this event (enforce mode) */
	/* The process is a container runtime's init setting up or entering a
	 * container (see exec_sites). */
	__u32 runtime_setup;
	__u32 write_op;   /* file writes: enum write_op bits */
	__u32 file_flags; /* file writes: FILE_* and EXEC_FILE_* bits */
	__u16 family;
	__u16 port;
	__u8 addr[16];
	char comm[COMM_LEN];
	char fstype[FSTYPE_LEN];
	/* path_bits and path form a struct prefix_key, so the trie lookup needs no copy. */
	__u32 path_bits;
	char path[PATH_LEN];
	char path2[PATH_LEN]; /* mount source, pivot_root put_old, exec argv (NUL separated) */
};

#endif
