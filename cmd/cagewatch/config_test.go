package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
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

// loadTestConfig loads a config file with body, after setting env.
func loadTestConfig(t *testing.T, body string, env map[string]string) (profiler.Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	v, err := newViper(writeConfig(t, body))
	if err != nil {
		return profiler.Config{}, err
	}
	return loadConfig(v)
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
	if cfg.Learning.PriorWindows != 40 {
		t.Errorf("learning.prior_windows %d, want 40 by default", cfg.Learning.PriorWindows)
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
		{name: "negative prior", yaml: "learning:\n  prior_windows: -1\n", want: []string{"learning.prior_windows", "-1"}},
		{name: "prior beyond the sample", yaml: "learning:\n  prior_windows: 300\n",
			want: []string{"learning.prior_windows", "300", "learning.sample_size (256)"}},
		{name: "negative alert cap", yaml: "alerts:\n  container_limit: -1\n", want: []string{"alerts.container_limit", "-1"}},
		{name: "syslog bad scheme", yaml: "alerts:\n  syslog: {address: \"http://127.0.0.1:514\"}\n",
			want: []string{"alerts.syslog.address", "http://127.0.0.1:514", "udp, tcp, tls or unix"}},
		{name: "syslog no port", yaml: "alerts:\n  syslog: {address: \"tcp://collector\"}\n",
			want: []string{"alerts.syslog.address", "host:port"}},
		{name: "syslog relative unix path", yaml: "alerts:\n  syslog: {address: \"unix://dev/log\"}\n",
			want: []string{"alerts.syslog.address", "absolute"}},
		{name: "syslog bad facility", yaml: "alerts:\n  syslog: {facility: local9}\n",
			want: []string{"alerts.syslog.facility", `"local9"`, "local7"}},
		{name: "syslog queue size", yaml: "alerts:\n  syslog: {queue_size: 0}\n", want: []string{"alerts.syslog.queue_size"}},
		{name: "syslog hostname with space", yaml: "alerts:\n  syslog: {hostname: \"node 1\"}\n",
			want: []string{"alerts.syslog.hostname", `"node 1"`}},
		{name: "syslog missing ca file",
			yaml: "alerts:\n  syslog: {address: \"tls://127.0.0.1:6514\", tls: {ca_file: /nonexistent/ca.pem}}\n",
			want: []string{"alerts.syslog.tls.ca_file", "/nonexistent/ca.pem", "no such file"}},
		{name: "syslog cert without key",
			yaml: "alerts:\n  syslog: {address: \"tls://127.0.0.1:6514\", tls: {cert_file: /x/cert.pem}}\n",
			want: []string{"alerts.syslog.tls.key_file", "alerts.syslog.tls.cert_file"}},
		{name: "syslog tls settings on tcp",
			yaml: "alerts:\n  syslog: {address: \"tcp://127.0.0.1:601\", tls: {ca_file: /x/ca.pem}}\n",
			want: []string{"alerts.syslog.tls.ca_file", "not tls://"}},
		{name: "syslog unknown key", yaml: "alerts:\n  syslog: {adress: \"udp://127.0.0.1:514\"}\n",
			want: []string{"unknown key", `"alerts.syslog.adress"`}},
		{name: "syslog bad address from the environment", yaml: "",
			env:  map[string]string{"CAGEWATCH_ALERTS_SYSLOG_ADDRESS": "syslog.example:514"},
			want: []string{"alerts.syslog.address", "syslog.example:514"}},
		{name: "fleet prefix without slash", yaml: "fleet:\n  etcd: {prefix: cagewatch}\n", want: []string{"fleet.etcd.prefix", `"cagewatch"`}},
		{name: "fleet node with slash", yaml: "fleet:\n  node: a/b\n", want: []string{"fleet.node", `"a/b"`}},
		{name: "fleet interval", yaml: "fleet:\n  publish_interval: 10\n", want: []string{"fleet.publish_interval", "10"}},
		{name: "fleet interval out of range", yaml: "fleet:\n  publish_interval: 2h\n", want: []string{"fleet.publish_interval", "out of range"}},
		{name: "fleet cert without key", yaml: "fleet:\n  etcd: {cert_file: /x/cert.pem}\n", want: []string{"fleet.etcd.key_file", "fleet.etcd.cert_file"}},
		{name: "fleet missing ca file", yaml: "fleet:\n  etcd: {ca_file: /nonexistent/ca.pem}\n",
			want: []string{"fleet.etcd.ca_file", "/nonexistent/ca.pem", "no such file"}},
		{name: "fleet unknown key", yaml: "fleet:\n  etcd: {endpoint: [\"127.0.0.1:2379\"]}\n", want: []string{"unknown key", `"fleet.etcd.endpoint"`}},
		{name: "invalid yaml", yaml: "mode: [\n", want: []string{"config file"}},
		{name: "bad mode from the environment", yaml: "", env: map[string]string{"CAGEWATCH_MODE": "bogus"}, want: []string{"mode", `"bogus"`}},
		{name: "two problems, both named", yaml: "mode: x\nwindow: y\n", want: []string{"mode", "window"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadTestConfig(t, tt.yaml, tt.env)
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

func TestLoadConfigSyslog(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeTestPKI(t, dir)
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want profiler.AlertsConfig // the syslog fields
	}{
		{name: "off by default", yaml: "", want: profiler.AlertsConfig{SyslogFacility: "local0", SyslogQueue: 1024}},
		{name: "udp", yaml: "alerts:\n  syslog: {address: \"udp://127.0.0.1:514\", facility: daemon, queue_size: 8, hostname: node-1}\n",
			want: profiler.AlertsConfig{SyslogAddress: "udp://127.0.0.1:514", SyslogFacility: "daemon", SyslogQueue: 8, SyslogHostname: "node-1"}},
		{name: "unix", yaml: "alerts:\n  syslog: {address: \"unix:///dev/log\"}\n",
			want: profiler.AlertsConfig{SyslogAddress: "unix:///dev/log", SyslogFacility: "local0", SyslogQueue: 1024}},
		{name: "tls with client certificate", yaml: fmt.Sprintf("alerts:\n  syslog:\n    address: \"tls://[::1]:6514\"\n"+
			"    tls: {ca_file: %s, cert_file: %s, key_file: %s, server_name: collector}\n", ca, cert, key),
			want: profiler.AlertsConfig{SyslogAddress: "tls://[::1]:6514", SyslogFacility: "local0", SyslogQueue: 1024,
				SyslogCAFile: ca, SyslogCertFile: cert, SyslogKeyFile: key, SyslogServerName: "collector"}},
		{name: "from the environment", yaml: "",
			env:  map[string]string{"CAGEWATCH_ALERTS_SYSLOG_ADDRESS": "tcp://collector:601", "CAGEWATCH_ALERTS_SYSLOG_FACILITY": "LOCAL3"},
			want: profiler.AlertsConfig{SyslogAddress: "tcp://collector:601", SyslogFacility: "LOCAL3", SyslogQueue: 1024}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadTestConfig(t, tt.yaml, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			a := cfg.Alerts
			got := profiler.AlertsConfig{SyslogAddress: a.SyslogAddress, SyslogFacility: a.SyslogFacility, SyslogQueue: a.SyslogQueue,
				SyslogHostname: a.SyslogHostname, SyslogCAFile: a.SyslogCAFile, SyslogCertFile: a.SyslogCertFile,
				SyslogKeyFile: a.SyslogKeyFile, SyslogServerName: a.SyslogServerName}
			if got != tt.want {
				t.Errorf("syslog config\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// writeTestPKI writes a self-signed CA and a certificate and key it signed.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "PRIVATE KEY", keyDER)
}

func TestLoadConfigFleet(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		yaml      string
		env       map[string]string
		endpoints []string
		node      string
		prefix    string
		interval  time.Duration
	}{
		{name: "single node by default", node: host, prefix: "/cagewatch", interval: 10 * time.Second},
		{name: "from the file",
			yaml:      "fleet:\n  etcd: {endpoints: [\"http://127.0.0.1:2379\", \"http://127.0.0.2:2379\"], prefix: /prod}\n  node: n1\n  publish_interval: 30s\n",
			endpoints: []string{"http://127.0.0.1:2379", "http://127.0.0.2:2379"}, node: "n1", prefix: "/prod", interval: 30 * time.Second},
		{name: "endpoints from the environment, comma-separated",
			env:       map[string]string{"CAGEWATCH_FLEET_ETCD_ENDPOINTS": "http://127.0.0.1:2379,http://127.0.0.2:2379", "CAGEWATCH_FLEET_NODE": "n2"},
			endpoints: []string{"http://127.0.0.1:2379", "http://127.0.0.2:2379"}, node: "n2", prefix: "/cagewatch", interval: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadTestConfig(t, tt.yaml, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			f := cfg.Fleet
			if !slices.Equal(f.Endpoints, tt.endpoints) || f.Node != tt.node || f.Prefix != tt.prefix || f.PublishInterval != tt.interval {
				t.Errorf("fleet config %+v", f)
			}
			if f.Enabled() != (len(tt.endpoints) > 0) {
				t.Errorf("enabled %v", f.Enabled())
			}
		})
	}
}
