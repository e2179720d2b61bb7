package conn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// Default socket buffer sizes. Large buffers absorb bursts at multi-gigabit
// rates; without CAP_NET_ADMIN the kernel clamps them to net.core.rmem_max
// and wmem_max.
const (
	defaultRecvBuffer = 4 << 20
	defaultSendBuffer = 4 << 20
)

// openUDP opens a UDP socket with the options applied before bind: bound
// to laddr, and connected to raddr when raddr is valid.
func openUDP(laddr, raddr netip.AddrPort, o SocketOptions) (*net.UDPConn, error) {
	network := udpNetwork(laddr, raddr)
	var ctlErr error
	control := func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			ctlErr = applyOptions(fd, network == "udp6" || network == "udp", o)
		})
		if err != nil {
			return err
		}
		return ctlErr
	}
	if !raddr.IsValid() {
		lc := net.ListenConfig{Control: control}
		pc, err := lc.ListenPacket(context.Background(), network, laddr.String())
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	}
	d := net.Dialer{Control: control}
	if laddr.IsValid() {
		d.LocalAddr = net.UDPAddrFromAddrPort(laddr)
	}
	c, err := d.Dial(network, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// udpNetwork picks the address family: that of the destination when there
// is one, else that of the local address; "udp" (dual-stack) for an
// unspecified IPv6 listen address.
func udpNetwork(laddr, raddr netip.AddrPort) string {
	a := laddr.Addr()
	if raddr.IsValid() {
		a = raddr.Addr()
	}
	switch {
	case a.Is4() || a.Is4In6():
		return "udp4"
	case a.IsUnspecified() || !a.IsValid():
		return "udp"
	}
	return "udp6"
}

func applyOptions(fd uintptr, v6 bool, o SocketOptions) error {
	if o.ReusePort {
		if err := sys.SetReusePort(fd); err != nil {
			return err
		}
	}
	if o.Device != "" {
		if err := sys.BindToDevice(fd, o.Device); err != nil {
			return fmt.Errorf("binding to device %q: %w", o.Device, err)
		}
	}
	if o.Mark != 0 {
		if err := sys.SetMark(fd, o.Mark); err != nil {
			return fmt.Errorf("setting fwmark %#x: %w", o.Mark, err)
		}
	}
	if o.PacketInfo {
		if err := sys.EnablePacketInfo(fd, v6); err != nil {
			return err
		}
	}
	if o.GRO {
		// Without GRO every datagram is received on its own: slower,
		// never wrong.
		_ = sys.EnableGRO(fd)
	}
	sys.SetBuffers(fd, orDefault(o.RecvBuffer, defaultRecvBuffer), orDefault(o.SendBuffer, defaultSendBuffer))
	return nil
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

// ResolveListen parses a listen address, host:port: an empty host means
// every address (the unspecified IPv6 address, which a dual-stack socket
// listens on for IPv4 too), a name is looked up, and an IPv4-mapped address
// becomes IPv4.
func ResolveListen(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := ua.AddrPort()
	if !ap.Addr().IsValid() {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port()), nil
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
