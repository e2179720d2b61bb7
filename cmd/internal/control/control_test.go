package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// fakeClient is a ClientRole with two links, an idle interface and an
// excluded one.
type fakeClient struct {
	mu       sync.Mutex
	excluded map[string]bool
	links    []Link
	resets   int
	stopping bool // the toggles fail, as the engine's do once Run is stopping
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newFakeClient() *fakeClient {
	now := time.Now()
	return &fakeClient{
		excluded: map[string]bool{"wg0": true},
		links: []Link{
			{Name: "eth0", Label: "Fiber", Status: "active", Local: netip.MustParseAddr("192.0.2.2"), Dst: "203.0.113.10:59402",
				Counters: &engine.Counters{RxPackets: 10, RxBytes: 1000, TxPackets: 20, TxBytes: 2000, LastRx: now.Add(-1500 * time.Millisecond), DropFull: 1, DropTimeout: 2, DropError: 3, DropClosed: 4, Oversize: 5, SendErrors: 6, RxErrors: 7},
				Quality:  engine.Quality{Samples: 160, First: 120, Lost: 2, Copies: 38, LateP50: 1500 * time.Microsecond, LateP99: 12 * time.Millisecond}},
			// wlan0 has a socket but no samples yet: no ratio to show;
			// it sends and has never received (the engine says stalled).
			{Name: "wlan0", Status: "stalled", Reason: "nothing came back for 3s while sending", Local: netip.MustParseAddr("198.51.100.7"), Dst: "203.0.113.10:59402",
				Counters: &engine.Counters{}},
			{Name: "eth1", Status: "down", Reason: "no carrier", Dst: "203.0.113.10:59402"},
			{Name: "wg0", Status: "excluded", Reason: "excluded", Local: netip.MustParseAddr("10.0.0.1")},
		},
	}
}

func (f *fakeClient) ClientStatus() ClientStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	links := make([]Link, len(f.links))
	for i, l := range f.links {
		if l.Counters != nil {
			c := *l.Counters
			l.Counters = &c
		}
		if f.excluded[l.Name] {
			l.Status, l.Reason, l.Counters = "excluded", "excluded", nil
		}
		links[i] = l
	}
	return ClientStatus{
		Description: "test client",
		ListenAddr:  "127.0.0.1:59401",
		Backend:     "mmsg",
		Started:     t0,
		Links:       links,
		WireGuard:   engine.Counters{RxPackets: 30, TxPackets: 10},
		NoLink:      3,
		Foreign:     4,
	}
}

func (f *fakeClient) SetExclusion(name string, exclude bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return false, errors.New("the client is stopping")
	}
	if f.excluded[name] == exclude {
		return false, nil
	}
	f.excluded[name] = exclude
	return true, nil
}

func (f *fakeClient) Excluded(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.excluded[name]
}

func (f *fakeClient) ResetExclusions() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return errors.New("the client is stopping")
	}
	f.resets++
	f.excluded = map[string]bool{"wg0": true}
	return nil
}

type fakeServer struct{ sessions []SessionStatus }

func (f *fakeServer) ServerStatus() ServerStatus {
	return ServerStatus{
		Description:   "test server",
		ListenAddr:    "0.0.0.0:59402",
		DstAddr:       "127.0.0.1:59301",
		Backend:       "std",
		Started:       t0,
		ClientTimeout: 30 * time.Second,
		Sessions:      f.sessions,
		Upstream:      engine.Counters{TxPackets: 100, RxPackets: 50},
		NoPeer:        2,
		ServerCounters: ServerCounters{NotWireGuard: 11, NotMember: 12, Foreign: 13, Initiations: 14, InitCopies: 15,
			Joins: 16, PendingEvicted: 17, Unrouted: 18, ProbesAnswered: 19, ProbesRefused: 20, ProbesLimited: 21},
	}
}

// newFakeServer has two sessions: one with two live addresses (the second
// silent for 10 s while the first sends) and one whose only address is
// silent past the client timeout and has no samples.
func newFakeServer() *fakeServer {
	now := time.Now()
	return &fakeServer{sessions: []SessionStatus{
		{ID: 1, Since: t0, Endpoint: netip.MustParseAddrPort("127.0.0.1:40001"), Indexes: []uint32{0xa1b2c3d4, 7},
			Counters: engine.Counters{TxPackets: 90, RxPackets: 45},
			Addrs: []Peer{
				{Addr: netip.MustParseAddrPort("198.18.1.2:40000"), Local: netip.MustParseAddrPort("198.18.1.1:59402"), Session: 1, Since: t0, LastSeen: now, Live: true,
					Counters: engine.Counters{RxPackets: 5, TxPackets: 6, LastRx: now},
					Quality:  engine.Quality{Samples: 200, First: 150, Lost: 4, Copies: 46, LateP50: 1200 * time.Microsecond, LateP99: 8500 * time.Microsecond}},
				{Addr: netip.MustParseAddrPort("[fd00:2::2]:40001"), Local: netip.MustParseAddrPort("[fd00:2::1]:59402"), Session: 1, Since: t0, LastSeen: now.Add(-10 * time.Second), Live: true, Status: "stalled",
					Counters: engine.Counters{RxPackets: 1},
					Quality:  engine.Quality{Samples: 200, First: 50, Lost: 10, Copies: 140, LateP50: 250 * time.Microsecond, LateP99: 3 * time.Millisecond}},
			}},
		{ID: 7, Since: t0.Add(time.Minute), Endpoint: netip.MustParseAddrPort("127.0.0.1:40007"),
			Counters: engine.Counters{TxPackets: 9, RxPackets: 4},
			Addrs: []Peer{
				{Addr: netip.MustParseAddrPort("203.0.113.9:51000"), Local: netip.MustParseAddrPort("198.18.1.1:59402"), Session: 7, Since: t0.Add(time.Minute), LastSeen: now.Add(-200 * time.Second)},
			}},
	}}
}

func newTest(t *testing.T, o Options, r Role) *Server {
	t.Helper()
	s, err := New(o, r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// do sends a request to h and returns the status and body. The request
// names host 127.0.0.1:9001 unless hdr sets "Host".
func do(t *testing.T, h http.Handler, method, path, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Host = "127.0.0.1:9001"
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Header(), w.Body.String()
}

func TestClientList(t *testing.T) {
	s := newTest(t, Options{Version: "v9"}, Role{Client: newFakeClient()})
	code, hdr, body := do(t, s.Handler(), "GET", "/api/v1/get-list", "")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", code, hdr.Get("Content-Type"), body)
	}
	// The original's fields, by their JSON names, as old tools read them.
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"type": "client", "version": "v9", "description": "test client", "listenAddress": "127.0.0.1:59401", "backend": "mmsg", "noLink": 3.0, "foreign": 4.0} {
		if raw[k] != want {
			t.Errorf("%s = %v, want %v", k, raw[k], want)
		}
	}
	ifs := raw["interfaces"].([]any)
	if len(ifs) != 4 {
		t.Fatalf("%d interfaces, want 4", len(ifs))
	}
	eth0 := ifs[0].(map[string]any)
	for k, want := range map[string]any{"name": "eth0", "label": "Fiber", "status": "active", "senderAddress": "192.0.2.2", "address": "192.0.2.2", "dstAddress": "203.0.113.10:59402", "last": 1.0} {
		if eth0[k] != want {
			t.Errorf("eth0 %s = %v (%T), want %v", k, eth0[k], eth0[k], want)
		}
	}
	var l ClientList
	json.Unmarshal([]byte(body), &l)
	if l.Uptime <= 0 || !l.Started.Equal(t0) {
		t.Errorf("uptime %v, started %v", l.Uptime, l.Started)
	}
	st := l.Interfaces[0].Stats
	if st == nil || st.RxPackets != 10 || st.TxBytes != 2000 || st.Drops != (Drops{Total: 15, Full: 1, Timeout: 2, Error: 3, Closed: 4, Oversize: 5}) || st.SendErrors != 6 || st.RxErrors != 7 {
		t.Errorf("eth0 stats %+v", st)
	}
	if q := l.Interfaces[0].Quality; q == nil || q.Samples != 160 || q.First != 120 || q.Lost != 2 || q.Copies != 38 ||
		!near(q.FirstShare, 0.75) || !near(q.LossRate, 0.0125) || !near(q.LateP50Ms, 1.5) || !near(q.LateP99Ms, 12) {
		t.Errorf("eth0 quality %+v", q)
	}
	// A link with a socket and no samples yet: its figures are null.
	if q := l.Interfaces[1].Quality; q == nil || q.Samples != 0 || q.FirstShare != nil || q.LossRate != nil || q.LateP50Ms != nil || q.LateP99Ms != nil {
		t.Errorf("wlan0 quality %+v, want zero counts and null figures", q)
	}
	for _, i := range l.Interfaces[2:] {
		if i.Quality != nil {
			t.Errorf("%s without a socket has quality %+v", i.Name, i.Quality)
		}
	}
	// wlan0 has never received while eth0 has: stalled.
	if w := l.Interfaces[1]; w.Last != nil || !w.Stalled || w.Stats == nil {
		t.Errorf("wlan0: last %v stalled %v stats %v, want null, true, present", w.Last, w.Stalled, w.Stats)
	}
	if e := l.Interfaces[2]; e.Status != "idle" || e.Reason != "no carrier" || e.Stats != nil || e.Last != nil || e.SenderAddress != "" {
		t.Errorf("eth1 = %+v", e)
	}
	if e := l.Interfaces[3]; e.Status != "excluded" || e.SenderAddress != "10.0.0.1" || e.Stalled {
		t.Errorf("wg0 = %+v", e)
	}
	// null, not absent, for an interface without a socket.
	if !strings.Contains(body, `"name":"eth1","label":"","status":"idle","senderAddress":"","dstAddress":"203.0.113.10:59402","address":"","last":null`) {
		t.Errorf("eth1 not in the original's shape: %s", body)
	}
}

func TestServerList(t *testing.T) {
	s := newTest(t, Options{Version: "v9"}, Role{Server: newFakeServer()})
	code, _, body := do(t, s.Handler(), "GET", "/api/v1/get-list", "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var raw map[string]any
	json.Unmarshal([]byte(body), &raw)
	for k, want := range map[string]any{
		"type": "server", "version": "v9", "description": "test server", "listenAddress": "0.0.0.0:59402", "dstAddress": "127.0.0.1:59301", "noClient": 2.0, "clientTimeout": 30.0,
		"notWireGuard": 11.0, "notMember": 12.0, "foreign": 13.0, "initiations": 14.0, "initiationCopies": 15.0, "joins": 16.0, "pendingEvicted": 17.0, "unrouted": 18.0,
	} {
		if raw[k] != want {
			t.Errorf("%s = %v, want %v", k, raw[k], want)
		}
	}
	// notLearned was ours, not the original's, and the sum of three
	// reasons the counters above now tell apart.
	if _, ok := raw["notLearned"]; ok {
		t.Errorf("notLearned still in the answer")
	}
	var l ServerList
	json.Unmarshal([]byte(body), &l)
	// The original's flat list: the addresses heard from within the
	// client timeout, every session's.
	if len(l.Sockets) != 2 || len(l.Sessions) != 2 || len(l.Sessions[1].Addresses) != 1 {
		t.Fatalf("sockets %+v, sessions %+v", l.Sockets, l.Sessions)
	}
	a, b, c := l.Sockets[0], l.Sockets[1], l.Sessions[1].Addresses[0]
	if a.Address != "198.18.1.2:40000" || a.Last == nil || *a.Last != 0 || a.Stalled || a.LocalAddress != "198.18.1.1:59402" || a.Stats.RxPackets != 5 || a.Session != 1 || !a.Live {
		t.Errorf("first socket %+v", a)
	}
	if b.Address != "[fd00:2::2]:40001" || b.Last == nil || *b.Last != 10 || !b.Stalled || !b.Live {
		t.Errorf("second socket %+v (want stalled: silent 10 s while the other of its session sends)", b)
	}
	// Alone in its session, a silent address is not stalled (no other
	// link of its client sends) and not live: in its session only.
	if c.Address != "203.0.113.9:51000" || c.Session != 7 || c.Live || c.Stalled {
		t.Errorf("third socket %+v", c)
	}
	if l.Upstream.TxPackets != 100 {
		t.Errorf("upstream %+v", l.Upstream)
	}

	if len(l.Sessions) != 2 {
		t.Fatalf("sessions %+v", l.Sessions)
	}
	s1, s7 := l.Sessions[0], l.Sessions[1]
	if s1.ID != 1 || s1.Endpoint != "127.0.0.1:40001" || !s1.Since.Equal(t0) || !slices.Equal(s1.Indexes, []uint32{0xa1b2c3d4, 7}) || s1.AnyUDP ||
		s1.Stats.TxPackets != 90 || s1.Stats.RxPackets != 45 || len(s1.Addresses) != 2 || s1.Addresses[1].Address != b.Address || !s1.Addresses[1].Stalled {
		t.Errorf("session 1 %+v", s1)
	}
	if s7.ID != 7 || len(s7.Addresses) != 1 || s7.Addresses[0].Address != c.Address || s7.Stats.TxPackets != 9 {
		t.Errorf("session 7 %+v", s7)
	}
	// indexes is a list, never null, for a session that has none.
	if !strings.Contains(body, `"id":7,"since":"2026-05-01T12:01:00Z","endpoint":"127.0.0.1:40007","indexes":[],"anyUDP":false`) {
		t.Errorf("session 7 not in its shape: %s", body)
	}

	// Quality: ratios from the samples, lateness in milliseconds.
	q := a.Quality
	if q.Samples != 200 || q.First != 150 || q.Lost != 4 || q.Copies != 46 || !near(q.FirstShare, 0.75) || !near(q.LossRate, 0.02) || !near(q.LateP50Ms, 1.2) || !near(q.LateP99Ms, 8.5) {
		t.Errorf("first socket's quality %s", show(q))
	}
	if q := b.Quality; !near(q.FirstShare, 0.25) || !near(q.LossRate, 0.05) || !near(q.LateP50Ms, 0.25) || !near(q.LateP99Ms, 3) {
		t.Errorf("second socket's quality %s", show(q))
	}
	// No samples: null ratios, not 0 (which would claim a link that
	// delivers nothing first) and not NaN (which is no JSON).
	if !strings.Contains(body, `"quality":{"samples":0,"first":0,"lost":0,"copies":0,"firstShare":null,"lossRate":null,"lateP50Ms":null,"lateP99Ms":null}`) {
		t.Errorf("an address without samples not shown as such: %s", body)
	}
	// The old path answers too.
	if code, _, _ := do(t, s.Handler(), "GET", "/get-list", ""); code != 200 {
		t.Errorf("/get-list: %d", code)
	}
}

// TestServerListEmpty: a server no client has reached yet answers empty
// lists, not nulls, which the original's tools would trip on.
func TestServerListEmpty(t *testing.T) {
	s := newTest(t, Options{}, Role{Server: &fakeServer{}})
	_, _, body := do(t, s.Handler(), "GET", "/api/v1/get-list", "")
	for _, want := range []string{`"sockets":[]`, `"sessions":[]`} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in %s", want, body)
		}
	}
}

func near(v *float64, want float64) bool {
	return v != nil && math.Abs(*v-want) < 1e-9
}

func show(q Quality) string {
	b, _ := json.Marshal(q)
	return string(b)
}

func TestActions(t *testing.T) {
	f := newFakeClient()
	h := newTest(t, Options{}, Role{Client: f}).Handler()
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
		excluded           bool // eth0 afterwards
	}{
		{"POST", "/api/v1/exclude", `{"interface":"eth0"}`, 200, `{"status":"ok"}`, true},
		{"POST", "/api/v1/exclude", `{"interface":"eth0"}`, 200, `{"status":"already-excluded"}`, true},
		{"POST", "/api/v1/include", `{"interface":"eth0"}`, 200, `{"status":"ok"}`, false},
		{"POST", "/api/v1/include", `{"interface":"eth0"}`, 200, `{"status":"already-included"}`, false},
		{"POST", "/api/v1/swap-exclusion", `{"interface":"eth0"}`, 200, `{"status":"ok"}`, true},
		{"POST", "/api/v1/swap-exclusion", `{"interface": "eth0", "extra": 1}`, 200, `{"status":"ok"}`, false},
		{"POST", "/swap-exclusion", `{"interface":"eth0"}`, 200, `{"status":"ok"}`, true},
		{"POST", "/api/v1/reset-exclusions", ``, 200, `{"status":"ok"}`, false},
		{"POST", "/api/v1/exclude", `{"interface":"eth0"}`, 200, `{"status":"ok"}`, true},
		// The original's page reset with GET, which any page can send.
		{"GET", "/api/v1/reset-exclusions", ``, 405, `{"error":"method GET not allowed; use POST"}`, true},
		{"GET", "/reset-exclusions", ``, 405, `{"error":"method GET not allowed; use POST"}`, true},
	} {
		code, hdr, body := do(t, h, c.method, c.path, c.body)
		if code != c.code || strings.TrimSpace(body) != c.want || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, code, body, c.code, c.want)
		}
		if f.Excluded("eth0") != c.excluded {
			t.Errorf("%s %s: eth0 excluded %v, want %v", c.method, c.path, f.Excluded("eth0"), c.excluded)
		}
	}
	if f.resets != 1 {
		t.Errorf("%d resets, want 1", f.resets)
	}
}

// TestGetChangesNothing plays an <img src=...> on a page the operator
// visits, with the browser's stored login: GET and HEAD on every path, the
// actions included, change no state.
func TestGetChangesNothing(t *testing.T) {
	f := newFakeClient()
	f.SetExclusion("eth1", true)
	h := newTest(t, Options{}, Role{Client: f}).Handler()
	paths := []string{"/", "/app.js", "/app.css", "/metrics", "/get-list", "/api/v1/get-list",
		"/api/v1/swap-exclusion", "/api/v1/include", "/api/v1/exclude", "/api/v1/reset-exclusions",
		"/swap-exclusion", "/reset-exclusions", "/api/v1/swap-exclusion?interface=eth0", "/api/v1/exclude?interface=eth0"}
	changes := 0
	for _, p := range paths {
		for _, m := range []string{"GET", "HEAD"} {
			code, hdr, _ := do(t, h, m, p, "", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Dest", "image")
			if f.Excluded("eth0") || !f.Excluded("eth1") || f.resets != 0 {
				changes++
				t.Errorf("%s %s (%d) changed the exclusions: eth0 %v, eth1 %v, %d resets", m, p, code, f.Excluded("eth0"), f.Excluded("eth1"), f.resets)
			}
			if strings.Contains(p, "exclu") && (code != 405 || hdr.Get("Allow") != "POST") {
				t.Errorf("%s %s: %d, Allow %q; want 405, Allow POST", m, p, code, hdr.Get("Allow"))
			}
		}
	}
	t.Logf("%d GET and HEAD requests on %d paths: %d state changes", 2*len(paths), len(paths), changes)
}

// TestStopping: once the engine is stopping, an action answers 503 and
// changes nothing.
func TestStopping(t *testing.T) {
	f := newFakeClient()
	f.stopping = true
	h := newTest(t, Options{}, Role{Client: f}).Handler()
	for _, p := range []string{"/api/v1/exclude", "/api/v1/include", "/api/v1/swap-exclusion", "/api/v1/reset-exclusions"} {
		code, _, body := do(t, h, "POST", p, `{"interface":"eth0"}`)
		if code != 503 || !strings.Contains(body, "stopping") {
			t.Errorf("POST %s while stopping: %d %s, want 503", p, code, body)
		}
	}
	if f.Excluded("eth0") || f.resets != 0 {
		t.Errorf("state changed while stopping: eth0 excluded %v, %d resets", f.Excluded("eth0"), f.resets)
	}
}

func TestErrors(t *testing.T) {
	client := newTest(t, Options{}, Role{Client: newFakeClient()}).Handler()
	server := newTest(t, Options{}, Role{Server: newFakeServer()}).Handler()
	for _, c := range []struct {
		name         string
		h            http.Handler
		method, path string
		body         string
		code         int
		want         string // in the error
	}{
		{"malformed", client, "POST", "/api/v1/exclude", `{"interface":`, 400, "malformed JSON"},
		{"not an object", client, "POST", "/api/v1/exclude", `["eth0"]`, 400, "malformed JSON"},
		{"wrong type", client, "POST", "/api/v1/exclude", `{"interface": 3}`, 400, "malformed JSON"},
		{"trailing data", client, "POST", "/api/v1/include", `{"interface":"eth0"} {}`, 400, "malformed JSON"},
		{"empty body", client, "POST", "/api/v1/swap-exclusion", ``, 400, "empty body"},
		{"missing interface", client, "POST", "/api/v1/exclude", `{"iface":"eth0"}`, 400, `missing "interface"`},
		{"empty interface", client, "POST", "/api/v1/exclude", `{"interface":""}`, 400, `missing "interface"`},
		{"unknown interface", client, "POST", "/api/v1/exclude", `{"interface":"eth9"}`, 404, `unknown interface "eth9"`},
		{"too large", client, "POST", "/api/v1/exclude", `{"interface":"` + strings.Repeat("x", maxBody) + `"}`, 413, "larger than"},
		{"GET an action", client, "GET", "/api/v1/exclude", ``, 405, "method GET not allowed; use POST"},
		{"DELETE reset", client, "DELETE", "/api/v1/reset-exclusions", ``, 405, "not allowed"},
		{"POST the list", client, "POST", "/api/v1/get-list", `{}`, 405, "use GET, HEAD"},
		{"PUT metrics", client, "PUT", "/metrics", ``, 405, "not allowed"},
		{"POST the page", client, "POST", "/", ``, 405, "not allowed"},
		{"unknown path", client, "GET", "/api/v2/get-list", ``, 404, "no such endpoint"},
		{"unknown file", client, "GET", "/index.php", ``, 404, "no such endpoint"},
		{"server has no exclusions", server, "POST", "/api/v1/exclude", `{"interface":"eth0"}`, 404, "no such endpoint"},
		{"server has no reset", server, "POST", "/api/v1/reset-exclusions", ``, 404, "no such endpoint"},
		{"cross-origin POST", client, "POST", "/api/v1/exclude", `{"interface":"eth0"}`, 403, "cross-origin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.name == "cross-origin POST" {
				hdr = []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
			}
			code, h, body := do(t, c.h, c.method, c.path, c.body, hdr...)
			var e Error
			if err := json.Unmarshal([]byte(body), &e); err != nil || h.Get("Content-Type") != "application/json" {
				t.Fatalf("answer is not a JSON error (%v, %q): %s", err, h.Get("Content-Type"), body)
			}
			if code != c.code || !strings.Contains(e.Error, c.want) {
				t.Errorf("%d %q, want %d and an error containing %q", code, e.Error, c.code, c.want)
			}
			if code == 405 && h.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
		})
	}
}

func TestAuth(t *testing.T) {
	paths := []struct{ method, path, body string }{
		{"GET", "/", ""},
		{"GET", "/app.js", ""},
		{"GET", "/api/v1/get-list", ""},
		{"GET", "/metrics", ""},
		{"POST", "/api/v1/exclude", `{"interface":"eth0"}`},
		{"POST", "/api/v1/reset-exclusions", ""},
		{"GET", "/nothing-here", ""},
	}
	t.Run("on", func(t *testing.T) {
		h := newTest(t, Options{Username: "admin", Password: "s3cret"}, Role{Client: newFakeClient()}).Handler()
		for _, p := range paths {
			for _, cred := range [][2]string{{}, {"admin", "wrong"}, {"wrong", "s3cret"}, {"admin", ""}, {"Admin", "s3cret"}} {
				var hdr []string
				if cred[0] != "" || cred[1] != "" {
					req := httptest.NewRequest("GET", "/", nil)
					req.SetBasicAuth(cred[0], cred[1])
					hdr = []string{"Authorization", req.Header.Get("Authorization")}
				}
				code, h, body := do(t, h, p.method, p.path, p.body, hdr...)
				if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), `Basic realm="engarde"`) || !strings.Contains(body, `"error"`) {
					t.Errorf("%s %s with %q: %d %q %s, want 401 with a Basic challenge", p.method, p.path, cred, code, h.Get("WWW-Authenticate"), body)
				}
			}
			req := httptest.NewRequest("GET", "/", nil)
			req.SetBasicAuth("admin", "s3cret")
			code, _, body := do(t, h, p.method, p.path, p.body, "Authorization", req.Header.Get("Authorization"))
			if code == 401 {
				t.Errorf("%s %s with the right credentials: %d %s", p.method, p.path, code, body)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		// Without a username and a password there is no login, as in
		// the original.
		for _, o := range []Options{{}} {
			h := newTest(t, o, Role{Client: newFakeClient()}).Handler()
			for _, p := range paths {
				if code, _, body := do(t, h, p.method, p.path, p.body); code == 401 {
					t.Errorf("%+v: %s %s: %d %s", o, p.method, p.path, code, body)
				}
			}
		}
	})
}

func TestPage(t *testing.T) {
	h := newTest(t, Options{}, Role{Client: newFakeClient()}).Handler()
	for _, c := range []struct{ path, ctype, want string }{
		{"/", "text/html", `<script src="app.js"`},
		{"/app.js", "text/javascript", "api/v1/get-list"},
		{"/app.js", "text/javascript", "firstShare"},
		{"/", "text/html", "Late p50 / p99"},
		{"/app.css", "text/css", "@media"},
	} {
		code, hdr, body := do(t, h, "GET", c.path, "")
		if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, code, hdr.Get("Content-Type"), c.want, strings.Contains(body, c.want))
		}
		if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: no content security policy", c.path)
		}
	}
}

func TestRates(t *testing.T) {
	f := newFakeClient()
	s := newTest(t, Options{}, Role{Client: f})
	s.sample(t0)
	if r := s.rates.get(keyLink + "eth0"); r != (Rates{}) {
		t.Errorf("rates after one sample: %+v, want zero", r)
	}
	f.mu.Lock()
	c := f.links[0].Counters
	c.RxPackets += 1000
	c.RxBytes += 100000
	c.TxPackets += 500
	c.TxBytes += 50000
	f.mu.Unlock()
	s.sample(t0.Add(2 * time.Second))
	want := Rates{RxPackets: 500, TxPackets: 250, RxBits: 400000, TxBits: 200000}
	if r := s.rates.get(keyLink + "eth0"); r != want {
		t.Errorf("rates %+v, want %+v", r, want)
	}
	// A rebuilt socket starts from zero: the rate counts from zero, never
	// negative.
	f.mu.Lock()
	*c = engine.Counters{RxPackets: 100}
	f.mu.Unlock()
	s.sample(t0.Add(3 * time.Second))
	if r := s.rates.get(keyLink + "eth0"); r.RxPackets != 100 || r.TxPackets != 0 {
		t.Errorf("rates after a rebuild %+v", r)
	}
	// The API carries them.
	_, _, body := do(t, s.Handler(), "GET", "/api/v1/get-list", "")
	if !strings.Contains(body, `"rates":{"rxPps":100,"txPps":0,"rxBps":0,"txBps":0}`) {
		t.Errorf("rates not in the list: %s", body)
	}
	// An excluded link is forgotten.
	f.SetExclusion("eth0", true)
	s.sample(t0.Add(4 * time.Second))
	if _, ok := s.rates.prev[keyLink+"eth0"]; ok {
		t.Errorf("sampler still holds a link that has no socket")
	}
}

// TestRatesServer: the sampler keeps rates for each session's socket and
// each client address, and the list carries them.
func TestRatesServer(t *testing.T) {
	f := newFakeServer()
	s := newTest(t, Options{}, Role{Server: f})
	s.sample(t0)
	f.sessions[0].Counters.TxPackets += 2000
	f.sessions[0].Addrs[0].Counters.RxPackets += 1000
	s.sample(t0.Add(2 * time.Second))
	var l ServerList
	_, _, body := do(t, s.Handler(), "GET", "/api/v1/get-list", "")
	json.Unmarshal([]byte(body), &l)
	if r := l.Sessions[0].Stats.Rates; r.TxPackets != 1000 || r.RxPackets != 0 {
		t.Errorf("session 1 rates %+v, want 1000 pkt/s to WireGuard", r)
	}
	if r := l.Sockets[0].Stats.Rates; r.RxPackets != 500 {
		t.Errorf("first address rates %+v, want 500 pkt/s in", r)
	}
	// A session that ends is forgotten.
	f.sessions = f.sessions[:1]
	s.sample(t0.Add(3 * time.Second))
	if _, ok := s.rates.prev[sessionKey(7)]; ok {
		t.Errorf("sampler still holds session 7, which is gone")
	}
}

type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logger() *Logger {
	add := func(level string) func(string, ...any) {
		return func(f string, a ...any) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.lines = append(l.lines, level+" "+fmt.Sprintf(f, a...))
		}
	}
	return &Logger{Infof: add("INF"), Warnf: add("WRN"), Errorf: add("ERR")}
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func get(t *testing.T, addr net.Addr, path, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr.String()+path, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServe runs the server on loopback: it starts, moves to another
// address on Reconfigure, takes new credentials, and stops.
func TestServe(t *testing.T) {
	var l logs
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0", Log: l.logger()}, Role{Client: newFakeClient()})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a1 := s.Addr()
	if code, body := get(t, a1, "/api/v1/get-list", "", ""); code != 200 || !strings.Contains(body, `"type":"client"`) {
		t.Fatalf("%d %s", code, body)
	}
	if strings.Contains(l.String(), "WRN") {
		t.Errorf("warned on loopback:\n%s", l.String())
	}

	// New credentials, same address: the listener stays.
	if err := s.Reconfigure(Options{ListenAddr: "127.0.0.1:0", Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	if s.Addr().String() != a1.String() {
		t.Errorf("address changed from %v to %v with the same configuration", a1, s.Addr())
	}
	if code, _ := get(t, a1, "/api/v1/get-list", "", ""); code != 401 {
		t.Errorf("without credentials after reload: %d, want 401", code)
	}
	if code, _ := get(t, a1, "/api/v1/get-list", "u", "p"); code != 200 {
		t.Errorf("with credentials after reload: %d, want 200", code)
	}

	// A new address: served there, no longer on the old one.
	if err := s.Reconfigure(Options{ListenAddr: "127.0.0.2:0"}); err != nil {
		t.Fatal(err)
	}
	a2 := s.Addr()
	if a2.String() == a1.String() {
		t.Fatalf("still on %v", a1)
	}
	if code, _ := get(t, a2, "/metrics", "", ""); code != 200 {
		t.Errorf("metrics on the new address: %d", code)
	}
	if _, err := net.DialTimeout("tcp", a1.String(), time.Second); err == nil {
		t.Errorf("old address %v still accepts connections", a1)
	}

	// The same port on another address: the old listener makes way.
	port := a2.(*net.TCPAddr).Port
	if err := s.Reconfigure(Options{ListenAddr: fmt.Sprintf("127.0.0.3:%d", port)}); err != nil {
		t.Fatal(err)
	}
	if got := s.Addr().String(); got != fmt.Sprintf("127.0.0.3:%d", port) {
		t.Errorf("listening on %s after a move to 127.0.0.3:%d", got, port)
	}
	// A wildcard and one address on the same port conflict.
	if err := s.Reconfigure(Options{ListenAddr: fmt.Sprintf("0.0.0.0:%d", port)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconfigure(Options{ListenAddr: fmt.Sprintf("127.0.0.2:%d", port)}); err != nil {
		t.Fatalf("moving from the wildcard to one address on the same port: %v", err)
	}
	a2 = s.Addr()
	if code, _ := get(t, a2, "/api/v1/get-list", "", ""); code != 200 {
		t.Errorf("after moving within the port: %d", code)
	}

	// An address that cannot be used: the error, and the old one stays.
	if err := s.Reconfigure(Options{ListenAddr: "192.0.2.1:1"}); err == nil {
		t.Errorf("no error listening on an address this host does not have")
	}
	if code, _ := get(t, a2, "/api/v1/get-list", "", ""); code != 200 {
		t.Errorf("after a failed move: %d", code)
	}

	// Off: nothing listens, and the sampler stops.
	if err := s.Reconfigure(Options{}); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Errorf("still listening on %v after listenAddr was emptied", s.Addr())
	}
	if sampling(s) {
		t.Errorf("the sampler runs with nothing served")
	}
	// And on again.
	if err := s.Reconfigure(Options{ListenAddr: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, s.Addr(), "/api/v1/get-list", "", ""); code != 200 || !sampling(s) {
		t.Errorf("after turning it on again: %d, sampling %v", code, sampling(s))
	}
}

func sampling(s *Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop != nil
}

// TestOff checks that a server without an address serves nothing and
// samples nothing until a reload gives it one.
func TestOff(t *testing.T) {
	s := newTest(t, Options{}, Role{Server: newFakeServer()})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr() != nil || sampling(s) {
		t.Fatalf("listening on %v, sampling %v, with no address", s.Addr(), sampling(s))
	}
	if err := s.Reconfigure(Options{ListenAddr: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, s.Addr(), "/api/v1/get-list", "", ""); code != 200 || !strings.Contains(body, `"type":"server"`) {
		t.Errorf("%d %s", code, body)
	}
	s.Close()
	if sampling(s) || s.Addr() != nil {
		t.Errorf("after Close: sampling %v, listening on %v", sampling(s), s.Addr())
	}
}

func TestLoopbackWarning(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9001", true},
		{"[::1]:9001", true},
		{"0.0.0.0:9001", false},
		{"[::]:9001", false},
		{"192.0.2.1:9001", false},
	} {
		a, _ := net.ResolveTCPAddr("tcp", c.addr)
		if got := loopback(a); got != c.want {
			t.Errorf("loopback(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	// A server exposed without credentials says so.
	var l logs
	s := newTest(t, Options{Log: l.logger()}, Role{Client: newFakeClient()})
	s.ln = fakeListener{&net.TCPAddr{IP: net.IPv4zero, Port: 9001}}
	s.warnExposedLocked()
	if !strings.Contains(l.String(), "WRN web manager on 0.0.0.0:9001 is reachable from other hosts without a password") {
		t.Errorf("no warning:\n%s", l.String())
	}
	if !strings.Contains(l.String(), "WRN web manager on 0.0.0.0:9001 serves plain HTTP beyond loopback: the login and everything the API says and does travel in clear") {
		t.Errorf("no warning about plain HTTP:\n%s", l.String())
	}
	// With a login and TLS, nothing to warn about.
	var l2 logs
	s2 := newTest(t, Options{Log: l2.logger(), Username: "u", Password: "p"}, Role{Client: newFakeClient()})
	s2.ln, s2.srvTLS = fakeListener{&net.TCPAddr{IP: net.IPv6unspecified, Port: 9001}}, true
	s2.warnExposedLocked()
	if l2.String() != "" {
		t.Errorf("warned with TLS and a login:\n%s", l2.String())
	}
}

// TestHalfSet: half the credentials, or half a TLS setup, is refused by
// New and by Reconfigure rather than served with less than was asked for;
// a refused Reconfigure keeps the login.
func TestHalfSet(t *testing.T) {
	for _, o := range []Options{{Username: "admin"}, {Password: "s3cret"}, {CertFile: "c.pem"}, {KeyFile: "k.pem"}} {
		if _, err := New(o, Role{Client: newFakeClient()}); err == nil {
			t.Errorf("New(%+v): no error", o)
		}
	}
	s := newTest(t, Options{ListenAddr: "127.0.0.1:0", Username: "u", Password: "p"}, Role{Client: newFakeClient()})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Reconfigure(Options{ListenAddr: "127.0.0.1:0", Password: "p"}); err == nil || !strings.Contains(err.Error(), "both a username and a password") {
		t.Errorf("Reconfigure with a password only: %v", err)
	}
	if code, _ := get(t, s.Addr(), "/api/v1/get-list", "", ""); code != 401 {
		t.Errorf("after a refused reload: %d without credentials, want 401", code)
	}
}

type fakeListener struct{ a net.Addr }

func (f fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (f fakeListener) Close() error              { return nil }
func (f fakeListener) Addr() net.Addr            { return f.a }

func TestNewNeedsOneRole(t *testing.T) {
	if _, err := New(Options{}, Role{}); err == nil {
		t.Error("no error without a role")
	}
	if _, err := New(Options{}, Role{Client: newFakeClient(), Server: newFakeServer()}); err == nil {
		t.Error("no error with two roles")
	}
}
