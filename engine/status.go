package engine

import (
	"net/netip"
	"time"
)

// LinkStatus is a link's state: the same word in the log, status, the
// page, the API and the metrics.
type LinkStatus string

// The states of a link (client: an interface; server: a client address).
const (
	// LinkActive: the link carries traffic and answers.
	LinkActive LinkStatus = "active"
	// LinkStalled: the link sends, and nothing has come back on it for
	// stallAfter (no reply, no probe answer).
	LinkStalled LinkStatus = "stalled"
	// LinkDown: no link now: the interface is down, has no carrier or no
	// usable address, or its socket cannot open.
	LinkDown LinkStatus = "down"
	// LinkExcluded: excluded by the configuration or at run time.
	LinkExcluded LinkStatus = "excluded"
)

// TunnelState is the state of the whole tunnel.
type TunnelState string

// The states of a tunnel.
const (
	// TunnelUp: every link that should carry traffic does.
	TunnelUp TunnelState = "up"
	// TunnelDegraded: some links fail, at least one works.
	TunnelDegraded TunnelState = "degraded"
	// TunnelDown: no link works (WireGuard sends, nothing comes back on
	// any link, or there is no link at all).
	TunnelDown TunnelState = "down"
)

// TunnelInfo is the tunnel's state, since when, and why.
type TunnelInfo struct {
	State TunnelState
	Since time.Time
	// Reason says why the tunnel is degraded or down, for example
	// "server unreachable: ..." or "server silent: ...".
	Reason string
	// Probes says what the probes do: "on", "off", or "unanswered" when
	// the server never answered one (an original engarde server).
	Probes string
}

// Event is one change of a link's or the tunnel's state.
type Event struct {
	At time.Time
	// Link is the interface (client), "session N link K" (server), or
	// empty for the tunnel itself.
	Link     string
	From, To string
	Reason   string
}

// ProbeStats is what a link's probes measured: counts since the link's
// socket opened, figures over the last probe window.
type ProbeStats struct {
	Sent, Answered uint64
	// Window is how many probes of the window were judged (those older
	// than the probe timeout, answered or not); Lost how many of them
	// went unanswered.
	Window, Lost int
	// RTT50, RTT99 are percentiles of the answered probes' round trips;
	// Jitter the mean difference between consecutive round trips.
	RTT50, RTT99, Jitter time.Duration
	// LastAnswer is when a probe was last answered (zero: never).
	LastAnswer time.Time
}

// LinkInfo describes one link for status displays.
type LinkInfo struct {
	Name, Label string
	Status      LinkStatus
	// Since is when the link took its status.
	Since time.Time
	// Reason says why an interface is not active.
	Reason string
	// Addrs are the interface's addresses.
	Addrs []netip.Addr
	// Local and Dst are the link's addresses while it has a socket.
	Local netip.Addr
	Dst   netip.AddrPort
	// Target is the configured destination for this interface (its
	// override or dstAddr), as written, whether or not it is used.
	Target string
	// Resolution is Target's resolution state when Target is a name (nil
	// for an address): the answer in use, its age and the last error.
	Resolution *NameStatus
	Stats      *Stats // nil when no socket is open
	// Quality is what the duplicate filter measured of the link's
	// replies since its socket opened.
	Quality Quality
	// Probe is what the link's probes measured; nil when it has no
	// socket or probes are off.
	Probe *ProbeStats
}

// Links describes every interface the last scan saw.
func (c *Client) Links() []LinkInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]LinkInfo, 0, len(c.plans))
	for _, p := range c.plans {
		li := LinkInfo{Name: p.Iface.Name, Label: p.Label, Status: LinkDown, Reason: p.Reason, Addrs: p.Iface.Addrs, Local: p.Local, Dst: p.Dst, Target: c.planner.target(p.Iface.Name)}
		li.Resolution = c.names.status(li.Target)
		if p.Excluded {
			li.Status = LinkExcluded
		}
		if l := c.links[p.Iface.Name]; l != nil {
			li.Stats = &l.stats
			li.Local, li.Dst = l.local, l.dst
			li.Quality = l.quality.read()
			li.Probe = l.probe.stats()
			if l.up {
				li.Status = LinkActive
			}
		}
		if h := c.hl.links[p.Iface.Name]; h != nil {
			// The evaluated state (health.go), the same the log and the
			// events say.
			li.Status, li.Since = h.status, h.since
			if h.status != LinkActive {
				li.Reason = h.reason
			}
		}
		if c.stopping && (li.Status == LinkActive || li.Status == LinkStalled) {
			li.Status, li.Reason = LinkDown, "the client stopped" // its sockets are closed
		}
		out = append(out, li)
	}
	return out
}

// PeerInfo describes one client address for status displays.
type PeerInfo struct {
	Addr  netip.AddrPort
	Local netip.AddrPort
	// Session is the number of the session the address belongs to.
	Session uint64
	Since   time.Time
	// LastSeen is when the address last sent a datagram of its session.
	LastSeen time.Time
	// Live says whether it gets replies (it sent within clientTimeout).
	Live bool
	// Slot is the address's link number in its session, stable while it
	// is a member and reused after it leaves: at most maxMembers per
	// session, so series keyed by it do not multiply with NAT rebinds.
	Slot int
	// Status is active, or stalled when it has sent nothing for
	// stallAfter while another address of its session sends (back to
	// active when it sends again).
	Status  LinkStatus
	Stats   *Stats
	Quality Quality
}

// SessionInfo describes one session (one client, as WireGuard knows it).
type SessionInfo struct {
	ID    uint64
	Since time.Time
	// Endpoint is the address WireGuard sees the client at: the session's
	// own socket.
	Endpoint netip.AddrPort
	// Indexes are the receiver indexes of the client's transport
	// messages that the duplicate filter judges now, newest first.
	Indexes []uint32
	// AnyUDP marks forwardAnyUDP's session of non-WireGuard sources.
	AnyUDP bool
	Addrs  []PeerInfo
	// Stats counts the session's socket to WireGuard: Tx what went to
	// WireGuard, Rx its replies.
	Stats *Stats
}

// Sessions describes the sessions (after Run has returned: those at the
// end).
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, sess := range s.sessions {
		si := SessionInfo{ID: sess.id, Since: sess.since, Endpoint: sess.up.LocalAddr(), Indexes: sess.win.indexes(), AnyUDP: sess.legacy, Stats: &sess.upStats}
		for _, m := range sess.members {
			si.Addrs = append(si.Addrs, m.info())
		}
		out = append(out, si)
	}
	return out
}

// Peers describes the client addresses of every session.
func (s *Server) Peers() []PeerInfo {
	var out []PeerInfo
	for _, sess := range s.Sessions() {
		out = append(out, sess.Addrs...)
	}
	return out
}

func (m *member) info() PeerInfo {
	return PeerInfo{
		Addr:     m.addr,
		Local:    m.local,
		Session:  m.sess().id,
		Since:    m.since,
		LastSeen: time.Unix(0, wallFromMono(m.lastSeen.Load())),
		Live:     m.live.Load(),
		Slot:     m.slot,
		Status:   m.status,
		Stats:    &m.stats,
		Quality:  m.quality.read(),
	}
}
