package model

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func seccompBaseline() *Baseline {
	b := NewBaseline("registry.example/shop/api", "v1", "")
	for _, name := range []string{"read", "write", "epoll_wait", "accept4", "sendto", "recvfrom", "other", "sys_999", "not_a_syscall"} {
		b.Syscalls[name] = Moments{N: 1, Mean: 1, Max: 1}
	}
	for _, name := range []string{"clone3", "statx", "read", "sys_600", "other"} {
		b.Startup[name] = 2
	}
	return b
}

func TestSeccompAllowList(t *testing.T) {
	tests := []struct {
		name        string
		b           *Baseline
		mustAllow   []string
		mustNotHave []string
	}{
		{
			name:      "learned and startup syscalls",
			b:         seccompBaseline(),
			mustAllow: []string{"read", "write", "epoll_wait", "accept4", "sendto", "recvfrom", "clone3", "statx", "execve"},
			// Syscalls the image never made must stay denied, including the ones an
			// escape would need; names the runtime cannot resolve are left out.
			mustNotHave: []string{"other", "sys_999", "sys_600", "not_a_syscall", "ptrace", "mount", "unshare", "setns",
				"bpf", "init_module", "finit_module", "kexec_load", "pivot_root", "open_by_handle_at", "keyctl",
				"add_key", "process_vm_writev", "userfaultfd", "perf_event_open", "umount2", "chroot"},
		},
		{
			name:      "empty baseline still starts",
			b:         NewBaseline("x", "", ""),
			mustAllow: []string{"execve", "exit_group", "read", "write", "mmap", "brk", "rt_sigreturn"},
			mustNotHave: []string{"ptrace", "mount", "unshare", "setns", "bpf", "init_module", "pivot_root",
				"open_by_handle_at", "accept4", "connect"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.b.Seccomp()
			if p.DefaultAction != "SCMP_ACT_ERRNO" {
				t.Errorf("defaultAction = %q, want SCMP_ACT_ERRNO", p.DefaultAction)
			}
			if p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
				t.Errorf("defaultErrnoRet = %v, want 1 (EPERM)", p.DefaultErrnoRet)
			}
			if !slices.Contains(p.Architectures, "SCMP_ARCH_X86_64") {
				t.Errorf("architectures = %q, want SCMP_ARCH_X86_64 among them", p.Architectures)
			}
			if len(p.Syscalls) != 1 || p.Syscalls[0].Action != "SCMP_ACT_ALLOW" {
				t.Fatalf("syscalls = %+v, want one SCMP_ACT_ALLOW rule", p.Syscalls)
			}
			names := p.Syscalls[0].Names
			if !slices.IsSorted(names) {
				t.Errorf("names are not sorted: %q", names)
			}
			if len(slices.Compact(slices.Clone(names))) != len(names) {
				t.Errorf("names have duplicates: %q", names)
			}
			for _, n := range names {
				if _, ok := SyscallNumber(n); !ok || n == "other" || strings.HasPrefix(n, "sys_") {
					t.Errorf("name %q is not a syscall the runtime can resolve", n)
				}
			}
			for _, n := range tc.mustAllow {
				if !slices.Contains(names, n) {
					t.Errorf("%q is not allowed", n)
				}
			}
			for _, n := range tc.mustNotHave {
				if slices.Contains(names, n) {
					t.Errorf("%q is allowed, but the image never made it", n)
				}
			}
		})
	}
}

func TestSeccompJSONFieldNames(t *testing.T) {
	raw, err := json.Marshal(seccompBaseline().Seccomp())
	if err != nil {
		t.Fatal(err)
	}
	// Field names as in the OCI runtime spec (config-linux.md#seccomp) and
	// Docker's profile format.
	var doc struct {
		DefaultAction   *string   `json:"defaultAction"`
		DefaultErrnoRet *uint     `json:"defaultErrnoRet"`
		Architectures   *[]string `json:"architectures"`
		Syscalls        *[]struct {
			Names  *[]string `json:"names"`
			Action *string   `json:"action"`
		} `json:"syscalls"`
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"defaultAction", "defaultErrnoRet", "architectures", "syscalls"} {
		if _, ok := generic[key]; !ok {
			t.Errorf("profile JSON %s has no %q", raw, key)
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("profile JSON has fields outside the OCI names: %v\n%s", err, raw)
	}
	if doc.DefaultAction == nil || *doc.DefaultAction != "SCMP_ACT_ERRNO" || doc.Architectures == nil || doc.Syscalls == nil {
		t.Fatalf("profile JSON misses a field: %s", raw)
	}
	for i, rule := range *doc.Syscalls {
		if rule.Names == nil || len(*rule.Names) == 0 || rule.Action == nil || *rule.Action != "SCMP_ACT_ALLOW" {
			t.Errorf("syscalls[%d] = names %v, action %v", i, rule.Names, rule.Action)
		}
	}
	// Exact spelling, not just case-insensitive matching.
	for _, s := range []string{`"defaultAction":"SCMP_ACT_ERRNO"`, `"architectures":[`, `"names":[`, `"action":"SCMP_ACT_ALLOW"`} {
		if !strings.Contains(string(raw), s) {
			t.Errorf("profile JSON does not contain %s", s)
		}
	}
}

func TestSeccompDeterministic(t *testing.T) {
	// The profile is a file users diff and commit: map order must not leak in.
	first, _ := json.Marshal(seccompBaseline().Seccomp())
	for i := 0; i < 20; i++ {
		again, _ := json.Marshal(seccompBaseline().Seccomp())
		if string(again) != string(first) {
			t.Fatalf("profile differs between two runs:\n%s\n%s", first, again)
		}
	}
}
