package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/sensor"
	"github.com/cagewatch/cagewatch/store"
)

// The DaemonSet and the node config it mounts, relative to this package.
const (
	daemonSetFile   = "../../deploy/kubernetes/daemonset.yaml"
	nodeConfigFile  = "../../deploy/kubernetes/config/cagewatch.yaml"
	nodeRulesFile   = "../../deploy/kubernetes/config/rules.yaml"
	k8sAgentPodIP   = "127.0.0.1" // the pods share the node's network: no CNI here
	k8sAgentTimeout = 2 * time.Minute
)

// k8sAgentPod (issue 16, item 2) runs the agent's own image (make image,
// imported by .ci/containerd.sh) as the DaemonSet's pod through the CRI, with
// exactly the DaemonSet's capabilities, mounts, security context, args, env,
// resources and probes. Only the host paths of the config, the store and the
// runtime socket point at the test's own, and the pod uses the host network
// (no CNI). Keyed by workload, it must learn one baseline per role from the
// running pods (the two web replicas into one), answer its probe, serve its
// metrics on the pod's address, and alert on an attacking pod with Falco's
// k8s fields.
func k8sAgentPod(ctx context.Context, t *testing.T, rt cri.RuntimeServiceClient, sock, logDir string, benign []*k8sPod) {
	t.Helper()
	var ds appsv1.DaemonSet
	decodeManifest(t, daemonSetFile, &ds)
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want the agent alone", daemonSetFile, len(spec.Containers))
	}
	agentSpec := spec.Containers[0]

	// The node config the ConfigMap carries, with the test's pace and keyed
	// by workload.
	dir := t.TempDir()
	configDir, storeDir := filepath.Join(dir, "config"), filepath.Join(dir, "store")
	for _, d := range []string{configDir, storeDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var nodeConfig map[string]any
	decodeManifest(t, nodeConfigFile, &nodeConfig)
	nodeConfig["window"] = "1s"
	nodeConfig["learning"] = map[string]any{"ignore_first": "2s", "min_windows": 20, "stable_windows": 5, "key": "workload"}
	nodeConfig["alerts"] = map[string]any{"dedup_interval": "0s", "container_limit": 0}
	writeYAML(t, filepath.Join(configDir, "cagewatch.yaml"), nodeConfig)
	rules, err := os.ReadFile(nodeRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(configDir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}

	hostPaths := map[string]string{"config": configDir, "store": storeDir, "containerd-socket": sock}
	pod := &k8sPod{name: "cagewatch-" + podUID()[:5], namespace: "cagewatch", uid: podUID()}
	sbConfig, ctConfig := criFromDaemonSet(t, &ds, pod, logDir, hostPaths)
	sb, err := rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: sbConfig})
	if err != nil {
		t.Fatalf("RunPodSandbox for the agent: %v", err)
	}
	pod.sandbox = sb.GetPodSandboxId()
	defer removePod(rt, pod)
	ct, err := rt.CreateContainer(ctx, &cri.CreateContainerRequest{PodSandboxId: pod.sandbox, SandboxConfig: sbConfig, Config: ctConfig})
	if err != nil {
		t.Fatalf("CreateContainer for the agent: %v", err)
	}
	pod.container = ct.GetContainerId()
	if _, err := rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: pod.container}); err != nil {
		t.Fatalf("StartContainer for the agent: %v", err)
	}
	logFile := filepath.Join(sbConfig.GetLogDirectory(), ctConfig.GetLogPath())
	podLog := func() (stdout, stderr string) { return criLog(logFile) }
	defer func() {
		if t.Failed() {
			raw, err := os.ReadFile(logFile)
			t.Logf("agent pod log %s (%v):\n%s", logFile, err, raw)
		}
	}()

	// A probe exactly as kubelet runs it.
	probe := func(p *corev1.Probe) (string, error) {
		resp, err := rt.ExecSync(ctx, &cri.ExecSyncRequest{ContainerId: pod.container, Cmd: p.Exec.Command, Timeout: int64(p.TimeoutSeconds)})
		if err != nil {
			return "", err
		}
		out := string(resp.GetStdout()) + string(resp.GetStderr())
		if resp.GetExitCode() != 0 {
			return out, fmt.Errorf("exit code %d", resp.GetExitCode())
		}
		return out, nil
	}
	waitFor(t, 30*time.Second, "the agent pod's readiness probe", func() bool {
		_, err := probe(agentSpec.ReadinessProbe)
		return err == nil
	})

	// One baseline per workload: the two web replicas share theirs.
	workloads := map[string][]*k8sPod{}
	for _, p := range benign {
		key := fmt.Sprintf("k8s:%s/%s/main", p.namespace, strings.SplitN(p.name, "-", 2)[0])
		workloads[key] = append(workloads[key], p)
	}
	waitFor(t, k8sAgentTimeout, fmt.Sprintf("workloads %v to become stable in the agent pod", slices.Sorted(maps.Keys(workloads))), func() bool {
		_, log := podLog()
		for key := range workloads {
			if !strings.Contains(log, `msg="baseline stable" profile=`+key+" ") {
				return false
			}
		}
		return true
	})
	_, log := podLog()
	if want := "write_opens_judged_at=" + sensor.ExitPerSyscall; !strings.Contains(log, want) {
		t.Errorf("the agent pod does not judge write-opens at the per-syscall tracepoints (%s): its capabilities fall short\n%s",
			want, regexp.MustCompile(`(?m)^.*sensor loaded.*$`).FindString(log))
	}

	attacker := &k8sPod{name: "debug-5c8d7f9b4-m7xkq", namespace: "batch", app: "debug",
		script: "sleep 2; cat /etc/shadow >/dev/null 2>&1; sleep 60"}
	runPod(ctx, t, rt, logDir, attacker)
	defer removePod(rt, attacker)
	var shadow *alertLine
	waitFor(t, 30*time.Second, "the agent pod's alert on the attacking pod", func() bool {
		stdout, _ := podLog()
		for _, al := range alertLines(stdout) {
			if al.OutputFields["container.id"] == attacker.container && al.Rule == "sensitive_file" {
				shadow = &al
				return true
			}
		}
		return false
	})
	raw, _ := json.Marshal(shadow)
	fmt.Printf("agent pod alert: %s\n", raw)
	for field, want := range map[string]any{"k8s.pod.name": attacker.name, "k8s.ns.name": attacker.namespace,
		"container.name": "main", "container.image.repository": "cagewatch/busybox"} {
		if got := shadow.OutputFields[field]; got != want {
			t.Errorf("agent pod alert field %s = %v, want %v", field, got, want)
		}
	}
	stdout, _ := podLog()
	for _, al := range alertLines(stdout) {
		if al.OutputFields["container.id"] != attacker.container {
			t.Errorf("agent pod alerted on a benign container: %s %v/%v", al.Rule, al.OutputFields["k8s.ns.name"], al.OutputFields["k8s.pod.name"])
		}
	}

	// The liveness probe, and status through it: keyed by workload, each
	// workload's image named beside it.
	if out, err := probe(agentSpec.LivenessProbe); err != nil {
		t.Errorf("liveness probe %v: %v\n%s", agentSpec.LivenessProbe.Exec.Command, err, out)
	}
	statusCmd := append(slices.Clone(agentSpec.LivenessProbe.Exec.Command), "--json")
	resp, err := rt.ExecSync(ctx, &cri.ExecSyncRequest{ContainerId: pod.container, Cmd: statusCmd, Timeout: 10})
	if err != nil {
		t.Fatalf("status in the agent pod: %v", err)
	}
	var st control.Status
	if err := json.Unmarshal(resp.GetStdout(), &st); err != nil {
		t.Fatalf("status --json in the agent pod: %v\n%s%s", err, resp.GetStdout(), resp.GetStderr())
	}
	if st.Key != "workload" || !st.AgentRunning {
		t.Errorf("status: key %q, agent running %v; want workload, true", st.Key, st.AgentRunning)
	}
	for key := range workloads {
		i := slices.IndexFunc(st.Images, func(im control.ImageStatus) bool { return im.Image == key })
		if i < 0 || st.Images[i].ImageRef != "cagewatch/busybox:1" {
			t.Errorf("status lacks workload %s of image cagewatch/busybox:1: %+v", key, st.Images)
		}
	}

	// Metrics on the pod's address, as the Service scrapes them.
	metrics := k8sGet(t, "http://"+k8sAgentPodIP+":9479/metrics")
	for key := range workloads {
		if want := fmt.Sprintf(`cagewatch_baseline_state{image=%q,state="stable"} 1`, key); !strings.Contains(metrics, want) {
			t.Errorf("agent pod metrics lack %s", want)
		}
	}

	// The store on the node's host path: each workload learned from its own
	// pods only.
	removePod(rt, pod)
	config := writeConfig(t, fmt.Sprintf("store: %s\nlearning: {key: workload}\n", filepath.Join(storeDir, "cagewatch.db")))
	out, err := exec.Command(cagewatchBinary(t), "--config", config, "--log-level", "warn", "baseline", "export").Output()
	if err != nil {
		t.Fatalf("baseline export from the agent pod's store: %v", err)
	}
	bs, err := store.Import(strings.NewReader(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	for key, members := range workloads {
		i := slices.IndexFunc(bs, func(b *model.Baseline) bool { return b.Key() == key })
		if i < 0 {
			t.Errorf("no baseline for workload %s in the agent pod's store", key)
			continue
		}
		var want []string
		for _, p := range members {
			want = append(want, p.container)
			if bs[i].Containers[p.container] == 0 {
				t.Errorf("workload %s: pod %s taught it nothing", key, p.name)
			}
		}
		for id := range bs[i].Containers {
			if !slices.Contains(want, id) {
				t.Errorf("workload %s learned from container %s, which is not one of its pods", key, id)
			}
		}
	}
	fmt.Printf("agent pod: %d workloads of one image learned apart (%s), %d alert(s)\n", len(workloads),
		strings.Join(slices.Sorted(maps.Keys(workloads)), ", "), len(alertLines(stdout)))
}

// criFromDaemonSet turns the DaemonSet's pod template into the CRI requests
// kubelet would make for it: namespaces, security context, capabilities,
// mounts (host paths from the volumes, or from hostPaths by volume name), args,
// env and resources.
func criFromDaemonSet(t *testing.T, ds *appsv1.DaemonSet, pod *k8sPod, logDir string, hostPaths map[string]string) (*cri.PodSandboxConfig, *cri.ContainerConfig) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	ns := &cri.NamespaceOption{Network: cri.NamespaceMode_NODE, Pid: cri.NamespaceMode_POD}
	if spec.HostPID {
		ns.Pid = cri.NamespaceMode_NODE
	}
	labels := map[string]string{"io.kubernetes.pod.name": pod.name, "io.kubernetes.pod.namespace": pod.namespace, "io.kubernetes.pod.uid": pod.uid}
	for k, v := range ds.Spec.Template.Labels {
		labels[k] = v
	}
	sb := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: pod.name, Namespace: pod.namespace, Uid: pod.uid},
		LogDirectory: filepath.Join(logDir, pod.uid),
		Labels:       labels,
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent:    "/kubepods/burstable/pod" + pod.uid, // requests below limits
			SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		},
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	var mounts []*cri.Mount
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Fatalf("%s: volumeMount %s has no volume", daemonSetFile, m.Name)
		}
		host := hostPaths[m.Name]
		if host == "" {
			if v.HostPath == nil {
				t.Fatalf("%s: volume %s is neither a hostPath nor given by the test", daemonSetFile, m.Name)
			}
			host = v.HostPath.Path
		}
		mounts = append(mounts, &cri.Mount{ContainerPath: m.MountPath, HostPath: host, Readonly: m.ReadOnly,
			Propagation: cri.MountPropagation_PROPAGATION_PRIVATE})
	}

	env := map[string]string{"POD_IP": k8sAgentPodIP}
	nodeName, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{"status.podIP": k8sAgentPodIP, "spec.nodeName": nodeName}
	var envs []*cri.KeyValue
	for _, e := range c.Env {
		value := e.Value
		if e.ValueFrom != nil {
			v, ok := "", false
			if e.ValueFrom.FieldRef != nil {
				v, ok = fields[e.ValueFrom.FieldRef.FieldPath]
			}
			if !ok {
				t.Fatalf("%s: env %s comes from %+v, which the test does not fill", daemonSetFile, e.Name, e.ValueFrom)
			}
			value = v
		}
		// kubelet expands $(VAR) from the variables before it.
		value = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(value, func(ref string) string {
			if v, ok := env[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
		env[e.Name] = value
		envs = append(envs, &cri.KeyValue{Key: e.Name, Value: []byte(value)})
	}

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("%s: the agent has no securityContext capabilities", daemonSetFile)
	}
	caps := &cri.Capability{}
	for _, a := range sc.Capabilities.Add {
		// CAGEWATCH_K8S_WITHOUT_CAP=NAME measures what the agent does
		// without one of them (README, "Kubernetes"); the test then fails.
		if string(a) == os.Getenv("CAGEWATCH_K8S_WITHOUT_CAP") {
			t.Logf("the agent pod runs without CAP_%s", a)
			continue
		}
		caps.AddCapabilities = append(caps.AddCapabilities, string(a))
	}
	for _, d := range sc.Capabilities.Drop {
		caps.DropCapabilities = append(caps.DropCapabilities, string(d))
	}
	profile := func(unconfined bool) *cri.SecurityProfile {
		if unconfined {
			return &cri.SecurityProfile{ProfileType: cri.SecurityProfile_Unconfined}
		}
		return &cri.SecurityProfile{ProfileType: cri.SecurityProfile_RuntimeDefault}
	}
	limits, requests := c.Resources.Limits, c.Resources.Requests
	const cpuPeriod = 100000
	ct := &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: c.Name},
		Image:    &cri.ImageSpec{Image: "docker.io/" + c.Image},
		Args:     c.Args,
		Envs:     envs,
		Mounts:   mounts,
		LogPath:  c.Name + ".log",
		Labels: map[string]string{"io.kubernetes.container.name": c.Name, "io.kubernetes.pod.name": pod.name,
			"io.kubernetes.pod.namespace": pod.namespace, "io.kubernetes.pod.uid": pod.uid},
		Linux: &cri.LinuxContainerConfig{
			Resources: &cri.LinuxContainerResources{
				CpuPeriod:          cpuPeriod,
				CpuQuota:           limits.Cpu().MilliValue() * cpuPeriod / 1000,
				CpuShares:          max(requests.Cpu().MilliValue()*1024/1000, 2),
				MemoryLimitInBytes: limits.Memory().Value(),
			},
			SecurityContext: &cri.LinuxContainerSecurityContext{
				Capabilities:     caps,
				Privileged:       sc.Privileged != nil && *sc.Privileged,
				ReadonlyRootfs:   sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
				NamespaceOptions: ns,
				Seccomp:          profile(sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined),
				Apparmor:         profile(sc.AppArmorProfile != nil && sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined),
			},
		},
	}
	return sb, ct
}

// decodeManifest reads a YAML file into out.
func decodeManifest(t *testing.T, file string, out any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func writeYAML(t *testing.T, file string, v any) {
	t.Helper()
	raw, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// criLog reads a container's CRI log ("<time> <stream> <P|F> <text>" lines,
// P for a partial line continued by the next), split by stream.
func criLog(file string) (stdout, stderr string) {
	f, err := os.Open(file)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	var out, errs, partial strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 4 {
			continue
		}
		partial.WriteString(parts[3])
		if parts[2] == "P" {
			continue
		}
		dst := &out
		if parts[1] == "stderr" {
			dst = &errs
		}
		dst.WriteString(partial.String() + "\n")
		partial.Reset()
	}
	return out.String(), errs.String()
}

// alertLines are the Falco JSON alerts among an agent's stdout lines.
func alertLines(stdout string) []alertLine {
	var out []alertLine
	for _, line := range strings.Split(stdout, "\n") {
		var al alertLine
		if line != "" && json.Unmarshal([]byte(line), &al) == nil && al.Rule != "" {
			out = append(out, al)
		}
	}
	return out
}

func k8sGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
