package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/internal/sys"
)

// notes are the client's log lines about its configuration and its
// interfaces that say something once, not at every scan. Guarded by
// Client.mu.
type notes struct {
	// names asks the next scan to look for interfaces the
	// configuration names and the system lacks: set at start-up and at
	// each reload, not at rescans, since such an interface may appear
	// later (a modem plugged in, a VPN started).
	names bool
	// tunnels are the tunnel interfaces whose skip was logged, until the
	// configuration names them.
	tunnels map[string]bool
	// mark is set once the missing capability for fwmark was explained,
	// until a link opens with its mark.
	mark bool
}

// noteScanLocked logs, after a scan planned ifs, what the configuration
// names that does not exist, and the tunnel interfaces it skips.
func (c *Client) noteScanLocked(ifs []Iface, plans []Plan) {
	if c.notes.names {
		c.notes.names = false
		for _, u := range unknownNames(c.planner.overrides, c.cfg.Excluded, c.planner.labels, ifs) {
			c.log.warnf("interface %s, named in %s, does not exist (yet): its settings apply when it appears; check the name with engarde-client list-interfaces", u.name, strings.Join(u.keys, " and "))
		}
	}
	if c.notes.tunnels == nil {
		c.notes.tunnels = map[string]bool{}
	}
	for _, p := range plans {
		name := p.Iface.Name
		switch {
		case p.Tunnel && !c.notes.tunnels[name]:
			c.notes.tunnels[name] = true
			c.log.infof("interface %s is a %s interface (link kind %q): not a link, since engarde's packets sent through it would travel inside a tunnel, perhaps the one they carry; to use it as a link anyway, name it in interfaceLabels or dstOverrides",
				name, tunnelKinds[p.Iface.Kind], p.Iface.Kind)
		case !p.Tunnel && c.notes.tunnels[name] && tunnelKinds[p.Iface.Kind] != "":
			// Named now: a later skip is news again.
			delete(c.notes.tunnels, name)
		}
	}
}

// noteOpenLocked explains, once until a link opens, a link socket refused
// its firewall mark for want of a capability: the per-link line says that
// it failed, this one what to do.
func (c *Client) noteOpenLocked(err error) {
	switch {
	case err == nil:
		c.notes.mark = false
	case errors.Is(err, sys.ErrMarkPermission) && !c.notes.mark:
		c.notes.mark = true
		c.log.errorf("fwmark %#x cannot be set: the kernel allows SO_MARK only with CAP_NET_ADMIN (or, since Linux 5.17, CAP_NET_RAW), which this process lacks; run engarde-client as root, or grant the capability: AmbientCapabilities=CAP_NET_ADMIN (with CapabilityBoundingSet=CAP_NET_ADMIN) in its systemd unit, as scripts/systemd/engarde-client@.service does, or setpriv --inh-caps=+net_admin --ambient-caps=+net_admin. No link opens without its mark", c.cfg.FwMark)
	}
}

// claimPort refuses a listen address whose port a socket holds already.
// The server's listen socket shares its port with the members' sockets
// (SO_REUSEPORT), and the kernel would let a second server's sockets
// share it too when it runs as the same user: new clients would then be
// split between the two servers (reuseport_select_sock in
// net/core/sock_reuseport.c picks a socket of the group per flow). A
// socket without SO_REUSEPORT cannot share a port with any socket bound
// to an overlapping address (udp_lib_lport_inuse in net/ipv4/udp.c; an
// IPv6 wildcard socket that also takes IPv4 overlaps both families), so
// one opened first, and closed at once, tells whether the port is free.
// Between its close and the real bind another process could take the
// port: the check narrows the race to a moment, it cannot close it.
//
// UDP has no TIME_WAIT, but a port is not free the moment the process that
// held it is gone: closing an io_uring releases its registered files from
// a kernel work queue (io_ring_exit_work in io_uring/io_uring.c), measured
// here up to 10 ms after the ring's close; a closed netpoller socket took
// up to 90 µs. A restart (systemd's, or a test's in one process) would
// find its own predecessor's port held. So a port in use is refused at
// once when /proc shows a process holding it, and otherwise tried again
// for up to claimWait: a socket no process holds is on its way out, or
// another user's, which SO_REUSEPORT would not have let us share anyway.
func claimPort(be conn.Backend, laddr netip.AddrPort, o conn.SocketOptions) error {
	if laddr.Port() == 0 {
		return nil // the kernel picks a free port
	}
	o.ReusePort, o.PacketInfo, o.GRO = false, false, false
	deadline := time.Now().Add(claimWait)
	for {
		probe, err := be.Listen(laddr, o)
		if err == nil {
			return probe.Close()
		}
		if !sys.IsAddrInUse(err) {
			return err
		}
		if hs := sys.PortHolders(laddr.Port()); len(hs) > 0 || time.Now().After(deadline) {
			return portInUse("engarde-server", laddr, err, hs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// claimWait is how long claimPort waits for a port that no process holds
// to be released: a hundred times what a closing process was measured to
// take.
const claimWait = time.Second

// portInUse explains a bind's EADDRINUSE on laddr: the port, the
// processes that hold it (hs, or where /proc shows them when nil), and
// what to do; other errors are returned as they are.
func portInUse(role string, laddr netip.AddrPort, err error, hs []sys.Holder) error {
	if !sys.IsAddrInUse(err) {
		return err
	}
	if hs == nil {
		hs = sys.PortHolders(laddr.Port())
	}
	by := ""
	if len(hs) > 0 {
		names := make([]string, len(hs))
		for i, h := range hs {
			names[i] = fmt.Sprintf("%s (PID %d)", h.Name, h.PID)
		}
		by = " by " + strings.Join(names, ", ")
	}
	return fmt.Errorf("port %d/udp on %v is in use%s: another %s, or another program, holds it (stop it, or give this one another listenAddr): %w", laddr.Port(), laddr.Addr(), by, role, err)
}
