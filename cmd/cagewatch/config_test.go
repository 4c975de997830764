package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	if !strings.Contains(body, "metrics") {
		// A free port: the default one may be taken by an agent already running here.
		body += "\nmetrics: {listen: \"127.0.0.1:0\"}\n"
	}
	p := filepath.Join(t.TempDir(), "cagewatch.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaults(t *testing.T) {
	v, err := newViper("")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(v)
	if err != nil {
		t.Fatalf("embedded defaults do not validate: %v", err)
	}
	if cfg.Mode != profiler.ModeAuto || cfg.Window != 10*time.Second || cfg.MetricsListen != "127.0.0.1:9479" {
		t.Errorf("defaults: mode %q window %v metrics %q", cfg.Mode, cfg.Window, cfg.MetricsListen)
	}
	if len(cfg.Sensor.WatchPrefixes) == 0 || len(cfg.Sensor.WatchNames) == 0 || len(cfg.Sensor.WatchPorts) == 0 {
		t.Errorf("default sensor filters empty: %+v", cfg.Sensor)
	}
	if cfg.Learning.KeyBy != model.KeyByImage {
		t.Errorf("learning.key %q, want image by default", cfg.Learning.KeyBy)
	}
}

func TestLoadConfigLayers(t *testing.T) {
	file := writeConfig(t, `
mode: learn
window: 5s
containers:
  static:
    - {cgroup: "/cagewatch-e2e/*", image: "e2e/app:1"}
sensor:
  watch_ports: [22, 0]
`)
	t.Setenv("CAGEWATCH_WINDOW", "2s")
	v, err := newViper(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != profiler.ModeLearn {
		t.Errorf("mode %q, want learn from the file", cfg.Mode)
	}
	if cfg.Window != 2*time.Second {
		t.Errorf("window %v, want 2s from the environment", cfg.Window)
	}
	if len(cfg.Containers.Static) != 1 || cfg.Containers.Static[0].Image != "e2e/app:1" {
		t.Errorf("static rules %+v", cfg.Containers.Static)
	}
	if len(cfg.Sensor.WatchPorts) != 2 || cfg.Sensor.WatchPorts[1] != 0 {
		t.Errorf("watch ports %v", cfg.Sensor.WatchPorts)
	}
	if cfg.Store != "/var/lib/cagewatch/cagewatch.db" {
		t.Errorf("store %q: keys the file does not set keep their defaults", cfg.Store)
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string // every substring must appear
	}{
		{name: "unknown mode", yaml: "mode: watch\n", want: []string{"mode", `"watch"`}},
		{name: "malformed duration", yaml: "window: 10x\n", want: []string{"window", `"10x"`}},
		{name: "duration without unit", yaml: "window: 10\n", want: []string{"window", "10"}},
		{name: "window out of range", yaml: "window: 1ms\n", want: []string{"window", "out of range"}},
		{name: "unknown key", yaml: "windw: 10s\n", want: []string{"unknown key", `"windw"`}},
		{name: "unknown nested key", yaml: "containers:\n  dockr_socket: /x\n", want: []string{`"containers.dockr_socket"`}},
		{name: "bad static glob", yaml: "containers:\n  static: [{cgroup: \"/x/[\", image: a:1}]\n", want: []string{"containers.static[0].cgroup"}},
		{name: "static without image", yaml: "containers:\n  static: [{cgroup: \"/x/*\"}]\n", want: []string{"containers.static[0].image"}},
		{name: "static unknown field", yaml: "containers:\n  static: [{cgroup: \"/x/*\", image: a, nmae: b}]\n", want: []string{"containers.static", "nmae"}},
		{name: "port out of range", yaml: "sensor:\n  watch_ports: [22, 70000]\n", want: []string{"sensor.watch_ports[1]", "70000"}},
		{name: "histogram slots", yaml: "sensor:\n  histogram_slots: 0\n", want: []string{"sensor.histogram_slots", "between 1 and 1048575"}},
		{name: "relative watch prefix", yaml: "sensor:\n  watch_prefixes: [etc/shadow]\n", want: []string{"sensor.watch_prefixes[0]"}},
		{name: "watch name with slash", yaml: "sensor:\n  watch_names: [a/b]\n", want: []string{"sensor.watch_names[0]"}},
		{name: "unknown profile key", yaml: "learning:\n  key: pod\n", want: []string{"learning.key", `"pod"`, "workload"}},
		{name: "negative alert cap", yaml: "alerts:\n  container_limit: -1\n", want: []string{"alerts.container_limit", "-1"}},
		{name: "invalid yaml", yaml: "mode: [\n", want: []string{"config file"}},
		{name: "bad mode from the environment", yaml: "", env: map[string]string{"CAGEWATCH_MODE": "bogus"}, want: []string{"mode", `"bogus"`}},
		{name: "two problems, both named", yaml: "mode: x\nwindow: y\n", want: []string{"mode", "window"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			v, err := newViper(writeConfig(t, tt.yaml))
			if err == nil {
				_, err = loadConfig(v)
			}
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	_, err := newViper(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("error %v, want one naming the file", err)
	}
}

// TestDaemonSetConfigLoads: the DaemonSet's config (deploy/kubernetes) is valid
// for this build, with the metrics address the DaemonSet sets.
func TestDaemonSetConfigLoads(t *testing.T) {
	t.Setenv("CAGEWATCH_METRICS_LISTEN", "10.1.2.3:9479")
	v, err := newViper("../../deploy/kubernetes/config/cagewatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(v)
	if err != nil {
		t.Fatalf("deploy/kubernetes/config/cagewatch.yaml: %v", err)
	}
	if cfg.Store != "/var/lib/cagewatch/cagewatch.db" || cfg.Containers.ContainerdSocket != "/run/containerd/containerd.sock" ||
		cfg.Rules != "/etc/cagewatch/rules.yaml" || cfg.MetricsListen != "10.1.2.3:9479" {
		t.Errorf("config %+v", cfg)
	}
	if _, err := profiler.LoadRules("../../deploy/kubernetes/config/rules.yaml"); err != nil {
		t.Errorf("the DaemonSet's rules: %v", err)
	}
}
