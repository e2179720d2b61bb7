package control

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// hostPolicy says which Host headers the server answers. A browser names
// in Host the host of the page's address, and treats two pages with the
// same scheme, host and port as one origin whatever addresses the name
// resolves to; a page on a DNS name the attacker controls, rebound to
// 127.0.0.1 once loaded, is therefore same-origin with itself and passes
// the cross-origin check, but it names the attacker's host. So only names
// that cannot be rebound by someone else are answered: localhost (RFC
// 6761 section 6.3), IP addresses, and the names the operator lists.
type hostPolicy struct {
	ip    netip.Addr      // the listening address; unspecified: every address
	names map[string]bool // lower case, without a trailing dot
}

// newHostPolicy returns the policy for a server configured to listen on
// listenAddr and bound to bound (nil when it is not listening), which
// also answers the names in allowed.
func newHostPolicy(listenAddr string, bound net.Addr, allowed []string) *hostPolicy {
	p := &hostPolicy{names: map[string]bool{}}
	for _, n := range allowed {
		p.names[canonicalName(n)] = true
	}
	host, _, _ := net.SplitHostPort(listenAddr)
	switch ip, err := netip.ParseAddr(host); {
	case host == "":
		if listenAddr != "" {
			p.ip = netip.IPv6Unspecified()
		}
	case err == nil:
		p.ip = ip.Unmap().WithZone("")
	default:
		// Configured by name: the operator reaches it by that name.
		p.names[canonicalName(host)] = true
	}
	if ta, ok := bound.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			p.ip = ip.Unmap()
		}
	}
	return p
}

func canonicalName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

// allows reports whether a request naming hostport (a Host header) is
// answered.
func (p *hostPolicy) allows(hostport string) bool {
	if hostport == "" {
		// Only HTTP/1.0 tools send no Host; every browser sends one.
		return true
	}
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	} else if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		// An address cannot be rebound: a browser that names one
		// connected to it. The port is not checked, so that an SSH
		// forward (localhost:8080 to 127.0.0.1:9001) keeps working.
		ip = ip.Unmap().WithZone("")
		return ip.IsLoopback() || p.ip.IsUnspecified() || ip == p.ip
	}
	n := canonicalName(h)
	return n == "localhost" || p.names[n]
}

// hostRefusals counts requests refused for their Host header and limits
// how often they are logged: a rebinding page may send many.
type hostRefusals struct {
	n      atomic.Uint64
	logged atomic.Int64 // unix nanoseconds of the last log line
}

// logHostEvery is the least time between two log lines about refused
// Host headers.
const logHostEvery = time.Minute

// checkHost answers 421 Misdirected Request (RFC 9110 section 15.5.20: this
// server does not serve that authority) to requests whose Host header the
// current policy refuses, before anything else looks at them, so a
// rebinding page gets neither data nor a login prompt.
func (s *Server) checkHost(h http.Handler) http.Handler { return s.checkHostBy(&s.hosts, h) }

// checkHostBy is checkHost with the policy in hosts.
func (s *Server) checkHostBy(hosts *atomic.Pointer[hostPolicy], h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := hosts.Load(); p != nil && !p.allows(r.Host) {
			n := s.refused.n.Add(1)
			now, last := time.Now().UnixNano(), s.refused.logged.Load()
			if now-last >= int64(logHostEvery) && s.refused.logged.CompareAndSwap(last, now) {
				s.log.warnf("web manager: refused a request for host %s from %s (%d so far): not localhost, an IP address or a name in webManager.allowedHosts", clip(r.Host), r.RemoteAddr, n)
			}
			writeError(w, http.StatusMisdirectedRequest, "host "+clip(r.Host)+" is not served here: use localhost or an IP address, or list the name in webManager.allowedHosts")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// clip quotes an untrusted string for a message, shortened.
func clip(s string) string {
	const most = 64
	if len(s) > most {
		return strconv.Quote(s[:most]) + "..."
	}
	return strconv.Quote(s)
}
