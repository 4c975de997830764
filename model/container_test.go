package model

import "testing"

func TestFamiliarImage(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/library/nginx":            "nginx",
		"docker.io/cagewatch/busybox":        "cagewatch/busybox",
		"index.docker.io/library/redis":      "redis",
		"docker.io/library/sub/path":         "library/sub/path",
		"nginx":                              "nginx",
		"cagewatch/busybox":                  "cagewatch/busybox",
		"registry.example/shop/api":          "registry.example/shop/api",
		"ghcr.io/docker.io/x":                "ghcr.io/docker.io/x",
		"localhost:5000/docker.io/library/x": "localhost:5000/docker.io/library/x",
	} {
		if got := FamiliarImage(in); got != want {
			t.Errorf("FamiliarImage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFamiliarRef(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/library/nginx:1.27":      "nginx:1.27",
		"docker.io/cagewatch/busybox:1":     "cagewatch/busybox:1",
		"docker.io/library/nginx":           "nginx",
		"nginx:1.27":                        "nginx:1.27",
		"registry.example:5000/app:2":       "registry.example:5000/app:2",
		"docker.io/library/nginx@sha256:ab": "docker.io/library/nginx@sha256:ab",
	} {
		if got := FamiliarRef(in); got != want {
			t.Errorf("FamiliarRef(%q) = %q, want %q", in, got, want)
		}
	}
}
