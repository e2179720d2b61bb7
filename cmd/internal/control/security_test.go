package control

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/cmd/internal/control/controltest"
)

func TestHostPolicy(t *testing.T) {
	allowed := []string{"Engarde.Example.NET."}
	for _, c := range []struct {
		listen string
		host   string
		want   bool
	}{
		{"127.0.0.1:9001", "127.0.0.1:9001", true},
		{"127.0.0.1:9001", "127.0.0.1:8080", true}, // an SSH forward
		{"127.0.0.1:9001", "127.0.0.1", true},
		{"127.0.0.1:9001", "localhost:9001", true},
		{"127.0.0.1:9001", "LOCALHOST.:9001", true},
		{"127.0.0.1:9001", "[::1]:9001", true},
		{"127.0.0.1:9001", "[::ffff:127.0.0.1]:9001", true},
		{"127.0.0.1:9001", "engarde.example.net:9001", true},
		{"127.0.0.1:9001", "", true},
		{"127.0.0.1:9001", "evil.example:9001", false},
		{"127.0.0.1:9001", "evil.example", false},
		{"127.0.0.1:9001", "localhost.evil.example:9001", false},
		{"127.0.0.1:9001", "127.0.0.1.evil.example:9001", false},
		{"127.0.0.1:9001", "engarde.example.net.evil.example", false},
		{"127.0.0.1:9001", "198.18.0.1:9001", false}, // not where it listens
		{"198.18.0.1:9001", "198.18.0.1:9001", true},
		{"198.18.0.1:9001", "198.18.0.2:9001", false},
		{"198.18.0.1:9001", "127.0.0.1:9001", true},
		{"0.0.0.0:9001", "198.18.0.2:9001", true},
		{"0.0.0.0:9001", "[fd00::1]:9001", true},
		{"0.0.0.0:9001", "evil.example:9001", false},
		{":9001", "198.18.0.2:9001", true},
		{"[::]:9001", "198.18.0.2", true},
		{"[fd00::1]:9001", "[fd00::1]:9001", true},
		{"[fd00::1]:9001", "[fd00::2]:9001", false},
		{"myhost.lan:9001", "myhost.lan:9001", true},
		{"myhost.lan:9001", "otherhost.lan:9001", false},
		{"", "127.0.0.1:1234", true},
		{"", "198.18.0.1:1234", false},
		{"", "evil.example", false},
	} {
		p := newHostPolicy(c.listen, nil, allowed)
		if got := p.allows(c.host); got != c.want {
			t.Errorf("listening on %q: allows(%q) = %v, want %v", c.listen, c.host, got, c.want)
		}
	}
	// The bound address decides when known: a name may listen anywhere.
	p := newHostPolicy("myhost.lan:9001", &net.TCPAddr{IP: net.ParseIP("198.18.0.7"), Port: 9001}, nil)
	if !p.allows("198.18.0.7:9001") || p.allows("198.18.0.8:9001") || !p.allows("myhost.lan") {
		t.Errorf("bound to 198.18.0.7 as myhost.lan: wrong answers")
	}
}

// TestDNSRebinding plays a page on evil.example whose name was rebound to
// 127.0.0.1 after it loaded: its requests reach the web manager with
// Host: evil.example:PORT, and its POSTs carry its own origin, so the
// cross-origin check alone lets them through. Every request is refused
// before the login and the handlers see it.
func TestDNSRebinding(t *testing.T) {
	for _, login := range []bool{false, true} {
		f := newFakeClient()
		o := Options{ListenAddr: "127.0.0.1:0", AllowedHosts: []string{"engarde.example.net"}}
		if login {
			o.Username, o.Password = "admin", "s3cret"
		}
		var l logs
		o.Log = l.logger()
		s := newTest(t, o, Role{Client: f})
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		port := s.Addr().(*net.TCPAddr).Port
		evil := "evil.example:" + itoa(port)
		origin := "http://" + evil
		got := 0 // answers that gave the attacker something
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/", ""},
			{"GET", "/api/v1/get-list", ""},
			{"GET", "/metrics", ""},
			{"POST", "/api/v1/exclude", `{"interface":"eth0"}`},
			{"POST", "/api/v1/swap-exclusion", `{"interface":"eth0"}`},
			{"POST", "/api/v1/reset-exclusions", ""},
		} {
			req, _ := http.NewRequest(r.method, "http://"+s.Addr().String()+r.path, strings.NewReader(r.body))
			req.Host = evil
			req.Header.Set("Origin", origin)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			if login {
				// The operator typed the password into the rebinding
				// page's prompt: the browser sends it.
				req.SetBasicAuth("admin", "s3cret")
			}
			code, hdr, body := send(t, req)
			if code != http.StatusMisdirectedRequest || hdr.Get("WWW-Authenticate") != "" || !strings.Contains(body, "not served here") {
				got++
				t.Errorf("login %v: %s %s as %s: %d %s, want 421", login, r.method, r.path, evil, code, body)
			}
		}
		if f.Excluded("eth0") || f.resets != 0 {
			got++
			t.Errorf("login %v: the rebinding page changed the exclusions", login)
		}
		if n := strings.Count(l.String(), "refused a request for host"); n != 1 {
			t.Errorf("login %v: %d log lines about refused hosts, want 1 (rate-limited):\n%s", login, n, l.String())
		}
		t.Logf("login %v: 6 requests as %s: %d answered, exclusions unchanged", login, evil, got)

		// The names the operator uses still work.
		for _, host := range []string{"localhost:" + itoa(port), "engarde.example.net:" + itoa(port), s.Addr().String()} {
			req, _ := http.NewRequest("POST", "http://"+s.Addr().String()+"/api/v1/exclude", strings.NewReader(`{"interface":"eth0"}`))
			req.Host = host
			req.Header.Set("Origin", "http://"+host)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			if login {
				req.SetBasicAuth("admin", "s3cret")
			}
			if code, _, body := send(t, req); code != 200 {
				t.Errorf("login %v: POST as %s: %d %s", login, host, code, body)
			}
			f.SetExclusion("eth0", false)
		}
		s.Close()
	}
}

// TestAllowedHostsReload: a reload that drops a name from allowedHosts
// refuses it at once, on the same listener.
func TestAllowedHostsReload(t *testing.T) {
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0", AllowedHosts: []string{"a.example"}}, Role{Server: newFakeServer()})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	asHost := func(host string) int {
		req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/api/v1/get-list", nil)
		req.Host = host
		code, _, _ := send(t, req)
		return code
	}
	if c := asHost("a.example"); c != 200 {
		t.Fatalf("a.example allowed: %d", c)
	}
	if err := s.Reconfigure(Options{ListenAddr: "127.0.0.1:0", AllowedHosts: []string{"b.example"}}); err != nil {
		t.Fatal(err)
	}
	if a, b := asHost("a.example"), asHost("b.example"); a != 421 || b != 200 {
		t.Errorf("after the reload: a.example %d, b.example %d; want 421, 200", a, b)
	}
}

func send(t *testing.T, req *http.Request) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// httpsGet fetches path over HTTPS, trusting only root, and returns the
// status, the body and the certificate the server showed.
func httpsGet(addr net.Addr, path string, root *x509.Certificate) (int, string, *x509.Certificate, error) {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + addr.String() + path)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.TLS.PeerCertificates[0], nil
}

// TestTLS serves HTTPS with a certificate made here: it answers over TLS
// and not over plain HTTP, a reload with an unreadable pair keeps serving
// the previous one, a reload with a renewed pair serves the new one on the
// same listener, and one without the pair goes back to plain HTTP.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	c1, k1, cert1 := controltest.SelfSigned(t, dir, "one")
	c2, k2, cert2 := controltest.SelfSigned(t, dir, "two")
	var l logs
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0", CertFile: c1, KeyFile: k1, Username: "u", Password: "p", Log: l.logger()}, Role{Client: newFakeClient()})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addr()
	if !strings.Contains(l.String(), "listening on https://"+addr.String()) {
		t.Errorf("no https in the start-up line:\n%s", l.String())
	}

	code, body, shown, err := httpsGet(addr, "/api/v1/get-list", cert1)
	if err != nil || code != 401 || shown.SerialNumber.Cmp(cert1.SerialNumber) != 0 {
		t.Fatalf("HTTPS: %d %s, %v; want 401 (login) with certificate one", code, body, err)
	}
	// Plain HTTP to the HTTPS port: no API, no login challenge.
	req, _ := http.NewRequest("GET", "http://"+addr.String()+"/api/v1/get-list", nil)
	req.SetBasicAuth("u", "p")
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(b), `"type"`) || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("plain HTTP to the HTTPS port answered %d %s", resp.StatusCode, b)
		}
	}

	// An unreadable pair: an error, and certificate one still served.
	o := Options{ListenAddr: "127.0.0.1:0", CertFile: filepath.Join(dir, "missing.crt"), KeyFile: k1, Username: "u", Password: "p"}
	if err := s.Reconfigure(o); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("reload with a missing certificate: %v, want an error naming it", err)
	}
	o.CertFile, o.KeyFile = c1, k2 // a key that is not the certificate's
	if err := s.Reconfigure(o); err == nil {
		t.Errorf("reload with a mismatched key: no error")
	}
	if _, _, shown, err := httpsGet(addr, "/", cert1); err != nil || shown.SerialNumber.Cmp(cert1.SerialNumber) != 0 {
		t.Errorf("after refused reloads: %v, want certificate one", err)
	}

	// A renewed pair: served at once, on the same listener.
	o.CertFile, o.KeyFile = c2, k2
	if err := s.Reconfigure(o); err != nil {
		t.Fatal(err)
	}
	if s.Addr().String() != addr.String() {
		t.Errorf("a renewal moved the listener from %v to %v", addr, s.Addr())
	}
	if _, _, shown, err := httpsGet(addr, "/", cert2); err != nil || shown.SerialNumber.Cmp(cert2.SerialNumber) != 0 {
		t.Errorf("after the renewal: %v, want certificate two", err)
	}

	// No pair: plain HTTP on the same address.
	port := addr.(*net.TCPAddr).Port
	if err := s.Reconfigure(Options{ListenAddr: "127.0.0.1:" + itoa(port)}); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, s.Addr(), "/api/v1/get-list", "", ""); code != 200 {
		t.Errorf("plain HTTP after dropping TLS: %d %s", code, body)
	}
	if strings.Contains(l.String(), "beyond loopback") || strings.Contains(l.String(), "without a password") {
		t.Errorf("warned on loopback:\n%s", l.String())
	}
}

// TestTLSStartFails: a certificate that cannot be read at start is an
// error that names it, and nothing listens.
func TestTLSStartFails(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.crt")
	os.WriteFile(bad, []byte("not a certificate"), 0o644)
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0", CertFile: bad, KeyFile: bad}, Role{Server: newFakeServer()})
	err := s.Start()
	defer s.Close()
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Start with a bad certificate: %v, want an error naming %s", err, bad)
	}
	if s.Addr() != nil {
		t.Errorf("listening on %v without a certificate", s.Addr())
	}
}

// TestHTTPLogLimited: net/http's own messages, which anyone who reaches
// the port can cause (a failed TLS handshake, say), are logged at most
// logBurst times a window.
func TestHTTPLogLimited(t *testing.T) {
	var l logs
	w := logWriter{l.logger(), &rateLimit{}}
	for range 3 * logBurst {
		w.Write([]byte("http: TLS handshake error from 127.0.0.1:1: EOF\n"))
	}
	if n := strings.Count(l.String(), "handshake error"); n != logBurst {
		t.Errorf("%d lines logged of %d, want %d", n, 3*logBurst, logBurst)
	}
	w.r.start = w.r.start.Add(-logEvery)
	w.Write([]byte("next\n"))
	if !strings.Contains(l.String(), fmt.Sprintf("next (and %d such messages not logged before it)", 2*logBurst)) {
		t.Errorf("no count of the messages dropped:\n%s", l.String())
	}
}

// TestConnLimit: a peer that opens connections and sends nothing holds at
// most maxConns of the web manager's file descriptors; others wait until
// a slot frees.
func TestConnLimit(t *testing.T) {
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0"}, Role{Server: newFakeServer()})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range maxConns {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// Let the server accept them all.
	time.Sleep(200 * time.Millisecond)
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	if resp, err := hc.Get("http://" + s.Addr().String() + "/api/v1/get-list"); err == nil {
		resp.Body.Close()
		t.Errorf("served a request past %d idle connections: %d", maxConns, resp.StatusCode)
	}
	idle[0].Close()
	hc.Timeout = 5 * time.Second
	resp, err := hc.Get("http://" + s.Addr().String() + "/api/v1/get-list")
	if err != nil {
		t.Fatalf("after one idle connection closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after one idle connection closed: %d", resp.StatusCode)
	}
}
