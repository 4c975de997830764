// Package profiler is the running agent: it samples the kernel sensor into windows,
// resolves cgroups to containers and hands windows and events on. Later stages
// (learning, scoring, rules, outputs) hang off the same loop.
package profiler

import (
	"time"

	"github.com/cagewatch/cagewatch/profiler/container"
	"github.com/cagewatch/cagewatch/profiler/fleet"
)

// Mode is what the agent does with windows.
type Mode string

const (
	ModeLearn   Mode = "learn"
	ModeDetect  Mode = "detect"
	ModeEnforce Mode = "enforce"
	ModeAuto    Mode = "auto"
)

// Modes lists the valid modes, in the order the docs give them.
var Modes = []Mode{ModeLearn, ModeDetect, ModeEnforce, ModeAuto}

// Config is the agent's validated configuration. cmd/cagewatch builds it from the
// embedded defaults, the config file, the environment and flags.
type Config struct {
	Mode          Mode
	Window        time.Duration
	Store         string
	MetricsListen string
	Rules         string
	Budget        float64 // scoring.false_positive_budget
	// RecordFile, when set, gets every container window as a JSON line (replay).
	RecordFile     string
	RecordMaxBytes int64
	Alerts         AlertsConfig

	Containers ContainersConfig
	Sensor     SensorConfig
	Learning   LearnerConfig
	// Fleet shares baselines through etcd (fleet.*); no endpoints: single node.
	Fleet fleet.Config
}

// ContainersConfig says where to look for cgroups and runtimes.
type ContainersConfig struct {
	CgroupRoot       string
	DockerSocket     string
	PodmanSocket     string
	ContainerdSocket string
	CRIOSocket       string
	Static           []container.StaticRule
}

// SensorConfig are the in-kernel event filters.
type SensorConfig struct {
	WatchPrefixes []string
	WatchNames    []string
	WatchPorts    []uint16
	// KernelBTF is an external BTF file for kernels without /sys/kernel/btf/vmlinux.
	KernelBTF string
	// HistogramSlots bounds the (cgroup, CPU) pairs counted at once (4 KiB each).
	HistogramSlots int
}

// AlertsConfig are the alert outputs (alerts.*).
type AlertsConfig struct {
	File            string
	DedupInterval   time.Duration
	ContainerLimit  int // alerts per container and rule per minute; 0: no cap
	WebhookURL      string
	WebhookQueue    int
	WebhookAttempts int
	WebhookBackoff  time.Duration
	// Syslog (alerts.syslog.*): "" = off; see alerts.SyslogConfig.
	SyslogAddress    string
	SyslogFacility   string
	SyslogQueue      int
	SyslogHostname   string
	SyslogCAFile     string
	SyslogCertFile   string
	SyslogKeyFile    string
	SyslogServerName string
}
