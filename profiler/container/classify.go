// Package container resolves a cgroup v2 id to the container that owns it: the
// cgroup path, the runtime and container id from the path's shape, and the image
// and name from the runtime's API or from static config.
package container

import (
	"path"
	"regexp"
	"slices"
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
	// Guessed means the path held a bare id, so Runtime is only the likeliest owner.
	Guessed bool
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

// ClassifyPath reads the runtime and container id off a cgroup v2 path. The
// outermost element that names a container wins: that is the container the host's
// runtime knows, and everything below it (systemd in the container, a nested
// runtime's containers) belongs to it. ok is false for host cgroups.
func ClassifyPath(cgroupPath string) (ref Ref, ok bool) {
	elems := strings.Split(strings.Trim(cgroupPath, "/"), "/")
	inKubepods := len(elems) > 0 && strings.HasPrefix(elems[0], "kubepods")
	for i := range elems {
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
			// runtime is not in the path: a guess the resolver checks with the others.
			runtime, id = model.RuntimeDocker, el
			if inKubepods {
				runtime = model.RuntimeContainerd
			}
			ref.Guessed = true
		} else {
			continue
		}
		ref.Runtime, ref.ID = runtime, id
		if inKubepods && i > 0 {
			if m := kubePod.FindStringSubmatch(elems[i-1]); m != nil {
				ref.PodUID = strings.ReplaceAll(m[1], "_", "-")
			}
		}
		return ref, true
	}
	return Ref{}, false
}

// MatchStatic returns the first static rule whose glob matches cgroupPath or
// one of its ancestors, and the outermost path matched: as with ClassifyPath,
// a cgroup below a container's (a container's own sub-cgroups) belongs to it.
func MatchStatic(rules []StaticRule, cgroupPath string) (rule StaticRule, containerPath string, ok bool) {
	if len(rules) == 0 {
		return StaticRule{}, "", false
	}
	for end := 1; end <= len(cgroupPath); end++ {
		if end < len(cgroupPath) && cgroupPath[end] != '/' {
			continue
		}
		p := cgroupPath[:end]
		for _, r := range rules {
			if ok, _ := path.Match(r.Cgroup, p); ok {
				return r, p, true
			}
		}
	}
	return StaticRule{}, "", false
}

// PathClassifier tells container cgroups from host ones by their path alone,
// with no runtime to ask: what enforcement needs at a cgroup's mkdir, before
// any runtime knows of the container.
type PathClassifier struct {
	static []StaticRule
}

// NewPathClassifier classifies by the runtimes' path shapes and these static rules.
func NewPathClassifier(static []StaticRule) PathClassifier {
	return PathClassifier{static: static}
}

// IsContainer reports whether a cgroup path belongs to a container.
func (c PathClassifier) IsContainer(cgroupPath string) bool {
	if _, _, ok := MatchStatic(c.static, cgroupPath); ok {
		return true
	}
	_, ok := ClassifyPath(cgroupPath)
	return ok
}

// runtimePrefixes are where the runtimes create container cgroups: cgroupfs
// parents whose every descendant is a container's (or a pod's), and systemd
// scope units of the system and machine slices.
var runtimePrefixes = []string{
	"/docker/", "/kubepods/", "/kubepods.slice/",
	"/system.slice/docker-", "/system.slice/cri-containerd-", "/system.slice/crio-", "/machine.slice/libpod-",
}

// KernelPrefixes are the path prefixes the kernel enforces at mkdir: the
// runtimes' and the literal start of each static glob (up to its first
// wildcard). A prefix may take in a cgroup the classifier rejects (a glob's
// "?" or "[...]" part, a pod's own slice); IsContainer is asked at the mkdir
// event and releases those.
func (c PathClassifier) KernelPrefixes() []string {
	prefixes := slices.Clone(runtimePrefixes)
	for _, r := range c.static {
		prefix := r.Cgroup
		if i := strings.IndexAny(prefix, `*?[\`); i >= 0 {
			prefix = prefix[:i]
		}
		if prefix != "" && !slices.Contains(prefixes, prefix) {
			prefixes = append(prefixes, prefix)
		}
	}
	return prefixes
}

var hexPrefix = regexp.MustCompile(`^[0-9a-f]{6,64}$`)

// isImageID reports whether an image reference is a content id rather than a name:
// "sha256:<hex>", a full 64-hex id, or a short hex prefix of imageID ("0bc65199d50d",
// as `docker run 0bc65199d50d` records it).
func isImageID(ref, imageID string) bool {
	if strings.HasPrefix(ref, "sha256:") || hexID.MatchString(ref) {
		return true
	}
	full := strings.TrimPrefix(imageID, "sha256:")
	return hexPrefix.MatchString(ref) && strings.HasPrefix(full, ref)
}
