package control

import (
	"bufio"
	"math"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
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
				if f[3] != "counter" && f[3] != "gauge" {
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
		if _, ok := typed[name]; !ok {
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

func TestMetricsClient(t *testing.T) {
	f := newFakeClient()
	f.links[0].Label = `Fi"ber\`
	s := newTest(t, Options{Version: "v9"}, Role{Client: f})
	code, hdr, body := do(t, s.Handler(), "GET", "/metrics", "")
	if code != 200 || hdr.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("%d %q", code, hdr.Get("Content-Type"))
	}
	m := parseMetrics(t, body)
	for series, want := range map[string]float64{
		`engarde_start_time_seconds{}`:                                                                  float64(t0.Unix()),
		`engarde_link_status{interface="eth0",label="Fi\"ber\\",status="active"}`:                       1,
		`engarde_link_status{interface="eth0",label="Fi\"ber\\",status="excluded"}`:                     0,
		`engarde_link_status{interface="wg0",label="",status="excluded"}`:                               1,
		`engarde_link_status{interface="eth1",label="",status="idle"}`:                                  1,
		`engarde_link_rx_packets_total{interface="eth0"}`:                                               10,
		`engarde_link_rx_bytes_total{interface="eth0"}`:                                                 1000,
		`engarde_link_tx_packets_total{interface="eth0"}`:                                               20,
		`engarde_link_tx_bytes_total{interface="eth0"}`:                                                 2000,
		`engarde_link_drops_total{interface="eth0",reason="full"}`:                                      1,
		`engarde_link_drops_total{interface="eth0",reason="timeout"}`:                                   2,
		`engarde_link_drops_total{interface="eth0",reason="error"}`:                                     3,
		`engarde_link_drops_total{interface="eth0",reason="closed"}`:                                    4,
		`engarde_link_drops_total{interface="eth0",reason="oversize"}`:                                  5,
		`engarde_link_send_errors_total{interface="eth0"}`:                                              6,
		`engarde_link_receive_errors_total{interface="eth0"}`:                                           7,
		`engarde_link_rx_packets_total{interface="wlan0"}`:                                              0,
		`engarde_wireguard_rx_packets_total{}`:                                                          30,
		`engarde_wireguard_drops_total{reason="no_link"}`:                                               3,
		`engarde_wireguard_drops_total{reason="foreign"}`:                                               4,
		`engarde_link_sampled_total{interface="eth0"}`:                                                  160,
		`engarde_link_sampled_first_total{interface="eth0"}`:                                            120,
		`engarde_link_sampled_lost_total{interface="eth0"}`:                                             2,
		`engarde_link_sampled_late_total{interface="eth0"}`:                                             38,
		`engarde_link_first_ratio{interface="eth0"}`:                                                    0.75,
		`engarde_link_loss_ratio{interface="eth0"}`:                                                     0.0125,
		`engarde_link_late_seconds{interface="eth0",quantile="0.5"}`:                                    0.0015,
		`engarde_link_late_seconds{interface="eth0",quantile="0.99"}`:                                   0.012,
		`engarde_link_sampled_total{interface="wlan0"}`:                                                 0,
		`engarde_build_info{version="v9",goversion="` + goVersion() + `",role="client",backend="mmsg"}`: 1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if _, ok := m[`engarde_link_last_receive_timestamp_seconds{interface="eth0"}`]; !ok {
		t.Errorf("no last receive time for eth0")
	}
	if _, ok := m[`engarde_link_last_receive_timestamp_seconds{interface="wlan0"}`]; ok {
		t.Errorf("a last receive time for wlan0, which never received")
	}
	for series := range m {
		if strings.Contains(series, `interface="eth1"`) && !strings.HasPrefix(series, "engarde_link_status") {
			t.Errorf("counters for eth1, which has no socket: %s", series)
		}
		// wlan0 has no samples: no ratio or lateness, rather than a
		// made-up 0 (or NaN).
		if strings.Contains(series, `interface="wlan0"`) && (strings.Contains(series, "_ratio{") || strings.Contains(series, "_late_seconds{")) {
			t.Errorf("a quality figure for wlan0, which has no samples: %s", series)
		}
	}
}

func TestMetricsServer(t *testing.T) {
	s := newTest(t, Options{Version: "v9"}, Role{Server: newFakeServer()})
	_, _, body := do(t, s.Handler(), "GET", "/metrics", "")
	m := parseMetrics(t, body)
	const a1, a2, a3 = `address="198.18.1.2:40000",session="1"`, `address="[fd00:2::2]:40001",session="1"`, `address="203.0.113.9:51000",session="7"`
	for series, want := range map[string]float64{
		`engarde_sessions{}`:                                                           2,
		`engarde_client_addresses{}`:                                                   2, // the live ones
		`engarde_client_timeout_seconds{}`:                                             30,
		`engarde_client_address_rx_packets_total{` + a1 + `}`:                          5,
		`engarde_client_address_tx_packets_total{` + a1 + `}`:                          6,
		`engarde_client_address_rx_packets_total{` + a2 + `}`:                          1,
		`engarde_client_address_drops_total{` + a2 + `,reason="full"}`:                 0,
		`engarde_client_address_live{` + a1 + `}`:                                      1,
		`engarde_client_address_live{` + a3 + `}`:                                      0,
		`engarde_client_address_sampled_total{` + a1 + `}`:                             200,
		`engarde_client_address_sampled_first_total{` + a1 + `}`:                       150,
		`engarde_client_address_sampled_lost_total{` + a1 + `}`:                        4,
		`engarde_client_address_sampled_late_total{` + a1 + `}`:                        46,
		`engarde_client_address_first_ratio{` + a1 + `}`:                               0.75,
		`engarde_client_address_loss_ratio{` + a1 + `}`:                                0.02,
		`engarde_client_address_late_seconds{` + a1 + `,quantile="0.5"}`:               0.0012,
		`engarde_client_address_late_seconds{` + a1 + `,quantile="0.99"}`:              0.0085,
		`engarde_client_address_first_ratio{` + a2 + `}`:                               0.25,
		`engarde_client_address_sampled_total{` + a3 + `}`:                             0,
		`engarde_session_info{session="1",endpoint="127.0.0.1:40001",any_udp="false"}`: 1,
		`engarde_session_info{session="7",endpoint="127.0.0.1:40007",any_udp="false"}`: 1,
		`engarde_session_indexes{session="1"}`:                                         2,
		`engarde_session_indexes{session="7"}`:                                         0,
		`engarde_session_tx_packets_total{session="1"}`:                                90,
		`engarde_session_rx_packets_total{session="7"}`:                                4,
		`engarde_dropped_total{reason="not_wireguard"}`:                                11,
		`engarde_dropped_total{reason="not_member"}`:                                   12,
		`engarde_dropped_total{reason="foreign"}`:                                      13,
		`engarde_initiations_total{}`:                                                  14,
		`engarde_initiation_copies_total{}`:                                            15,
		`engarde_joins_total{}`:                                                        16,
		`engarde_pending_initiations_evicted_total{}`:                                  17,
		`engarde_upstream_drops_total{reason="unrouted"}`:                              18,
		`engarde_upstream_tx_packets_total{}`:                                          100,
		`engarde_upstream_rx_packets_total{}`:                                          50,
		`engarde_upstream_drops_total{reason="no_client"}`:                             2,
		`engarde_listen_rx_packets_total{}`:                                            0,
	} {
		if got, ok := m[series]; !ok || math.Abs(got-want) > 1e-12 {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	for series := range m {
		if strings.Contains(series, a3) && (strings.Contains(series, "_ratio{") || strings.Contains(series, "_late_seconds{")) {
			t.Errorf("a quality figure for an address without samples: %s", series)
		}
		if strings.Contains(series, "not_learned") {
			t.Errorf("the old sum is still there: %s", series)
		}
	}
	if !strings.Contains(body, `role="server",backend="std"`) {
		t.Errorf("build info without role and backend:\n%s", body)
	}
}

// TestMetricsServerEmpty: no session yet, so no per-session or
// per-address series, and the server-wide ones still there at zero.
func TestMetricsServerEmpty(t *testing.T) {
	s := newTest(t, Options{}, Role{Server: &fakeServer{}})
	_, _, body := do(t, s.Handler(), "GET", "/metrics", "")
	m := parseMetrics(t, body)
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

func goVersion() string { return runtime.Version() }
