package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func requirePrometheus(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("prometheus"); err != nil {
		if os.Getenv("CAGEWATCH_REQUIRE_PROMETHEUS") != "" {
			t.Fatal("CAGEWATCH_REQUIRE_PROMETHEUS is set but prometheus is not installed")
		}
		t.Skip("prometheus not installed (apt-get install prometheus)")
	}
}

func TestPrometheusRulesFileChecks(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CAGEWATCH_REQUIRE_PROMETHEUS") != "" {
			t.Fatal("CAGEWATCH_REQUIRE_PROMETHEUS is set but promtool is not installed")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	out, err := exec.Command("promtool", "check", "rules", "../../configs/prometheus-rules.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// TestBPFDashboardQueriesAgainstPrometheus runs the agent on a workload that
// learns, trips a hard rule and a statistical rule, has a real Prometheus scrape
// it, and runs every dashboard panel's query through Prometheus's HTTP API: each
// must parse and return data.
func TestBPFDashboardQueriesAgainstPrometheus(t *testing.T) {
	requirePrometheus(t)
	dir, parent := pacedCgroup(t, "cagewatch-prom", "web1")
	bin := cagewatchBinary(t)
	tmp := t.TempDir()
	metricsPort, promPort := freePort(t), freePort(t)
	config := writeConfig(t, fmt.Sprintf(`
mode: auto
window: 1s
store: %s/cagewatch.db
metrics: {listen: "127.0.0.1:%d"}
learning: {ignore_first: 1s, min_windows: 12, stable_windows: 3}
containers:
  static: [{cgroup: "/%s/*", image: "e2e/prom:1"}]
`, tmp, metricsPort, parent))
	startInCgroup(t, dir, pacedSteady)
	_, stdout, log := runAgentProcess(t, bin, config)

	promCfg := filepath.Join(tmp, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(
		"global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: cagewatch\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n",
		metricsPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	promLog := &syncBuffer{}
	prom := exec.Command("prometheus", "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(tmp, "tsdb"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
		if t.Failed() {
			t.Logf("prometheus log (tail):\n%s", tail(promLog.String(), 20))
		}
	})

	waitFor(t, 60*time.Second, "the baseline to become stable", func() bool {
		return strings.Contains(log.String(), `msg="baseline stable" profile=e2e/prom:1`)
	})
	// A hard rule and a statistical alert, so every panel has something to show.
	shadow := `import time
open("/etc/shadow").close()
time.sleep(3600)`
	startInCgroup(t, dir, shadow)
	startInCgroup(t, dir, pacedDifferent)
	waitFor(t, 30*time.Second, "the image's libc6 to be in use", func() bool {
		out, err := exec.Command(bin, "--config", config, "inuse", "e2e/prom:1", "--json").Output()
		var inv struct{ Packages []model.PackageUse }
		return err == nil && json.Unmarshal(out, &inv) == nil &&
			slices.ContainsFunc(inv.Packages, func(u model.PackageUse) bool { return u.Name == "libc6" && u.Status == model.PackageInUse })
	})
	// A scanner report whose critical finding is in a package the workload
	// runs, for the vulnerability panel: the fixture's critical zlib1g finding
	// moved to libc6, which every dynamically linked python loads.
	report, err := os.ReadFile("../../model/testdata/vulns/grype-debian.json")
	if err != nil {
		t.Fatal(err)
	}
	reportFile := filepath.Join(tmp, "grype.json")
	if err := os.WriteFile(reportFile, bytes.ReplaceAll(report, []byte(`"zlib1g"`), []byte(`"libc6"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, bin, "--config", config, "vulns", "import", "e2e/prom:1", reportFile)
	// The next hard-rule alert carries the image's in-use vulnerabilities.
	startInCgroup(t, dir, shadow)
	waitFor(t, 30*time.Second, "an alert with cagewatch.image_vulns", func() bool {
		return strings.Contains(stdout.String(), `"cagewatch.image_vulns":{"critical":1`)
	})
	defer func() {
		if t.Failed() {
			t.Logf("cagewatch report:\n%s", cli(t, bin, "--config", config, "report"))
		}
	}()

	var dash dashboard
	raw, err := os.ReadFile("../../configs/grafana/cagewatch.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
	}
	for _, want := range []string{"datasource", "image", "container"} {
		if !vars[want] {
			t.Errorf("dashboard lacks the %q variable", want)
		}
	}
	substitute := strings.NewReplacer("$__rate_interval", "15s", "$__range", "10m", "$image", ".*", "$container", ".*")
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	queries := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			expr := substitute.Replace(target.Expr)
			queries++
			var last string
			deadline := time.Now().Add(60 * time.Second)
			for {
				n, err := promQuery(promURL, expr)
				if err == nil && n > 0 {
					break
				}
				last = fmt.Sprintf("%d series, err %v", n, err)
				if err != nil && strings.Contains(err.Error(), "bad_data") {
					t.Fatalf("panel %q: query %q does not parse: %v", p.Title, expr, err)
				}
				if time.Now().After(deadline) {
					t.Errorf("panel %q: query %q returned no data: %s", p.Title, expr, last)
					break
				}
				time.Sleep(time.Second)
			}
		}
	}
	if queries < 10 {
		t.Errorf("only %d panel queries in the dashboard", queries)
	}
}

// promQuery runs an instant query and returns the number of series in the result.
func promQuery(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("%s: %s", body.ErrorType, body.Error)
	}
	return len(body.Data.Result), nil
}
