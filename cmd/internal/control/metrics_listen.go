package control

import (
	"errors"
	"fmt"
	"net"
	"net/http"
)

// The metrics listener (Options.MetricsListenAddr) serves /metrics and
// /healthz and nothing else, without credentials, so that Prometheus can
// scrape it without the login that changes exclusions: its address can be
// one that only the monitoring network reaches. It takes the web manager's
// certificate when that serves HTTPS, and the same Host header policy
// (localhost, IP addresses, webManager.allowedHosts): without a login, a
// page rebound to it by DNS must still read nothing.

// maxMetricsConns bounds the metrics listener's connections, beside the
// web manager's maxConns: a Prometheus server keeps one open.
const maxMetricsConns = 16

// metricsSide is the metrics listener's state; guarded by Server.mu.
type metricsSide struct {
	addr string // the configured address; empty: none
	srv  *http.Server
	ln   net.Listener
	tls  bool // srv serves HTTPS
}

// metricsRoutes is the metrics listener's handler.
func (s *Server) metricsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", methods(s.metrics, http.MethodGet, http.MethodHead))
	mux.Handle("/healthz", methods(http.HandlerFunc(s.handleHealth), http.MethodGet, http.MethodHead))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path+" (this address serves only /metrics and /healthz)")
	})
	return headers(s.checkHostBy(&s.mhosts, mux))
}

// listenMetricsLocked makes the metrics listener serve on addr (none for
// ""), over TLS with s.cert when useTLS, replacing the one before; on
// error the one before keeps serving.
func (s *Server) listenMetricsLocked(addr string, useTLS bool) error {
	m := &s.msrv
	if addr == m.addr && (addr == "" || m.srv != nil && m.tls == useTLS) {
		s.mhosts.Store(newHostPolicy(addr, boundAddr(m.ln), s.allowed))
		return nil
	}
	if addr == "" {
		shutdown(m.srv, m.ln)
		*m = metricsSide{}
		s.mhosts.Store(newHostPolicy("", nil, s.allowed))
		return nil
	}
	ln, err := listenReplacing(addr, m.srv != nil, func() {
		shutdown(m.srv, m.ln)
		m.srv, m.ln = nil, nil
	}, func() {
		if back, err := net.Listen("tcp", m.addr); err == nil {
			s.serveMetricsLocked(back, m.addr, m.tls)
		}
	})
	if err != nil {
		return fmt.Errorf("web manager: metrics: listening on %s: %w", addr, err)
	}
	old, oldLn := m.srv, m.ln
	s.serveMetricsLocked(ln, addr, useTLS)
	shutdown(old, oldLn)
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	s.log.infof("metrics listening on %s://%s/metrics (and /healthz), without a login", scheme, ln.Addr())
	return nil
}

// serveMetricsLocked serves the metrics listener on ln, configured as
// addr.
func (s *Server) serveMetricsLocked(ln net.Listener, addr string, useTLS bool) {
	s.mhosts.Store(newHostPolicy(addr, ln.Addr(), s.allowed))
	ln = newLimitListener(ln, maxMetricsConns)
	if useTLS {
		ln = s.tlsListener(ln)
	}
	srv := s.httpServer(s.mroutes)
	s.msrv = metricsSide{addr: addr, srv: srv, ln: ln, tls: useTLS}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.errorf("metrics listener on %s stopped: %v", ln.Addr(), err)
		}
	}()
}

// MetricsAddr returns the address the metrics listener listens on, or
// nil.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return boundAddr(s.msrv.ln)
}

// boundAddr is ln's address, nil for no listener.
func boundAddr(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}
