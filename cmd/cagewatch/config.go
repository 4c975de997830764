package main

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/cast"
	"github.com/spf13/viper"

	"github.com/cagewatch/cagewatch/configs"
	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/alerts"
	"github.com/cagewatch/cagewatch/profiler/fleet"
)

// Config keys: one name for the YAML file, the CAGEWATCH_* environment and flags.
const (
	keyMode             = "mode"
	keyWindow           = "window"
	keyStore            = "store"
	keyMetricsListen    = "metrics.listen"
	keyAlertsFile       = "alerts.file"
	keyRules            = "rules"
	keyCgroupRoot       = "containers.cgroup_root"
	keyDockerSocket     = "containers.docker_socket"
	keyPodmanSocket     = "containers.podman_socket"
	keyContainerdSocket = "containers.containerd_socket"
	keyCRIOSocket       = "containers.crio_socket"
	keyStatic           = "containers.static"
	keyWatchPrefixes    = "sensor.watch_prefixes"
	keyWatchNames       = "sensor.watch_names"
	keyWatchPorts       = "sensor.watch_ports"
	keyKernelBTF        = "sensor.kernel_btf"
	keyHistogramSlots   = "sensor.histogram_slots"

	keyIgnoreFirst   = "learning.ignore_first"
	keyMinWindows    = "learning.min_windows"
	keyMinContainers = "learning.min_containers"
	keyStableWindows = "learning.stable_windows"
	keyMaxDrift      = "learning.max_drift"
	keySampleSize    = "learning.sample_size"
	keyPriorWindows  = "learning.prior_windows"
	keyLearningKey   = "learning.key"

	keyBudget          = "scoring.false_positive_budget"
	keyDedup           = "alerts.dedup_interval"
	keyContainerLimit  = "alerts.container_limit"
	keyWebhookURL      = "alerts.webhook.url"
	keyWebhookQueue    = "alerts.webhook.queue_size"
	keyWebhookAttempts = "alerts.webhook.max_attempts"
	keyWebhookBackoff  = "alerts.webhook.backoff"

	keySyslogAddress    = "alerts.syslog.address"
	keySyslogFacility   = "alerts.syslog.facility"
	keySyslogQueue      = "alerts.syslog.queue_size"
	keySyslogHostname   = "alerts.syslog.hostname"
	keySyslogCAFile     = "alerts.syslog.tls.ca_file"
	keySyslogCertFile   = "alerts.syslog.tls.cert_file"
	keySyslogKeyFile    = "alerts.syslog.tls.key_file"
	keySyslogServerName = "alerts.syslog.tls.server_name"

	keyRecordFile     = "record.file"
	keyRecordMaxBytes = "record.max_bytes"

	keyFleetEndpoints = "fleet.etcd.endpoints"
	keyFleetPrefix    = "fleet.etcd.prefix"
	keyFleetCAFile    = "fleet.etcd.ca_file"
	keyFleetCertFile  = "fleet.etcd.cert_file"
	keyFleetKeyFile   = "fleet.etcd.key_file"
	keyFleetNode      = "fleet.node"
	keyFleetInterval  = "fleet.publish_interval"
)

// knownKeys are the keys a config file may set; anything else is a typo we report.
// learning.* and scoring.* are reserved for the learning and scoring stages.
var knownKeys = []string{
	keyMode, keyWindow, keyStore, keyMetricsListen, keyAlertsFile, keyRules,
	keyCgroupRoot, keyDockerSocket, keyPodmanSocket, keyContainerdSocket, keyCRIOSocket, keyStatic,
	keyWatchPrefixes, keyWatchNames, keyWatchPorts, keyKernelBTF, keyHistogramSlots,
	keyIgnoreFirst, keyMinWindows, keyMinContainers, keyStableWindows, keyMaxDrift, keySampleSize, keyPriorWindows, keyLearningKey,
	keyBudget, keyDedup, keyContainerLimit, keyWebhookURL, keyWebhookQueue, keyWebhookAttempts, keyWebhookBackoff,
	keySyslogAddress, keySyslogFacility, keySyslogQueue, keySyslogHostname,
	keySyslogCAFile, keySyslogCertFile, keySyslogKeyFile, keySyslogServerName,
	keyRecordFile, keyRecordMaxBytes,
	keyFleetEndpoints, keyFleetPrefix, keyFleetCAFile, keyFleetCertFile, keyFleetKeyFile, keyFleetNode, keyFleetInterval,
}

// reservedPrefixes are sections later stages read; their keys are not checked here.
var reservedPrefixes = []string{}

// newViper layers the embedded defaults, the optional config file and the
// CAGEWATCH_* environment. Flags are bound by the caller.
func newViper(configFile string) (*viper.Viper, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(configs.DefaultYAML)); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	if configFile != "" {
		raw, err := os.ReadFile(configFile)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		file := viper.New()
		file.SetConfigType("yaml")
		if err := file.ReadConfig(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("config file %s: %w", configFile, err)
		}
		if err := checkKeys(file.AllKeys()); err != nil {
			return nil, fmt.Errorf("config file %s: %w", configFile, err)
		}
		if err := v.MergeConfigMap(file.AllSettings()); err != nil {
			return nil, fmt.Errorf("config file %s: %w", configFile, err)
		}
	}
	v.SetEnvPrefix("CAGEWATCH")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	return v, nil
}

func checkKeys(keys []string) error {
	var unknown []string
	for _, k := range keys {
		if slices.Contains(knownKeys, k) {
			continue
		}
		if slices.ContainsFunc(reservedPrefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			continue
		}
		unknown = append(unknown, k)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown key %s", strings.Join(quoteAll(unknown), ", "))
	}
	return nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strconv.Quote(x)
	}
	return out
}

// keyError names the key a bad value came from.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return fmt.Sprintf("config key %s: %v", e.key, e.err) }
func (e *keyError) Unwrap() error { return e.err }

// loadConfig validates every key and returns the agent's config.
func loadConfig(v *viper.Viper) (profiler.Config, error) {
	var errs []error
	bad := func(key string, err error) { errs = append(errs, &keyError{key, err}) }

	cfg := profiler.Config{
		Mode:          profiler.Mode(v.GetString(keyMode)),
		Store:         v.GetString(keyStore),
		MetricsListen: v.GetString(keyMetricsListen),
		Rules:         v.GetString(keyRules),
		Containers: profiler.ContainersConfig{
			CgroupRoot:       v.GetString(keyCgroupRoot),
			DockerSocket:     v.GetString(keyDockerSocket),
			PodmanSocket:     v.GetString(keyPodmanSocket),
			ContainerdSocket: v.GetString(keyContainerdSocket),
			CRIOSocket:       v.GetString(keyCRIOSocket),
		},
	}
	if !slices.Contains(profiler.Modes, cfg.Mode) {
		bad(keyMode, fmt.Errorf("unknown mode %q (want one of %s)", cfg.Mode, modeList()))
	}
	window, err := parseDuration(v.Get(keyWindow))
	switch {
	case err != nil:
		bad(keyWindow, err)
	case window < 100*time.Millisecond || window > time.Hour:
		bad(keyWindow, fmt.Errorf("%v out of range (100ms..1h)", window))
	}
	cfg.Window = window
	if cfg.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(cfg.MetricsListen); err != nil {
			bad(keyMetricsListen, fmt.Errorf("%q is not host:port", cfg.MetricsListen))
		}
	}
	if cfg.Store == "" {
		bad(keyStore, errors.New("empty path"))
	}

	if err := decodeStrict(v.Get(keyStatic), &cfg.Containers.Static); err != nil {
		bad(keyStatic, err)
	}
	for i, r := range cfg.Containers.Static {
		if _, err := path.Match(r.Cgroup, "/"); err != nil || !strings.HasPrefix(r.Cgroup, "/") {
			bad(fmt.Sprintf("%s[%d].cgroup", keyStatic, i), fmt.Errorf("%q is not an absolute glob", r.Cgroup))
		}
		if r.Image == "" {
			bad(fmt.Sprintf("%s[%d].image", keyStatic, i), errors.New("empty image"))
		}
	}

	cfg.Learning = loadLearning(v, bad)
	fc, err := loadFleet(v, bad)
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Fleet = fc
	cfg.Alerts = loadAlerts(v, bad)
	cfg.RecordFile = v.GetString(keyRecordFile)
	maxBytes, err := cast.ToInt64E(v.Get(keyRecordMaxBytes))
	if err != nil || maxBytes < 4096 {
		bad(keyRecordMaxBytes, fmt.Errorf("%v is not a size in bytes >= 4096", v.Get(keyRecordMaxBytes)))
	}
	cfg.RecordMaxBytes = maxBytes
	budget, err := cast.ToFloat64E(v.Get(keyBudget))
	if err != nil || !(budget > 0) || math.IsInf(budget, 0) {
		bad(keyBudget, fmt.Errorf("%v is not a positive number of false alerts per container-day", v.Get(keyBudget)))
	}
	cfg.Budget = budget

	cfg.Sensor.KernelBTF = v.GetString(keyKernelBTF)
	slots, err := cast.ToIntE(v.Get(keyHistogramSlots))
	if err != nil || slots < 1 || slots >= 1<<20 {
		bad(keyHistogramSlots, fmt.Errorf("%v is not a slot count between 1 and 1048575", v.Get(keyHistogramSlots)))
	}
	cfg.Sensor.HistogramSlots = slots
	cfg.Sensor.WatchPrefixes = v.GetStringSlice(keyWatchPrefixes)
	cfg.Sensor.WatchNames = v.GetStringSlice(keyWatchNames)
	for i, p := range cfg.Sensor.WatchPrefixes {
		if !strings.HasPrefix(p, "/") || len(p) > 255 {
			bad(fmt.Sprintf("%s[%d]", keyWatchPrefixes, i), fmt.Errorf("%q must be an absolute path of at most 255 bytes", p))
		}
	}
	for i, n := range cfg.Sensor.WatchNames {
		if n == "" || strings.Contains(n, "/") || len(n) > 63 {
			bad(fmt.Sprintf("%s[%d]", keyWatchNames, i), fmt.Errorf("%q must be a file name of 1..63 bytes", n))
		}
	}
	var ports []int
	if err := decodeStrict(v.Get(keyWatchPorts), &ports); err != nil {
		bad(keyWatchPorts, err)
	}
	for i, p := range ports {
		if p < 0 || p > 65535 {
			bad(fmt.Sprintf("%s[%d]", keyWatchPorts, i), fmt.Errorf("port %d out of range 0..65535", p))
			continue
		}
		cfg.Sensor.WatchPorts = append(cfg.Sensor.WatchPorts, uint16(p))
	}
	return cfg, errors.Join(errs...)
}

func modeList() string {
	s := make([]string, len(profiler.Modes))
	for i, m := range profiler.Modes {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}

// parseDuration accepts Go durations ("10s", "1m30s"); a bare number is refused
// because its unit would be a guess.
func parseDuration(raw any) (time.Duration, error) {
	switch x := raw.(type) {
	case time.Duration:
		return x, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q (use a unit, e.g. 10s)", x)
		}
		return d, nil
	default:
		return 0, fmt.Errorf("invalid duration %v (use a unit, e.g. 10s)", raw)
	}
}

func decodeStrict(in any, out any) error {
	if in == nil {
		return nil
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: out, ErrorUnused: true, WeaklyTypedInput: true,
	})
	if err != nil {
		return err
	}
	return dec.Decode(in)
}

func loadLearning(v *viper.Viper, bad func(string, error)) profiler.LearnerConfig {
	var lc profiler.LearnerConfig
	ignore, err := parseDuration(v.Get(keyIgnoreFirst))
	if err != nil || ignore < 0 {
		bad(keyIgnoreFirst, cmp.Or(err, fmt.Errorf("negative duration %v", ignore)))
	}
	lc.IgnoreFirst = ignore
	positive := func(key string, lowest int) int {
		n, err := cast.ToIntE(v.Get(key))
		if err != nil || n < lowest {
			bad(key, fmt.Errorf("%v is not an integer >= %d", v.Get(key), lowest))
		}
		return n
	}
	lc.MinWindows = uint64(max(positive(keyMinWindows, 1), 0))
	lc.MinContainers = positive(keyMinContainers, 1)
	lc.StableWindows = uint64(max(positive(keyStableWindows, 2), 0)) // a block of one has no variance
	lc.SampleSize = positive(keySampleSize, 1)
	lc.PriorWindows = positive(keyPriorWindows, 0)
	if lc.PriorWindows > lc.SampleSize {
		bad(keyPriorWindows, fmt.Errorf("%d is more than %s (%d): a prior is taken from the sampled windows", lc.PriorWindows, keySampleSize, lc.SampleSize))
	}
	drift, err := cast.ToFloat64E(v.Get(keyMaxDrift))
	if err != nil || drift <= 0 || math.IsNaN(drift) || math.IsInf(drift, 0) {
		bad(keyMaxDrift, fmt.Errorf("%v is not a positive number", v.Get(keyMaxDrift)))
	}
	lc.MaxDrift = drift
	lc.KeyBy = model.KeyBy(v.GetString(keyLearningKey))
	if !slices.Contains(model.KeyBys, lc.KeyBy) {
		bad(keyLearningKey, fmt.Errorf("%q is not one of %v", lc.KeyBy, model.KeyBys))
	}
	return lc
}

func loadAlerts(v *viper.Viper, bad func(string, error)) profiler.AlertsConfig {
	ac := profiler.AlertsConfig{File: v.GetString(keyAlertsFile), WebhookURL: v.GetString(keyWebhookURL)}
	var err error
	if ac.DedupInterval, err = parseDuration(v.Get(keyDedup)); err != nil || ac.DedupInterval < 0 {
		bad(keyDedup, cmp.Or(err, fmt.Errorf("negative duration %v", ac.DedupInterval)))
	}
	if ac.ContainerLimit, err = cast.ToIntE(v.Get(keyContainerLimit)); err != nil || ac.ContainerLimit < 0 {
		bad(keyContainerLimit, fmt.Errorf("%v is not an integer >= 0 (0: no cap)", v.Get(keyContainerLimit)))
	}
	if ac.WebhookBackoff, err = parseDuration(v.Get(keyWebhookBackoff)); err != nil || ac.WebhookBackoff <= 0 {
		bad(keyWebhookBackoff, cmp.Or(err, fmt.Errorf("%v is not positive", ac.WebhookBackoff)))
	}
	if ac.WebhookQueue, err = cast.ToIntE(v.Get(keyWebhookQueue)); err != nil || ac.WebhookQueue < 1 {
		bad(keyWebhookQueue, fmt.Errorf("%v is not an integer >= 1", v.Get(keyWebhookQueue)))
	}
	if ac.WebhookAttempts, err = cast.ToIntE(v.Get(keyWebhookAttempts)); err != nil || ac.WebhookAttempts < 1 {
		bad(keyWebhookAttempts, fmt.Errorf("%v is not an integer >= 1", v.Get(keyWebhookAttempts)))
	}
	if ac.WebhookURL != "" {
		if u, err := url.Parse(ac.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(keyWebhookURL, fmt.Errorf("%q is not an http(s) URL", ac.WebhookURL))
		}
	}
	loadSyslog(v, bad, &ac)
	return ac
}

// loadSyslog checks alerts.syslog.*, reading the TLS files now so that a bad
// path stops the agent at start rather than costing every alert later.
func loadSyslog(v *viper.Viper, bad func(string, error), ac *profiler.AlertsConfig) {
	ac.SyslogAddress = v.GetString(keySyslogAddress)
	ac.SyslogFacility = v.GetString(keySyslogFacility)
	ac.SyslogHostname = v.GetString(keySyslogHostname)
	ac.SyslogCAFile = v.GetString(keySyslogCAFile)
	ac.SyslogCertFile = v.GetString(keySyslogCertFile)
	ac.SyslogKeyFile = v.GetString(keySyslogKeyFile)
	ac.SyslogServerName = v.GetString(keySyslogServerName)
	var err error
	if ac.SyslogQueue, err = cast.ToIntE(v.Get(keySyslogQueue)); err != nil || ac.SyslogQueue < 1 {
		bad(keySyslogQueue, fmt.Errorf("%v is not an integer >= 1", v.Get(keySyslogQueue)))
	}
	if _, err := alerts.ParseFacility(ac.SyslogFacility); err != nil {
		bad(keySyslogFacility, err)
	}
	if h := ac.SyslogHostname; h != "" && (len(h) > 255 || strings.IndexFunc(h, func(r rune) bool { return r < 33 || r > 126 }) >= 0) {
		bad(keySyslogHostname, fmt.Errorf("%q is not 1..255 printable ASCII characters without spaces", h))
	}
	if ac.SyslogAddress == "" {
		return
	}
	transport, _, err := alerts.ParseSyslogAddress(ac.SyslogAddress)
	if err != nil {
		bad(keySyslogAddress, err)
		return
	}
	files := map[string]string{keySyslogCAFile: ac.SyslogCAFile, keySyslogCertFile: ac.SyslogCertFile,
		keySyslogKeyFile: ac.SyslogKeyFile, keySyslogServerName: ac.SyslogServerName}
	if transport != "tls" {
		// A CA file next to a tcp:// address reads as encrypted and is not.
		for _, k := range slices.Sorted(maps.Keys(files)) {
			if files[k] != "" {
				bad(k, fmt.Errorf("set, but %s is %q, not tls://", keySyslogAddress, ac.SyslogAddress))
			}
		}
		return
	}
	if ac.SyslogCAFile != "" {
		if _, err := alerts.ReadCAFile(ac.SyslogCAFile); err != nil {
			bad(keySyslogCAFile, err)
		}
	}
	switch {
	case ac.SyslogCertFile != "" && ac.SyslogKeyFile == "":
		bad(keySyslogKeyFile, fmt.Errorf("empty, but %s is set", keySyslogCertFile))
	case ac.SyslogCertFile == "" && ac.SyslogKeyFile != "":
		bad(keySyslogCertFile, fmt.Errorf("empty, but %s is set", keySyslogKeyFile))
	case ac.SyslogCertFile != "":
		if _, err := tls.LoadX509KeyPair(ac.SyslogCertFile, ac.SyslogKeyFile); err != nil {
			bad(keySyslogCertFile, fmt.Errorf("%s with %s: %w", ac.SyslogCertFile, ac.SyslogKeyFile, err))
		}
	}
}

// loadFleet reads fleet.*; fleet.Validate names the key of each problem.
func loadFleet(v *viper.Viper, bad func(string, error)) (fleet.Config, error) {
	fc := fleet.Config{
		Prefix: v.GetString(keyFleetPrefix), Node: v.GetString(keyFleetNode),
		CAFile: v.GetString(keyFleetCAFile), CertFile: v.GetString(keyFleetCertFile), KeyFile: v.GetString(keyFleetKeyFile),
	}
	// CAGEWATCH_FLEET_ETCD_ENDPOINTS=a:2379,b:2379 arrives as one string.
	for _, e := range v.GetStringSlice(keyFleetEndpoints) {
		for _, part := range strings.Split(e, ",") {
			if part = strings.TrimSpace(part); part != "" {
				fc.Endpoints = append(fc.Endpoints, part)
			}
		}
	}
	if fc.Node == "" {
		host, err := os.Hostname()
		if err != nil {
			bad(keyFleetNode, fmt.Errorf("empty and the host name is unknown: %w", err))
		}
		fc.Node = host
	}
	interval, err := parseDuration(v.Get(keyFleetInterval))
	if err != nil {
		bad(keyFleetInterval, err)
		interval = fleet.DefaultPublishInterval // checked once, not twice
	}
	fc.PublishInterval = interval
	return fc, fc.Validate()
}
