package control

import (
	"bytes"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// Metrics are written in the Prometheus text exposition format (version
// 0.0.4) directly: every value is a counter or gauge read from the role at
// scrape time, which is what a client library's const-metric collector
// would do too, without its dependencies.

// handleMetrics serves GET /metrics.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var m metrics
	if c := s.role.Client; c != nil {
		m.client(c.ClientStatus(), s.version)
	} else {
		m.server(s.role.Server.ServerStatus(), s.version)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.Write(m.b.Bytes())
}

type metrics struct{ b bytes.Buffer }

// family starts a metric family.
func (m *metrics) family(name, typ, help string) {
	m.b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

// sample writes one sample; labels alternate names and values.
func (m *metrics) sample(name string, v float64, labels ...string) {
	m.b.WriteString(name)
	if len(labels) > 0 {
		m.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.b.WriteByte(',')
			}
			m.b.WriteString(labels[i] + `="` + labelEscaper.Replace(labels[i+1]) + `"`)
		}
		m.b.WriteByte('}')
	}
	m.b.WriteByte(' ')
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		// Counters: exact, without an exponent.
		m.b.WriteString(strconv.FormatInt(int64(v), 10))
	} else {
		m.b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	}
	m.b.WriteByte('\n')
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func (m *metrics) common(role, backend, version string, started time.Time) {
	m.family("engarde_build_info", "gauge", "Always 1; the labels say which engarde runs, as which role, on which data-path backend.")
	m.sample("engarde_build_info", 1, "version", version, "goversion", runtime.Version(), "role", role, "backend", backend)
	m.family("engarde_start_time_seconds", "gauge", "When engarde started, in seconds since the Unix epoch.")
	m.sample("engarde_start_time_seconds", unixSeconds(started))
}

// socket is one socket's counters with its identifying labels.
type socket struct {
	labels []string
	c      *engine.Counters
}

// sockets writes the counter families of a group of sockets, prefix_*,
// each sample labelled with its socket's labels. extra adds drops for
// reasons beyond the socket's own (no link, no client).
func (m *metrics) sockets(prefix, what string, socks []socket, extra map[string]uint64) {
	counter := func(name, help string, v func(*engine.Counters) uint64) {
		m.family(prefix+name, "counter", help+" "+what+".")
		for _, s := range socks {
			m.sample(prefix+name, float64(v(s.c)), s.labels...)
		}
	}
	counter("_rx_packets_total", "Datagrams received by", func(c *engine.Counters) uint64 { return c.RxPackets })
	counter("_rx_bytes_total", "Payload bytes received by", func(c *engine.Counters) uint64 { return c.RxBytes })
	counter("_tx_packets_total", "Datagrams sent by", func(c *engine.Counters) uint64 { return c.TxPackets })
	counter("_tx_bytes_total", "Payload bytes sent by", func(c *engine.Counters) uint64 { return c.TxBytes })
	counter("_receive_errors_total", "Failed receive calls of", func(c *engine.Counters) uint64 { return c.RxErrors })
	counter("_send_errors_total", "Failed send calls of", func(c *engine.Counters) uint64 { return c.SendErrors })

	name := prefix + "_drops_total"
	m.family(name, "counter", "Datagrams dropped by "+what+", by reason: full (backlog full), timeout (not sent within writeTimeout), error (refused by the kernel), closed (socket closed first), oversize (received, larger than a buffer).")
	for _, s := range socks {
		for _, d := range []struct {
			reason string
			n      uint64
		}{{"full", s.c.DropFull}, {"timeout", s.c.DropTimeout}, {"error", s.c.DropError}, {"closed", s.c.DropClosed}, {"oversize", s.c.Oversize}} {
			m.sample(name, float64(d.n), append(s.labels[:len(s.labels):len(s.labels)], "reason", d.reason)...)
		}
	}
	for reason, n := range extra {
		m.sample(name, float64(n), "reason", reason)
	}

	name = prefix + "_last_receive_timestamp_seconds"
	m.family(name, "gauge", "When "+what+" last received a datagram, in seconds since the Unix epoch (absent if never).")
	for _, s := range socks {
		if !s.c.LastRx.IsZero() {
			m.sample(name, unixSeconds(s.c.LastRx), s.labels...)
		}
	}
}

func (m *metrics) client(st ClientStatus, version string) {
	m.common("client", st.Backend, version, st.Started)

	m.family("engarde_link_status", "gauge", "1 for the status each interface is in (active, idle or excluded), 0 for the others.")
	var links []socket
	for _, l := range st.Links {
		for _, status := range []string{"active", "idle", "excluded"} {
			v := 0.0
			if l.Status == status {
				v = 1
			}
			m.sample("engarde_link_status", v, "interface", l.Name, "label", l.Label, "status", status)
		}
		if l.Counters != nil {
			links = append(links, socket{[]string{"interface", l.Name}, l.Counters})
		}
	}
	m.sockets("engarde_link", "each link socket (label interface)", links, nil)
	m.sockets("engarde_wireguard", "the socket facing WireGuard (rx: from WireGuard, tx: to it)",
		[]socket{{nil, &st.WireGuard}}, map[string]uint64{"no_link": st.NoLink, "duplicate": st.Duplicates})
}

func (m *metrics) server(st ServerStatus, version string) {
	m.common("server", st.Backend, version, st.Started)

	m.family("engarde_client_addresses", "gauge", "Client addresses heard from within the client timeout.")
	m.sample("engarde_client_addresses", float64(len(st.Peers)))
	m.family("engarde_client_timeout_seconds", "gauge", "How long a silent client address is kept.")
	m.sample("engarde_client_timeout_seconds", st.ClientTimeout.Seconds())
	m.family("engarde_not_learned_total", "counter", "Datagrams from unknown addresses that did not make the server learn the address (not WireGuard's, or too many addresses).")
	m.sample("engarde_not_learned_total", float64(st.NotLearned))
	peers := make([]socket, len(st.Peers))
	for i := range st.Peers {
		peers[i] = socket{[]string{"address", st.Peers[i].Addr.String()}, &st.Peers[i].Counters}
	}
	m.sockets("engarde_client_address", "each client address's socket (label address)", peers, nil)
	m.sockets("engarde_listen", "the listen socket (datagrams from addresses not known yet)", []socket{{nil, &st.Listen}}, nil)
	m.sockets("engarde_upstream", "the socket to WireGuard (tx: to WireGuard, rx: its replies)",
		[]socket{{nil, &st.Upstream}}, map[string]uint64{"no_client": st.NoPeer, "duplicate": st.Duplicates})
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
