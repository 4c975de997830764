package model

import (
	"fmt"
	"regexp"
	"strings"
)

// KeyBy says what a baseline belongs to (learning.key).
type KeyBy string

const (
	// KeyByImage learns one baseline per image reference: every container of
	// the image, whatever it runs, shares it.
	KeyByImage KeyBy = "image"
	// KeyByWorkload learns one baseline per workload, so an image run in
	// several roles (a web server and a worker) gets one profile per role.
	KeyByWorkload KeyBy = "workload"
)

// KeyBys lists the valid learning.key values.
var KeyBys = []KeyBy{KeyByImage, KeyByWorkload}

// workloadKeyPrefix starts a Kubernetes workload key. No image reference can
// start so: "k8s:x/…" would be a registry host with a non-numeric port.
const workloadKeyPrefix = "k8s:"

// entrypointSep separates an image reference from its entrypoint in a Docker
// workload key; '#' cannot occur in an image reference.
const entrypointSep = "#"

// WorkloadKey is c's profile key under learning.key: workload.
//   - A pod's container: "k8s:<namespace>/<owner>/<container>", the owner
//     derived from the pod's name and labels (PodOwner).
//   - A container with a known entrypoint: "<image>#<executable>", so an
//     image started as different programs learns one profile per program.
//   - Otherwise the image reference.
//
// It is empty when c has no image either.
func (c Container) WorkloadKey() string {
	ref := c.ImageRef()
	switch {
	case ref == "":
		return ""
	case c.Namespace != "" && c.PodOwner != "" && c.Name != "":
		return workloadKeyPrefix + c.Namespace + "/" + c.PodOwner + "/" + c.Name
	case c.Entrypoint != "":
		return ref + entrypointSep + c.Entrypoint
	default:
		return ref
	}
}

// IsWorkloadKey reports whether a baseline key names a workload rather than
// an image.
func IsWorkloadKey(key string) bool {
	return strings.HasPrefix(key, workloadKeyPrefix) || strings.Contains(key, entrypointSep)
}

// ValidWorkloadKey checks a stored workload key's shape.
func ValidWorkloadKey(key string) error {
	if rest, ok := strings.CutPrefix(key, workloadKeyPrefix); ok {
		if parts := strings.Split(rest, "/"); len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("workload %q is not k8s:<namespace>/<owner>/<container>", key)
		}
		return nil
	}
	if ref, exe, ok := strings.Cut(key, entrypointSep); !ok || ref == "" || exe == "" {
		return fmt.Errorf("workload %q is not k8s:<namespace>/<owner>/<container> or <image>#<executable>", key)
	}
	return nil
}

// The suffixes Kubernetes controllers append to the names they generate. Random
// suffixes use the apimachinery alphabet (no vowels, no 0, 1, 3), which is
// also the alphabet of the pod-template-hash of a ReplicaSet's name.
var (
	randomSuffix   = regexp.MustCompile(`^(.+)-[bcdfghjklmnpqrstvwxz2456789]{5}$`)
	templateHash   = regexp.MustCompile(`^(.+)-[bcdfghjklmnpqrstvwxz2456789]{6,10}$`)
	ordinalSuffix  = regexp.MustCompile(`^(.+)-(0|[1-9][0-9]*)$`)
	cronJobSuffix  = regexp.MustCompile(`^(.+)-[0-9]{8,}$`)
	statefulLabels = []string{"statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index"}
	jobLabels      = []string{"batch.kubernetes.io/job-name", "job-name"}
)

// PodOwner derives the controller a pod belongs to from its name and labels,
// as CRI carries no owner references. The conventions:
//   - Deployment: "<name>-<pod-template-hash>-<5>", with the
//     pod-template-hash label; without it, any "<name>-<6-10>-<5>" of the
//     name alphabet is taken as one.
//   - StatefulSet: "<name>-<ordinal>", with its pod-name or pod-index label.
//   - Job: the job-name label; a CronJob's job "<cronjob>-<minutes>" is the
//     CronJob's.
//   - DaemonSet, a bare ReplicaSet, other generateName users: "<name>-<5>".
//   - A pod with none of these is its own owner.
//
// Limits: a bare pod whose own name ends in five characters of the alphabet
// loses them, and a StatefulSet without its labels (older clusters) is taken
// for a bare pod, so each of its replicas learns alone.
func PodOwner(podName string, labels map[string]string) string {
	if podName == "" {
		return ""
	}
	for _, l := range jobLabels {
		if job := labels[l]; job != "" {
			if m := cronJobSuffix.FindStringSubmatch(job); m != nil {
				return m[1]
			}
			return job
		}
	}
	if hash := labels["pod-template-hash"]; hash != "" {
		if rest, ok := strings.CutSuffix(trimRandom(podName), "-"+hash); ok && rest != "" {
			return rest
		}
	}
	for _, l := range statefulLabels {
		if labels[l] != "" {
			if m := ordinalSuffix.FindStringSubmatch(podName); m != nil {
				return m[1]
			}
		}
	}
	owner := trimRandom(podName)
	if owner != podName {
		if m := templateHash.FindStringSubmatch(owner); m != nil && labels["controller-revision-hash"] == "" {
			return m[1]
		}
	}
	return owner
}

// trimRandom drops a generated five-character suffix.
func trimRandom(name string) string {
	if m := randomSuffix.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return name
}
