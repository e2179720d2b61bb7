package control

import (
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/engarde-project/engarde/engine"
)

// Metrics are served by client_golang from a registry of the server's
// own: the role's collector, which reads the role's status once per
// scrape and turns it into const metrics (nothing is counted on the
// packet path for Prometheus; the engine's own atomics are read), and the
// library's process and Go runtime collectors, whose series every Go
// dashboard knows.
//
// Series are keyed by what is stable: an interface name on the client, a
// session and its slot (the address's link number, reused after it
// leaves) on the server, so that a NAT rebind does not start a new set of
// series; addresses and free-text labels are in *_info series, which
// PromQL joins with group_left.

// metricsHandler returns the handler of GET /metrics for s.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry(), promhttp.HandlerOpts{
		// A scrape that cannot gather every collector still serves what
		// it gathered, and says why once in a while.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLog{s},
		// Each scrape reads the whole status: a few at a time is plenty
		// for any number of Prometheus servers; the others get 503.
		MaxRequestsInFlight: maxScrapes,
	})
}

// registry returns a registry of every collector of s.
func (s *Server) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newRoleCollector(s),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	return reg
}

// maxScrapes bounds the scrapes served at once.
const maxScrapes = 4

// promLog passes the registry's errors to the logger, as rate-limited as
// net/http's own messages.
type promLog struct{ s *Server }

// Println implements promhttp.Logger.
func (l promLog) Println(v ...any) {
	if ok, _ := l.s.httpLog.allow(time.Now()); ok {
		l.s.log.warnf("metrics: %s", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
	}
}

// desc makes a family's descriptor.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// linkStates and tunnelStates are the values of the state label: every
// one is written, 1 for the current state, so that a query for one state
// never finds a gap.
var (
	linkStates   = []engine.LinkStatus{engine.LinkActive, engine.LinkStalled, engine.LinkDown, engine.LinkExcluded}
	peerStates   = []engine.LinkStatus{engine.LinkActive, engine.LinkStalled}
	tunnelStates = []engine.TunnelState{engine.TunnelUp, engine.TunnelDegraded, engine.TunnelDown}
	probeModes   = []string{"on", "off", "unanswered"}
)

// sockDescs are the families of a group of sockets: prefix_*.
type sockDescs struct {
	rxPackets, rxBytes, txPackets, txBytes, rxErrors, sendErrors, drops, lastRx *prometheus.Desc
	extra                                                                       []string // drop reasons beyond the socket's own
}

// newSockDescs describes the counters of a group of sockets, labelled
// with labels; extra lists drop reasons beyond the socket's own.
func newSockDescs(prefix, what string, labels []string, extra ...string) sockDescs {
	withReason := append(labels[:len(labels):len(labels)], "reason")
	reasons := ""
	for _, r := range extra {
		reasons += ", " + r
	}
	return sockDescs{
		rxPackets:  desc(prefix+"_rx_packets_total", "Datagrams received by "+what+".", labels...),
		rxBytes:    desc(prefix+"_rx_bytes_total", "Payload bytes received by "+what+".", labels...),
		txPackets:  desc(prefix+"_tx_packets_total", "Datagrams sent by "+what+".", labels...),
		txBytes:    desc(prefix+"_tx_bytes_total", "Payload bytes sent by "+what+".", labels...),
		rxErrors:   desc(prefix+"_receive_errors_total", "Failed receive calls of "+what+".", labels...),
		sendErrors: desc(prefix+"_send_errors_total", "Failed send calls of "+what+".", labels...),
		drops: desc(prefix+"_drops_total", "Datagrams dropped by "+what+", by reason: full (backlog full), timeout (not sent within writeTimeout), error (refused by the kernel), closed (socket closed first), oversize (received, larger than a buffer)"+reasons+".",
			withReason...),
		lastRx: desc(prefix+"_last_receive_timestamp_seconds", "When "+what+" last received a datagram, in seconds since the Unix epoch (absent if never).", labels...),
		extra:  extra,
	}
}

func (d sockDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.rxPackets, d.rxBytes, d.txPackets, d.txBytes, d.rxErrors, d.sendErrors, d.drops, d.lastRx} {
		ch <- x
	}
}

// collect writes one socket's counters; extra are its drops for the
// reasons beyond the socket's own, in the order newSockDescs got them.
func (d sockDescs) collect(ch chan<- prometheus.Metric, c *engine.Counters, labels []string, extra ...uint64) {
	counter(ch, d.rxPackets, c.RxPackets, labels...)
	counter(ch, d.rxBytes, c.RxBytes, labels...)
	counter(ch, d.txPackets, c.TxPackets, labels...)
	counter(ch, d.txBytes, c.TxBytes, labels...)
	counter(ch, d.rxErrors, c.RxErrors, labels...)
	counter(ch, d.sendErrors, c.SendErrors, labels...)
	l := append(labels[:len(labels):len(labels)], "")
	for _, x := range []struct {
		reason string
		n      uint64
	}{{"full", c.DropFull}, {"timeout", c.DropTimeout}, {"error", c.DropError}, {"closed", c.DropClosed}, {"oversize", c.Oversize}} {
		l[len(l)-1] = x.reason
		counter(ch, d.drops, x.n, l...)
	}
	for i, n := range extra {
		l[len(l)-1] = d.extra[i]
		counter(ch, d.drops, n, l...)
	}
	if !c.LastRx.IsZero() {
		gauge(ch, d.lastRx, unixSeconds(c.LastRx), labels...)
	}
}

// qualityDescs are the quality families of a group of links: prefix_*.
type qualityDescs struct {
	sampled, first, lost, late, firstRatio, lossRatio, lateSeconds *prometheus.Desc
}

func newQualityDescs(prefix, what string, labels []string) qualityDescs {
	withQ := append(labels[:len(labels):len(labels)], "percentile")
	return qualityDescs{
		sampled:     desc(prefix+"_sampled_total", "Sampled WireGuard transport messages (one in 16) judged, for "+what+".", labels...),
		first:       desc(prefix+"_sampled_first_total", "Sampled messages delivered before any other link, for "+what+".", labels...),
		lost:        desc(prefix+"_sampled_lost_total", "Sampled messages never delivered although another link did, for "+what+".", labels...),
		late:        desc(prefix+"_sampled_late_total", "Sampled messages delivered after another link, for "+what+".", labels...),
		firstRatio:  desc(prefix+"_first_ratio", "Share of the sampled messages delivered first, from 0 to 1, for "+what+" (absent without samples).", labels...),
		lossRatio:   desc(prefix+"_loss_ratio", "Share of the sampled messages never delivered although another link did, from 0 to 1, for "+what+" (absent without samples).", labels...),
		lateSeconds: desc(prefix+"_late_seconds", "How far behind the first copy the late copies came, by percentile (50, 99), for "+what+" (absent without late copies).", withQ...),
	}
}

func (d qualityDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.sampled, d.first, d.lost, d.late, d.firstRatio, d.lossRatio, d.lateSeconds} {
		ch <- x
	}
}

// collect writes one link's quality: the sample counters always, the
// ratios only with samples and the lateness only with late copies, so
// that no series shows a measurement never made.
func (d qualityDescs) collect(ch chan<- prometheus.Metric, q engine.Quality, labels []string) {
	counter(ch, d.sampled, q.Samples, labels...)
	counter(ch, d.first, q.First, labels...)
	counter(ch, d.lost, q.Lost, labels...)
	counter(ch, d.late, q.Copies, labels...)
	if q.Samples > 0 {
		gauge(ch, d.firstRatio, q.FirstShare(), labels...)
		gauge(ch, d.lossRatio, q.LossRate(), labels...)
	}
	if q.Copies > 0 {
		l := append(labels[:len(labels):len(labels)], "50")
		gauge(ch, d.lateSeconds, q.LateP50.Seconds(), l...)
		l[len(l)-1] = "99"
		gauge(ch, d.lateSeconds, q.LateP99.Seconds(), l...)
	}
}

// probeDescs are the families of the links' probes.
type probeDescs struct {
	sent, answered, lossRatio, rtt, jitter, lastAnswer *prometheus.Desc
}

func newProbeDescs() probeDescs {
	l := []string{"interface"}
	return probeDescs{
		sent:       desc("engarde_link_probe_sent_total", "Probes sent on each link since its socket opened.", l...),
		answered:   desc("engarde_link_probe_answered_total", "Probes answered by the server on each link since its socket opened.", l...),
		lossRatio:  desc("engarde_link_probe_loss_ratio", "Share of the probes of the last window that went unanswered, from 0 to 1, per link (absent before a probe was judged).", l...),
		rtt:        desc("engarde_link_probe_rtt_seconds", "Round-trip time of the answered probes of the last window, by percentile (50, 99), per link (absent without answers).", "interface", "percentile"),
		jitter:     desc("engarde_link_probe_jitter_seconds", "Mean difference between consecutive probe round trips of the last window, per link (absent without answers).", l...),
		lastAnswer: desc("engarde_link_probe_last_answer_timestamp_seconds", "When a probe was last answered on each link, in seconds since the Unix epoch (absent if never).", l...),
	}
}

func (d probeDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.sent, d.answered, d.lossRatio, d.rtt, d.jitter, d.lastAnswer} {
		ch <- x
	}
}

// collect writes one link's probe figures; nothing for a nil p (no
// socket, or probes off): no made-up zero RTT.
func (d probeDescs) collect(ch chan<- prometheus.Metric, p *engine.ProbeStats, iface string) {
	if p == nil {
		return
	}
	counter(ch, d.sent, p.Sent, iface)
	counter(ch, d.answered, p.Answered, iface)
	if p.Window > 0 {
		gauge(ch, d.lossRatio, float64(p.Lost)/float64(p.Window), iface)
	}
	if p.Answered > 0 && p.Window > p.Lost {
		gauge(ch, d.rtt, p.RTT50.Seconds(), iface, "50")
		gauge(ch, d.rtt, p.RTT99.Seconds(), iface, "99")
		gauge(ch, d.jitter, p.Jitter.Seconds(), iface)
	}
	if !p.LastAnswer.IsZero() {
		gauge(ch, d.lastAnswer, unixSeconds(p.LastAnswer), iface)
	}
}

// roleCollector is the prometheus.Collector of a role: every family of
// the role, read from one status per scrape.
type roleCollector struct {
	s *Server

	// The families of both roles, then the client's, then the server's;
	// all lists every *prometheus.Desc field, socks and quals the
	// groups, for Describe.

	buildInfo, started, duplicates               *prometheus.Desc
	tunnelState, tunnelChanged, probes           *prometheus.Desc
	linkState, linkChanged, linkInfo             *prometheus.Desc
	resolved, lookupFailing                      *prometheus.Desc
	links, wireguard                             sockDescs
	linkQuality                                  qualityDescs
	probe                                        probeDescs
	sessions, addresses, clientTimeout, dropped  *prometheus.Desc
	initiations, initCopies, joins, joinsRefused *prometheus.Desc
	pendingEvicted, sessionInfo, sessionIndexes  *prometheus.Desc
	probeOutcomes, probeRejected                 *prometheus.Desc
	addrInfo, addrLive, addrState                *prometheus.Desc
	session, addr, listen, upstream              sockDescs
	addrQuality                                  qualityDescs
	all                                          []*prometheus.Desc
	socks                                        []sockDescs
	quals                                        []qualityDescs
}

// newRoleCollector describes the families of s's role.
func newRoleCollector(s *Server) *roleCollector {
	c := &roleCollector{s: s}
	c.buildInfo = desc("engarde_build_info", "Always 1; the labels say which engarde runs, as which role, on which data-path backend.", "version", "goversion", "role", "backend")
	c.started = desc("engarde_start_time_seconds", "When engarde started, in seconds since the Unix epoch.")
	c.tunnelState = desc("engarde_tunnel_state", "1 for the state the tunnel is in (up, degraded: some links fail, down: none works), 0 for the others.", "state")
	c.tunnelChanged = desc("engarde_tunnel_state_changed_timestamp_seconds", "When the tunnel took its state, in seconds since the Unix epoch (absent if unknown).")
	c.probes = desc("engarde_probes_state", "1 for what the link probes do (on, off, unanswered: the server never answered one, as an original engarde server does not), 0 for the others.", "state")
	c.all = append(c.all, c.buildInfo, c.started, c.tunnelState, c.tunnelChanged, c.probes)
	if s.role.Client != nil {
		c.duplicates = desc("engarde_duplicates_total", "Replies not handed to WireGuard because another link had delivered them already: the duplicate filter's normal work, not a loss.")
		c.linkState = desc("engarde_link_state", "1 for the state each interface is in (active, stalled: sends but nothing comes back, down: no interface, carrier or socket, excluded), 0 for the others.", "interface", "state")
		c.linkChanged = desc("engarde_link_state_changed_timestamp_seconds", "When each interface took its state, in seconds since the Unix epoch (absent if unknown).", "interface")
		c.linkInfo = desc("engarde_link_info", "Always 1 for each interface; the labels give its label from the configuration, the address it sends from and where it sends to.", "interface", "label", "local", "destination")
		c.resolved = desc("engarde_destination_resolved_timestamp_seconds", "When each destination name (label name) last resolved, in seconds since the Unix epoch (absent if never); its last good answer is used while lookups fail.", "name")
		c.lookupFailing = desc("engarde_destination_lookup_failing", "1 while the last lookup of each destination name (label name) failed, 0 once one succeeds.", "name")
		c.links = newSockDescs("engarde_link", "each link socket (label interface)", []string{"interface"})
		c.wireguard = newSockDescs("engarde_wireguard", "the socket facing WireGuard (rx: from WireGuard, tx: to it)", nil, "no_link", "foreign")
		c.linkQuality = newQualityDescs("engarde_link", "each link's replies (label interface)", []string{"interface"})
		c.probe = newProbeDescs()
		c.probeRejected = desc("engarde_probe_replies_rejected_total", "Probe replies taken off the links that answered no probe in flight, by reason: bad (forged, replayed or from another link), late (a real answer after the probe timeout).", "reason")
		c.all = append(c.all, c.duplicates, c.linkState, c.linkChanged, c.linkInfo, c.resolved, c.lookupFailing, c.probeRejected)
		c.socks = append(c.socks, c.links, c.wireguard)
		c.quals = append(c.quals, c.linkQuality)
		return c
	}
	c.duplicates = desc("engarde_duplicates_total", "Datagrams not forwarded to WireGuard because another link had delivered them already: the duplicate filter's normal work, not a loss.")
	c.sessions = desc("engarde_sessions", "Sessions: clients as WireGuard knows them, each with its own socket to WireGuard.")
	c.addresses = desc("engarde_client_addresses", "Client addresses heard from within the client timeout (those that get replies).")
	c.clientTimeout = desc("engarde_client_timeout_seconds", "How long a silent client address keeps getting replies.")
	c.dropped = desc("engarde_dropped_total", "Datagrams from clients dropped before WireGuard, by reason: not_wireguard (not shaped like WireGuard's), not_member (WireGuard-shaped, from an address in no session, no initiation), foreign (a transport message with an index not of the sender's session).", "reason")
	c.initiations = desc("engarde_initiations_total", "Handshake initiations passed to WireGuard.")
	c.initCopies = desc("engarde_initiation_copies_total", "Copies of handshake initiations from other links, not passed to WireGuard again.")
	c.joins = desc("engarde_joins_total", "Client addresses that joined a session with a copy of its initiation that came after WireGuard's answer.")
	c.joinsRefused = desc("engarde_joins_refused_total", "Copies of an answered initiation that found their session full of addresses carrying traffic.")
	c.pendingEvicted = desc("engarde_pending_initiations_evicted_total", "Unanswered initiations forgotten to make room.")
	c.probeOutcomes = desc("engarde_probes_total", "Link probes from clients, by outcome: answered; refused (from an address in no WireGuard session) and limited (over the address's rate limit), both dropped unanswered.", "outcome")
	c.sessionInfo = desc("engarde_session_info", "Always 1 for each session; the labels give its endpoint (its own socket towards WireGuard, where WireGuard sees the client) and whether it is forwardAnyUDP's session of non-WireGuard sources.", "session", "endpoint", "any_udp")
	c.sessionIndexes = desc("engarde_session_indexes", "Receiver indexes of each session that the duplicate filter judges now.", "session")
	addr := []string{"session", "slot"}
	c.addrInfo = desc("engarde_client_address_info", "Always 1 for each client address, by session and slot (its link number in the session, reused after it leaves); the labels give the address and the server address it sends to.", "session", "slot", "address", "local")
	c.addrLive = desc("engarde_client_address_live", "1 while a client address gets replies (it sent within the client timeout), 0 while it lingers silent.", addr...)
	c.addrState = desc("engarde_client_address_state", "1 for the state each client address is in (active, stalled: silent while another address of its session sends), 0 for the other.", "session", "slot", "state")
	c.session = newSockDescs("engarde_session", "each session's socket to WireGuard (label session; tx: to WireGuard, rx: its replies)", []string{"session"})
	c.addr = newSockDescs("engarde_client_address", "each client address's socket (labels session, slot)", addr)
	c.listen = newSockDescs("engarde_listen", "the listen socket (datagrams from addresses in no session)", nil)
	c.upstream = newSockDescs("engarde_upstream", "the handshake socket to WireGuard (tx: to WireGuard, rx: its answers)", nil, "no_client", "unrouted")
	c.addrQuality = newQualityDescs("engarde_client_address", "each client address (labels session, slot)", addr)
	c.all = append(c.all, c.duplicates, c.sessions, c.addresses, c.clientTimeout, c.dropped, c.initiations, c.initCopies, c.joins, c.joinsRefused,
		c.pendingEvicted, c.sessionInfo, c.sessionIndexes, c.addrInfo, c.addrLive, c.addrState, c.probeOutcomes)
	c.socks = append(c.socks, c.session, c.addr, c.listen, c.upstream)
	c.quals = append(c.quals, c.addrQuality)
	return c
}

// Describe implements prometheus.Collector.
func (c *roleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all {
		ch <- d
	}
	for _, d := range c.socks {
		d.describe(ch)
	}
	for _, d := range c.quals {
		d.describe(ch)
	}
	if c.s.role.Client != nil {
		c.probe.describe(ch)
	}
}

// Collect implements prometheus.Collector: one status read, every family.
func (c *roleCollector) Collect(ch chan<- prometheus.Metric) {
	if rc := c.s.role.Client; rc != nil {
		c.client(ch, rc.ClientStatus())
	} else {
		c.server(ch, c.s.role.Server.ServerStatus())
	}
}

func (c *roleCollector) common(ch chan<- prometheus.Metric, role, backend string, started time.Time, t engine.TunnelInfo) {
	gauge(ch, c.buildInfo, 1, c.s.version, runtime.Version(), role, backend)
	gauge(ch, c.started, unixSeconds(started))
	for _, st := range tunnelStates {
		gauge(ch, c.tunnelState, one(t.State == st), string(st))
	}
	if !t.Since.IsZero() {
		gauge(ch, c.tunnelChanged, unixSeconds(t.Since))
	}
	if t.Probes != "" {
		for _, m := range probeModes {
			gauge(ch, c.probes, one(t.Probes == m), m)
		}
	}
}

func (c *roleCollector) client(ch chan<- prometheus.Metric, st ClientStatus) {
	c.common(ch, "client", st.Backend, st.Started, st.Tunnel)
	counter(ch, c.duplicates, st.Duplicates)
	seen := map[string]bool{}
	for i := range st.Links {
		l := &st.Links[i]
		for _, s := range linkStates {
			gauge(ch, c.linkState, one(l.Status == string(s)), l.Name, string(s))
		}
		if !l.Since.IsZero() {
			gauge(ch, c.linkChanged, unixSeconds(l.Since), l.Name)
		}
		gauge(ch, c.linkInfo, 1, l.Name, l.Label, ipString(l.Local), l.Dst)
		if l.Counters != nil {
			c.links.collect(ch, l.Counters, []string{l.Name})
			c.linkQuality.collect(ch, l.Quality, []string{l.Name})
			c.probe.collect(ch, l.Probe, l.Name)
		}
		if r := l.Resolution; r != nil && !seen[r.Name] {
			seen[r.Name] = true
			if !r.Resolved.IsZero() {
				gauge(ch, c.resolved, unixSeconds(r.Resolved), r.Name)
			}
			gauge(ch, c.lookupFailing, one(r.Err != ""), r.Name)
		}
	}
	c.wireguard.collect(ch, &st.WireGuard, nil, st.NoLink, st.Foreign)
	counter(ch, c.probeRejected, st.ProbesBad, "bad")
	counter(ch, c.probeRejected, st.ProbesLate, "late")
}

func (c *roleCollector) server(ch chan<- prometheus.Metric, st ServerStatus) {
	c.common(ch, "server", st.Backend, st.Started, st.Tunnel)
	counter(ch, c.duplicates, st.Duplicates)
	live := 0
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		id := strconv.FormatUint(ss.ID, 10)
		gauge(ch, c.sessionInfo, 1, id, addrString(ss.Endpoint), strconv.FormatBool(ss.AnyUDP))
		gauge(ch, c.sessionIndexes, float64(len(ss.Indexes)), id)
		c.session.collect(ch, &ss.Counters, []string{id})
		slots := map[int]bool{}
		for j := range ss.Addrs {
			p := &ss.Addrs[j]
			if p.Live {
				live++
			}
			// A slot is one member's at a time; should two ever share
			// one, the first keeps the series rather than the whole
			// scrape failing on a duplicate.
			if slots[p.Slot] {
				continue
			}
			slots[p.Slot] = true
			labels := []string{id, strconv.Itoa(p.Slot)}
			gauge(ch, c.addrInfo, 1, id, labels[1], p.Addr.String(), addrString(p.Local))
			gauge(ch, c.addrLive, one(p.Live), labels...)
			for _, s := range peerStates {
				gauge(ch, c.addrState, one(p.Status == string(s)), id, labels[1], string(s))
			}
			c.addr.collect(ch, &p.Counters, labels)
			c.addrQuality.collect(ch, p.Quality, labels)
		}
	}
	gauge(ch, c.sessions, float64(len(st.Sessions)))
	gauge(ch, c.addresses, float64(live))
	gauge(ch, c.clientTimeout, st.ClientTimeout.Seconds())
	counter(ch, c.dropped, st.NotWireGuard, "not_wireguard")
	counter(ch, c.dropped, st.NotMember, "not_member")
	counter(ch, c.dropped, st.Foreign, "foreign")
	counter(ch, c.initiations, st.Initiations)
	counter(ch, c.initCopies, st.InitCopies)
	counter(ch, c.joins, st.Joins)
	counter(ch, c.joinsRefused, st.JoinsRefused)
	counter(ch, c.pendingEvicted, st.PendingEvicted)
	counter(ch, c.probeOutcomes, st.ProbesAnswered, "answered")
	counter(ch, c.probeOutcomes, st.ProbesRefused, "refused")
	counter(ch, c.probeOutcomes, st.ProbesLimited, "limited")
	c.listen.collect(ch, &st.Listen, nil)
	c.upstream.collect(ch, &st.Upstream, nil, st.NoPeer, st.Unrouted)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// ipString is a's text, empty for none.
func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
