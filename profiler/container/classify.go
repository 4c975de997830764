// Package container resolves a cgroup v2 id to the container that owns it: the
// cgroup path, the runtime and container id from the path's shape, and the image
// and name from the runtime's API or from static config.
package container

import (
	"path"
	"regexp"
	"strings"

	"github.com/cagewatch/cagewatch/model"
)

// StaticRule maps plain cgroups (no runtime) to an image, by a glob on the cgroup v2
// path, e.g. {Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"}.
type StaticRule struct {
	Cgroup string `mapstructure:"cgroup" json:"cgroup"`
	Image  string `mapstructure:"image" json:"image"`
}

// Ref is what the cgroup path alone says about a container.
type Ref struct {
	Runtime model.Runtime
	ID      string
	// PodUID is set for kubepods paths.
	PodUID string
}

var (
	hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// Scope units of systemd-managed runtimes: docker-<id>.scope, cri-containerd-<id>.scope…
	scopeUnit = regexp.MustCompile(`^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$`)
	// cgroupfs-driver CRI-O and podman name the directory after the runtime, no .scope.
	plainPrefixed = regexp.MustCompile(`^(crio|libpod)-([0-9a-f]{64})$`)
	kubePod       = regexp.MustCompile(`^(?:kubepods-(?:burstable-|besteffort-)?)?pod([0-9a-f_-]{36})(?:\.slice)?$`)
)

var scopeRuntime = map[string]model.Runtime{
	"docker":         model.RuntimeDocker,
	"cri-containerd": model.RuntimeContainerd,
	"crio":           model.RuntimeCRIO,
	"libpod":         model.RuntimePodman,
}

// ClassifyPath reads the runtime and container id off a cgroup v2 path. The deepest
// element that names a container wins, so a container's own sub-cgroups (systemd or
// a nested runtime inside it) still resolve to it. ok is false for host cgroups.
func ClassifyPath(cgroupPath string) (ref Ref, ok bool) {
	elems := strings.Split(strings.Trim(cgroupPath, "/"), "/")
	inKubepods := len(elems) > 0 && strings.HasPrefix(elems[0], "kubepods")
	for i := len(elems) - 1; i >= 0; i-- {
		el := elems[i]
		var runtime model.Runtime
		var id string
		if m := scopeUnit.FindStringSubmatch(el); m != nil {
			runtime, id = scopeRuntime[m[1]], m[2]
		} else if m := plainPrefixed.FindStringSubmatch(el); m != nil {
			runtime, id = scopeRuntime[m[1]], m[2]
		} else if hexID.MatchString(el) {
			// A bare id: Docker's cgroupfs driver (/docker/<id>, or any --cgroup-parent),
			// or a kubelet cgroupfs pod (/kubepods/burstable/pod<uid>/<id>), where the
			// runtime is not in the path; the resolver asks the runtimes it can reach.
			runtime, id = model.RuntimeDocker, el
			if inKubepods {
				runtime = model.RuntimeContainerd
			}
		} else {
			continue
		}
		ref = Ref{Runtime: runtime, ID: id}
		if inKubepods && i > 0 {
			if m := kubePod.FindStringSubmatch(elems[i-1]); m != nil {
				ref.PodUID = strings.ReplaceAll(m[1], "_", "-")
			}
		}
		return ref, true
	}
	return Ref{}, false
}

// MatchStatic returns the first static rule whose glob matches cgroupPath.
func MatchStatic(rules []StaticRule, cgroupPath string) (StaticRule, bool) {
	for _, r := range rules {
		if ok, _ := path.Match(r.Cgroup, cgroupPath); ok {
			return r, true
		}
	}
	return StaticRule{}, false
}

// isImageID reports whether an image reference is a content id rather than a name.
func isImageID(ref string) bool {
	return strings.HasPrefix(ref, "sha256:") || hexID.MatchString(ref)
}
