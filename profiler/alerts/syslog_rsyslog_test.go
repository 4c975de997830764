package alerts

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cagewatch/cagewatch/model"
)

// requireRsyslog skips (or, with CAGEWATCH_REQUIRE_RSYSLOG=1 as in CI, fails)
// when what is missing.
func requireRsyslog(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CAGEWATCH_REQUIRE_RSYSLOG") == "1" {
		t.Fatalf("%s (CAGEWATCH_REQUIRE_RSYSLOG=1)", what)
	}
	t.Skip(what)
}

// rsyslogModule reports whether rsyslog has module name (its .so).
func rsyslogModule(name string) bool {
	m, _ := filepath.Glob("/usr/lib/*/rsyslog/" + name + ".so")
	m2, _ := filepath.Glob("/usr/lib/rsyslog/" + name + ".so")
	return len(m)+len(m2) > 0
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// rsyslogLine is one line of the test's rsyslog template.
type rsyslogLine struct {
	pri, facility, severity                     int
	hostname, app, procID, msgID, timestamp, sd string
	msg                                         []byte
}

// rsyslogTemplate writes what rsyslog parsed, MSG last (it may contain '|').
const rsyslogTemplate = `%pri%|%syslogfacility%|%syslogseverity%|%hostname%|%app-name%|%procid%|%msgid%|` +
	`%timereported:::date-rfc3339%|%structured-data%|%msg%\n`

func parseRsyslogLine(t *testing.T, line string) rsyslogLine {
	t.Helper()
	f := strings.SplitN(line, "|", 10)
	if len(f) != 10 {
		t.Fatalf("line %q: %d fields", line, len(f))
	}
	num := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("line %q: %q is not a number", line, s)
		}
		return n
	}
	return rsyslogLine{pri: num(f[0]), facility: num(f[1]), severity: num(f[2]), hostname: f[3], app: f[4], procID: f[5],
		msgID: f[6], timestamp: f[7], sd: f[8], msg: []byte(f[9])}
}

// TestSyslogSinkRealRsyslog sends alerts through the sink to a real rsyslogd,
// started here with its own config, work directory and sockets (the host's
// syslog and /dev/log are left alone), and reads back what rsyslog parsed.
func TestSyslogSinkRealRsyslog(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		if rsyslogd, err = exec.LookPath("/usr/sbin/rsyslogd"); err != nil {
			requireRsyslog(t, "rsyslogd not found (Debian package rsyslog)")
		}
	}
	for _, m := range []string{"imudp", "imtcp", "imptcp", "imuxsock"} {
		if !rsyslogModule(m) {
			requireRsyslog(t, "rsyslog module "+m+" not found (Debian package rsyslog)")
		}
	}
	withTLS := rsyslogModule("lmnsd_gtls")

	dir := t.TempDir()
	pki := newTestPKI(t)
	clientCert, err := tls.LoadX509KeyPair(pki.certFile, pki.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{clientCert}, ServerName: "127.0.0.1"}
	srvCert, srvKey := filepath.Join(filepath.Dir(pki.caFile), "server-cert.pem"), filepath.Join(filepath.Dir(pki.caFile), "server-key.pem")
	type transport struct {
		name, facility string
		address        string
		input          string // rsyslog input() parameters
		cfg            SyslogConfig
	}
	udpPort, tcpPort, tlsPort := freePort(t, "udp"), freePort(t, "tcp"), freePort(t, "tcp")
	transports := []transport{
		{name: "udp", facility: "local0", address: fmt.Sprintf("udp://127.0.0.1:%d", udpPort),
			input: fmt.Sprintf(`type="imudp" address="127.0.0.1" port="%d"`, udpPort)},
		{name: "tcp", facility: "daemon", address: fmt.Sprintf("tcp://127.0.0.1:%d", tcpPort),
			input: fmt.Sprintf(`type="imtcp" address="127.0.0.1" port="%d"`, tcpPort)},
		{name: "unixgram", facility: "user", address: "unix://" + filepath.Join(dir, "log.sock"),
			input: fmt.Sprintf(`type="imuxsock" socket="%s" createPath="off" useSpecialParser="off" parseHostname="on" `+
				`ignoreTimestamp="off" ratelimit.interval="0"`, filepath.Join(dir, "log.sock"))},
		{name: "unixstream", facility: "local3", address: "unix://" + filepath.Join(dir, "stream.sock"),
			input: fmt.Sprintf(`type="imptcp" path="%s" unlink="on"`, filepath.Join(dir, "stream.sock"))},
	}
	if withTLS {
		transports = append(transports, transport{name: "tls", facility: "local7", address: fmt.Sprintf("tls://127.0.0.1:%d", tlsPort),
			input: fmt.Sprintf(`type="imtcp" address="127.0.0.1" port="%d" streamDriver.name="gtls" streamDriver.mode="1" `+
				`streamDriver.authMode="x509/certvalid" streamDriver.caFile="%s" streamDriver.certFile="%s" streamDriver.keyFile="%s"`,
				tlsPort, pki.caFile, srvCert, srvKey),
			cfg: SyslogConfig{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}})
	}

	var conf strings.Builder
	fmt.Fprintf(&conf, "global(workDirectory=%q maxMessageSize=\"64k\")\n", dir)
	conf.WriteString(`module(load="imudp")` + "\n" + `module(load="imtcp")` + "\n" + `module(load="imptcp")` + "\n" +
		`module(load="imuxsock" sysSock.use="off")` + "\n")
	fmt.Fprintf(&conf, "template(name=\"cw\" type=\"string\" string=\"%s\")\n", rsyslogTemplate) // its \\n is rsyslog's
	for _, tr := range transports {
		fmt.Fprintf(&conf, "ruleset(name=%q) { action(type=\"omfile\" file=%q template=\"cw\") }\n", tr.name, filepath.Join(dir, tr.name+".log"))
		fmt.Fprintf(&conf, "input(%s ruleset=%q)\n", tr.input, tr.name)
	}
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// start runs rsyslogd until the returned stop; run numbers the UDP probe.
	outFile := filepath.Join(dir, "rsyslogd.out")
	start := func(run int) (stop func()) {
		t.Helper()
		out, err := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd := exec.Command(rsyslogd, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test binary
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
		}
		t.Cleanup(stop)

		// Ready when every stream input takes connections and a UDP probe came
		// through (UDP sent before imudp binds is lost without an error).
		deadline := time.Now().Add(30 * time.Second)
		ready := func(what string, ok func() bool) {
			t.Helper()
			for !ok() {
				select {
				case err := <-exited:
					t.Fatalf("rsyslogd exited before %s: %v", what, err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("rsyslogd: no %s in 30s", what)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		dialable := func(network, addr string, cfg *tls.Config) func() bool {
			return func() bool {
				c, err := net.DialTimeout(network, addr, time.Second)
				if err == nil && cfg != nil {
					tc := tls.Client(c, cfg)
					err = tc.Handshake()
					c = tc
				}
				if c != nil {
					c.Close()
				}
				return err == nil
			}
		}
		ready("TCP listener", dialable("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort), nil))
		if withTLS {
			ready("TLS listener", dialable("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), clientTLS))
		}
		ready("unix stream socket", dialable("unix", filepath.Join(dir, "stream.sock"), nil))
		ready("unix datagram socket", func() bool { _, err := os.Stat(filepath.Join(dir, "log.sock")); return err == nil })
		probe, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer probe.Close()
		token := fmt.Sprintf("cagewatch-probe-%d", run)
		ready("UDP probe", func() bool {
			_, _ = probe.Write([]byte("<134>1 2025-03-01T12:00:00Z probe " + token + " - probe - ready"))
			raw, _ := os.ReadFile(filepath.Join(dir, "udp.log"))
			return bytes.Contains(raw, []byte(token))
		})
		return stop
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(outFile)
			t.Logf("rsyslog.conf:\n%s\nrsyslogd output:\n%s", conf.String(), out)
		}
	})
	stop := start(1)

	// waitLines waits for n lines of the transport's file about the
	// containers whose id starts with prefix, and parses them.
	waitLines := func(t *testing.T, name, prefix string, n int, s *Syslog) []rsyslogLine {
		t.Helper()
		logFile := filepath.Join(dir, name+".log")
		end := time.Now().Add(30 * time.Second)
		for {
			raw, _ := os.ReadFile(logFile)
			var lines []rsyslogLine
			for l := range strings.SplitSeq(string(raw), "\n") {
				if strings.Contains(l, `container_id="`+prefix) {
					lines = append(lines, parseRsyslogLine(t, l))
				}
			}
			if len(lines) >= n {
				return lines
			}
			if time.Now().After(end) {
				t.Fatalf("%d of %d alerts in %s after 30s (sent %d, dropped %d):\n%s",
					len(lines), n, logFile, s.Sent(), s.Dropped(), raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			cfg := tr.cfg
			cfg.Address, cfg.Facility, cfg.Hostname = tr.address, tr.facility, "node-1"
			s := newSyslog(t, cfg)
			facility, err := ParseFacility(tr.facility)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]model.Alert{} // container id → alert
			for i, p := range model.Priorities {
				a := alert(fmt.Sprintf("%s-%d", tr.name, i), "/etc/shadow")
				a.Priority = p
				a.Time = t0.Add(time.Duration(i)*time.Second + 1500*time.Nanosecond)
				a.Output = fmt.Sprintf("%s | pipe, \"quotes\", ] and ünïcode", a.Output) // must survive as it is
				want[a.Container.ID] = a
				s.Send(a)
			}
			lines := waitLines(t, tr.name, tr.name+"-", len(want), s)
			if len(lines) != len(want) {
				t.Errorf("%d lines for %d alerts", len(lines), len(want))
			}
			for _, got := range lines {
				var js map[string]any
				if err := json.Unmarshal(got.msg, &js); err != nil {
					t.Errorf("rsyslog's MSG is not JSON: %v\n%s", err, got.msg)
					continue
				}
				id, _ := fieldOf(js, "container.id").(string)
				a, ok := want[id]
				if !ok {
					t.Errorf("unexpected message %+v", got)
					continue
				}
				delete(want, id)
				sev := SyslogSeverity(a.Priority)
				if got.severity != sev || got.facility != facility || got.pri != facility*8+sev {
					t.Errorf("%s: pri %d facility %d severity %d, want %d %d %d", a.Priority, got.pri, got.facility, got.severity,
						facility*8+sev, facility, sev)
				}
				if got.hostname != "node-1" || got.app != "cagewatch" || got.procID != strconv.Itoa(os.Getpid()) || got.msgID != a.Rule {
					t.Errorf("header host %q app %q procid %q msgid %q", got.hostname, got.app, got.procID, got.msgID)
				}
				if ts, err := time.Parse(time.RFC3339Nano, got.timestamp); err != nil || !ts.Equal(a.Time.Truncate(time.Microsecond)) {
					t.Errorf("timestamp %q, want %s", got.timestamp, a.Time.Truncate(time.Microsecond))
				}
				if wantSD := fmt.Sprintf(`[%s rule="%s" priority="%s" container_id="%s"]`, SyslogSDID, a.Rule, a.Priority, id); got.sd != wantSD {
					t.Errorf("structured data %q, want %q", got.sd, wantSD)
				}
				if w := writerJSON(t, a); !bytes.Equal(got.msg, w) {
					t.Errorf("MSG\n%s\nwant the Writer's\n%s", got.msg, w)
				}
				if js["rule"] != a.Rule || js["priority"] != string(a.Priority) || js["output"] != a.Output {
					t.Errorf("MSG fields %v", js)
				}
			}
			if s.Dropped() != 0 {
				t.Errorf("Dropped() = %d", s.Dropped())
			}
		})
	}
	// A collector restart closes the sink's connections: the next alert must
	// go out on a new one, not vanish into the old socket.
	t.Run("reconnect after restart", func(t *testing.T) {
		addrs := map[string]SyslogConfig{"tcp": {Address: fmt.Sprintf("tcp://127.0.0.1:%d", tcpPort)},
			"unixstream": {Address: "unix://" + filepath.Join(dir, "stream.sock")}}
		if withTLS {
			addrs["tls"] = SyslogConfig{Address: fmt.Sprintf("tls://127.0.0.1:%d", tlsPort), CAFile: pki.caFile,
				CertFile: pki.certFile, KeyFile: pki.keyFile}
		}
		sinks := map[string]*Syslog{}
		for name, cfg := range addrs {
			cfg.Backoff = 10 * time.Millisecond
			sinks[name] = newSyslog(t, cfg)
			sinks[name].Send(alert("restart-"+name+"-before", "/etc/shadow"))
			waitLines(t, name, "restart-"+name+"-before", 1, sinks[name])
		}
		stop()
		stop = start(2)
		for name, s := range sinks {
			s.Send(alert("restart-"+name+"-after", "/etc/shadow"))
			waitLines(t, name, "restart-"+name+"-after", 1, s)
			if s.Sent() != 2 || s.Dropped() != 0 {
				t.Errorf("%s: Sent() = %d, Dropped() = %d", name, s.Sent(), s.Dropped())
			}
		}
	})
	if !withTLS {
		requireRsyslog(t, "rsyslog's gtls driver not found (Debian package rsyslog-gnutls): TLS tested in-process only")
	}
}
