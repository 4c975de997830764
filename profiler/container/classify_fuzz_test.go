package container

import (
	"strings"
	"testing"

	"github.com/cagewatch/cagewatch/model"
)

// FuzzClassifyPath checks ClassifyPath never panics, only returns well-formed ids,
// and that a container's sub-cgroups resolve to the container itself.
func FuzzClassifyPath(f *testing.F) {
	for _, seed := range []string{
		"/", "", "/docker/" + ctrID, "/system.slice/docker-" + ctrID + ".scope",
		"/kubepods/burstable/pod" + podUID + "/" + ctrID,
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDSystemd + ".slice/cri-containerd-" + ctrID + ".scope",
		"/machine.slice/libpod-" + ctrID + ".scope/container", "/crio-" + ctrID, "/user.slice/user-0.slice",
	} {
		f.Add(seed)
	}
	known := map[model.Runtime]bool{model.RuntimeDocker: true, model.RuntimeContainerd: true, model.RuntimeCRIO: true, model.RuntimePodman: true}
	f.Fuzz(func(t *testing.T, p string) {
		ref, ok := ClassifyPath(p)
		if !ok {
			if ref != (Ref{}) {
				t.Fatalf("ClassifyPath(%q) not ok but returned %+v", p, ref)
			}
			return
		}
		if !hexID.MatchString(ref.ID) || !known[ref.Runtime] || !strings.Contains(p, ref.ID) {
			t.Fatalf("ClassifyPath(%q) = %+v: malformed", p, ref)
		}
		sub, ok := ClassifyPath(strings.TrimRight(p, "/") + "/init.scope")
		if !ok || sub != ref {
			t.Fatalf("sub-cgroup of %q resolved to %+v, want %+v", p, sub, ref)
		}
	})
}
