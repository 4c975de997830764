package model

import "testing"

func TestPodOwner(t *testing.T) {
	tests := []struct {
		name, pod string
		labels    map[string]string
		want      string
	}{
		{name: "deployment with its hash label", pod: "web-7d9f8c6b5-x2k4q", labels: map[string]string{"pod-template-hash": "7d9f8c6b5"}, want: "web"},
		{name: "deployment whose name has dashes", pod: "shop-api-v2-5c8d7f9b4-h4wqt", labels: map[string]string{"pod-template-hash": "5c8d7f9b4"}, want: "shop-api-v2"},
		{name: "deployment without labels", pod: "web-7d9f8c6b5-x2k4q", want: "web"},
		{name: "statefulset", pod: "db-2", labels: map[string]string{"statefulset.kubernetes.io/pod-name": "db-2", "controller-revision-hash": "db-6b7c8d9f5"}, want: "db"},
		{name: "statefulset by pod index", pod: "kafka-broker-10", labels: map[string]string{"apps.kubernetes.io/pod-index": "10"}, want: "kafka-broker"},
		{name: "daemonset", pod: "fluentd-x2k4q", labels: map[string]string{"controller-revision-hash": "7b9d5f6c8", "pod-template-generation": "1"}, want: "fluentd"},
		{name: "daemonset whose name looks like a hash", pod: "node-agent-bcdfgh-x2k4q", labels: map[string]string{"controller-revision-hash": "7b9d5f6c8"}, want: "node-agent-bcdfgh"},
		{name: "job", pod: "migrate-x2k4q", labels: map[string]string{"job-name": "migrate"}, want: "migrate"},
		{name: "cronjob's job", pod: "report-28910450-kq2vd", labels: map[string]string{"batch.kubernetes.io/job-name": "report-28910450"}, want: "report"},
		{name: "generated name without labels", pod: "report-28910450-kq2vd", want: "report-28910450"},
		{name: "bare pod", pod: "debug", want: "debug"},
		{name: "bare pod with an ordinal-looking name and no labels", pod: "web-1", want: "web-1"},
		{name: "suffix with a vowel is not generated", pod: "api-alpha", want: "api-alpha"},
		{name: "hash label that does not match the name", pod: "web-abc12", labels: map[string]string{"pod-template-hash": "7d9f8c6b5"}, want: "web-abc12"},
		{name: "no pod", pod: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodOwner(tt.pod, tt.labels); got != tt.want {
				t.Errorf("PodOwner(%q, %v) = %q, want %q", tt.pod, tt.labels, got, tt.want)
			}
		})
	}
}

func TestWorkloadKey(t *testing.T) {
	pod := Container{Runtime: RuntimeContainerd, Name: "main", Image: "cagewatch/busybox", ImageTag: "1",
		PodName: "web-7d9f8c6b5-x2k4q", Namespace: "shop", PodOwner: "web"}
	docker := Container{Runtime: RuntimeDocker, Name: "w1", Image: "nginx", ImageTag: "1.27", Entrypoint: "/docker-entrypoint.sh"}
	tests := []struct {
		name string
		c    Container
		want string
	}{
		{name: "pod", c: pod, want: "k8s:shop/web/main"},
		{name: "docker with entrypoint", c: docker, want: "nginx:1.27#/docker-entrypoint.sh"},
		{name: "no entrypoint known", c: Container{Runtime: RuntimeStatic, Image: "e2e/app", ImageTag: "1"}, want: "e2e/app:1"},
		{name: "no image", c: Container{Runtime: RuntimeDocker, Entrypoint: "sh"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.WorkloadKey()
			if got != tt.want {
				t.Fatalf("WorkloadKey() = %q, want %q", got, tt.want)
			}
			if got == "" || got == tt.c.ImageRef() {
				return
			}
			if !IsWorkloadKey(got) {
				t.Errorf("IsWorkloadKey(%q) = false", got)
			}
			if err := ValidWorkloadKey(got); err != nil {
				t.Errorf("ValidWorkloadKey(%q): %v", got, err)
			}
			// The baseline of that workload is stored under it, and validates.
			c := tt.c
			c.Workload = got
			b := NewProfileBaseline(c)
			if b.Key() != got {
				t.Errorf("baseline key %q, want %q", b.Key(), got)
			}
			if err := b.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	for _, bad := range []string{"k8s:shop/web", "k8s://main", "nginx:1#", "#sh", "nginx:1.27"} {
		if err := ValidWorkloadKey(bad); err == nil {
			t.Errorf("ValidWorkloadKey(%q) = nil, want an error", bad)
		}
	}
	b := NewProfileBaseline(Container{Image: "", Workload: "k8s:shop/web/main"})
	if err := b.Validate(); err == nil {
		t.Error("a workload baseline without an image validates")
	}
}
