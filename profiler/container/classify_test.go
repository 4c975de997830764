package container

import (
	"cmp"
	"slices"
	"strings"
	"testing"

	"github.com/cagewatch/cagewatch/model"
)

// Container and image ids used across this package's tests: 64 lower-case hex digits,
// the shape every runtime uses.
const (
	ctrID   = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
	ctrID2  = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
	imageID = "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"
	digest  = "18ac3e7343f016890c510e93f935261169d9e3f565436429830faf0934f4f8e4"

	// podUID as the kubelet reports it, and as the systemd driver spells it in
	// slice names (systemd reserves '-' as the slice hierarchy separator).
	podUID        = "6e5b1d2a-3c4f-4b8e-9a1d-2f3e4c5b6a7d"
	podUIDSystemd = "6e5b1d2a_3c4f_4b8e_9a1d_2f3e4c5b6a7d"
)

func TestTestIDsAreWellFormed(t *testing.T) {
	for _, id := range []string{ctrID, ctrID2, imageID, digest} {
		if !hexID.MatchString(id) {
			t.Fatalf("test id %q is not 64 lower-case hex digits", id)
		}
	}
	if len(podUID) != 36 || strings.ReplaceAll(podUIDSystemd, "_", "-") != podUID {
		t.Fatalf("pod uid constants disagree: %q vs %q", podUID, podUIDSystemd)
	}
}

func TestClassifyPath(t *testing.T) {
	burstablePod := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSystemd + ".slice"
	tests := []struct {
		name   string
		path   string
		want   Ref
		wantOK bool
	}{
		// Docker, cgroupfs driver.
		{
			name:   "docker cgroupfs driver",
			path:   "/docker/" + ctrID,
			want:   Ref{Guessed: true, Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker cgroupfs driver trailing slash",
			path:   "/docker/" + ctrID + "/",
			want:   Ref{Guessed: true, Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker custom cgroup-parent cgroupfs",
			path:   "/cwparent/" + ctrID,
			want:   Ref{Guessed: true, Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker in docker resolves to the outer container",
			path:   "/docker/" + ctrID + "/docker/" + ctrID2,
			want:   Ref{Guessed: true, Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker nested sub-cgroup inside container",
			path:   "/docker/" + ctrID + "/init.scope",
			want:   Ref{Guessed: true, Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker deeply nested sub-cgroup inside container",
			path:   "/docker/" + ctrID + "/system.slice/cron.service",
			want:   Ref{Guessed: true, Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker bare id outside kubepods has no pod uid",
			path:   "/cwparent/pod" + podUID + "/" + ctrID,
			want:   Ref{Guessed: true, Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		// Docker, systemd driver.
		{
			name:   "docker systemd driver",
			path:   "/system.slice/docker-" + ctrID + ".scope",
			want:   Ref{Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker systemd driver custom cgroup-parent slice",
			path:   "/my.slice/docker-" + ctrID + ".scope",
			want:   Ref{Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "docker systemd driver nested init.scope",
			path:   "/system.slice/docker-" + ctrID + ".scope/init.scope",
			want:   Ref{Runtime: model.RuntimeDocker, ID: ctrID},
			wantOK: true,
		},
		// containerd CRI, systemd driver.
		{
			name:   "containerd cri systemd burstable",
			path:   burstablePod + "/cri-containerd-" + ctrID + ".scope",
			want:   Ref{Runtime: model.RuntimeContainerd, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		{
			name:   "containerd cri systemd besteffort",
			path:   "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDSystemd + ".slice/cri-containerd-" + ctrID + ".scope",
			want:   Ref{Runtime: model.RuntimeContainerd, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		{
			name:   "containerd cri systemd guaranteed",
			path:   "/kubepods.slice/kubepods-pod" + podUIDSystemd + ".slice/cri-containerd-" + ctrID + ".scope",
			want:   Ref{Runtime: model.RuntimeContainerd, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		{
			name:   "containerd cri systemd sub-cgroup inside container",
			path:   burstablePod + "/cri-containerd-" + ctrID + ".scope/init.scope",
			want:   Ref{Runtime: model.RuntimeContainerd, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		// kubelet cgroupfs driver: bare ids under pod<uid>.
		{
			name:   "kubelet cgroupfs burstable",
			path:   "/kubepods/burstable/pod" + podUID + "/" + ctrID,
			want:   Ref{Guessed: true, Runtime: model.RuntimeContainerd, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		{
			name:   "kubelet cgroupfs besteffort",
			path:   "/kubepods/besteffort/pod" + podUID + "/" + ctrID2,
			want:   Ref{Guessed: true, Runtime: model.RuntimeContainerd, ID: ctrID2, PodUID: podUID},
			wantOK: true,
		},
		{
			name:   "kubelet cgroupfs guaranteed",
			path:   "/kubepods/pod" + podUID + "/" + ctrID,
			want:   Ref{Guessed: true, Runtime: model.RuntimeContainerd, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		// CRI-O.
		{
			name:   "crio systemd scope",
			path:   burstablePod + "/crio-" + ctrID + ".scope",
			want:   Ref{Runtime: model.RuntimeCRIO, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		{
			name:   "crio cgroupfs",
			path:   "/kubepods/burstable/pod" + podUID + "/crio-" + ctrID,
			want:   Ref{Runtime: model.RuntimeCRIO, ID: ctrID, PodUID: podUID},
			wantOK: true,
		},
		{
			name:   "crio conmon scope is not a container",
			path:   burstablePod + "/crio-conmon-" + ctrID + ".scope",
			wantOK: false,
		},
		{
			name:   "crio conmon scope outside kubepods is not a container",
			path:   "/system.slice/crio-conmon-" + ctrID + ".scope",
			wantOK: false,
		},
		// Podman.
		{
			name:   "podman container sub-cgroup",
			path:   "/machine.slice/libpod-" + ctrID + ".scope/container",
			want:   Ref{Runtime: model.RuntimePodman, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "podman scope",
			path:   "/machine.slice/libpod-" + ctrID + ".scope",
			want:   Ref{Runtime: model.RuntimePodman, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "podman rootless scope",
			path:   "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + ctrID + ".scope/container",
			want:   Ref{Runtime: model.RuntimePodman, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "podman cgroupfs",
			path:   "/libpod_parent/libpod-" + ctrID,
			want:   Ref{Runtime: model.RuntimePodman, ID: ctrID},
			wantOK: true,
		},
		{
			name:   "podman conmon scope is not a container",
			path:   "/machine.slice/libpod-conmon-" + ctrID + ".scope",
			wantOK: false,
		},
		// Host cgroups.
		{name: "root", path: "/", wantOK: false},
		{name: "empty", path: "", wantOK: false},
		{name: "sshd service", path: "/system.slice/sshd.service", wantOK: false},
		{name: "docker daemon service", path: "/system.slice/docker.service", wantOK: false},
		{name: "containerd daemon service", path: "/system.slice/containerd.service", wantOK: false},
		{name: "login session", path: "/user.slice/user-0.slice/session-1.scope", wantOK: false},
		{name: "systemd init scope", path: "/init.scope", wantOK: false},
		{name: "kubepods slice", path: "/kubepods.slice", wantOK: false},
		{name: "pod slice without container", path: burstablePod, wantOK: false},
		// Ids that are not container ids.
		{name: "63 hex digits", path: "/docker/" + ctrID[:63], wantOK: false},
		{name: "65 hex digits", path: "/docker/" + ctrID + "0", wantOK: false},
		{name: "upper-case id", path: "/docker/" + strings.ToUpper(ctrID), wantOK: false},
		{name: "non-hex id", path: "/docker/" + ctrID[:63] + "g", wantOK: false},
		{name: "63 hex digits in scope", path: "/system.slice/docker-" + ctrID[:63] + ".scope", wantOK: false},
		{name: "upper-case id in scope", path: "/system.slice/docker-" + strings.ToUpper(ctrID) + ".scope", wantOK: false},
		{name: "unknown runtime scope", path: "/system.slice/rkt-" + ctrID + ".scope", wantOK: false},
		{name: "docker scope without .scope suffix", path: "/system.slice/docker-" + ctrID, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ClassifyPath(tt.path)
			if ok != tt.wantOK {
				t.Fatalf("ClassifyPath(%q) ok = %v, want %v (ref %+v)", tt.path, ok, tt.wantOK, got)
			}
			if got != tt.want {
				t.Errorf("ClassifyPath(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestMatchStatic(t *testing.T) {
	rules := []StaticRule{
		{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"},
		{Cgroup: "/cagewatch-e2e/special", Image: "e2e/special:2"},
		{Cgroup: "/batch.slice/job-?.scope", Image: "batch/job:7"},
		{Cgroup: "/exact", Image: "exact/img"},
	}
	tests := []struct {
		name  string
		rules []StaticRule
		path  string
		want  StaticRule
		// wantContainer is the container's own cgroup; "" means path itself.
		wantContainer string
		wantOK        bool
	}{
		{
			name:   "glob matches child",
			rules:  rules,
			path:   "/cagewatch-e2e/web",
			want:   StaticRule{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"},
			wantOK: true,
		},
		{
			name:   "first rule wins over a later exact rule",
			rules:  rules,
			path:   "/cagewatch-e2e/special",
			want:   StaticRule{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"},
			wantOK: true,
		},
		{
			name:   "question mark glob",
			rules:  rules,
			path:   "/batch.slice/job-3.scope",
			want:   StaticRule{Cgroup: "/batch.slice/job-?.scope", Image: "batch/job:7"},
			wantOK: true,
		},
		{
			name:   "exact rule",
			rules:  rules,
			path:   "/exact",
			want:   StaticRule{Cgroup: "/exact", Image: "exact/img"},
			wantOK: true,
		},
		{name: "parent of glob does not match", rules: rules, path: "/cagewatch-e2e", wantOK: false},
		{
			name:          "a cgroup below a match belongs to that container",
			rules:         rules,
			path:          "/cagewatch-e2e/web/init.scope",
			want:          StaticRule{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"},
			wantContainer: "/cagewatch-e2e/web",
			wantOK:        true,
		},
		{name: "star does not cross a slash", rules: []StaticRule{{Cgroup: "/a/*/c", Image: "x"}}, path: "/a/b/d/c", wantOK: false},
		{name: "a name that only starts like a match", rules: rules, path: "/exactly", wantOK: false},
		{name: "question mark is one character", rules: rules, path: "/batch.slice/job-12.scope", wantOK: false},
		{name: "host path", rules: rules, path: "/system.slice/sshd.service", wantOK: false},
		{name: "no rules", rules: nil, path: "/cagewatch-e2e/web", wantOK: false},
		{
			name: "malformed glob is skipped",
			rules: []StaticRule{
				{Cgroup: "/cagewatch-e2e/[", Image: "bad/img"},
				{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"},
			},
			path:   "/cagewatch-e2e/[",
			want:   StaticRule{Cgroup: "/cagewatch-e2e/*", Image: "e2e/app:1"},
			wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, container, ok := MatchStatic(tt.rules, tt.path)
			if ok != tt.wantOK {
				t.Fatalf("MatchStatic(%q) ok = %v, want %v (rule %+v)", tt.path, ok, tt.wantOK, got)
			}
			if got != tt.want {
				t.Errorf("MatchStatic(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
			wantContainer := cmp.Or(tt.wantContainer, tt.path)
			if ok && container != wantContainer {
				t.Errorf("MatchStatic(%q) container %q, want %q", tt.path, container, wantContainer)
			}
		})
	}
}

func TestIsImageID(t *testing.T) {
	tests := []struct {
		name string
		ref  string
		want bool
	}{
		{name: "sha256 prefixed id", ref: "sha256:" + imageID, want: true},
		{name: "bare 64 hex id", ref: imageID, want: true},
		{name: "repository and tag", ref: "cagewatch/busybox:1", want: false},
		{name: "repository only", ref: "busybox", want: false},
		{name: "digest reference", ref: "busybox@sha256:" + digest, want: false},
		{name: "empty", ref: "", want: false},
		{name: "upper-case hex", ref: strings.ToUpper(imageID), want: false},
		{name: "short id of this image", ref: imageID[:12], want: true},
		{name: "short hex that is not this image", ref: "abcdef123456", want: imageID[:12] == "abcdef123456"},
		{name: "hex-looking name too short", ref: "beef", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isImageID(tt.ref, "sha256:"+imageID); got != tt.want {
				t.Errorf("isImageID(%q) = %v, want %v", tt.ref, got, tt.want)
			}
		})
	}
}

func TestPathClassifier(t *testing.T) {
	c := NewPathClassifier([]StaticRule{
		{Cgroup: "/app-*", Image: "app:1"},
		{Cgroup: "/apps/job-?", Image: "job:1"},
		{Cgroup: "/exact", Image: "exact:1"},
	})
	id := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		path      string
		container bool
	}{
		{"/app-1", true},
		{"/app-1/sub", true},
		{"/apps/job-1", true},
		{"/apps/job-12", false},
		{"/apps", false},
		{"/exact", true},
		{"/docker/" + id, true},
		{"/system.slice/docker-" + id + ".scope", true},
		{"/system.slice/sshd.service", false},
		{"/", false},
	} {
		if got := c.IsContainer(tt.path); got != tt.container {
			t.Errorf("IsContainer(%q) = %v, want %v", tt.path, got, tt.container)
		}
	}
	prefixes := c.KernelPrefixes()
	for _, want := range []string{"/docker/", "/system.slice/docker-", "/app-", "/apps/job-", "/exact"} {
		if !slices.Contains(prefixes, want) {
			t.Errorf("KernelPrefixes() = %q, lacks %q", prefixes, want)
		}
	}
	// Every container path above is below a kernel prefix: the kernel enforces
	// them at mkdir, before user space has classified them.
	for _, p := range []string{"/app-1", "/apps/job-1", "/exact", "/docker/" + id, "/system.slice/docker-" + id + ".scope"} {
		if !slices.ContainsFunc(prefixes, func(prefix string) bool { return strings.HasPrefix(p, prefix) }) {
			t.Errorf("container cgroup %s is below no kernel prefix %q", p, prefixes)
		}
	}
}
