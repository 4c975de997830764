package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// fakeRoot builds an image root: files (path → content; content "->TARGET"
// makes a symlink) under a temp directory.
func fakeRoot(t *testing.T, files map[string]string) Root {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		host := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, host); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(host, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return Root(dir)
}

func byName(pkgs []model.Package) map[string]model.Package {
	m := map[string]model.Package{}
	for _, p := range pkgs {
		m[p.Name] = p
	}
	return m
}

func TestReadPackages(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string
		wantSource string
		want       map[string][]string // package → runnable files
		wantErr    error
	}{
		{
			name: "dpkg with merged /usr",
			files: map[string]string{
				"/bin": "->usr/bin", "/lib": "->usr/lib",
				"/var/lib/dpkg/status": "Package: coreutils\nStatus: install ok installed\nVersion: 9.1-1\nArchitecture: amd64\nDescription: x\n more\n\n" +
					"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1\nArchitecture: amd64\n\n" +
					"Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n",
				"/var/lib/dpkg/info/coreutils.list":       "/.\n/bin\n/bin/ls\n/bin/cat\n/usr/share/doc/coreutils/copyright\n",
				"/var/lib/dpkg/info/libssl3:amd64.list":   "/.\n/lib/x86_64-linux-gnu/libssl.so.3\n/lib/x86_64-linux-gnu/libssl.so\n",
				"/usr/bin/ls":                             "elf",
				"/usr/bin/cat":                            "elf",
				"/usr/share/doc/coreutils/copyright":      "text",
				"/usr/lib/x86_64-linux-gnu/libssl.so.3":   "elf",
				"/usr/lib/x86_64-linux-gnu/libssl.so":     "->libssl.so.3", // a link is not the file that runs
				"/var/lib/dpkg/info/removed.list":         "/bin/gone\n",
				"/var/lib/dpkg/info/coreutils.md5sums":    "x",
				"/var/lib/dpkg/info/libssl3:amd64.shlibs": "x",
			},
			wantSource: "dpkg",
			want: map[string][]string{
				"coreutils": {"/usr/bin/cat", "/usr/bin/ls"},
				"libssl3":   {"/usr/lib/x86_64-linux-gnu/libssl.so.3"},
			},
		},
		{
			name: "distroless status.d",
			files: map[string]string{
				"/var/lib/dpkg/status.d/base-files":           "Package: base-files\nVersion: 12.4\n",
				"/var/lib/dpkg/status.d/libc6":                "Package: libc6\nVersion: 2.36-9\nStatus: install ok installed\n",
				"/var/lib/dpkg/status.d/libc6.md5sums":        "d41d8cd98f00b204e9800998ecf8427e  lib/x86_64-linux-gnu/libc.so.6\nd41d8cd98f00b204e9800998ecf8427e  usr/share/doc/libc6/copyright\n",
				"/lib/x86_64-linux-gnu/libc.so.6":             "elf",
				"/usr/share/doc/libc6/copyright":              "text",
				"/var/lib/dpkg/status.d/base-files.md5sums":   "d41d8cd98f00b204e9800998ecf8427e  etc/os-release\n",
				"/etc/os-release":                             "x",
				"/var/lib/dpkg/status.d/.hidden-not-a-stanza": "junk",
			},
			wantSource: "dpkg",
			want:       map[string][]string{"base-files": nil, "libc6": {"/lib/x86_64-linux-gnu/libc.so.6"}},
		},
		{
			name: "apk",
			files: map[string]string{
				"/lib/apk/db/installed": "C:Q1abc=\nP:busybox\nV:1.36.1-r5\nA:x86_64\nF:bin\nR:busybox\nF:etc\nR:securetty\n\n" +
					"P:musl\nV:1.2.4-r2\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n",
				"/bin/busybox":               "elf",
				"/etc/securetty":             "x",
				"/lib/ld-musl-x86_64.so.1":   "elf",
				"/lib/libc.musl-x86_64.so.1": "->ld-musl-x86_64.so.1",
			},
			wantSource: "apk",
			want:       map[string][]string{"busybox": {"/bin/busybox"}, "musl": {"/lib/ld-musl-x86_64.so.1"}},
		},
		{
			name:    "no package database",
			files:   map[string]string{"/bin/busybox": "elf"},
			wantErr: ErrNoPackageDB,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source, pkgs, err := ReadPackages(fakeRoot(t, tt.files))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if source != tt.wantSource {
				t.Errorf("source = %q, want %q", source, tt.wantSource)
			}
			got := byName(pkgs)
			if len(got) != len(tt.want) {
				t.Errorf("packages = %v, want %v", pkgs, tt.want)
			}
			for name, files := range tt.want {
				p, ok := got[name]
				if !ok {
					t.Errorf("package %s missing from %v", name, pkgs)
					continue
				}
				if !slices.Equal(p.Files, files) {
					t.Errorf("%s files = %v, want %v", name, p.Files, files)
				}
				if p.Version == "" {
					t.Errorf("%s has no version", name)
				}
			}
		})
	}
}

func TestResolveStaysInRoot(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"/bin":             "->/usr/bin", // absolute: the root's /usr/bin, not the host's
		"/usr/bin/sh":      "->busybox",
		"/usr/bin/busybox": "elf",
		"/escape":          "->../../../../etc",
		"/loop":            "->loop",
	})
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "/bin/sh", want: "/usr/bin/busybox"},
		{in: "/usr/bin/../bin/busybox", want: "/usr/bin/busybox"},
		{in: "/escape/hostname-of-host", wantErr: true}, // stays below the root: /etc/... does not exist there
		{in: "/loop", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := root.Resolve(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Resolve(%s) = %q, %v", tt.in, got, err)
			}
			if got != tt.want {
				t.Errorf("Resolve(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// A container's files cannot block the agent or send it outside the root:
// a FIFO is refused at once, and symlinks and ".." stay below the root
// when the kernel resolves the open.
func TestOpenRefusesFIFOsAndStaysInRoot(t *testing.T) {
	if _, err := os.Stat("/etc/hostname"); err != nil {
		t.Skipf("the escape check reads the host's /etc/hostname: %v", err)
	}
	root := fakeRoot(t, map[string]string{
		"/escape":         "->../../../../../../etc",
		"/abs":            "->/etc",
		"/etc/os-release": "ID=test\n",
	})
	fifo := filepath.Join(string(root), "var/lib/dpkg/status")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := ReadPackages(root); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("a FIFO as the dpkg status: %v, want not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	for _, p := range []string{"/escape/hostname", "/abs/hostname", "/../../../../etc/hostname"} {
		if data, err := root.ReadFile(p, 1<<20); err == nil {
			t.Errorf("%s read %q: outside the root", p, data)
		}
	}
	if data, err := root.ReadFile("/abs/os-release", 1<<20); err != nil || string(data) != "ID=test\n" {
		t.Errorf("/abs/os-release = %q, %v; want the root's own file", data, err)
	}
	if _, err := root.ReadFile("/etc/os-release", 3); err == nil {
		t.Error("a file over the limit was read")
	}
}
