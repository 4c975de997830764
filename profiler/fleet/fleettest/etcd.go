// Package fleettest runs a real etcd cluster on loopback inside a test
// process (go.etcd.io/etcd/server/v3/embed, the client's version), so tests
// can kill and restart members. Only tests import it.
package fleettest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a real etcd cluster on loopback, each member in this process.
type Cluster struct {
	t       testing.TB
	cfgs    []*embed.Config
	members []*embed.Etcd
}

// Unavailable skips the test, or fails it when CAGEWATCH_REQUIRE_ETCD=1 (set
// in CI): there an etcd that cannot start is a failure.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CAGEWATCH_REQUIRE_ETCD") == "1" {
		t.Fatalf("etcd cannot start: %v", err)
	}
	t.Skipf("etcd cannot start (CAGEWATCH_REQUIRE_ETCD=1 makes this a failure): %v", err)
}

// FreePorts reserves n loopback ports; the listeners close just before etcd binds.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			Unavailable(t, err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// Start starts n members with auto-compaction on (as the docs tell
// operators to run it: etcd keeps all history until its quota otherwise).
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	ports := FreePorts(t, 2*n)
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &Cluster{t: t}
	for i := range n {
		c.cfgs = append(c.cfgs, memberConfig(dir, fmt.Sprintf("m%d", i), ports[2*i], ports[2*i+1], strings.Join(initial, ",")))
	}
	c.members = make([]*embed.Etcd, n)
	errs := make(chan error, n)
	for i := range n { // members wait for each other's peers: start together
		go func() { errs <- c.startMember(i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			c.StopAll()
			Unavailable(t, err)
		}
	}
	t.Cleanup(c.StopAll)
	return c
}

func (c *Cluster) startMember(i int) error {
	e, err := embed.StartEtcd(c.cfgs[i])
	if err != nil {
		return fmt.Errorf("member %s: %w", c.cfgs[i].Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("member %s: %w", c.cfgs[i].Name, err)
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("member %s not ready after 30s", c.cfgs[i].Name)
	}
	c.members[i] = e
	return nil
}

// Stop kills member i (its data stays for restart).
func (c *Cluster) Stop(i int) {
	if c.members[i] != nil {
		c.members[i].Close()
		c.members[i] = nil
	}
}

// Restart brings stopped members back together (one alone cannot be ready
// without quorum).
func (c *Cluster) Restart(is ...int) {
	c.t.Helper()
	errs := make(chan error, len(is))
	for _, i := range is {
		c.cfgs[i].ClusterState = embed.ClusterStateFlagExisting
		go func() { errs <- c.startMember(i) }()
	}
	for range is {
		if err := <-errs; err != nil {
			c.t.Fatalf("restarting: %v", err)
		}
	}
}

func (c *Cluster) StopAll() {
	for i := range c.members {
		c.Stop(i)
	}
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.AdvertiseClientUrls[0].String())
	}
	return out
}

func memberConfig(dir, name string, clientPort, peerPort int, initial string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = filepath.Join(dir, name)
	client := mustURL(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	peer := mustURL(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = initial
	cfg.InitialClusterToken = "cagewatch-fleet-test"
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1m"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop()) // closing members logs errors by design
	cfg.TickMs, cfg.ElectionMs = 50, 500                           // elections within a test's patience
	if os.Getenv("CAGEWATCH_FLEET_SIM") == "1" {
		// The simulation loads both cores: etcd's own defaults, so a slow
		// heartbeat does not read as a dead leader.
		cfg.TickMs, cfg.ElectionMs = 100, 1000
	}
	return cfg
}

// StartOn starts a one-member cluster on the given loopback ports: a test
// can point a client at them before etcd is there.
func StartOn(t testing.TB, clientPort, peerPort int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, cfgs: []*embed.Config{memberConfig(t.TempDir(), "solo", clientPort, peerPort,
		fmt.Sprintf("solo=http://127.0.0.1:%d", peerPort))}}
	c.members = make([]*embed.Etcd, 1)
	if err := c.startMember(0); err != nil {
		Unavailable(t, err)
	}
	t.Cleanup(c.StopAll)
	return c
}
