package model

import (
	"reflect"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/home/*/.ssh/id_*", "/home/dev/.ssh/id_rsa", true},
		{"/home/*/.ssh/id_*", "/home/dev/sub/.ssh/id_rsa", false}, // * stays in one element
		{"/home/*/.ssh/id_*", "/home/dev/.ssh/id_rsa.pub", true},
		{"/home/*/.**", "/home/dev/.config/fish/config.fish", true},
		{"/home/*/.**", "/home/dev/notes", false},
		{"**/.aws/credentials", "/srv/app/.aws/credentials", true},
		{"**/.aws/credentials", ".aws/credentials", false},
		{"**/.aws/credentials", "/srv/.aws/credentials.bak", false},
		{"**/__pycache__/**", "/usr/lib/python3/__pycache__/os.pyc", true},
		{"/etc/ssh/ssh_host_*_key", "/etc/ssh/ssh_host_rsa_key", true},
		{"/etc/ssh/ssh_host_*_key", "/etc/ssh/ssh_host_rsa_key.pub", false},
		{"/exact", "/exact", true},
		{"/exact", "/exactly", false},
		{"/a/[b]?", "/a/[b]?", true},
	}
	for _, tt := range tests {
		if got := GlobMatch(tt.pattern, tt.path); got != tt.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestWriteClass(t *testing.T) {
	for path, want := range map[string]string{
		"/etc/passwd":                    "/etc/passwd",
		"/etc/nginx/conf.d/default.conf": "/etc/nginx/",
		"/root/.bashrc":                  "/root/.bashrc",
		"/root/.ssh/authorized_keys":     "/root/.ssh/",
		"/home/alice/.bashrc":            "/home/*/.bashrc",
		"/home/bob/.ssh/authorized_keys": "/home/*/.ssh/",
		"/var/log/nginx/access.log":      "/var/log/nginx/",
		"/var/log/wtmp":                  "/var/log/wtmp",
		"/usr/local/bin/app":             "/usr/local/bin/",
		"/etc//./passwd":                 "/etc/passwd",
		"relative":                       "relative",
	} {
		if got := WriteClass(path); got != want {
			t.Errorf("WriteClass(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestMergeExceptions: merging two baselines' exceptions equals learning both.
func TestMergeExceptions(t *testing.T) {
	hits := [][3]string{
		{"kernel_attack_surface", "/usr/sbin/mariadbd", "io_uring_setup"},
		{"fs_write_drift", "/bin/sed", "/etc/nginx/"},
		{"kernel_attack_surface", "/usr/sbin/mariadbd", "io_uring_setup"},
		{"credential_read", "comm:app", "/run/secrets/kubernetes.io/serviceaccount/token"},
	}
	together, a, b := NewBaseline("x", "1", ""), NewBaseline("x", "1", ""), NewBaseline("x", "1", "")
	for i, h := range hits {
		together.AddException(h[0], h[1], h[2])
		if i%2 == 0 {
			a.AddException(h[0], h[1], h[2])
		} else {
			b.AddException(h[0], h[1], h[2])
		}
	}
	aBefore := a.Exceptions.clone()
	merged := a.Clone()
	if err := merged.Merge(b, DefaultSampleSize); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(merged.Exceptions, together.Exceptions) {
		t.Errorf("merged %v, want %v", merged.Exceptions, together.Exceptions)
	}
	if !reflect.DeepEqual(a.Exceptions, aBefore) {
		t.Errorf("merging into a clone changed the original: %v, was %v", a.Exceptions, aBefore)
	}
	if merged.Exceptions["kernel_attack_surface"]["/usr/sbin/mariadbd"]["io_uring_setup"] != 2 {
		t.Errorf("hits not summed: %v", merged.Exceptions)
	}
}
