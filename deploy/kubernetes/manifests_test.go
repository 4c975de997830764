// Package kubernetes holds the manifests that run cagewatch as a DaemonSet;
// this test decodes each one strictly against the types its API defines.
package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kustomize "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// decodeStrict decodes a YAML manifest into out, failing on any field out's
// type does not have.
func decodeStrict(t *testing.T, file string, out any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// agentCapabilities are the capabilities the agent needs on this kernel, each
// for the reason the DaemonSet states (README, "Kubernetes").
// Measured by dropping each in turn (CAGEWATCH_K8S_WITHOUT_CAP): BPF and
// PERFMON changed nothing beside SYS_ADMIN, so they are not granted.
var agentCapabilities = []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}

// agentMounts are the host paths the agent reads or writes.
var agentMounts = map[string]string{
	"/sys/fs/cgroup":                  "/sys/fs/cgroup",
	"/sys/kernel/btf":                 "/sys/kernel/btf",
	"/run/containerd/containerd.sock": "/run/containerd/containerd.sock",
	"/proc":                           "/host/proc",
	"/var/lib/cagewatch":              "/var/lib/cagewatch",
}

func TestManifestsDecodeStrictly(t *testing.T) {
	var k kustomize.Kustomization
	decodeStrict(t, "kustomization.yaml", &k)
	for _, r := range k.Resources {
		if _, err := os.Stat(r); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.FileSources {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("configMapGenerator %s file %s: %v", g.Name, f, err)
			}
		}
	}

	var ns corev1.Namespace
	decodeStrict(t, "namespace.yaml", &ns)
	var svc corev1.Service
	decodeStrict(t, "service.yaml", &svc)
	var sm monitoringv1.ServiceMonitor
	decodeStrict(t, "servicemonitor.yaml", &sm)
	var ds appsv1.DaemonSet
	decodeStrict(t, "daemonset.yaml", &ds)

	if ns.Name != k.Namespace {
		t.Errorf("namespace %q, kustomization deploys into %q", ns.Name, k.Namespace)
	}
	if sm.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != svc.Labels["app.kubernetes.io/component"] ||
		len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name {
		t.Errorf("ServiceMonitor %+v does not select the metrics Service %+v", sm.Spec, svc.Labels)
	}

	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("the DaemonSet must run with hostPID")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want the agent alone", len(pod.Containers))
	}
	agent := pod.Containers[0]
	if svc.Spec.Selector["app.kubernetes.io/name"] != ds.Spec.Template.Labels["app.kubernetes.io/name"] ||
		agent.Ports[0].Name != svc.Spec.Ports[0].TargetPort.StrVal {
		t.Error("the metrics Service does not reach the agent's metrics port")
	}
	sc := agent.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("security context %+v: want unprivileged, every capability dropped", sc)
	}
	if !slices.Equal(sc.Capabilities.Add, agentCapabilities) {
		t.Errorf("capabilities %v, want exactly %v", sc.Capabilities.Add, agentCapabilities)
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]string{}
	for _, m := range agent.VolumeMounts {
		if hp, ok := hostPaths[m.Name]; ok {
			mounted[hp] = m.MountPath
		}
	}
	for hp, at := range agentMounts {
		if mounted[hp] != at {
			t.Errorf("host path %s mounted at %q, want %s", hp, mounted[hp], at)
		}
	}
	if len(mounted) != len(agentMounts) {
		t.Errorf("host paths mounted %v, want exactly %v", mounted, agentMounts)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": agent.LivenessProbe, "readiness": agent.ReadinessProbe} {
		if p == nil || p.Exec == nil || !strings.Contains(strings.Join(p.Exec.Command, " "), "status --require-agent") {
			t.Errorf("%s probe %+v: want an exec of status --require-agent (metrics may stay off the node's network)", name, p)
		}
	}
	if agent.Resources.Limits.Memory().IsZero() || agent.Resources.Requests.Memory().IsZero() {
		t.Error("the agent has no memory request or limit")
	}
}

// TestManifestCopiesMatch: the rules and dashboard the kustomization ships
// are the repository's own.
func TestManifestCopiesMatch(t *testing.T) {
	for copyPath, orig := range map[string]string{
		"config/rules.yaml":         "../../configs/rules.yaml",
		"dashboards/cagewatch.json": "../../configs/grafana/cagewatch.json",
	} {
		a, errA := os.ReadFile(copyPath)
		b, errB := os.ReadFile(orig)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (copy it again): %v %v", copyPath, orig, errA, errB)
		}
	}
}
