package alerts

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// syslogMsg is one parsed RFC 5424 message.
type syslogMsg struct {
	pri                                     int
	timestamp, hostname, app, procID, msgID string
	sd                                      map[string]map[string]string // SD-ID → param → value
	msg                                     []byte
}

// parseSyslog parses raw strictly as RFC 5424 (section 6), failing the test
// on anything the grammar does not allow.
func parseSyslog(t *testing.T, raw []byte) syslogMsg {
	t.Helper()
	fail := func(why string) { t.Fatalf("%s in %q", why, raw) }
	var m syslogMsg
	s := string(raw)
	if !strings.HasPrefix(s, "<") {
		fail("no PRI")
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		fail("bad PRI")
	}
	pri, err := strconv.Atoi(s[1:end])
	if err != nil || pri > 191 || (end > 2 && s[1] == '0') {
		fail("bad PRI")
	}
	m.pri = pri
	s = s[end+1:]
	fields := strings.SplitN(s, " ", 7)
	if len(fields) != 7 || fields[0] != "1" {
		fail("bad header")
	}
	for i, f := range fields[1:6] {
		max := []int{0, 255, 48, 128, 32}[i]
		if f == "" || (max > 0 && len(f) > max) || strings.IndexFunc(f, func(r rune) bool { return r < 33 || r > 126 }) >= 0 {
			fail(fmt.Sprintf("bad header field %d %q", i+2, f))
		}
	}
	m.timestamp, m.hostname, m.app, m.procID, m.msgID = fields[1], fields[2], fields[3], fields[4], fields[5]
	if _, err := time.Parse(time.RFC3339Nano, m.timestamp); err != nil {
		fail("bad TIMESTAMP")
	}
	s = fields[6]
	m.sd = map[string]map[string]string{}
	if strings.HasPrefix(s, "-") {
		s = s[1:]
	} else {
		for strings.HasPrefix(s, "[") {
			s = s[1:]
			i := strings.IndexAny(s, " ]")
			if i < 1 {
				fail("bad SD-ID")
			}
			id, params := s[:i], map[string]string{}
			s = s[i:]
			for strings.HasPrefix(s, " ") {
				eq := strings.Index(s, `="`)
				if eq < 2 {
					fail("bad SD-PARAM")
				}
				name := s[1:eq]
				s = s[eq+2:]
				var v strings.Builder
				for {
					if s == "" {
						fail("unterminated PARAM-VALUE")
					}
					c := s[0]
					s = s[1:]
					if c == '"' {
						break
					}
					if c == '\\' && s != "" && (s[0] == '"' || s[0] == '\\' || s[0] == ']') {
						c, s = s[0], s[1:]
					} else if c == ']' {
						fail("unescaped ] in PARAM-VALUE")
					}
					v.WriteByte(c)
				}
				params[name] = v.String()
			}
			if !strings.HasPrefix(s, "]") {
				fail("unterminated SD-ELEMENT")
			}
			s = s[1:]
			m.sd[id] = params
		}
	}
	if s != "" {
		if s[0] != ' ' {
			fail("no SP before MSG")
		}
		s = s[1:]
	}
	m.msg = []byte(s)
	return m
}

// writerJSON is what the Writer prints for a, without the newline.
func writerJSON(t *testing.T, a model.Alert) []byte {
	t.Helper()
	var buf bytes.Buffer
	NewWriter("x", &buf).Send(a)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// checkMessage checks one received message against the alert sent.
func checkMessage(t *testing.T, raw []byte, a model.Alert, facility int, hostname string) {
	t.Helper()
	m := parseSyslog(t, raw)
	if want := facility*8 + SyslogSeverity(a.Priority); m.pri != want {
		t.Errorf("PRI %d, want %d (priority %s)", m.pri, want, a.Priority)
	}
	if m.hostname != hostname || m.app != "cagewatch" || m.procID != strconv.Itoa(os.Getpid()) || m.msgID != a.Rule {
		t.Errorf("header host %q app %q procid %q msgid %q", m.hostname, m.app, m.procID, m.msgID)
	}
	if ts, _ := time.Parse(time.RFC3339Nano, m.timestamp); !ts.Equal(a.Time.Truncate(time.Microsecond)) {
		t.Errorf("TIMESTAMP %s, want %s", m.timestamp, a.Time)
	}
	if sd := m.sd[SyslogSDID]; sd["rule"] != a.Rule || sd["container_id"] != a.Container.ID || sd["priority"] != string(a.Priority) {
		t.Errorf("structured data %v", m.sd)
	}
	if want := writerJSON(t, a); !bytes.Equal(m.msg, want) {
		t.Errorf("MSG\n%s\nwant the Writer's\n%s", m.msg, want)
	}
}

func TestSyslogSeverity(t *testing.T) {
	want := map[model.Priority]int{"Emergency": 0, "Alert": 1, "Critical": 2, "Error": 3, "Warning": 4, "Notice": 5,
		"Informational": 6, "Debug": 7, "critical": 2, "": 4, "Bogus": 4}
	for p, sev := range want {
		if got := SyslogSeverity(p); got != sev {
			t.Errorf("SyslogSeverity(%q) = %d, want %d", p, got, sev)
		}
	}
	if len(model.Priorities) != 8 {
		t.Errorf("%d Falco priorities: the mapping assumes eight", len(model.Priorities))
	}
}

func TestParseFacility(t *testing.T) {
	tests := []struct {
		name string
		want int
		err  bool
	}{
		{"kern", 0, false}, {"user", 1, false}, {"daemon", 3, false}, {"authpriv", 10, false},
		{"local0", 16, false}, {"LOCAL7", 23, false}, {" local3 ", 19, false},
		{"local8", 0, true}, {"", 0, true}, {"16", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFacility(tt.name)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("ParseFacility(%q) = %d, %v", tt.name, got, err)
			}
		})
	}
}

func TestParseSyslogAddress(t *testing.T) {
	tests := []struct {
		in, transport, addr string
		err                 string
	}{
		{in: "udp://127.0.0.1:514", transport: "udp", addr: "127.0.0.1:514"},
		{in: "tcp://collector.example:601", transport: "tcp", addr: "collector.example:601"},
		{in: "tls://[::1]:6514", transport: "tls", addr: "[::1]:6514"},
		{in: "unix:///dev/log", transport: "unix", addr: "/dev/log"},
		{in: "udp://127.0.0.1", err: "host:port"},
		{in: "tcp://:601", err: "host:port"},
		{in: "tcp://h:0", err: "1..65535"},
		{in: "tcp://h:601/x", err: "nothing more"},
		{in: "http://h:514", err: "scheme"},
		{in: "127.0.0.1:514", err: "scheme"},
		{in: "unix://dev/log", err: "absolute"},
		{in: "", err: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			transport, addr, err := ParseSyslogAddress(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || transport != tt.transport || addr != tt.addr {
				t.Errorf("= %q, %q, %v", transport, addr, err)
			}
		})
	}
}

func TestSyslogFormat(t *testing.T) {
	s := &Syslog{facility: 16, hostname: "node-1", procID: "4242"}
	now := time.Date(2025, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name  string
		edit  func(*model.Alert)
		check func(t *testing.T, m syslogMsg)
	}{
		{name: "header", edit: func(a *model.Alert) { a.Time = now }, check: func(t *testing.T, m syslogMsg) {
			if m.pri != 16*8+2 || m.timestamp != "2025-03-01T12:00:00.123456Z" || m.hostname != "node-1" ||
				m.app != "cagewatch" || m.procID != "4242" || m.msgID != "sensitive_file" {
				t.Errorf("%+v", m)
			}
		}},
		{name: "zero time is now", edit: func(a *model.Alert) { a.Time = time.Time{} }, check: func(t *testing.T, m syslogMsg) {
			if m.timestamp != "2025-03-01T12:00:00.000000Z" {
				t.Errorf("TIMESTAMP %s, want the time of formatting", m.timestamp)
			}
		}},
		{name: "msgid sanitised", edit: func(a *model.Alert) { a.Rule = "a rule\twith spaces and é, longer than thirty-two" },
			check: func(t *testing.T, m syslogMsg) {
				if m.msgID != "a_rule_with_spaces_and___,_longe" {
					t.Errorf("MSGID %q", m.msgID)
				}
				if m.sd[SyslogSDID]["rule"] != "a rule\twith spaces and é, longer than thirty-two" {
					t.Errorf("SD rule %q: the full rule rides in structured data", m.sd[SyslogSDID]["rule"])
				}
			}},
		{name: "sd values escaped", edit: func(a *model.Alert) { a.Rule = `x"]\y`; a.Container.ID = `c]"` },
			check: func(t *testing.T, m syslogMsg) {
				if sd := m.sd[SyslogSDID]; sd["rule"] != `x"]\y` || sd["container_id"] != `c]"` {
					t.Errorf("SD %v", sd)
				}
			}},
		{name: "host alert has no container id", edit: func(a *model.Alert) { a.Container = model.Container{} },
			check: func(t *testing.T, m syslogMsg) {
				if _, ok := m.sd[SyslogSDID]["container_id"]; ok {
					t.Errorf("SD %v", m.sd)
				}
			}},
		{name: "empty rule is nil msgid", edit: func(a *model.Alert) { a.Rule = "" }, check: func(t *testing.T, m syslogMsg) {
			if m.msgID != "-" {
				t.Errorf("MSGID %q", m.msgID)
			}
		}},
		{name: "newline stays inside the JSON", edit: func(a *model.Alert) { a.Output = "two\nlines" }, check: func(t *testing.T, m syslogMsg) {
			if bytes.ContainsAny(m.msg, "\r\n") {
				t.Errorf("MSG has a raw line break: %q", m.msg)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := alert("abc", "/etc/shadow")
			tt.edit(&a)
			raw, err := s.format(a, time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			m := parseSyslog(t, raw)
			tt.check(t, m)
			if want := writerJSON(t, a); !bytes.Equal(m.msg, want) {
				t.Errorf("MSG %s, want %s", m.msg, want)
			}
			var js map[string]any
			if err := json.Unmarshal(m.msg, &js); err != nil {
				t.Errorf("MSG is not JSON: %v", err)
			}
		})
	}
}

// readOctetFrame reads one RFC 6587 3.4.1 frame: MSG-LEN SP SYSLOG-MSG.
func readOctetFrame(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(' ')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(head, " "))
	if err != nil || n < 1 || head[0] == '0' {
		return nil, fmt.Errorf("bad MSG-LEN %q", head)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// collector is an in-process syslog receiver.
type collector struct {
	address string
	frames  chan []byte
	errs    chan error
	conns   chan net.Conn // each accepted stream connection

	mu   sync.Mutex
	open []net.Conn // closed at the test's end
}

// track keeps conn to close at the test's end (t.Cleanup cannot be called
// from the accept goroutine once the test is over).
func (c *collector) track(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = append(c.open, conn)
}

func (c *collector) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.open {
		conn.Close()
	}
}

// startCollector listens for transport (udp, tcp, tls, unixgram, unix) and
// passes each received message on frames. A tls collector needs srvTLS.
func startCollector(t *testing.T, transport string, srvTLS *tls.Config) *collector {
	t.Helper()
	c := &collector{frames: make(chan []byte, 100), errs: make(chan error, 100), conns: make(chan net.Conn, 100)}
	t.Cleanup(c.closeAll)
	sock := filepath.Join(t.TempDir(), "log.sock")
	switch transport {
	case "udp", "unixgram":
		var pc net.PacketConn
		var err error
		if transport == "udp" {
			pc, err = net.ListenPacket("udp", "127.0.0.1:0")
			c.address = "udp://" + pc.LocalAddr().String()
		} else {
			pc, err = net.ListenPacket("unixgram", sock)
			c.address = "unix://" + sock
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1<<16)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				c.frames <- bytes.Clone(buf[:n])
			}
		}()
		return c
	}
	network, addr := "tcp", "127.0.0.1:0"
	if transport == "unix" {
		network, addr = "unix", sock
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c.address = transport + "://" + ln.Addr().String()
	if transport == "unix" {
		c.address = "unix://" + sock
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.track(conn)
			if srvTLS != nil {
				conn = tls.Server(conn, srvTLS)
			}
			c.conns <- conn
			go func() {
				r := bufio.NewReader(conn)
				for {
					var msg []byte
					var err error
					if transport == "unix" {
						msg, err = r.ReadBytes('\n')
						msg = bytes.TrimSuffix(msg, []byte("\n"))
					} else {
						msg, err = readOctetFrame(r)
					}
					if err != nil {
						if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
							c.errs <- err
						}
						return
					}
					c.frames <- msg
				}
			}()
		}
	}()
	return c
}

func (c *collector) next(t *testing.T) []byte {
	t.Helper()
	select {
	case f := <-c.frames:
		return f
	case err := <-c.errs:
		t.Fatalf("collector: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no message arrived")
	}
	return nil
}

func newSyslog(t *testing.T, cfg SyslogConfig) *Syslog {
	t.Helper()
	s, err := NewSyslog(cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and
// "collector", and a client certificate, as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string // the CA, and the client's certificate and key
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cagewatch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames, tmpl.IPAddresses = []string{"collector", "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var pki testPKI
	pki.caFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	srvCert, srvKey := issue(2, "collector", x509.ExtKeyUsageServerAuth)
	write("server-cert.pem", srvCert)
	write("server-key.pem", srvKey)
	cliCert, cliKey := issue(3, "agent", x509.ExtKeyUsageClientAuth)
	pki.certFile, pki.keyFile = write("client-cert.pem", cliCert), write("client-key.pem", cliKey)
	if pki.server, err = tls.X509KeyPair(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	if pki.pool, err = ReadCAFile(pki.caFile); err != nil {
		t.Fatal(err)
	}
	return pki
}

// serverTLS asks for a client certificate signed by the CA.
func (p testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS12}
}

// priorityAlerts are one alert of each Falco priority.
func priorityAlerts() []model.Alert {
	var out []model.Alert
	for i, p := range model.Priorities {
		a := alert(fmt.Sprintf("c%d", i), "/etc/shadow")
		a.Priority = p
		a.Time = t0.Add(time.Duration(i)*time.Second + 1500*time.Nanosecond)
		out = append(out, a)
	}
	return out
}

func TestSyslogTransports(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name      string
		transport string // of the collector
		srvTLS    *tls.Config
		cfg       SyslogConfig
	}{
		{name: "udp", transport: "udp"},
		{name: "tcp octet counted", transport: "tcp"},
		{name: "tls octet counted, client certificate", transport: "tls", srvTLS: pki.serverTLS(),
			cfg: SyslogConfig{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}},
		{name: "tls with server name", transport: "tls", srvTLS: pki.serverTLS(),
			cfg: SyslogConfig{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile, ServerName: "collector"}},
		{name: "unix datagram", transport: "unixgram", cfg: SyslogConfig{Facility: "daemon"}},
		{name: "unix stream fallback", transport: "unix", cfg: SyslogConfig{Facility: "user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startCollector(t, tt.transport, tt.srvTLS)
			cfg := tt.cfg
			cfg.Address, cfg.Hostname = c.address, "node-1"
			s := newSyslog(t, cfg)
			if s.Name() != "syslog" {
				t.Errorf("Name() = %q", s.Name())
			}
			facility, err := ParseFacility(cmp.Or(cfg.Facility, "local0"))
			if err != nil {
				t.Fatal(err)
			}
			sent := priorityAlerts()
			for _, a := range sent {
				s.Send(a)
			}
			for _, a := range sent {
				checkMessage(t, c.next(t), a, facility, "node-1")
			}
			waitFor(t, "Sent() == 8", func() bool { return s.Sent() == uint64(len(sent)) })
			if s.Dropped() != 0 {
				t.Errorf("Dropped() = %d", s.Dropped())
			}
		})
	}
}

func TestSyslogHostnameDefault(t *testing.T) {
	c := startCollector(t, "udp", nil)
	s := newSyslog(t, SyslogConfig{Address: c.address})
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	a := alert("a", "/etc/shadow")
	s.Send(a)
	checkMessage(t, c.next(t), a, 16, headerField(host, 255))
}

func TestSyslogTLSRefusesUntrustedCollector(t *testing.T) {
	pki, other := newTestPKI(t), newTestPKI(t)
	tests := []struct {
		name string
		cfg  SyslogConfig
	}{
		{name: "collector signed by another CA", cfg: SyslogConfig{CAFile: other.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}},
		{name: "wrong server name", cfg: SyslogConfig{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile, ServerName: "elsewhere"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startCollector(t, "tls", pki.serverTLS())
			cfg := tt.cfg
			cfg.Address, cfg.MaxAttempts, cfg.Backoff = c.address, 2, time.Millisecond
			s := newSyslog(t, cfg)
			s.Send(alert("a", "/etc/shadow"))
			waitFor(t, "the alert dropped", func() bool { return s.Dropped() == 1 })
			if s.Sent() != 0 {
				t.Errorf("Sent() = %d", s.Sent())
			}
			select {
			case f := <-c.frames:
				t.Errorf("collector got %q", f)
			default:
			}
		})
	}
}

func TestNewSyslogErrors(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name string
		cfg  SyslogConfig
		want string
	}{
		{name: "bad scheme", cfg: SyslogConfig{Address: "http://h:514"}, want: "scheme"},
		{name: "bad facility", cfg: SyslogConfig{Address: "udp://127.0.0.1:514", Facility: "local9"}, want: "local9"},
		{name: "missing ca file", cfg: SyslogConfig{Address: "tls://127.0.0.1:6514", CAFile: "/nonexistent/ca.pem"}, want: "/nonexistent/ca.pem"},
		{name: "ca file without certificates", cfg: SyslogConfig{Address: "tls://127.0.0.1:6514", CAFile: pki.keyFile}, want: "no PEM certificate"},
		{name: "cert without key", cfg: SyslogConfig{Address: "tls://127.0.0.1:6514", CertFile: pki.certFile}, want: "go together"},
		{name: "key of another certificate", cfg: SyslogConfig{Address: "tls://127.0.0.1:6514", CertFile: pki.certFile,
			KeyFile: newTestPKI(t).keyFile}, want: "client certificate"},
		{name: "tls settings on udp", cfg: SyslogConfig{Address: "udp://127.0.0.1:514", CAFile: pki.caFile}, want: "TLS settings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSyslog(tt.cfg, discard())
			if err == nil {
				s.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// heldTLSCollector accepts TLS connections but holds each handshake until
// released, so that the sink's first delivery blocks.
func heldTLSCollector(t *testing.T, pki testPKI) (c *collector, arrived chan struct{}, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c = &collector{address: "tls://" + ln.Addr().String(), frames: make(chan []byte, 100), errs: make(chan error, 100)}
	t.Cleanup(c.closeAll)
	arrived = make(chan struct{}, 100)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { ln.Close() })
	t.Cleanup(release)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.track(conn)
			arrived <- struct{}{}
			go func() {
				<-gate
				r := bufio.NewReader(tls.Server(conn, pki.serverTLS()))
				for {
					msg, err := readOctetFrame(r)
					if err != nil {
						return
					}
					c.frames <- msg
				}
			}()
		}
	}()
	return c, arrived, release
}

func waitConn(t *testing.T, arrived chan struct{}) {
	t.Helper()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection arrived")
	}
}

func TestSyslogQueueFull(t *testing.T) {
	pki := newTestPKI(t)
	c, arrived, release := heldTLSCollector(t, pki)
	s := newSyslog(t, SyslogConfig{Address: c.address, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile,
		QueueSize: 1, MaxAttempts: 1, Timeout: 10 * time.Second})
	s.Send(alert("a", "/etc/shadow")) // in flight: its handshake is held
	waitConn(t, arrived)
	s.Send(alert("b", "/etc/shadow")) // queued
	s.Send(alert("c", "/etc/shadow")) // dropped
	s.Send(alert("d", "/etc/shadow")) // dropped
	if got := s.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d with a full queue, want 2", got)
	}
	release()
	for _, id := range []string{"a", "b"} {
		checkMessage(t, c.next(t), alert(id, "/etc/shadow"), 16, s.hostname)
	}
	waitFor(t, "the in-flight and queued alerts", func() bool { return s.Sent() == 2 })
	if got := s.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}
	d := NewDispatcher(DispatcherConfig{}, s)
	if got := d.Drops(); got["syslog"] != 2 {
		t.Errorf("Dispatcher.Drops() = %v: the per-sink drop metric must see syslog's", got)
	}
}

func TestSyslogCollectorDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every connect is refused
	s := newSyslog(t, SyslogConfig{Address: "tcp://" + addr, MaxAttempts: 3, Backoff: time.Millisecond, QueueSize: 4})
	s.Send(alert("a", "/etc/shadow"))
	waitFor(t, "the alert dropped", func() bool { return s.Dropped() == 1 })

	// Send never blocks the agent, however many alerts arrive.
	const burst = 1000
	start := time.Now()
	for range burst {
		s.Send(alert("a", "/etc/shadow"))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("%d sends took %v", burst, took)
	}
	waitFor(t, "every alert dropped", func() bool { return s.Dropped() == burst+1 })
	if s.Sent() != 0 {
		t.Errorf("Sent() = %d", s.Sent())
	}
}

// TestSyslogReconnects: a collector that restarts (drops the connection) gets
// the next alert on a new connection; none is lost in the dead socket.
func TestSyslogReconnects(t *testing.T) {
	for _, transport := range []string{"tcp", "tls", "unix"} {
		t.Run(transport, func(t *testing.T) {
			pki := newTestPKI(t)
			var srvTLS *tls.Config
			cfg := SyslogConfig{Backoff: time.Millisecond}
			if transport == "tls" {
				srvTLS = pki.serverTLS()
				cfg.CAFile, cfg.CertFile, cfg.KeyFile = pki.caFile, pki.certFile, pki.keyFile
			}
			c := startCollector(t, transport, srvTLS)
			cfg.Address = c.address
			s := newSyslog(t, cfg)
			for i := range 3 {
				a := alert(fmt.Sprintf("c%d", i), "/etc/shadow")
				s.Send(a)
				checkMessage(t, c.next(t), a, 16, s.hostname)
				select {
				case conn := <-c.conns:
					conn.Close() // the collector hangs up after each message
				case <-time.After(5 * time.Second):
					t.Fatal("no connection")
				}
			}
			waitFor(t, "Sent() == 3", func() bool { return s.Sent() == 3 })
			if s.Dropped() != 0 {
				t.Errorf("Dropped() = %d", s.Dropped())
			}
		})
	}
}

func TestSyslogCloseDrains(t *testing.T) {
	c := startCollector(t, "tcp", nil)
	s, err := NewSyslog(SyslogConfig{Address: c.address, QueueSize: 16}, discard())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Send(alert(fmt.Sprintf("c%d", i), "/etc/shadow"))
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if s.Sent() != 10 || s.Dropped() != 0 {
		t.Errorf("after Close: Sent() = %d, Dropped() = %d, want every queued alert delivered", s.Sent(), s.Dropped())
	}
	for i := range 10 {
		checkMessage(t, c.next(t), alert(fmt.Sprintf("c%d", i), "/etc/shadow"), 16, s.hostname)
	}
}

func TestSyslogCloseDeadline(t *testing.T) {
	pki := newTestPKI(t)
	c, arrived, _ := heldTLSCollector(t, pki)
	s, err := NewSyslog(SyslogConfig{Address: c.address, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile,
		QueueSize: 4, MaxAttempts: 3, Timeout: 10 * time.Second, CloseTimeout: 100 * time.Millisecond}, discard())
	if err != nil {
		t.Fatal(err)
	}
	s.Send(alert("a", "/etc/shadow")) // in flight, its handshake never answered
	waitConn(t, arrived)
	s.Send(alert("b", "/etc/shadow"))
	s.Send(alert("c", "/etc/shadow"))
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v with a 100ms deadline", took)
	}
	if got := s.Dropped(); got != 3 {
		t.Errorf("Dropped() = %d after Close, want 3 (one in flight, two queued)", got)
	}
	if s.Sent() != 0 {
		t.Errorf("Sent() = %d", s.Sent())
	}
	// An alert sent after Close cannot be delivered: it is dropped, and counted.
	s.Send(alert("d", "/etc/shadow"))
	if got := s.Dropped(); got != 4 {
		t.Errorf("Dropped() = %d after a Send following Close, want 4", got)
	}
	if err := s.Close(); err != nil { // twice is harmless
		t.Errorf("second Close: %v", err)
	}
}

func TestSyslogDatagramTooBig(t *testing.T) {
	c := startCollector(t, "unixgram", nil)
	s := newSyslog(t, SyslogConfig{Address: c.address, MaxAttempts: 3, Backoff: time.Second})
	big := alert("a", "/etc/shadow")
	big.Output = strings.Repeat("x", 1<<20) // beyond any unix datagram
	start := time.Now()
	s.Send(big)
	waitFor(t, "the alert dropped", func() bool { return s.Dropped() == 1 })
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("took %v: a message too big for a datagram is not worth a retry", took)
	}
	small := alert("b", "/etc/shadow")
	s.Send(small)
	checkMessage(t, c.next(t), small, 16, s.hostname)
}
