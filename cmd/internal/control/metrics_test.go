package control

import (
	"bufio"
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
	}
}

func TestMetricsServer(t *testing.T) {
	s := newTest(t, Options{Version: "v9"}, Role{Server: newFakeServer()})
	_, _, body := do(t, s.Handler(), "GET", "/metrics", "")
	m := parseMetrics(t, body)
	for series, want := range map[string]float64{
		`engarde_client_addresses{}`:                                                    2,
		`engarde_client_timeout_seconds{}`:                                              30,
		`engarde_client_address_rx_packets_total{address="198.18.1.2:40000"}`:           5,
		`engarde_client_address_tx_packets_total{address="198.18.1.2:40000"}`:           6,
		`engarde_client_address_rx_packets_total{address="[fd00:2::2]:40001"}`:          1,
		`engarde_client_address_drops_total{address="[fd00:2::2]:40001",reason="full"}`: 0,
		`engarde_upstream_tx_packets_total{}`:                                           100,
		`engarde_upstream_rx_packets_total{}`:                                           50,
		`engarde_upstream_drops_total{reason="no_client"}`:                              2,
		`engarde_listen_rx_packets_total{}`:                                             0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if !strings.Contains(body, `role="server",backend="std"`) {
		t.Errorf("build info without role and backend:\n%s", body)
	}
}

func goVersion() string { return runtime.Version() }
