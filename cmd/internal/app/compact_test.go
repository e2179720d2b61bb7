package app

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
)

// longClient is sampleClient with what makes lines long in the field:
// long interface names and labels, IPv6 addresses, a long reason.
func longClient() control.ClientList {
	l := sampleClient()
	l.Tunnel = control.Tunnel{State: "degraded", Since: time.Date(2026, 5, 1, 9, 30, 0, 0, time.Local), Probes: "on",
		Reason: "link wwan0 (LTE backup, rooftop antenna) stalled: sending, nothing back for 12s"}
	l.ListenAddress = "[fd00:1234:5678:9abc:def0:1234:5678:9abc]:59401"
	l.Interfaces = append(l.Interfaces,
		control.Interface{Name: "enx00e04c68a1b2", Label: "USB ethernet, desk dock (2nd floor)", Status: "active", State: "active",
			SenderAddress: "2001:db8:1234:5678:9abc:def0:1234:5678", DstAddress: "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
			Last: ptr[int64](86400 * 12), Stats: &control.SocketStats{Rates: control.Rates{RxBits: 987.6e9, TxBits: 123.4e9}},
			Probe: &control.Probe{RTTP50Ms: ptr(1234.5), Loss: ptr(0.0625)}},
	)
	for i := range l.Interfaces {
		if l.Interfaces[i].State == "" {
			l.Interfaces[i].State = map[string]string{"idle": "down", "active": "active", "excluded": "excluded"}[l.Interfaces[i].Status]
		}
	}
	l.Interfaces[2].State = "stalled"
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i, e := range []control.Event{
		{Link: "eth0", From: "down", To: "active", Reason: "carrier"},
		{Link: "wwan0", From: "active", To: "stalled", Reason: "sending, nothing back for 12s, while the probes of the link went unanswered for as long"},
		{From: "up", To: "degraded", Reason: "1 of 4 links failing"},
		{Link: "enx00e04c68a1b2", From: "down", To: "active", Reason: "carrier"},
	} {
		e.At = at.Add(time.Duration(i) * time.Second)
		l.Events = append(l.Events, e)
	}
	l.Interfaces[1].Probe = &control.Probe{RTTP50Ms: ptr(12.3), Loss: ptr(0.0)}
	return l
}

func longServer() control.ServerList {
	l := sampleServer()
	l.Tunnel = control.Tunnel{State: "up", Since: time.Date(2026, 5, 1, 9, 30, 0, 0, time.Local)}
	l.ListenAddress = "[::]:59402"
	v6 := control.Socket{Address: "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535", Session: 18446744073709551615, Live: true, State: "active",
		Last: ptr[int64](3), Stats: control.SocketStats{Rates: control.Rates{RxBits: 9.9e9, TxBits: 9.9e9}}, Quality: control.Quality{LossRate: ptr(0.5)}}
	l.Sessions = append(l.Sessions, control.Session{ID: v6.Session, Addresses: []control.Socket{v6}})
	return l
}

const wantCompactClient = `engarde-client v1.0.0, mmsg backend, up 3h12m5s
office uplinks
tunnel DEGRADED since 2026-05-01 09:30:00: link wwan0 (LTE backup, rooftop
antenna) stalled: sending, nothing back for 12s (probes on)
WireGuard at [fd00:1234:567…8:9abc]:59401: 1.2k pkt/s from it, 1.2k to it

LINK                      STATE     RTT     LOSS  LAST RX  RX b/s  TX b/s
lo                        down      -       -     -        -       -
eth0 (Fiber)              active    12ms    0%    0s       9.9M    9.9M
wwan0 (LTE)               stalled   -       25%   7s       0       9.9M
wlan0                     active    -       -     0s       0       0
wg0                       excluded  -       -     -        -       -
enx00e04c68a…2nd floor))  active    1234ms  6.2%  12d      988G    123G

last changes:
  TIME1  wwan0 active -> stalled: sending, nothing back for 12s, while the p…
  TIME2  tunnel up -> degraded: 1 of 4 links failing
  TIME3  enx00e04c68a1b2 down -> active: carrier
`

// TestStatusCompact: the default view fits 80 columns with long names,
// labels, IPv6 addresses and reasons, and shows state, RTT, loss, last
// receive and rates per link or client address.
func TestStatusCompact(t *testing.T) {
	var out bytes.Buffer
	path := serve(t, longClient(), "client")
	if err := Status(&out, "engarde-client", config.RoleClient, []string{path}); err != nil {
		t.Fatal(err)
	}
	client := out.String()
	want := wantCompactClient
	for i, e := range longClient().Events[1:] {
		want = strings.Replace(want, fmt.Sprintf("TIME%d", i+1), e.At.Local().Format("15:04:05"), 1)
	}
	if client != want {
		t.Errorf("got:\n%s\nwant:\n%s", client, want)
	}
	out.Reset()
	if err := Status(&out, "engarde-server", config.RoleServer, []string{serve(t, longServer(), "server")}); err != nil {
		t.Fatal(err)
	}
	server := out.String()
	for _, want := range []string{"tunnel up since 2026-05-01 09:30:00\n", "SESSION  CLIENT ADDRESS", "198.51.100.77:61000", "silent",
		"184…615  [2001:db8:1234…4:5678]:65535  active  50%   3s       9.9G    9.9G"} {
		if !strings.Contains(server, want) {
			t.Errorf("server view lacks %q:\n%s", want, server)
		}
	}
	for name, view := range map[string]string{"client": client, "server": server} {
		for i, l := range strings.Split(view, "\n") {
			if width(l) > statusWidth {
				t.Errorf("%s line %d is %d columns:\n%s", name, i+1, width(l), l)
			}
		}
	}
	out.Reset()
	if err := Status(&out, "engarde-client", config.RoleClient, []string{"-wide", path}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "enx00e04c68a1b2  USB ethernet, desk dock (2nd floor)") {
		t.Errorf("-wide shortened a name:\n%s", out.String())
	}
}

func TestFitAndAgo(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"eth0", 8, "eth0"},
		{"abcdefghij", 5, "ab…ij"},
		{"[2001:db8::1]:59402", 10, "[2001…9402"},
	} {
		if got := fit(tc.s, tc.n); got != tc.want || width(got) > tc.n {
			t.Errorf("fit(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
	for sec, want := range map[int64]string{0: "0s", 59: "59s", 60: "1m", 3599: "59m", 3600: "1h", 86399: "23h", 86400: "1d"} {
		if got := ago(&sec); got != want {
			t.Errorf("ago(%d) = %q, want %q", sec, got, want)
		}
	}
	if ago(nil) != "never" {
		t.Error("ago(nil) is not never")
	}
}
