package model

import "strings"

// Runtime names the container runtime that owns a cgroup.
type Runtime string

const (
	RuntimeHost       Runtime = "host"
	RuntimeDocker     Runtime = "docker"
	RuntimeContainerd Runtime = "containerd"
	RuntimeCRIO       Runtime = "cri-o"
	RuntimePodman     Runtime = "podman"
	RuntimeStatic     Runtime = "static"
	// RuntimeUnknown is a cgroup that was gone before it could be resolved: neither
	// host nor a known container, so nothing should learn from it.
	RuntimeUnknown Runtime = "unknown"
)

// Container is what the resolver knows about the cgroup a process runs in.
// Host processes have Runtime RuntimeHost and an empty ID.
type Container struct {
	ID         string  `json:"container_id,omitempty"`
	Name       string  `json:"container_name,omitempty"`
	Runtime    Runtime `json:"runtime"`
	Image      string  `json:"image,omitempty"`     // repository, e.g. "docker.io/library/nginx"
	ImageTag   string  `json:"image_tag,omitempty"` // tag, or "" when pinned by digest only
	ImageID    string  `json:"image_id,omitempty"`  // content id or digest, e.g. "sha256:…"
	CgroupPath string  `json:"cgroup_path"`
	PodName    string  `json:"pod_name,omitempty"`
	Namespace  string  `json:"pod_namespace,omitempty"`
	// PodLabels are the pod's app.kubernetes.io/* labels (only those: the
	// set stays bounded).
	PodLabels map[string]string `json:"pod_labels,omitempty"`
	// PodOwner is the controller the pod belongs to, derived from its name
	// and labels (PodOwner); Entrypoint is the executable the container
	// was started with, without its arguments.
	PodOwner   string `json:"pod_owner,omitempty"`
	Entrypoint string `json:"entrypoint,omitempty"`
	// Workload is the profile key under learning.key: workload (WorkloadKey);
	// empty when profiles are keyed by image.
	Workload string `json:"workload,omitempty"`
}

// IsHost reports whether c is the host rather than a container.
func (c Container) IsHost() bool { return c.Runtime == RuntimeHost || c.Runtime == "" }

// IsContainer reports whether c is a resolved container: neither the host nor a
// cgroup gone before it could be resolved. Rules, enforcement and recording apply
// to these only.
func (c Container) IsContainer() bool { return !c.IsHost() && c.Runtime != RuntimeUnknown }

// HasBaseline reports whether c is a container with a profile to learn and
// score against.
func (c Container) HasBaseline() bool { return c.IsContainer() && c.ProfileKey() != "" }

// ProfileKey is the key c's baseline is learned and stored under: its
// workload when profiles are keyed by workload, else its image reference.
func (c Container) ProfileKey() string {
	if c.Workload != "" {
		return c.Workload
	}
	return c.ImageRef()
}

// ImageRef returns "repository:tag" (or the repository alone, or the image id when
// the repository is unknown): the key baselines are learned under.
func (c Container) ImageRef() string {
	switch {
	case c.Image != "" && c.ImageTag != "":
		return c.Image + ":" + c.ImageTag
	case c.Image != "":
		return c.Image
	default:
		return c.ImageID
	}
}

// FamiliarImage is a repository as Docker names it: CRI runtimes say
// "docker.io/library/nginx" and "docker.io/cagewatch/busybox" where Docker
// says "nginx" and "cagewatch/busybox", and one image must get one baseline
// whichever runtime ran it. Other registries keep their names.
func FamiliarImage(repository string) string {
	for _, host := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		if rest, ok := strings.CutPrefix(repository, host); ok {
			if name, ok := strings.CutPrefix(rest, "library/"); ok && !strings.Contains(name, "/") {
				return name
			}
			return rest
		}
	}
	return repository
}

// FamiliarRef is an image reference ("repo:tag", "repo") with its repository
// named as FamiliarImage names it: the key a baseline is stored under.
func FamiliarRef(ref string) string {
	repo, tag := SplitImageRef(ref)
	if strings.Contains(ref, "@") || FamiliarImage(repo) == repo {
		return ref
	}
	if tag == "" {
		return FamiliarImage(repo)
	}
	return FamiliarImage(repo) + ":" + tag
}

// SplitImageRef splits "registry:5000/repo/name:tag@sha256:…" into repository and tag.
// A digest-only reference returns an empty tag.
func SplitImageRef(ref string) (repository, tag string) {
	if at := strings.IndexByte(ref, '@'); at >= 0 {
		ref = ref[:at]
	}
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, ""
}
