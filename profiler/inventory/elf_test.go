package inventory

import (
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// copyInto copies host files into root at the given in-root paths.
func copyInto(t *testing.T, root Root, files map[string]string) {
	t.Helper()
	for in, host := range files {
		data, err := os.ReadFile(host)
		if err != nil {
			t.Skipf("host file %s is needed to build the test image: %v", host, err)
		}
		dst := filepath.Join(string(root), in)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// The image's loader path, not the host's, decides where libraries are: bash
// and its libraries are moved to /opt/lib, which only the image's ld.so.conf names.
func TestLibrariesResolvedInTheImage(t *testing.T) {
	hostBash, err := filepath.EvalSymlinks("/bin/bash")
	if err != nil {
		t.Skipf("the test image is built from the host's bash: %v", err)
	}
	hostLibs, err := Libraries(Root(""), hostBash)
	if err != nil {
		t.Fatalf("host bash: %v", err)
	}
	root := fakeRoot(t, map[string]string{
		"/bin":                         "->usr/bin",
		"/etc/ld.so.conf":              "# comment\ninclude /etc/ld.so.conf.d/*.conf\n",
		"/etc/ld.so.conf.d/opt.conf":   "/opt/lib\n",
		"/usr/local/bin/entrypoint.sh": "#!/bin/bash\necho hi\n",
		"/usr/local/bin/broken.sh":     "#!\n",
	})
	files := map[string]string{"/usr/bin/bash": hostBash}
	// PT_INTERP names the loader by its absolute path, /lib64/ld-linux-x86-64.so.2.
	interp := "/lib64/ld-linux-x86-64.so.2"
	files[interp] = interp
	want := []string{interp}
	for _, lib := range hostLibs {
		if filepath.Base(lib) == filepath.Base(interp) {
			continue
		}
		in := "/opt/lib/" + filepath.Base(lib)
		files[in] = lib
		want = append(want, in)
	}
	copyInto(t, root, files)
	for in, host := range files { // DT_NEEDED names the soname: link it to the file
		f, err := elf.Open(host)
		if err != nil {
			t.Fatal(err)
		}
		soname, _ := f.DynString(elf.DT_SONAME)
		f.Close()
		if len(soname) == 1 && soname[0] != filepath.Base(in) && filepath.Dir(in) == "/opt/lib" {
			if err := os.Symlink(filepath.Base(in), filepath.Join(string(root), "/opt/lib", soname[0])); err != nil {
				t.Fatal(err)
			}
		}
	}
	want = slicesSortedUnique(want)

	got, err := Libraries(root, "/usr/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("bash loads %v, want %v", got, want)
	}
	if !slices.ContainsFunc(got, func(s string) bool { return filepath.Base(s) == "libc.so.6" }) {
		t.Errorf("bash's libraries %v lack libc.so.6", got)
	}

	script, err := Libraries(root, "/usr/local/bin/entrypoint.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(script, slicesSortedUnique(append([]string{"/usr/bin/bash"}, want...))) {
		t.Errorf("a #!/bin/bash script runs %v, want bash and its libraries", script)
	}
	if _, err := Libraries(root, "/usr/local/bin/broken.sh"); err == nil {
		t.Error("a script with an empty #! line: no error")
	}
	if _, err := Libraries(root, "/usr/bin/missing"); err == nil {
		t.Error("a missing binary: no error")
	}
}

func slicesSortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// An ld.so.conf that includes itself many times is read once, not 30^5 times.
func TestLdSoConfIncludesReadOnce(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"/etc/ld.so.conf": strings.Repeat("include /etc/ld.so.conf\ninclude /etc/*.conf\n", 30) + "/opt/lib\n",
		"/etc/other.conf": "include /etc/ld.so.conf\n/srv/lib\n",
		"/usr/bin/app.sh": "#!/usr/bin/env sh\n",
		"/usr/bin/env":    "not an ELF file",
	})
	l := &libResolver{root: root, seen: map[string]bool{}}
	done := make(chan []string, 1)
	go func() { done <- l.systemDirs() }()
	select {
	case dirs := <-done:
		if !slices.Contains(dirs, "/opt/lib") || !slices.Contains(dirs, "/srv/lib") || len(dirs) > maxSearchDirs+5 {
			t.Errorf("search path = %v", dirs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a self-including ld.so.conf did not end")
	}
}
