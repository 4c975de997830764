package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cagewatch/cagewatch/store"
)

// TestK8s (issue 16, item 1; `make e2e-k8s`): pods run through a real
// containerd's CRI API as kubelet runs them (a sandbox with a kubepods cgroup
// parent, then a container created and started in it, stopped and removed at
// the end), in two namespaces with app.kubernetes.io labels, all from one
// image. The agent, pointed at that containerd, must resolve each pod's
// container (name, pod, namespace, labels, image by Docker's name), learn one
// baseline for the image from every pod, and raise a hard-rule alert from the
// one pod that attacks, with Falco's k8s fields. .ci/containerd.sh starts the
// containerd and imports the images.

const k8sImage = "docker.io/cagewatch/busybox:1" // as CRI names cagewatch/busybox:1

type k8sPod struct {
	name, namespace, app, script string
	labels                       map[string]string // controller labels kubelet copies from the template
	uid, sandbox, container      string
}

func k8sSocket(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("K8S_CONTAINERD_DIR")
	if dir == "" {
		dir = "/tmp/cagewatch-containerd"
	}
	sock := filepath.Join(dir, "containerd.sock")
	if _, err := os.Stat(sock); err != nil {
		if os.Getenv("CAGEWATCH_REQUIRE_DOCKER") != "" {
			t.Fatalf("containerd socket %s: %v (run .ci/containerd.sh start)", sock, err)
		}
		t.Skipf("no test containerd at %s (.ci/containerd.sh start)", sock)
	}
	return sock
}

func podUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// runPod starts a pod as kubelet would: sandbox, then its one container "main".
func runPod(ctx context.Context, t *testing.T, rt cri.RuntimeServiceClient, logDir string, p *k8sPod) {
	t.Helper()
	p.uid = podUID()
	labels := map[string]string{"app.kubernetes.io/name": p.app, "app.kubernetes.io/part-of": "cagewatch-test",
		"io.kubernetes.pod.name": p.name, "io.kubernetes.pod.namespace": p.namespace, "io.kubernetes.pod.uid": p.uid}
	maps.Copy(labels, p.labels)
	hostNet := &cri.NamespaceOption{Network: cri.NamespaceMode_NODE}
	sbConfig := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: p.name, Namespace: p.namespace, Uid: p.uid},
		LogDirectory: filepath.Join(logDir, p.uid),
		Labels:       labels,
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent:    "/kubepods/besteffort/pod" + p.uid,
			SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: hostNet},
		},
	}
	sb, err := rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: sbConfig})
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v", p.namespace, p.name, err)
	}
	p.sandbox = sb.GetPodSandboxId()
	c, err := rt.CreateContainer(ctx, &cri.CreateContainerRequest{PodSandboxId: p.sandbox, SandboxConfig: sbConfig,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "main"},
			Image:    &cri.ImageSpec{Image: k8sImage},
			Command:  []string{"sh", "-c", p.script},
			LogPath:  "main.log",
			Labels: map[string]string{"io.kubernetes.container.name": "main", "io.kubernetes.pod.name": p.name,
				"io.kubernetes.pod.namespace": p.namespace, "io.kubernetes.pod.uid": p.uid},
			Linux: &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{NamespaceOptions: hostNet}},
		}})
	if err != nil {
		t.Fatalf("CreateContainer in %s/%s: %v", p.namespace, p.name, err)
	}
	p.container = c.GetContainerId()
	if _, err := rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: p.container}); err != nil {
		t.Fatalf("StartContainer in %s/%s: %v", p.namespace, p.name, err)
	}
}

func removePod(rt cri.RuntimeServiceClient, p *k8sPod) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if p.sandbox == "" {
		return
	}
	_, _ = rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.sandbox})
	_, _ = rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.sandbox})
	// The pod's own cgroup is kubelet's to remove, in every hierarchy.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods/besteffort/pod" + p.uid)
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

func TestK8s(t *testing.T) {
	requireRoot(t)
	sock := k8sSocket(t)
	bin := cagewatchBinary(t)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := cri.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := rt.Version(ctx, &cri.VersionRequest{}); err != nil {
		t.Fatalf("CRI Version at %s: %v", sock, err)
	}

	dir := t.TempDir()
	config := writeConfig(t, fmt.Sprintf(`mode: auto
window: 1s
store: %s
metrics: {listen: ""}
alerts: {dedup_interval: 0s, container_limit: 0}
learning: {ignore_first: 2s, min_windows: 20, stable_windows: 5}
containers: {containerd_socket: %s}
`, filepath.Join(dir, "store", "cagewatch.db"), sock))
	agent := e2eStartAgent(t, bin, config)
	defer agent.stop()

	const benign = "while :; do cat /etc/hostname >/dev/null; sleep 0.2; done"
	const worker = "while :; do ls /bin >/dev/null; echo job >/tmp/job; sleep 0.3; done"
	web := map[string]string{"pod-template-hash": "7d9f8c6b5"}
	// One image in three roles: a web Deployment of two replicas, a worker
	// Deployment beside it, and a CronJob's job in another namespace.
	pods := []*k8sPod{
		{name: "web-7d9f8c6b5-x2k4q", namespace: "shop", app: "web", script: benign, labels: web},
		{name: "web-7d9f8c6b5-p9z7m", namespace: "shop", app: "web", script: benign, labels: web},
		{name: "worker-6f4b8d7c9-tz5vn", namespace: "shop", app: "worker", script: worker,
			labels: map[string]string{"pod-template-hash": "6f4b8d7c9"}},
		{name: "report-28910450-kq2vd", namespace: "batch", app: "report", script: benign,
			labels: map[string]string{"batch.kubernetes.io/job-name": "report-28910450"}},
	}
	logDir := filepath.Join(dir, "pods")
	for _, p := range pods {
		runPod(ctx, t, rt, logDir, p)
		defer removePod(rt, p)
	}
	waitFor(t, 2*time.Minute, "the image's baseline to become stable", func() bool {
		return strings.Contains(agent.log.String(), `msg="baseline stable" profile=cagewatch/busybox:1`)
	})

	attacker := &k8sPod{name: "debug-5c8d7f9b4-h4wqt", namespace: "batch", app: "debug",
		script: "sleep 2; cat /etc/shadow >/dev/null 2>&1; sleep 60"}
	runPod(ctx, t, rt, logDir, attacker)
	defer removePod(rt, attacker)
	pods = append(pods, attacker)
	waitFor(t, 30*time.Second, "the attacking pod's alert", func() bool { return len(agent.alertsFor(attacker.container)) > 0 })

	// Each pod's container resolved with its pod, namespace, name, labels and image.
	resolved := 0
	for _, p := range pods {
		line := resolvedLine(agent.log.String(), p.container)
		want := []string{"name=main", "image=cagewatch/busybox:1", "pod=" + p.name, "namespace=" + p.namespace,
			"app.kubernetes.io/name:" + p.app}
		ok := line != ""
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			resolved++
		} else {
			t.Errorf("pod %s/%s: resolution %q lacks one of %v", p.namespace, p.name, line, want)
		}
	}
	fmt.Printf("pods resolved: %d/%d\n", resolved, len(pods))

	// The alert carries Falco's k8s and container fields.
	for _, al := range agent.alerts() {
		raw, _ := json.Marshal(al)
		fmt.Println(string(raw))
	}
	var shadow *alertLine
	for _, al := range agent.alertsFor(attacker.container) {
		if al.Rule == "sensitive_file" {
			shadow = &al
		}
	}
	if shadow == nil {
		t.Fatalf("no sensitive_file alert from %s/%s", attacker.namespace, attacker.name)
	}
	for field, want := range map[string]any{"k8s.pod.name": attacker.name, "k8s.ns.name": attacker.namespace,
		"container.name": "main", "container.image.repository": "cagewatch/busybox", "container.image.tag": "1",
		"k8s.pod.label.app.kubernetes.io/name": attacker.app} {
		if got := shadow.OutputFields[field]; got != want {
			t.Errorf("alert field %s = %v, want %v", field, got, want)
		}
	}
	for _, al := range agent.alerts() {
		if al.OutputFields["container.id"] != attacker.container {
			t.Errorf("alert from a benign pod: %s %v", al.Rule, al.OutputFields["k8s.pod.name"])
		}
	}

	// The DaemonSet's probe passes while the agent serves.
	if out, err := exec.Command(bin, "--config", config, "--log-level", "warn", "status", "--require-agent").CombinedOutput(); err != nil {
		t.Errorf("status --require-agent with the agent running: %v\n%s", err, out)
	}

	// One baseline for the image, learned from every benign pod.
	out, err := exec.Command(bin, "--config", config, "--log-level", "warn", "baseline", "export").Output()
	if err != nil {
		t.Fatalf("baseline export: %v", err)
	}
	bs, err := store.Import(strings.NewReader(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Key() != "cagewatch/busybox:1" {
		keys := []string{}
		for _, b := range bs {
			keys = append(keys, b.Key())
		}
		t.Fatalf("baselines %v, want only cagewatch/busybox:1", keys)
	}
	benignPods := pods[:len(pods)-1]
	for _, p := range benignPods {
		if bs[0].Containers[p.container] == 0 {
			t.Errorf("pod %s/%s taught the baseline nothing (containers %v)", p.namespace, p.name, bs[0].Containers)
		}
	}

	// The agent's own image as a DaemonSet pod, keyed by workload.
	agent.stop()
	removePod(rt, attacker)
	k8sAgentPod(ctx, t, rt, sock, logDir, benignPods)
}

// resolvedLine is the agent's "container resolved" log line for a container.
func resolvedLine(log, containerID string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="container resolved"`) && strings.Contains(line, "container_id="+containerID) {
			return line
		}
	}
	return ""
}
