package engine

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// Iface describes a network interface as the client sees it.
type Iface struct {
	Name     string
	Index    int
	Up       bool // administratively up
	Running  bool // operationally up (carrier)
	Loopback bool
	// Kind is the driver's link kind where the system reports one
	// (Linux: netlink's IFLA_INFO_KIND, such as "wireguard", "tun",
	// "veth"); empty otherwise. The planner skips tunnel kinds.
	Kind  string
	Addrs []netip.Addr
}

// SystemInterfaces lists the host's interfaces.
func SystemInterfaces() ([]Iface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := make([]Iface, 0, len(ifs))
	for _, ifi := range ifs {
		x := Iface{
			Name:     ifi.Name,
			Index:    ifi.Index,
			Up:       ifi.Flags&net.FlagUp != 0,
			Running:  ifi.Flags&net.FlagRunning != 0,
			Loopback: ifi.Flags&net.FlagLoopback != 0,
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			// Vanished between the two calls: the next scan sees it gone.
			continue
		}
		for _, a := range addrs {
			if p, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(p.IP); ok {
					x.Addrs = append(x.Addrs, ip.Unmap())
				}
			}
		}
		out = append(out, x)
	}
	if links, err := sys.Links(); err == nil {
		for i := range out {
			if l, ok := links[out[i].Index]; ok {
				// The carrier bit is current; IFF_RUNNING can lag it
				// by a second.
				out[i].Running = l.Carrier
				out[i].Kind = l.Kind
			}
		}
	}
	return out, nil
}
