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
		Interfaces: []control.Interface{
			{Name: "lo", Status: "idle", Reason: "loopback", SenderAddress: "127.0.0.1", DstAddress: "203.0.113.10:59402"},
			{Name: "eth0", Label: "Fiber", Status: "active", SenderAddress: "192.0.2.7", DstAddress: "203.0.113.10:59402", Last: ptr[int64](0),
				Stats: &control.SocketStats{Rates: rates(1210)}},
			{Name: "wwan0", Label: "LTE", Status: "active", SenderAddress: "10.64.3.2", DstAddress: "203.0.113.10:59402", Last: ptr[int64](7), Stalled: true,
				Stats: &control.SocketStats{Rates: control.Rates{TxPackets: 1210, TxBits: 1210 * 8200}, Drops: control.Drops{Total: 31}}},
			{Name: "wg0", Status: "excluded", Reason: "excluded", SenderAddress: "10.9.0.2"},
		},
	}
}

func sampleServer() control.ServerList {
	since := time.Date(2026, 5, 1, 9, 30, 0, 0, time.Local)
	return control.ServerList{
		Head:       control.Head{Type: "server", Version: "v1.0.0", Description: "hub", ListenAddress: "0.0.0.0:59402"},
		DstAddress: "127.0.0.1:59301",
		Run:        control.Run{Backend: "mmsg", Uptime: 90}, ClientTimeout: 30,
		Upstream: control.SocketStats{Rates: control.Rates{TxPackets: 1210, RxPackets: 1208}},
		Sockets: []control.Socket{
			{Address: "198.51.100.4:40112", LocalAddress: "203.0.113.10:59402", Last: ptr[int64](0), Since: since,
				Stats: control.SocketStats{Rates: control.Rates{RxPackets: 1210, RxBits: 9.9e6, TxPackets: 1208, TxBits: 9.9e6}}},
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
	yml := "client:\n  listenAddr: \"127.0.0.1:59401\"\n  dstAddr: \"203.0.113.10:59402\"\n"
	if role == "client" && addr != "" {
		yml += "  webManager: {listenAddr: \"" + addr + "\", username: \"" + user + "\", password: \"" + pass + "\"}\n"
	}
	yml += "server:\n  listenAddr: \"0.0.0.0:59402\"\n  dstAddr: \"127.0.0.1:59301\"\n"
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
WireGuard side 127.0.0.1:59401: from WireGuard 1.2k pkt/s, to WireGuard 1.2k pkt/s

INTERFACE  LABEL  STATUS    SOURCE     DESTINATION         LAST RX  RX PKT/S  RX BIT/S  TX PKT/S  TX BIT/S  DROPS  NOTE
lo         -      idle      127.0.0.1  203.0.113.10:59402  -        -         -         -         -         -      loopback
eth0       Fiber  active    192.0.2.7  203.0.113.10:59402  0s       1.2k      9.9M      1.2k      9.9M      0
wwan0      LTE    active    10.64.3.2  203.0.113.10:59402  7s       0         0         1.2k      9.9M      31     NOT RECEIVING while other links receive
wg0        -      excluded  10.9.0.2   -                   -        -         -         -         -         -
`

const wantServer = `engarde-server v1.0.0, mmsg backend, up 1m30s
hub
listening on 0.0.0.0:59402, WireGuard at 127.0.0.1:59301, client timeout 30s
to WireGuard 1.2k pkt/s, replies 1.2k pkt/s

CLIENT ADDRESS      REPLIES FROM        LAST RX  RX PKT/S  RX BIT/S  TX PKT/S  TX BIT/S  DROPS  SINCE     NOTE
198.51.100.4:40112  203.0.113.10:59402  0s       1.2k      9.9M      1.2k      9.9M      0      09:30:00
`

func TestStatusTable(t *testing.T) {
	for _, c := range []struct {
		role config.Role
		v    any
		want string
	}{
		{config.RoleClient, sampleClient(), wantClient},
		{config.RoleServer, sampleServer(), wantServer},
	} {
		t.Run(c.role.String(), func(t *testing.T) {
			path := serve(t, c.v, c.role.String())
			var out bytes.Buffer
			if err := Status(&out, "engarde-"+c.role.String(), c.role, []string{path}); err != nil {
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
		if got, err := webURL(in); err != nil || got != want {
			t.Errorf("webURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
