package control

import (
	"net/http"

	"github.com/engarde-project/engarde/engine"
)

// handleHealth serves GET /healthz: 200 while the tunnel is up or
// degraded (it carries traffic), 503 while it is down, with the state and
// its reason as plain text, for a load balancer, a container health check
// or a monitoring probe. It needs no credentials on either listener: it
// changes nothing, says no more than the one state word and its reason,
// and the health checkers that call it can rarely send a login.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	t := s.tunnel()
	code := http.StatusOK
	if t.State == engine.TunnelDown {
		code = http.StatusServiceUnavailable
	}
	body := string(t.State)
	if t.Reason != "" {
		body += ": " + t.Reason
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write([]byte(body + "\n"))
	}
}

// tunnel returns the role's tunnel state now.
func (s *Server) tunnel() engine.TunnelInfo {
	if c := s.role.Client; c != nil {
		return c.ClientStatus().Tunnel
	}
	return s.role.Server.ServerStatus().Tunnel
}
