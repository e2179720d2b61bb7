package control

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unixClient is an HTTP client whose every request goes to the unix
// socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// TestServeLocal: the control socket serves reads and actions without the
// login the web manager asks for, with rates from the sampler although no
// web manager listens, and stops with ServeLocal(nil) and with Close.
func TestServeLocal(t *testing.T) {
	f := newFakeClient()
	s, err := New(Options{Username: "admin", Password: "pw"}, Role{Client: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The web manager's handler still wants the login.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost/api/v1/get-list", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("web manager without credentials: %d, want 401", rec.Code)
	}

	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s.ServeLocal(ln)
	if s.LocalAddr() == nil || s.LocalAddr().String() != path {
		t.Errorf("LocalAddr %v, want %s", s.LocalAddr(), path)
	}
	hc := unixClient(path)
	resp, err := hc.Post("http://localhost/api/v1/exclude", "application/json", strings.NewReader(`{"interface":"eth0"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !f.Excluded("eth0") {
		t.Errorf("exclude over the socket: %d, excluded %v", resp.StatusCode, f.Excluded("eth0"))
	}
	if resp, err = hc.Post("http://localhost/api/v1/include", "application/json", strings.NewReader(`{"interface":"eth0"}`)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Traffic on eth0: the sampler, running for the socket alone, turns it
	// into a rate within two samples.
	stop := make(chan struct{})
	go func() {
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				f.mu.Lock()
				f.links[0].Counters.RxPackets += 10
				f.mu.Unlock()
			}
		}
	}()
	defer close(stop)
	var rate float64
	for deadline := time.Now().Add(4 * sampleEvery); rate == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Get("http://localhost/api/v1/get-list")
		if err != nil {
			t.Fatal(err)
		}
		var l ClientList
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("get-list over the socket without a login: %d, %v", resp.StatusCode, err)
		}
		for _, i := range l.Interfaces {
			if i.Name == "eth0" && i.Stats != nil {
				rate = i.Stats.Rates.RxPackets
			}
		}
	}
	if rate == 0 {
		t.Error("no rate over the socket: the sampler does not run without a web manager")
	}

	s.ServeLocal(nil)
	if _, err := hc.Get("http://localhost/api/v1/get-list"); err == nil {
		t.Error("the socket still answers after ServeLocal(nil)")
	}
	ln, err = net.Listen("unix", filepath.Join(t.TempDir(), "t.sock"))
	if err != nil {
		t.Fatal(err)
	}
	s.ServeLocal(ln)
	s.Close()
	if _, err := unixClient(ln.Addr().String()).Get("http://localhost/api/v1/get-list"); err == nil {
		t.Error("the socket still answers after Close")
	}
}
