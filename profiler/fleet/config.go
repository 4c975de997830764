package fleet

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cagewatch/cagewatch/profiler/alerts"
)

// Config is the fleet section (fleet.*). Endpoints empty: single node.
type Config struct {
	Endpoints       []string      // fleet.etcd.endpoints
	Prefix          string        // fleet.etcd.prefix
	Node            string        // fleet.node
	CAFile          string        // fleet.etcd.ca_file
	CertFile        string        // fleet.etcd.cert_file
	KeyFile         string        // fleet.etcd.key_file
	PublishInterval time.Duration // fleet.publish_interval

	// Not config keys: tests and the simulation shorten them.
	RequestTimeout time.Duration // one etcd call; 0: 5s
	Spacing        time.Duration // per profile, a node publishes at most every nodes × Spacing; 0: 1s
	Guard          GuardConfig   // zero: DefaultGuard
	// Outbox keeps unpublished learning across restarts (the agent's store);
	// nil: memory only.
	Outbox Outbox
}

// Defaults of the keys the issue names.
const (
	DefaultPrefix          = "/cagewatch"
	DefaultPublishInterval = 10 * time.Second
)

// Enabled reports whether the agent talks to etcd at all.
func (c Config) Enabled() bool { return len(c.Endpoints) > 0 }

// KeyError names the config key a bad value came from.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return fmt.Sprintf("config key %s: %v", e.Key, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// Validate checks the fleet keys, reading the TLS files now so a bad path
// stops the agent at start, not at the first publish.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, err error) { errs = append(errs, &KeyError{key, err}) }
	for i, e := range c.Endpoints {
		if e == "" || strings.ContainsAny(e, " \t") {
			bad(fmt.Sprintf("fleet.etcd.endpoints[%d]", i), fmt.Errorf("%q is not an endpoint (host:port or http(s)://host:port)", e))
		}
	}
	if !strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") && c.Prefix != "/" {
		bad("fleet.etcd.prefix", fmt.Errorf("%q must start with / and not end with one", c.Prefix))
	}
	if c.Node == "" || strings.ContainsAny(c.Node, "/ \t\n") || len(c.Node) > 253 {
		bad("fleet.node", fmt.Errorf("%q is not a node name (1..253 characters, no / or spaces)", c.Node))
	}
	if c.PublishInterval < 100*time.Millisecond || c.PublishInterval > time.Hour {
		bad("fleet.publish_interval", fmt.Errorf("%v out of range (100ms..1h)", c.PublishInterval))
	}
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		bad("fleet.etcd.key_file", errors.New("empty, but fleet.etcd.cert_file is set"))
	case c.CertFile == "" && c.KeyFile != "":
		bad("fleet.etcd.cert_file", errors.New("empty, but fleet.etcd.key_file is set"))
	}
	if c.CAFile != "" {
		if _, err := alerts.ReadCAFile(c.CAFile); err != nil {
			bad("fleet.etcd.ca_file", err)
		}
	}
	if c.CertFile != "" && c.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			bad("fleet.etcd.cert_file", fmt.Errorf("%s with %s: %w", c.CertFile, c.KeyFile, err))
		}
	}
	return errors.Join(errs...)
}

// tlsConfig is nil without any TLS file: plain gRPC, as etcd's http:// endpoints.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := alerts.ReadCAFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("fleet.etcd.ca_file: %w", err)
		}
		t.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("fleet.etcd.cert_file %s: %w", c.CertFile, err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.PublishInterval == 0 {
		c.PublishInterval = DefaultPublishInterval
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.Spacing == 0 {
		c.Spacing = time.Second
	}
	if c.Guard == (GuardConfig{}) {
		c.Guard = DefaultGuard
	}
	return c
}
