package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Iface describes a network interface as the client sees it.
type Iface struct {
	Name     string
	Index    int
	Up       bool // administratively up
	Running  bool // operationally up (carrier)
	Loopback bool
	Addrs    []netip.Addr
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
	if carrier, err := sysCarrier(); err == nil {
		// The carrier bit is current; IFF_RUNNING can lag it by a second.
		for i := range out {
			if up, ok := carrier[out[i].Index]; ok {
				out[i].Running = up
			}
		}
	}
	return out, nil
}

// Plan is the client's decision for one interface.
type Plan struct {
	Iface Iface
	// Use says whether a link runs on this interface; Reason says why not.
	Use    bool
	Reason string
	// Local and Dst are the link's addresses when Use is set.
	Local netip.Addr
	Dst   netip.AddrPort
	// Label is the interface's label from the configuration, if any.
	Label string
}

// planner decides which interfaces carry a link.
type planner struct {
	dst       string
	overrides map[string]string
	excluded  map[string]bool
	labels    map[string]string
	resolve   func(string) ([]netip.AddrPort, error)
}

// target returns the destination configured for an interface.
func (p *planner) target(name string) string {
	if o, ok := p.overrides[name]; ok {
		return o
	}
	return p.dst
}

func (p *planner) plan(ifs []Iface) []Plan {
	out := make([]Plan, 0, len(ifs))
	for _, ifi := range ifs {
		out = append(out, p.planOne(ifi))
	}
	return out
}

func (p *planner) planOne(ifi Iface) Plan {
	pl := Plan{Iface: ifi, Label: p.labels[ifi.Name]}
	switch {
	case p.excluded[ifi.Name]:
		pl.Reason = "excluded"
		return pl
	case ifi.Loopback:
		pl.Reason = "loopback"
		return pl
	case !ifi.Up:
		pl.Reason = "down"
		return pl
	case !ifi.Running:
		pl.Reason = "no carrier"
		return pl
	}
	dst := p.target(ifi.Name)
	dsts, err := p.resolve(dst)
	if err != nil {
		pl.Reason = "destination " + dst + " unresolved: " + err.Error()
		return pl
	}
	for _, d := range dsts {
		for _, a := range ifi.Addrs {
			if usableSource(a, d.Addr()) {
				pl.Use, pl.Local, pl.Dst = true, a, d
				return pl
			}
		}
	}
	fam := "IPv4"
	if len(dsts) > 0 && dsts[0].Addr().Is6() {
		fam = "IPv6"
	}
	pl.Reason = "no usable " + fam + " address"
	return pl
}

// usableSource reports whether a can source packets to dst: same family,
// unicast, not link-local, and not loopback unless dst is.
func usableSource(a, dst netip.Addr) bool {
	if a.Is4() != dst.Is4() {
		return false
	}
	if a.IsLoopback() {
		return dst.IsLoopback()
	}
	return a.IsGlobalUnicast()
}

// resolver resolves destination addresses, caching names for a while so a
// rescan every second does not query DNS every second.
type resolver struct {
	cache map[string]resolved
}

type resolved struct {
	addrs []netip.AddrPort
	err   error
	at    time.Time
}

const resolveTTL = 60 * time.Second

func (r *resolver) resolve(s string) ([]netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
	}
	if e, ok := r.cache[s]; ok && time.Since(e.at) < resolveTTL {
		return e.addrs, e.err
	}
	addrs, err := resolveName(s)
	if r.cache == nil {
		r.cache = map[string]resolved{}
	}
	if err != nil {
		if e, ok := r.cache[s]; ok && e.err == nil {
			// Keep using the last good answer while DNS is unreachable
			// (it may be unreachable because a link just went down).
			return e.addrs, nil
		}
	}
	r.cache[s] = resolved{addrs, err, time.Now()}
	return addrs, err
}

func resolveName(s string) ([]netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	pn, err := net.LookupPort("udp", port)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	// IPv4 first: the original was IPv4-only, and its users' paths are.
	slices.SortStableFunc(ips, func(a, b netip.Addr) int {
		return boolCmp(b.Unmap().Is4(), a.Unmap().Is4())
	})
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip.Unmap(), uint16(pn))
	}
	return out, nil
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// FormatAddrs joins addresses for display.
func FormatAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
