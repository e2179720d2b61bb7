package control

import (
	"bufio"
	"math"
	"net/netip"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/engarde-project/engarde/engine"
)

var (
	metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)`)
)

// parseMetrics checks that text follows the Prometheus text format (HELP
// and TYPE before a family's samples, each family once, valid names,
// labels and values, no duplicate series) and returns every sample by its
// series ("name{labels}").
func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	typed := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			f := strings.SplitN(line, " ", 4)
			if len(f) != 4 {
				t.Fatalf("line %d: %q", n, line)
			}
			if f[1] == "TYPE" {
				if _, dup := typed[f[2]]; dup {
					t.Errorf("line %d: family %s declared twice", n, f[2])
				}
				switch f[3] {
				case "counter", "gauge", "summary", "histogram":
				default:
					t.Errorf("line %d: type %q", n, f[3])
				}
				typed[f[2]] = f[3]
			}
			continue
		}
		m := metricLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d not a sample: %q", n, line)
		}
		name, labels, value := m[1], m[3], m[4]
		if _, ok := typed[familyOf(name, typed)]; !ok {
			t.Errorf("line %d: sample of %s before its TYPE", n, name)
		}
		if typed[name] == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		for rest := labels; rest != ""; {
			lm := labelPair.FindStringSubmatch(rest)
			if lm == nil {
				t.Fatalf("line %d: bad labels %q", n, labels)
			}
			rest = rest[len(lm[0]):]
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("line %d: value %q", n, value)
		}
		key := name + "{" + labels + "}"
		if _, dup := samples[key]; dup {
			t.Errorf("line %d: series %s twice", n, key)
		}
		samples[key] = v
	}
	return samples
}

// familyOf returns the family a sample name belongs to: itself, or for a
// summary's or histogram's _sum, _count and _bucket the name without it.
func familyOf(name string, typed map[string]string) string {
	for _, suffix := range []string{"_sum", "_count", "_bucket"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && (typed[base] == "summary" || typed[base] == "histogram") {
			return base
		}
	}
	return name
}

// tunedClient is a fakeClient whose status tune changes.
type tunedClient struct {
	*fakeClient
	tune func(*ClientStatus)
}

func (c tunedClient) ClientStatus() ClientStatus {
	st := c.fakeClient.ClientStatus()
	c.tune(&st)
	return st
}

// tunedServer is a fakeServer whose status tune changes.
type tunedServer struct {
	*fakeServer
	tune func(*ServerStatus)
}

func (s tunedServer) ServerStatus() ServerStatus {
	st := s.fakeServer.ServerStatus()
	s.tune(&st)
	return st
}

// scrape returns the samples of /metrics, which it checks with the
// format parser and with promlint (the linter of promtool check metrics).
func scrape(t *testing.T, s *Server) (map[string]float64, string) {
	t.Helper()
	code, hdr, body := do(t, s.Handler(), "GET", "/metrics", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%d %q: %s", code, hdr.Get("Content-Type"), body)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	return parseMetrics(t, body), body
}

func TestMetricsClient(t *testing.T) {
	f := newFakeClient()
	f.links[0].Label = `Fi"ber\`
	f.links[0].Since = t0.Add(time.Minute)
	f.links[1].Status = "stalled"
	f.links[2].Status = "down"
	at := time.Unix(1700000000, 0)
	f.links[0].Probe = &engine.ProbeStats{Sent: 500, Answered: 480, Window: 100, Lost: 5, RTT50: 12 * time.Millisecond, RTT99: 40 * time.Millisecond, Jitter: 2 * time.Millisecond, LastAnswer: at}
	// wlan0's probes were sent and none answered yet.
	f.links[1].Probe = &engine.ProbeStats{Sent: 3}
	role := tunedClient{f, func(st *ClientStatus) {
		st.Duplicates = 99
		st.Tunnel = engine.TunnelInfo{State: engine.TunnelDegraded, Since: at, Reason: "wlan0 stalled", Probes: "on"}
	}}
	s := newTest(t, Options{Version: "v9"}, Role{Client: role})
	m, _ := scrape(t, s)
	for series, want := range map[string]float64{
		`engarde_start_time_seconds{}`:                                                                             float64(t0.Unix()),
		`engarde_tunnel_state{state="up"}`:                                                                         0,
		`engarde_tunnel_state{state="degraded"}`:                                                                   1,
		`engarde_tunnel_state{state="down"}`:                                                                       0,
		`engarde_tunnel_state_changed_timestamp_seconds{}`:                                                         1700000000,
		`engarde_probes_state{state="on"}`:                                                                         1,
		`engarde_probes_state{state="unanswered"}`:                                                                 0,
		`engarde_link_state{interface="eth0",state="active"}`:                                                      1,
		`engarde_link_state{interface="eth0",state="excluded"}`:                                                    0,
		`engarde_link_state{interface="wlan0",state="stalled"}`:                                                    1,
		`engarde_link_state{interface="wlan0",state="active"}`:                                                     0,
		`engarde_link_state{interface="eth1",state="down"}`:                                                        1,
		`engarde_link_state{interface="wg0",state="excluded"}`:                                                     1,
		`engarde_link_state_changed_timestamp_seconds{interface="eth0"}`:                                           float64(t0.Unix() + 60),
		`engarde_link_info{destination="203.0.113.10:59402",interface="eth0",label="Fi\"ber\\",local="192.0.2.2"}`: 1,
		`engarde_link_info{destination="",interface="wg0",label="",local="10.0.0.1"}`:                              1,
		`engarde_link_rx_packets_total{interface="eth0"}`:                                                          10,
		`engarde_link_rx_bytes_total{interface="eth0"}`:                                                            1000,
		`engarde_link_tx_packets_total{interface="eth0"}`:                                                          20,
		`engarde_link_tx_bytes_total{interface="eth0"}`:                                                            2000,
		`engarde_link_drops_total{interface="eth0",reason="full"}`:                                                 1,
		`engarde_link_drops_total{interface="eth0",reason="timeout"}`:                                              2,
		`engarde_link_drops_total{interface="eth0",reason="error"}`:                                                3,
		`engarde_link_drops_total{interface="eth0",reason="closed"}`:                                               4,
		`engarde_link_drops_total{interface="eth0",reason="oversize"}`:                                             5,
		`engarde_link_send_errors_total{interface="eth0"}`:                                                         6,
		`engarde_link_receive_errors_total{interface="eth0"}`:                                                      7,
		`engarde_link_rx_packets_total{interface="wlan0"}`:                                                         0,
		`engarde_wireguard_rx_packets_total{}`:                                                                     30,
		`engarde_wireguard_drops_total{reason="no_link"}`:                                                          3,
		`engarde_wireguard_drops_total{reason="foreign"}`:                                                          4,
		`engarde_duplicates_total{}`:                                                                               99,
		`engarde_link_sampled_total{interface="eth0"}`:                                                             160,
		`engarde_link_sampled_first_total{interface="eth0"}`:                                                       120,
		`engarde_link_sampled_lost_total{interface="eth0"}`:                                                        2,
		`engarde_link_sampled_late_total{interface="eth0"}`:                                                        38,
		`engarde_link_first_ratio{interface="eth0"}`:                                                               0.75,
		`engarde_link_loss_ratio{interface="eth0"}`:                                                                0.0125,
		`engarde_link_late_seconds{interface="eth0",percentile="50"}`:                                              0.0015,
		`engarde_link_late_seconds{interface="eth0",percentile="99"}`:                                              0.012,
		`engarde_link_sampled_total{interface="wlan0"}`:                                                            0,
		`engarde_link_probe_sent_total{interface="eth0"}`:                                                          500,
		`engarde_link_probe_answered_total{interface="eth0"}`:                                                      480,
		`engarde_link_probe_loss_ratio{interface="eth0"}`:                                                          0.05,
		`engarde_link_probe_rtt_seconds{interface="eth0",percentile="50"}`:                                         0.012,
		`engarde_link_probe_rtt_seconds{interface="eth0",percentile="99"}`:                                         0.04,
		`engarde_link_probe_jitter_seconds{interface="eth0"}`:                                                      0.002,
		`engarde_link_probe_last_answer_timestamp_seconds{interface="eth0"}`:                                       1700000000,
		`engarde_link_probe_sent_total{interface="wlan0"}`:                                                         3,
		`engarde_build_info{backend="mmsg",goversion="` + runtime.Version() + `",role="client",version="v9"}`:      1,
	} {
		if got, ok := m[series]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if _, ok := m[`engarde_link_last_receive_timestamp_seconds{interface="eth0"}`]; !ok {
		t.Errorf("no last receive time for eth0")
	}
	for series := range m {
		switch {
		case strings.Contains(series, `reason="duplicate"`):
			// Regression: the duplicate filter's work was a drop reason,
			// so rate(drops) never fell to zero.
			t.Errorf("duplicates counted as drops: %s", series)
		case strings.Contains(series, "label=") && !strings.HasPrefix(series, "engarde_link_info{"):
			t.Errorf("the free-text label outside the info series: %s", series)
		case strings.Contains(series, `interface="eth1"`) && !strings.HasPrefix(series, "engarde_link_state") && !strings.HasPrefix(series, "engarde_link_info"):
			t.Errorf("counters for eth1, which has no socket: %s", series)
		case strings.Contains(series, `interface="wlan0"`) && (strings.Contains(series, "_ratio{") || strings.Contains(series, "_late_seconds{") ||
			strings.Contains(series, "_rtt_seconds{") || strings.Contains(series, "_jitter_seconds{") || strings.Contains(series, "_last_answer_")):
			// No samples, no judged probe, no answer: no figure rather
			// than a made-up 0 (or NaN).
			t.Errorf("a figure for wlan0, which measured none: %s", series)
		case strings.Contains(series, "_probe_") && strings.Contains(series, "interface=") && !strings.Contains(series, `interface="eth0"`) && !strings.Contains(series, `interface="wlan0"`):
			t.Errorf("probe figures for a link without probes: %s", series)
		}
	}
}

func TestMetricsServer(t *testing.T) {
	f := newFakeServer()
	f.sessions[0].Addrs[1].Slot = 1
	f.sessions[0].Addrs[0].Status, f.sessions[0].Addrs[1].Status = "active", "stalled"
	role := tunedServer{f, func(st *ServerStatus) {
		st.Duplicates = 77
		st.Tunnel = engine.TunnelInfo{State: engine.TunnelDown, Reason: "no client"}
	}}
	s := newTest(t, Options{Version: "v9"}, Role{Server: role})
	m, body := scrape(t, s)
	const a1, a2, a3 = `session="1",slot="0"`, `session="1",slot="1"`, `session="7",slot="0"`
	for series, want := range map[string]float64{
		`engarde_sessions{}`:                 2,
		`engarde_client_addresses{}`:         2, // the live ones
		`engarde_client_timeout_seconds{}`:   30,
		`engarde_tunnel_state{state="down"}`: 1,
		`engarde_tunnel_state{state="up"}`:   0,
		`engarde_duplicates_total{}`:         77,
		`engarde_client_address_info{address="198.18.1.2:40000",local="198.18.1.1:59402",` + a1 + `}`:   1,
		`engarde_client_address_info{address="[fd00:2::2]:40001",local="[fd00:2::1]:59402",` + a2 + `}`: 1,
		`engarde_client_address_info{address="203.0.113.9:51000",local="198.18.1.1:59402",` + a3 + `}`:  1,
		`engarde_client_address_state{` + a1 + `,state="active"}`:                                       1,
		`engarde_client_address_state{` + a2 + `,state="stalled"}`:                                      1,
		`engarde_client_address_state{` + a2 + `,state="active"}`:                                       0,
		`engarde_client_address_rx_packets_total{` + a1 + `}`:                                           5,
		`engarde_client_address_tx_packets_total{` + a1 + `}`:                                           6,
		`engarde_client_address_rx_packets_total{` + a2 + `}`:                                           1,
		`engarde_client_address_drops_total{reason="full",` + a2 + `}`:                                  0,
		`engarde_client_address_live{` + a1 + `}`:                                                       1,
		`engarde_client_address_live{` + a3 + `}`:                                                       0,
		`engarde_client_address_sampled_total{` + a1 + `}`:                                              200,
		`engarde_client_address_sampled_first_total{` + a1 + `}`:                                        150,
		`engarde_client_address_sampled_lost_total{` + a1 + `}`:                                         4,
		`engarde_client_address_sampled_late_total{` + a1 + `}`:                                         46,
		`engarde_client_address_first_ratio{` + a1 + `}`:                                                0.75,
		`engarde_client_address_loss_ratio{` + a1 + `}`:                                                 0.02,
		`engarde_client_address_late_seconds{percentile="50",` + a1 + `}`:                               0.0012,
		`engarde_client_address_late_seconds{percentile="99",` + a1 + `}`:                               0.0085,
		`engarde_client_address_first_ratio{` + a2 + `}`:                                                0.25,
		`engarde_client_address_sampled_total{` + a3 + `}`:                                              0,
		`engarde_session_info{any_udp="false",endpoint="127.0.0.1:40001",session="1"}`:                  1,
		`engarde_session_info{any_udp="false",endpoint="127.0.0.1:40007",session="7"}`:                  1,
		`engarde_session_indexes{session="1"}`:                                                          2,
		`engarde_session_indexes{session="7"}`:                                                          0,
		`engarde_session_tx_packets_total{session="1"}`:                                                 90,
		`engarde_session_rx_packets_total{session="7"}`:                                                 4,
		`engarde_dropped_total{reason="not_wireguard"}`:                                                 11,
		`engarde_dropped_total{reason="not_member"}`:                                                    12,
		`engarde_dropped_total{reason="foreign"}`:                                                       13,
		`engarde_initiations_total{}`:                                                                   14,
		`engarde_initiation_copies_total{}`:                                                             15,
		`engarde_joins_total{}`:                                                                         16,
		`engarde_pending_initiations_evicted_total{}`:                                                   17,
		`engarde_probes_total{outcome="answered"}`:                                                      19,
		`engarde_probes_total{outcome="refused"}`:                                                       20,
		`engarde_probes_total{outcome="limited"}`:                                                       21,
		`engarde_upstream_drops_total{reason="unrouted"}`:                                               18,
		`engarde_upstream_tx_packets_total{}`:                                                           100,
		`engarde_upstream_rx_packets_total{}`:                                                           50,
		`engarde_upstream_drops_total{reason="no_client"}`:                                              2,
		`engarde_listen_rx_packets_total{}`:                                                             0,
	} {
		if got, ok := m[series]; !ok || math.Abs(got-want) > 1e-12 {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	for series := range m {
		if strings.Contains(series, a3) && (strings.Contains(series, "_ratio{") || strings.Contains(series, "_late_seconds{")) {
			t.Errorf("a quality figure for an address without samples: %s", series)
		}
		if strings.Contains(series, `reason="duplicate"`) {
			t.Errorf("duplicates counted as drops: %s", series)
		}
		// Regression: every series of an address was labelled by
		// ip:port, a new set of series at each NAT rebind.
		if strings.Contains(series, "address=") && !strings.HasPrefix(series, "engarde_client_address_info{") {
			t.Errorf("an address outside the info series: %s", series)
		}
	}
	if !strings.Contains(body, `backend="std",goversion=`) || !strings.Contains(body, `role="server"`) {
		t.Errorf("build info without role and backend:\n%s", body)
	}
}

// TestMetricsServerRebind: a client address that moves (a NAT rebind)
// keeps its session and slot, so its counters stay one series and only
// the info series names the new address.
func TestMetricsServerRebind(t *testing.T) {
	f := newFakeServer()
	f.sessions[0].Addrs[1].Slot = 1
	s := newTest(t, Options{}, Role{Server: f})
	before, _ := scrape(t, s)
	// The NAT gave the first address a new port.
	f.sessions[0].Addrs[0].Addr = netip.AddrPortFrom(f.sessions[0].Addrs[0].Addr.Addr(), 41234)
	after, _ := scrape(t, s)
	names := func(m map[string]float64) map[string]bool {
		out := map[string]bool{}
		for k := range m {
			if !strings.HasPrefix(k, "engarde_client_address_info{") && strings.HasPrefix(k, "engarde_") {
				out[k] = true
			}
		}
		return out
	}
	b, a := names(before), names(after)
	for k := range a {
		if !b[k] {
			t.Errorf("a new series after the rebind: %s", k)
		}
	}
	if len(a) != len(b) {
		t.Errorf("%d series before the rebind, %d after", len(b), len(a))
	}
	if _, ok := after[`engarde_client_address_info{address="198.18.1.2:41234",local="198.18.1.1:59402",session="1",slot="0"}`]; !ok {
		t.Error("the info series does not name the new address")
	}
}

// TestMetricsServerSlotClash: should two addresses of a session ever
// share a slot (an engine bug), the scrape still serves, with the first.
func TestMetricsServerSlotClash(t *testing.T) {
	s := newTest(t, Options{}, Role{Server: newFakeServer()}) // both addresses of session 1 in slot 0
	m, _ := scrape(t, s)
	if _, ok := m[`engarde_client_address_info{address="198.18.1.2:40000",local="198.18.1.1:59402",session="1",slot="0"}`]; !ok {
		t.Error("the first address of the slot is not shown")
	}
}

// TestMetricsGather: the registry gathers every fixture without an
// error (the handler serves what it can despite one, which would hide
// an inconsistent family).
func TestMetricsGather(t *testing.T) {
	clash := newFakeServer() // two addresses in slot 0
	for name, r := range map[string]Role{
		"client":       {Client: newFakeClient()},
		"server":       {Server: newFakeServer()},
		"empty server": {Server: &fakeServer{}},
		"slot clash":   {Server: clash},
		"big server":   {Server: bigServer(10)},
	} {
		s := newTest(t, Options{}, r)
		if _, err := s.registry().Gather(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMetricsServerEmpty: no session yet, so no per-session or
// per-address series, and the server-wide ones still there at zero.
func TestMetricsServerEmpty(t *testing.T) {
	s := newTest(t, Options{}, Role{Server: &fakeServer{}})
	m, _ := scrape(t, s)
	for _, series := range []string{`engarde_sessions{}`, `engarde_client_addresses{}`} {
		if got, ok := m[series]; !ok || got != 0 {
			t.Errorf("%s = %v (present %v), want 0", series, got, ok)
		}
	}
	for series := range m {
		if strings.Contains(series, "address=") || strings.Contains(series, "session=") {
			t.Errorf("a series for no address or session: %s", series)
		}
	}
}
