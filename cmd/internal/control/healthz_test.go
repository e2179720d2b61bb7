package control

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/cmd/internal/control/controltest"
	"github.com/engarde-project/engarde/engine"
)

// TestHealthz: 200 while the tunnel is up or degraded, 503 while it is
// down, the state and reason in the body; no login asked even when one
// is configured, while /metrics beside it still asks.
func TestHealthz(t *testing.T) {
	for _, tt := range []struct {
		tunnel engine.TunnelInfo
		code   int
		body   string
	}{
		{engine.TunnelInfo{State: engine.TunnelUp}, 200, "up\n"},
		{engine.TunnelInfo{State: engine.TunnelDegraded, Reason: "eth1 stalled"}, 200, "degraded: eth1 stalled\n"},
		{engine.TunnelInfo{State: engine.TunnelDown, Reason: "server unreachable: nothing back on any link"}, 503, "down: server unreachable: nothing back on any link\n"},
	} {
		for name, role := range map[string]Role{
			"client": {Client: tunedClient{newFakeClient(), func(st *ClientStatus) { st.Tunnel = tt.tunnel }}},
			"server": {Server: tunedServer{newFakeServer(), func(st *ServerStatus) { st.Tunnel = tt.tunnel }}},
		} {
			s := newTest(t, Options{Username: "u", Password: "p"}, role)
			code, hdr, body := do(t, s.Handler(), "GET", "/healthz", "")
			if code != tt.code || body != tt.body || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
				t.Errorf("%s %s: %d %q (%s), want %d %q", name, tt.tunnel.State, code, body, hdr.Get("Content-Type"), tt.code, tt.body)
			}
			if code, _, body := do(t, s.Handler(), "HEAD", "/healthz", ""); code != tt.code || body != "" {
				t.Errorf("%s HEAD: %d %q", name, code, body)
			}
			if code, _, _ := do(t, s.Handler(), "GET", "/metrics", ""); code != 401 {
				t.Errorf("%s: /metrics without the login answered %d", name, code)
			}
			// The exemption is for that one path: another spelling
			// is not served without the login.
			for _, p := range []string{"/healthz/", "/./healthz", "/healthz/../api/v1/get-list"} {
				if code, _, body := do(t, s.Handler(), "GET", p, ""); code != 401 {
					t.Errorf("%s %s without the login: %d %s", name, p, code, body)
				}
			}
			if code, _, _ := do(t, s.Handler(), "POST", "/healthz", "x"); code != 405 {
				t.Errorf("%s: POST /healthz answered %d", name, code)
			}
		}
	}
}

// fetchURL fetches a URL with an optional login and Host header.
func fetchURL(t *testing.T, url, user, pass, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsListener: the metrics listener serves /metrics and /healthz
// without the login that the main listener asks for, and nothing else:
// not the API, not the page, not an exclusion.
func TestMetricsListener(t *testing.T) {
	f := newFakeClient()
	var l logs
	up := tunedClient{f, func(st *ClientStatus) { st.Tunnel.State = engine.TunnelUp }}
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0", MetricsListenAddr: "127.0.0.1:0", Username: "u", Password: "p", Log: l.logger()}, Role{Client: up})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	main, metrics := "http://"+s.Addr().String(), "http://"+s.MetricsAddr().String()
	if !strings.Contains(l.String(), "metrics listening on http://"+s.MetricsAddr().String()+"/metrics") {
		t.Errorf("no start-up line for the metrics listener:\n%s", l.String())
	}

	if code, body := fetchURL(t, metrics+"/metrics", "", "", ""); code != 200 || !strings.Contains(body, "engarde_link_state{") {
		t.Errorf("metrics listener /metrics: %d %.200s", code, body)
	}
	if code, body := fetchURL(t, metrics+"/healthz", "", "", ""); code != 200 || body != "up\n" {
		t.Errorf("metrics listener /healthz: %d %q", code, body)
	}
	for _, p := range []string{"/", "/api/v1/get-list", "/get-list", "/app.js", "/api/v1/history"} {
		if code, body := fetchURL(t, metrics+p, "u", "p", ""); code != 404 {
			t.Errorf("metrics listener %s, even with the login: %d %.200s", p, code, body)
		}
	}
	resp, err := http.Post(metrics+"/api/v1/exclude", "application/json", strings.NewReader(`{"interface":"eth0"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || f.Excluded("eth0") {
		t.Errorf("an exclusion through the metrics listener: %d, excluded %v", resp.StatusCode, f.Excluded("eth0"))
	}
	// A page rebound to the metrics listener by DNS names its own host.
	if code, _ := fetchURL(t, metrics+"/metrics", "", "", "attacker.example:80"); code != 421 {
		t.Errorf("metrics listener for Host attacker.example: %d, want 421", code)
	}
	if code, _ := fetchURL(t, main+"/metrics", "", "", ""); code != 401 {
		t.Errorf("main listener /metrics without the login: %d, want 401", code)
	}
	if code, _ := fetchURL(t, main+"/metrics", "u", "p", ""); code != 200 {
		t.Errorf("main listener /metrics with the login: %d", code)
	}

	// A reload moves the metrics listener, and one without it closes it.
	old := s.MetricsAddr().String()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	next := ln.Addr().String()
	ln.Close()
	o := Options{ListenAddr: "127.0.0.1:0", MetricsListenAddr: next, Username: "u", Password: "p"}
	if err := s.Reconfigure(o); err != nil {
		t.Fatal(err)
	}
	if code, _ := fetchURL(t, "http://"+next+"/metrics", "", "", ""); code != 200 {
		t.Errorf("after the move: %d", code)
	}
	if code, _ := fetchURL(t, "http://"+old+"/metrics", "", "", ""); code != 0 {
		t.Errorf("the old metrics address still answers: %d", code)
	}
	o.MetricsListenAddr = ""
	if err := s.Reconfigure(o); err != nil {
		t.Fatal(err)
	}
	if s.MetricsAddr() != nil {
		t.Errorf("metrics listener on %v after a reload without it", s.MetricsAddr())
	}
	if code, _ := fetchURL(t, "http://"+next+"/metrics", "", "", ""); code != 0 {
		t.Errorf("the metrics address still answers after a reload without it: %d", code)
	}
	if code, _ := fetchURL(t, main+"/healthz", "", "", ""); code != 200 {
		t.Errorf("main listener /healthz without the login: %d", code)
	}
}

// TestMetricsListenerAlone: a metrics listener without the web manager,
// over HTTPS when a certificate is configured; Close closes it.
func TestMetricsListenerAlone(t *testing.T) {
	c, k, cert := controltest.SelfSigned(t, t.TempDir(), "m")
	s := newTest(t, Options{MetricsListenAddr: "127.0.0.1:0", CertFile: c, KeyFile: k}, Role{Server: newFakeServer()})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Errorf("a main listener on %v without listenAddr", s.Addr())
	}
	addr := s.MetricsAddr()
	code, body, _, err := httpsGet(addr, "/metrics", cert)
	if err != nil || code != 200 || !strings.Contains(body, "engarde_sessions 2") {
		t.Errorf("HTTPS /metrics: %d %.200s %v", code, body, err)
	}
	s.Close()
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Errorf("the metrics listener still accepts after Close")
	}
}

// TestMetricsListenerBusy: a metrics address that cannot be listened on
// is Start's error, which the daemon exits with.
func TestMetricsListenerBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0", MetricsListenAddr: ln.Addr().String()}, Role{Client: newFakeClient()})
	err = s.Start()
	defer s.Close()
	if err == nil || !strings.Contains(err.Error(), "metrics: listening on "+ln.Addr().String()) {
		t.Errorf("Start with the metrics port taken: %v", err)
	}
}

// blockingServer is a server role whose status waits for release, as a
// slow scrape would.
type blockingServer struct {
	*fakeServer
	entered chan struct{}
	release chan struct{}
}

func (b blockingServer) ServerStatus() ServerStatus {
	b.entered <- struct{}{}
	<-b.release
	return b.fakeServer.ServerStatus()
}

// TestMetricsScrapeFlood: anyone who reaches the metrics listener can
// scrape, so a flood of scrapes gets at most maxScrapes status reads at
// once; the rest are answered 503 at once instead of piling up.
func TestMetricsScrapeFlood(t *testing.T) {
	b := blockingServer{newFakeServer(), make(chan struct{}, 100), make(chan struct{})}
	s := newTest(t, Options{MetricsListenAddr: "127.0.0.1:0"}, Role{Server: b})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "http://" + s.MetricsAddr().String() + "/metrics"
	const flood = maxScrapes + 6
	codes := make(chan int, flood)
	for range flood {
		go func() {
			code, _ := fetchURL(t, url, "", "", "")
			codes <- code
		}()
	}
	// maxScrapes reads start; the others are refused while they wait.
	for range maxScrapes {
		<-b.entered
	}
	refused := 0
	for range flood - maxScrapes {
		if c := <-codes; c == http.StatusServiceUnavailable {
			refused++
		} else {
			t.Errorf("a scrape beyond the %d in flight answered %d", maxScrapes, c)
		}
	}
	select {
	case <-b.entered:
		t.Errorf("more than %d status reads at once", maxScrapes)
	default:
	}
	close(b.release)
	for range maxScrapes {
		if c := <-codes; c != 200 {
			t.Errorf("a scrape in flight answered %d", c)
		}
	}
	t.Logf("%d scrapes at once: %d served, %d refused with 503", flood, maxScrapes, refused)
}
