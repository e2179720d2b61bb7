package engine

import (
	"net/netip"
	"time"
)

// LinkStatus is what an interface does for the client now.
type LinkStatus string

// The statuses of an interface.
const (
	// LinkActive: the interface's link carries traffic.
	LinkActive LinkStatus = "active"
	// LinkIdle: no link now (down, no carrier, no usable address).
	LinkIdle LinkStatus = "idle"
	// LinkExcluded: excluded by the configuration or at run time.
	LinkExcluded LinkStatus = "excluded"
)

// LinkInfo describes one link for status displays.
type LinkInfo struct {
	Name, Label string
	Status      LinkStatus
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
	Stats  *Stats // nil when no socket is open
}

// Links describes every interface the last scan saw.
func (c *Client) Links() []LinkInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]LinkInfo, 0, len(c.plans))
	for _, p := range c.plans {
		li := LinkInfo{Name: p.Iface.Name, Label: p.Label, Status: LinkIdle, Reason: p.Reason, Addrs: p.Iface.Addrs, Local: p.Local, Dst: p.Dst, Target: c.planner.target(p.Iface.Name)}
		if p.Excluded {
			li.Status = LinkExcluded
		}
		if l := c.links[p.Iface.Name]; l != nil {
			li.Stats = &l.stats
			li.Local, li.Dst = l.local, l.dst
			if l.up {
				li.Status = LinkActive
			}
		}
		out = append(out, li)
	}
	return out
}

// PeerInfo describes one client address for status displays.
type PeerInfo struct {
	Addr  netip.AddrPort
	Local netip.AddrPort
	Since time.Time
	// LastSeen is when the address last sent anything.
	LastSeen time.Time
	Stats    *Stats
}

// Peers describes the live client addresses (after Run has returned: the
// addresses live at the end).
func (s *Server) Peers() []PeerInfo {
	set := s.peers.Load()
	out := make([]PeerInfo, 0, len(set.list))
	for _, p := range set.list {
		out = append(out, PeerInfo{
			Addr:     p.addr,
			Local:    p.local,
			Since:    p.since,
			LastSeen: time.Unix(0, wallFromMono(p.lastSeen.Load())),
			Stats:    &p.stats,
		})
	}
	return out
}
