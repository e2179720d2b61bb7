package engine

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"
)

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
