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
	m.process()
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

// drop is a count of dropped datagrams and its reason label.
type drop struct {
	reason string
	n      uint64
}

// sockets writes the counter families of a group of sockets, prefix_*,
// each sample labelled with its socket's labels. extra adds drops for
// reasons beyond the socket's own (no link, no client).
func (m *metrics) sockets(prefix, what string, socks []socket, extra ...drop) {
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
	m.family(name, "counter", "Datagrams dropped by "+what+", by reason: full (backlog full), timeout (not sent within writeTimeout), error (refused by the kernel), closed (socket closed first), oversize (received, larger than a buffer)"+extraReasons(extra)+".")
	for _, s := range socks {
		for _, d := range []drop{{"full", s.c.DropFull}, {"timeout", s.c.DropTimeout}, {"error", s.c.DropError}, {"closed", s.c.DropClosed}, {"oversize", s.c.Oversize}} {
			m.sample(name, float64(d.n), append(s.labels[:len(s.labels):len(s.labels)], "reason", d.reason)...)
		}
	}
	for _, d := range extra {
		m.sample(name, float64(d.n), "reason", d.reason)
	}

	name = prefix + "_last_receive_timestamp_seconds"
	m.family(name, "gauge", "When "+what+" last received a datagram, in seconds since the Unix epoch (absent if never).")
	for _, s := range socks {
		if !s.c.LastRx.IsZero() {
			m.sample(name, unixSeconds(s.c.LastRx), s.labels...)
		}
	}
}

func extraReasons(extra []drop) string {
	var b strings.Builder
	for _, d := range extra {
		b.WriteString(", " + d.reason)
	}
	return b.String()
}

// measured is one link's or client address's quality with its labels.
type measured struct {
	labels []string
	q      engine.Quality
}

// quality writes the quality families of a group of links or addresses,
// prefix_*: the sample counters always, the ratios only with samples and
// the lateness only with late copies, so that no series shows a
// measurement never made.
func (m *metrics) quality(prefix, what string, qs []measured) {
	counter := func(name, help string, v func(engine.Quality) uint64) {
		m.family(prefix+name, "counter", help+", for "+what+".")
		for _, x := range qs {
			m.sample(prefix+name, float64(v(x.q)), x.labels...)
		}
	}
	counter("_sampled_total", "Sampled WireGuard transport messages (one in 16) judged", func(q engine.Quality) uint64 { return q.Samples })
	counter("_sampled_first_total", "Sampled messages delivered before any other link", func(q engine.Quality) uint64 { return q.First })
	counter("_sampled_lost_total", "Sampled messages never delivered although another link did", func(q engine.Quality) uint64 { return q.Lost })
	counter("_sampled_late_total", "Sampled messages delivered after another link", func(q engine.Quality) uint64 { return q.Copies })

	ratio := func(name, help string, v func(engine.Quality) float64) {
		m.family(prefix+name, "gauge", help+", from 0 to 1, for "+what+" (absent without samples).")
		for _, x := range qs {
			if x.q.Samples > 0 {
				m.sample(prefix+name, v(x.q), x.labels...)
			}
		}
	}
	ratio("_first_ratio", "Share of the sampled messages delivered first", engine.Quality.FirstShare)
	ratio("_loss_ratio", "Share of the sampled messages never delivered although another link did", engine.Quality.LossRate)

	name := prefix + "_late_seconds"
	m.family(name, "gauge", "How far behind the first copy the late copies came, by quantile (0.5, 0.99), for "+what+" (absent without late copies).")
	for _, x := range qs {
		if x.q.Copies > 0 {
			l := x.labels[:len(x.labels):len(x.labels)]
			m.sample(name, x.q.LateP50.Seconds(), append(l, "quantile", "0.5")...)
			m.sample(name, x.q.LateP99.Seconds(), append(l, "quantile", "0.99")...)
		}
	}
}

func (m *metrics) client(st ClientStatus, version string) {
	m.common("client", st.Backend, version, st.Started)

	m.family("engarde_link_status", "gauge", "1 for the status each interface is in (active, idle or excluded), 0 for the others.")
	var links []socket
	var qs []measured
	for _, l := range st.Links {
		for _, status := range []string{"active", "idle", "excluded"} {
			v := 0.0
			if l.Status == status {
				v = 1
			}
			m.sample("engarde_link_status", v, "interface", l.Name, "label", l.Label, "status", status)
		}
		if l.Counters != nil {
			labels := []string{"interface", l.Name}
			links = append(links, socket{labels, l.Counters})
			qs = append(qs, measured{labels, l.Quality})
		}
	}
	m.sockets("engarde_link", "each link socket (label interface)", links)
	m.quality("engarde_link", "each link's replies (label interface)", qs)
	m.names(st.Links)
	m.sockets("engarde_wireguard", "the socket facing WireGuard (rx: from WireGuard, tx: to it)", []socket{{nil, &st.WireGuard}},
		drop{"no_link", st.NoLink}, drop{"duplicate", st.Duplicates}, drop{"foreign", st.Foreign})
}

func (m *metrics) server(st ServerStatus, version string) {
	m.common("server", st.Backend, version, st.Started)

	var peers, sessions []socket
	var qs []measured
	live := 0
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		id := strconv.FormatUint(ss.ID, 10)
		sessions = append(sessions, socket{[]string{"session", id}, &ss.Counters})
		for j := range ss.Addrs {
			p := &ss.Addrs[j]
			labels := []string{"address", p.Addr.String(), "session", id}
			peers = append(peers, socket{labels, &p.Counters})
			qs = append(qs, measured{labels, p.Quality})
			if p.Live {
				live++
			}
		}
	}

	m.family("engarde_sessions", "gauge", "Sessions: clients as WireGuard knows them, each with its own socket to WireGuard.")
	m.sample("engarde_sessions", float64(len(st.Sessions)))
	m.family("engarde_client_addresses", "gauge", "Client addresses heard from within the client timeout (those that get replies).")
	m.sample("engarde_client_addresses", float64(live))
	m.family("engarde_client_timeout_seconds", "gauge", "How long a silent client address keeps getting replies.")
	m.sample("engarde_client_timeout_seconds", st.ClientTimeout.Seconds())

	m.family("engarde_dropped_total", "counter", "Datagrams from clients dropped before WireGuard, by reason: not_wireguard (not shaped like WireGuard's), not_member (WireGuard-shaped, from an address in no session, no initiation), foreign (a transport message with an index not of the sender's session).")
	for _, d := range []drop{{"not_wireguard", st.NotWireGuard}, {"not_member", st.NotMember}, {"foreign", st.Foreign}} {
		m.sample("engarde_dropped_total", float64(d.n), "reason", d.reason)
	}
	for _, c := range []struct {
		name, help string
		n          uint64
	}{
		{"engarde_initiations_total", "Handshake initiations passed to WireGuard.", st.Initiations},
		{"engarde_initiation_copies_total", "Copies of handshake initiations from other links, not passed to WireGuard again.", st.InitCopies},
		{"engarde_joins_total", "Client addresses that joined a session with a copy of its initiation that came after WireGuard's answer.", st.Joins},
		{"engarde_joins_refused_total", "Copies of an answered initiation that found their session full of addresses carrying traffic.", st.JoinsRefused},
		{"engarde_pending_initiations_evicted_total", "Unanswered initiations forgotten to make room.", st.PendingEvicted},
	} {
		m.family(c.name, "counter", c.help)
		m.sample(c.name, float64(c.n))
	}

	m.family("engarde_session_info", "gauge", "Always 1 for each session; the labels give its endpoint (its own socket towards WireGuard, where WireGuard sees the client) and whether it is forwardAnyUDP's session of non-WireGuard sources.")
	for _, ss := range st.Sessions {
		m.sample("engarde_session_info", 1, "session", strconv.FormatUint(ss.ID, 10), "endpoint", addrString(ss.Endpoint), "any_udp", strconv.FormatBool(ss.AnyUDP))
	}
	m.family("engarde_session_indexes", "gauge", "Receiver indexes of each session that the duplicate filter judges now.")
	for _, ss := range st.Sessions {
		m.sample("engarde_session_indexes", float64(len(ss.Indexes)), "session", strconv.FormatUint(ss.ID, 10))
	}
	m.sockets("engarde_session", "each session's socket to WireGuard (label session; tx: to WireGuard, rx: its replies)", sessions)

	m.family("engarde_client_address_live", "gauge", "1 while a client address gets replies (it sent within the client timeout), 0 while it lingers silent.")
	for _, ss := range st.Sessions {
		for _, p := range ss.Addrs {
			v := 0.0
			if p.Live {
				v = 1
			}
			m.sample("engarde_client_address_live", v, "address", p.Addr.String(), "session", strconv.FormatUint(ss.ID, 10))
		}
	}
	m.sockets("engarde_client_address", "each client address's socket (labels address, session)", peers)
	m.quality("engarde_client_address", "each client address (labels address, session)", qs)
	m.sockets("engarde_listen", "the listen socket (datagrams from addresses in no session)", []socket{{nil, &st.Listen}})
	m.sockets("engarde_upstream", "the handshake socket to WireGuard (tx: to WireGuard, rx: its answers)", []socket{{nil, &st.Upstream}},
		drop{"no_client", st.NoPeer}, drop{"duplicate", st.Duplicates}, drop{"unrouted", st.Unrouted})
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

// names writes the state of each destination name the links use.
func (m *metrics) names(links []Link) {
	m.family("engarde_destination_resolved_timestamp_seconds", "gauge", "When each destination name (label name) last resolved, in seconds since the Unix epoch (absent if never); its last good answer is used while lookups fail.")
	m.family("engarde_destination_lookup_failing", "gauge", "1 while the last lookup of each destination name (label name) failed, 0 once one succeeds.")
	seen := map[string]bool{}
	for _, l := range links {
		r := l.Resolution
		if r == nil || seen[r.Name] {
			continue
		}
		seen[r.Name] = true
		if !r.Resolved.IsZero() {
			m.sample("engarde_destination_resolved_timestamp_seconds", unixSeconds(r.Resolved), "name", r.Name)
		}
		failing := 0.0
		if r.Err != "" {
			failing = 1
		}
		m.sample("engarde_destination_lookup_failing", failing, "name", r.Name)
	}
}
