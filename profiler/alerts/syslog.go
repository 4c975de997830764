package alerts

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cagewatch/cagewatch/model"
)

// SyslogSDID is the structured-data element carrying the rule and container.
// 32473 is the enterprise number RFC 5612 reserves for documentation: we have
// none of our own, and an SD-ID with "@" must name one.
const SyslogSDID = "cagewatch@32473"

// syslogApp is the APP-NAME of every message.
const syslogApp = "cagewatch"

// facilities are the RFC 5424 facility codes by their usual (syslog.h) names.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// ParseFacility returns the code of a facility name (local0, daemon, …).
func ParseFacility(name string) (int, error) {
	if f, ok := facilities[strings.ToLower(strings.TrimSpace(name))]; ok {
		return f, nil
	}
	names := make([]string, 0, len(facilities))
	for n := range facilities {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return facilities[a] - facilities[b] })
	return 0, fmt.Errorf("unknown facility %q (want one of %s)", name, strings.Join(names, ", "))
}

// SyslogSeverity maps a Falco priority to an RFC 5424 severity: the eight
// priorities are the eight severities in the same order. An unknown priority
// is a warning, so that it is neither lost in debug noise nor paged as an
// emergency.
func SyslogSeverity(p model.Priority) int {
	if i := slices.IndexFunc(model.Priorities, func(q model.Priority) bool { return strings.EqualFold(string(q), string(p)) }); i >= 0 {
		return i
	}
	return 4
}

// ParseSyslogAddress splits udp://host:port, tcp://host:port, tls://host:port
// or unix:///path into a transport and an address.
func ParseSyslogAddress(s string) (transport, addr string, err error) {
	if scheme, _, _ := strings.Cut(s, "://"); !slices.Contains([]string{"udp", "tcp", "tls", "unix"}, scheme) {
		return "", "", fmt.Errorf("%q: scheme must be udp, tcp, tls or unix", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a URL: %w", s, err)
	}
	switch u.Scheme {
	case "udp", "tcp", "tls":
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return "", "", fmt.Errorf("%q: want %s://host:port and nothing more", s, u.Scheme)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			return "", "", fmt.Errorf("%q: want %s://host:port", s, u.Scheme)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("%q: port %q is not 1..65535", s, port)
		}
		return u.Scheme, u.Host, nil
	default: // unix
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return "", "", fmt.Errorf("%q: want unix:///absolute/path", s)
		}
		return "unix", u.Path, nil
	}
}

// ReadCAFile reads PEM certificates to trust.
func ReadCAFile(path string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

// SyslogConfig configures the syslog sink.
type SyslogConfig struct {
	Address   string // udp://host:port, tcp://host:port, tls://host:port or unix:///dev/log
	Facility  string // name; "" = local0
	Hostname  string // HOSTNAME field; "" = os.Hostname
	QueueSize int    // alerts waiting; beyond it new alerts are dropped and counted

	// TLS: CAFile "" trusts the system roots; CertFile and KeyFile, together,
	// are the client certificate; ServerName "" is the address's host.
	CAFile, CertFile, KeyFile, ServerName string

	MaxAttempts  int           // per alert, including the first: each failure reconnects
	Backoff      time.Duration // first reconnect delay, doubled each time (with jitter)
	Timeout      time.Duration // per connect and per write
	CloseTimeout time.Duration // how long Close tries to deliver what is queued
}

// Syslog sends each alert as an RFC 5424 message whose MSG is the alert's
// Falco JSON, from a bounded queue. TCP and TLS use octet-counted framing
// (RFC 6587 3.4.1, RFC 5425), UDP and unix datagram sockets one message per
// datagram, and a unix stream socket one message per line. Alerts it cannot
// deliver are dropped and counted, never block the agent.
type Syslog struct {
	cfg       SyslogConfig
	transport string // udp, tcp, tls, unix
	addr      string
	facility  int
	hostname  string
	procID    string
	tls       *tls.Config
	log       *slog.Logger

	sinkQueue
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	conn   net.Conn // owned by run
	stream bool     // conn frames by octet count or newline, not datagram
}

// NewSyslog checks cfg and starts the delivery goroutine. It does not connect:
// a collector that is down at start costs drops, not the agent.
func NewSyslog(cfg SyslogConfig, log *slog.Logger) (*Syslog, error) {
	transport, addr, err := ParseSyslogAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	facility, err := ParseFacility(cmp.Or(cfg.Facility, "local0"))
	if err != nil {
		return nil, err
	}
	if cfg.Hostname == "" {
		if cfg.Hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("hostname: %w", err)
		}
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 2 * time.Second
	}
	s := &Syslog{cfg: cfg, transport: transport, addr: addr, facility: facility,
		hostname: headerField(cfg.Hostname, 255), procID: strconv.Itoa(os.Getpid()), log: log,
		sinkQueue: sinkQueue{queue: make(chan model.Alert, cfg.QueueSize)}, done: make(chan struct{})}
	if transport == "tls" {
		if s.tls, err = syslogTLS(cfg); err != nil {
			return nil, err
		}
	} else if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.ServerName != "" {
		return nil, fmt.Errorf("TLS settings given for a %s:// address", transport)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

func syslogTLS(cfg SyslogConfig) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if cfg.CAFile != "" {
		pool, err := ReadCAFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		c.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("cert file and key file go together")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func (s *Syslog) Name() string { return "syslog" }

// Close stops taking alerts, delivers what is queued for up to CloseTimeout,
// and counts the rest as dropped.
func (s *Syslog) Close() error {
	s.stopTaking(true)
	stop := time.AfterFunc(s.cfg.CloseTimeout, s.cancel)
	<-s.done
	stop.Stop()
	s.cancel()
	return nil
}

func (s *Syslog) run() {
	defer close(s.done)
	defer func() {
		if s.conn != nil {
			s.conn.Close()
		}
	}()
	for a := range s.queue {
		if s.ctx.Err() != nil { // Close gave up: count the rest
			s.dropped.Add(1)
			continue
		}
		msg, err := s.format(a, time.Now())
		if err == nil {
			err = s.deliver(msg)
		}
		if err != nil {
			s.dropped.Add(1)
			s.log.Warn("alert syslog: dropped alert", "address", s.cfg.Address, "rule", a.Rule, "err", err)
			continue
		}
		s.sent.Add(1)
	}
}

// deliver writes one message, reconnecting with backoff after a failure.
func (s *Syslog) deliver(msg []byte) error {
	delay := s.cfg.Backoff
	var last error
	for attempt := 1; attempt <= s.cfg.MaxAttempts; attempt++ {
		if last = s.write(msg); last == nil {
			return nil
		}
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		if errors.Is(last, syscall.EMSGSIZE) || attempt == s.cfg.MaxAttempts {
			break // too big for a datagram: no retry makes it fit
		}
		jitter := time.Duration(rand.Int64N(int64(delay)/2 + 1))
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-time.After(delay + jitter):
		}
		delay *= 2
	}
	return fmt.Errorf("%d attempts: %w", s.cfg.MaxAttempts, last)
}

func (s *Syslog) write(msg []byte) error {
	if s.conn != nil && s.stream && peerClosed(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		if err := s.dial(); err != nil {
			return err
		}
	}
	frame := msg
	switch {
	case s.transport == "tcp" || s.transport == "tls":
		frame = append(strconv.AppendInt(make([]byte, 0, len(msg)+8), int64(len(msg)), 10), ' ')
		frame = append(frame, msg...)
	case s.stream: // a unix stream socket: lines, as local syslog daemons read them
		frame = append(slices.Clip(msg), '\n')
	}
	c := s.conn
	// Close's deadline also cuts a write the collector does not take.
	stop := context.AfterFunc(s.ctx, func() { _ = c.SetWriteDeadline(time.Now()) })
	defer stop()
	if err := c.SetWriteDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
		return err
	}
	_, err := c.Write(frame)
	return err
}

func (s *Syslog) dial() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	d := &net.Dialer{}
	var err error
	switch s.transport {
	case "udp":
		s.conn, err = d.DialContext(ctx, "udp", s.addr)
		s.stream = false
	case "tcp":
		s.conn, err = d.DialContext(ctx, "tcp", s.addr)
		s.stream = true
	case "tls":
		s.conn, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, "tcp", s.addr)
		s.stream = true
	case "unix":
		// /dev/log is a datagram socket; some daemons listen on a stream one.
		s.conn, err = d.DialContext(ctx, "unixgram", s.addr)
		s.stream = false
		if errors.Is(err, syscall.EPROTOTYPE) {
			s.conn, err = d.DialContext(ctx, "unix", s.addr)
			s.stream = true
		}
	}
	if err != nil {
		s.conn = nil
		return err
	}
	return nil
}

// peerClosed reports whether a stream collector hung up. Collectors never
// write to us, so without this check the first alert after a collector
// restart would vanish into the dead socket's buffer (the write succeeds; only
// the next one fails). It peeks without blocking: a read with a deadline
// already passed never reaches the socket.
func peerClosed(c net.Conn) bool {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var n int
	var perr error
	if err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return true
	}
	switch {
	case errors.Is(perr, syscall.EAGAIN):
		return false // open, nothing to read
	case perr != nil || n == 0:
		return true // error or EOF
	}
	// Bytes waiting: over TLS a session ticket or a close_notify. Let the
	// connection read them; anything but a timeout means it is over.
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		return true
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	var b [512]byte
	_, err = c.Read(b[:])
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// format builds one RFC 5424 message: header, structured data, and the alert's
// JSON exactly as the Writer prints it. The MSG carries no BOM: JSON parsers
// downstream would take it for garbage.
func (s *Syslog) format(a model.Alert, now time.Time) ([]byte, error) {
	var body bytes.Buffer
	if err := json.NewEncoder(&body).Encode(a); err != nil {
		return nil, err
	}
	js := bytes.TrimSuffix(body.Bytes(), []byte("\n"))
	ts := a.Time
	if ts.IsZero() {
		ts = now
	}
	var b bytes.Buffer
	b.Grow(len(js) + 256)
	fmt.Fprintf(&b, "<%d>1 %s %s %s %s %s ", s.facility*8+SyslogSeverity(a.Priority),
		ts.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), s.hostname, syslogApp, s.procID, headerField(a.Rule, 32))
	b.WriteString("[" + SyslogSDID)
	sdParam(&b, "rule", a.Rule)
	sdParam(&b, "priority", string(a.Priority))
	sdParam(&b, "container_id", a.Container.ID)
	b.WriteString("] ")
	b.Write(js)
	return b.Bytes(), nil
}

// headerField makes s a header field: printable US-ASCII without spaces, at
// most max bytes, "-" (nil) when empty.
func headerField(s string, max int) string {
	out := []byte(s)
	for i, c := range out {
		if c < 33 || c > 126 {
			out[i] = '_'
		}
	}
	if len(out) > max {
		out = out[:max]
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

// sdParam writes name="value" with '"', '\' and ']' escaped (RFC 5424 6.3.3);
// empty values are left out.
func sdParam(b *bytes.Buffer, name, value string) {
	if value == "" {
		return
	}
	if !utf8.ValidString(value) {
		value = strings.ToValidUTF8(value, "\uFFFD")
	}
	b.WriteString(" " + name + `="`)
	for _, r := range value {
		if r == '"' || r == '\\' || r == ']' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}
