package app

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
)

func ptr[T any](v T) *T { return &v }

// sampleClient is what a client with three links and a WireGuard
// interface might answer.
func sampleClient() control.ClientList {
	rates := func(pps float64) control.Rates {
		return control.Rates{RxPackets: pps, TxPackets: pps, RxBits: pps * 8200, TxBits: pps * 8200}
	}
	return control.ClientList{
		Head:      control.Head{Type: "client", Version: "v1.0.0", Description: "office uplinks", ListenAddress: "127.0.0.1:59401"},
		Run:       control.Run{Backend: "mmsg", Uptime: 11525},
		WireGuard: control.SocketStats{Rates: control.Rates{RxPackets: 1210, TxPackets: 1208}},
		Tunnel:    control.Tunnel{State: "degraded", Since: time.Date(2026, 5, 1, 9, 30, 0, 0, time.Local), Reason: "wwan0 stalled", Probes: "on"},
		Interfaces: []control.Interface{
			{Name: "lo", Status: "idle", State: "down", Reason: "loopback", SenderAddress: "127.0.0.1", DstAddress: "203.0.113.10:59402"},
			{Name: "eth0", Label: "Fiber", Status: "active", State: "active", SenderAddress: "192.0.2.7", DstAddress: "203.0.113.10:59402", Last: ptr[int64](0),
				Stats:   &control.SocketStats{Rates: rates(1210)},
				Probe:   &control.Probe{Sent: 240, Answered: 238, Window: 236, Lost: 2, Loss: ptr(2.0 / 236), RTTP50Ms: ptr(0.35), RTTP99Ms: ptr(2.4), JitterMs: ptr(0.1)},
				Quality: &control.Quality{Samples: 500, FirstShare: ptr(0.62), LossRate: ptr(0.004), LateP50Ms: ptr(0.35), LateP99Ms: ptr(2.1)}},
			// An older daemon's answer: no state, the stall flag only.
			{Name: "wwan0", Label: "LTE", Status: "active", SenderAddress: "10.64.3.2", DstAddress: "203.0.113.10:59402", Last: ptr[int64](7), Stalled: true,
				Stats:   &control.SocketStats{Rates: control.Rates{TxPackets: 1210, TxBits: 1210 * 8200}, Drops: control.Drops{Total: 31}},
				Quality: &control.Quality{Samples: 500, FirstShare: ptr(0.38), LossRate: ptr(0.25), LateP50Ms: ptr(4.2), LateP99Ms: ptr(48.0)}},
			// A link just up: a socket, no samples yet.
			{Name: "wlan0", Status: "active", State: "active", SenderAddress: "198.51.100.9", DstAddress: "203.0.113.10:59402", Last: ptr[int64](0),
				Stats: &control.SocketStats{}, Quality: &control.Quality{}},
			{Name: "wg0", Status: "excluded", State: "excluded", Reason: "excluded", SenderAddress: "10.9.0.2"},
		},
	}
}

func sampleServer() control.ServerList {
	since := time.Date(2026, 5, 1, 9, 30, 0, 0, time.Local)
	a := control.Socket{Address: "198.51.100.4:40112", LocalAddress: "203.0.113.10:59402", Last: ptr[int64](0), Session: 1, Since: since, Live: true, State: "active",
		Stats:   control.SocketStats{Rates: control.Rates{RxPackets: 1210, RxBits: 9.9e6, TxPackets: 1208, TxBits: 9.9e6}},
		Quality: control.Quality{Samples: 800, FirstShare: ptr(0.81), LossRate: ptr(0.0), LateP50Ms: ptr(12.0), LateP99Ms: ptr(31.0)}}
	b := control.Socket{Address: "192.0.2.200:5353", LocalAddress: "203.0.113.10:59402", Last: ptr[int64](0), Session: 1, Since: since, Live: true, Slot: 1, State: "active",
		Stats:   control.SocketStats{Rates: control.Rates{RxPackets: 1190, RxBits: 9.7e6, TxPackets: 1208, TxBits: 9.9e6}, Drops: control.Drops{Total: 2}},
		Quality: control.Quality{Samples: 800, FirstShare: ptr(0.19), LossRate: ptr(0.016), LateP50Ms: ptr(0.8), LateP99Ms: ptr(9.5)}}
	c := control.Socket{Address: "198.51.100.77:61000", LocalAddress: "203.0.113.10:59402", Last: ptr[int64](95), Session: 4, Since: since, State: "active"}
	return control.ServerList{
		Head:       control.Head{Type: "server", Version: "v1.0.0", Description: "hub", ListenAddress: "0.0.0.0:59402"},
		DstAddress: "127.0.0.1:59301",
		Run:        control.Run{Backend: "mmsg", Uptime: 90}, ClientTimeout: 30,
		Tunnel:         control.Tunnel{State: "up", Since: since, Probes: "on"},
		Upstream:       control.SocketStats{Rates: control.Rates{TxPackets: 2, RxPackets: 2}},
		ServerCounters: control.ServerCounters{Initiations: 3, InitCopies: 3, Joins: 1, NotWireGuard: 12},
		Sockets:        []control.Socket{a, b}, // the live ones
		Sessions: []control.Session{
			{ID: 1, Since: since, Endpoint: "127.0.0.1:41000", Indexes: []uint32{1, 2}, Addresses: []control.Socket{a, b},
				Stats: control.SocketStats{Rates: control.Rates{TxPackets: 1208, RxPackets: 1206}}},
			{ID: 4, Since: since, Endpoint: "127.0.0.1:41003", Addresses: []control.Socket{c}},
		},
	}
}

// serve answers get-list with v, behind Basic auth admin:pw, and returns
// a configuration file pointing at it.
func serve(t *testing.T, v any, role string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			http.Error(w, `{"error":"authentication required"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/api/v1/get-list" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(ts.Close)
	return writeConfig(t, role, strings.TrimPrefix(ts.URL, "http://"), "admin", "pw")
}

func writeConfig(t *testing.T, role, addr, user, pass string) string {
	t.Helper()
	// No control socket: the tests ask the web manager they serve, not a
	// daemon that may run on this host.
	yml := "client:\n  listenAddr: \"127.0.0.1:59401\"\n  dstAddr: \"203.0.113.10:59402\"\n  controlSocket: off\n"
	if role == "client" && addr != "" {
		yml += "  webManager: {listenAddr: \"" + addr + "\", username: \"" + user + "\", password: \"" + pass + "\"}\n"
	}
	yml += "server:\n  listenAddr: \"0.0.0.0:59402\"\n  dstAddr: \"127.0.0.1:59301\"\n  controlSocket: off\n"
	if role == "server" && addr != "" {
		yml += "  webManager: {listenAddr: \"" + addr + "\", username: \"" + user + "\", password: \"" + pass + "\"}\n"
	}
	path := filepath.Join(t.TempDir(), "engarde.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const wantClient = `engarde-client v1.0.0, mmsg backend, up 3h12m5s
office uplinks
tunnel DEGRADED since 2026-05-01 09:30:00: wwan0 stalled (probes on)
WireGuard side 127.0.0.1:59401: from WireGuard 1.2k pkt/s, to WireGuard 1.2k pkt/s

INTERFACE  LABEL  STATE     SOURCE        DESTINATION         LAST RX  RX PKT/S  RX BIT/S  TX PKT/S  TX BIT/S  DROPS  RTT P50/P99  PROBE LOSS  FIRST  LOSS  LATE P50/P99  NOTE
lo         -      down      127.0.0.1     203.0.113.10:59402  -        -         -         -         -         -      -            -           -      -     -             loopback
eth0       Fiber  active    192.0.2.7     203.0.113.10:59402  0s       1.2k      9.9M      1.2k      9.9M      0      0.35/2.4ms   0.8%        62%    0.4%  0.35/2.1ms
wwan0      LTE    stalled   10.64.3.2     203.0.113.10:59402  7s       0         0         1.2k      9.9M      31     -            -           38%    25%   4.2/48ms
wlan0      -      active    198.51.100.9  203.0.113.10:59402  0s       0         0         0         0         0      -            -           -      -     -
wg0        -      excluded  10.9.0.2      -                   -        -         -         -         -         -      -            -           -      -     -
`

const wantServer = `engarde-server v1.0.0, mmsg backend, up 1m30s
hub
tunnel up since 2026-05-01 09:30:00 (probes on)
listening on 0.0.0.0:59402, WireGuard at 127.0.0.1:59301, client timeout 30s
to WireGuard 1.2k pkt/s, replies 1.2k pkt/s
handshakes: 3 initiations to WireGuard, 3 copies held back, 1 address joined after the answer
dropped: 12 not WireGuard's

SESSION  ENDPOINT         ADDRESSES    INDEXES  TO WG PKT/S  REPLIES PKT/S  SINCE     NOTE
1        127.0.0.1:41000  2 live of 2  2        1.2k         1.2k           09:30:00
4        127.0.0.1:41003  0 live of 1  0        0            0              09:30:00

SESSION  SLOT  CLIENT ADDRESS       STATE   REPLIES FROM        LAST RX  RX PKT/S  RX BIT/S  TX PKT/S  TX BIT/S  DROPS  FIRST  LOSS  LATE P50/P99  SINCE     NOTE
1        0     198.51.100.4:40112   active  203.0.113.10:59402  0s       1.2k      9.9M      1.2k      9.9M      0      81%    0%    12/31ms       09:30:00
1        1     192.0.2.200:5353     active  203.0.113.10:59402  0s       1.2k      9.7M      1.2k      9.9M      2      19%    1.6%  0.80/9.5ms    09:30:00
4        0     198.51.100.77:61000  active  203.0.113.10:59402  1m35s    0         0         0         0         0      -      -     -             09:30:00  silent: gets no replies
`

// An empty server: no client has reached it, so no session.
const wantEmptyServer = `engarde-server v1.0.0, mmsg backend, up 1m30s
listening on 0.0.0.0:59402, WireGuard at 127.0.0.1:59301, client timeout 30s
to WireGuard 0 pkt/s, replies 0 pkt/s
handshakes: 0 initiations to WireGuard, 0 copies held back, 0 addresses joined after the answer

no client session yet
`

func emptyServer() control.ServerList {
	return control.ServerList{
		Head:       control.Head{Type: "server", Version: "v1.0.0", ListenAddress: "0.0.0.0:59402"},
		DstAddress: "127.0.0.1:59301",
		Run:        control.Run{Backend: "mmsg", Uptime: 90}, ClientTimeout: 30,
		Sockets: []control.Socket{}, Sessions: []control.Session{},
	}
}

func TestStatusTable(t *testing.T) {
	for _, c := range []struct {
		role config.Role
		v    any
		want string
	}{
		{config.RoleClient, sampleClient(), wantClient},
		{config.RoleServer, sampleServer(), wantServer},
		{config.RoleServer, emptyServer(), wantEmptyServer},
	} {
		t.Run(c.role.String(), func(t *testing.T) {
			path := serve(t, c.v, c.role.String())
			var out bytes.Buffer
			if err := Status(&out, "engarde-"+c.role.String(), c.role, []string{"-wide", path}); err != nil {
				t.Fatal(err)
			}
			if out.String() != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", out.String(), c.want)
			}
			out.Reset()
			if err := Status(&out, "engarde-"+c.role.String(), c.role, []string{"-json", path}); err != nil {
				t.Fatal(err)
			}
			if !json.Valid(out.Bytes()) || !strings.Contains(out.String(), `"type":"`+c.role.String()+`"`) {
				t.Errorf("-json printed %s", out.String())
			}
		})
	}
}

func TestStatusErrors(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(sampleClient())
	}))
	defer ts.Close()
	for _, c := range []struct {
		name string
		role config.Role
		args []string
		want string
	}{
		{"no web manager", config.RoleClient, []string{writeConfig(t, "client", "", "", "")}, "client.webManager.listenAddr is not set"},
		{"not running", config.RoleClient, []string{writeConfig(t, "client", "127.0.0.1:1", "", "")}, "is engarde-client running?"},
		{"other role", config.RoleServer, []string{writeConfig(t, "server", strings.TrimPrefix(ts.URL, "http://"), "", "")}, "answers as engarde-client, not engarde-server"},
		{"no such file", config.RoleClient, []string{filepath.Join(t.TempDir(), "none.yml")}, "no such file"},
		{"two files", config.RoleClient, []string{"a.yml", "b.yml"}, "too many arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Status(&bytes.Buffer{}, "engarde-"+c.role.String(), c.role, c.args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"authentication required"}`, http.StatusUnauthorized)
		}))
		defer ts.Close()
		err := Status(&bytes.Buffer{}, "engarde-client", config.RoleClient, []string{writeConfig(t, "client", strings.TrimPrefix(ts.URL, "http://"), "admin", "no")})
		if err == nil || !strings.Contains(err.Error(), "refused the credentials") {
			t.Errorf("error %v", err)
		}
	})
}

func TestWebURL(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:9001":    "http://127.0.0.1:9001/api/v1/get-list",
		":9001":           "http://127.0.0.1:9001/api/v1/get-list",
		"[::]:9001":       "http://[::1]:9001/api/v1/get-list",
		"192.0.2.1:9001":  "http://192.0.2.1:9001/api/v1/get-list",
		"[fd00::1]:9001":  "http://[fd00::1]:9001/api/v1/get-list",
		"router.lan:80":   "http://router.lan:80/api/v1/get-list",
		"127.0.0.1:59480": "http://127.0.0.1:59480/api/v1/get-list",
	} {
		if got, err := webURL(in, false); err != nil || got != want {
			t.Errorf("webURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, _ := webURL("0.0.0.0:9443", true); got != "https://127.0.0.1:9443/api/v1/get-list" {
		t.Errorf("webURL(0.0.0.0:9443, tls) = %q", got)
	}
}
