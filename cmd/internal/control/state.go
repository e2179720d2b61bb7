package control

import (
	"net/netip"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// ClientRole is what the control plane reads from a client and does to
// it. Its methods are called from HTTP handlers, concurrently.
type ClientRole interface {
	// ClientStatus returns the client's state now.
	ClientStatus() ClientStatus
	// SetExclusion excludes or includes an interface until
	// ResetExclusions or a restart, and reports whether that changed
	// anything. Once the client is stopping it changes nothing and
	// returns an error.
	SetExclusion(name string, exclude bool) (bool, error)
	// Excluded reports whether an interface is excluded now.
	Excluded(name string) bool
	// ResetExclusions drops the run-time exclusion changes, so the
	// configuration decides again; once the client is stopping it
	// changes nothing and returns an error.
	ResetExclusions() error
}

// ServerRole is what the control plane reads from a server. ServerStatus
// is called from HTTP handlers, concurrently.
type ServerRole interface {
	// ServerStatus returns the server's state now.
	ServerStatus() ServerStatus
}

// Link is one interface as the client sees it.
type Link struct {
	// Name is the interface name; Label its label from the configuration.
	Name, Label string
	// Status is the link's state (engine.LinkStatus: active, stalled,
	// down, excluded) and Since when it took it.
	Status string
	Since  time.Time
	// Reason says why an interface is not active.
	Reason string
	// Local is the address the link sends from (or the interface's
	// address when it has no link); Dst where it sends to, as an address
	// or as configured.
	Local netip.Addr
	Dst   string
	// Counters are the link socket's; nil when the interface has none.
	Counters *engine.Counters
	// Resolution is the destination name's state; nil for an address.
	Resolution *engine.NameStatus
	// Quality is how the link delivers the server's replies, measured
	// since its socket opened (zero without a socket).
	Quality engine.Quality
	// Probe is what the link's probes measured; nil without a socket or
	// with probes off.
	Probe *engine.ProbeStats
}

// ClientStatus is a client's state at one moment.
type ClientStatus struct {
	Description string
	// ListenAddr is where WireGuard sends.
	ListenAddr string
	// Backend is the data-path backend in use.
	Backend string
	// Started is when the client started.
	Started time.Time
	// Links lists every interface, in a stable order.
	Links []Link
	// WireGuard counts the socket facing WireGuard: Rx is what WireGuard
	// sent, Tx what went back to it.
	WireGuard engine.Counters
	// NoLink counts datagrams from WireGuard dropped because no link was
	// up.
	NoLink uint64
	// Duplicates counts replies not handed to WireGuard because another
	// link had delivered them already.
	Duplicates uint64
	// Foreign counts datagrams on the socket facing WireGuard from
	// another address than WireGuard's, not handshakes, dropped.
	Foreign uint64
	// Tunnel is the tunnel's state; Events the last changes of state,
	// oldest first.
	Tunnel engine.TunnelInfo
	Events []engine.Event
	// ProbesBad and ProbesLate count the probe replies taken off the
	// links that answered no probe in flight: forged, replayed or moved
	// ones, and real answers after the probe timeout.
	ProbesBad, ProbesLate uint64
}

// Peer is one client address as the server sees it.
type Peer struct {
	// Addr is the client's address; Local the server address it sends
	// to and replies come from.
	Addr, Local netip.AddrPort
	// Session is the ID of the session the address belongs to.
	Session uint64
	// Since is when the address appeared.
	Since time.Time
	// LastSeen is when it last sent a datagram of its session.
	LastSeen time.Time
	// Live says whether it gets replies (it sent within the client
	// timeout).
	Live bool
	// Slot is the address's stable link number in its session; Status
	// its state (active or stalled).
	Slot     int
	Status   string
	Counters engine.Counters
	// Quality is how the address delivers its session's messages.
	Quality engine.Quality
}

// SessionStatus is one client as WireGuard knows it: the addresses that
// send its messages, and the socket that stands for it towards WireGuard.
type SessionStatus struct {
	ID    uint64
	Since time.Time
	// Endpoint is the session's own socket towards WireGuard, which
	// WireGuard sees as the client's endpoint.
	Endpoint netip.AddrPort
	// Indexes are the receiver indexes the duplicate filter judges now,
	// newest first.
	Indexes []uint32
	// AnyUDP marks forwardAnyUDP's session of non-WireGuard sources.
	AnyUDP bool
	// Addrs are its client addresses, live or silent.
	Addrs []Peer
	// Counters count the session's socket to WireGuard: Tx what went to
	// WireGuard, Rx its replies.
	Counters engine.Counters
}

// ServerStatus is a server's state at one moment.
type ServerStatus struct {
	Description string
	// ListenAddr is where clients send; DstAddr is WireGuard.
	ListenAddr, DstAddr string
	Backend             string
	Started             time.Time
	// ClientTimeout is how long a silent client address gets replies.
	ClientTimeout time.Duration
	// Sessions lists every session with its addresses, in a stable order.
	Sessions []SessionStatus
	// Listen counts the listen socket (datagrams from addresses in no
	// session); Upstream the handshake socket to WireGuard (Tx: to
	// WireGuard, Rx: its answers).
	Listen, Upstream engine.Counters
	// NoPeer counts replies from WireGuard dropped because their session
	// had no live address.
	NoPeer uint64
	// Duplicates counts datagrams not forwarded to WireGuard because
	// another link had delivered them already.
	Duplicates uint64
	ServerCounters
	// Tunnel is the state over all sessions; Events the last changes of
	// state, oldest first.
	Tunnel engine.TunnelInfo
	Events []engine.Event
}
