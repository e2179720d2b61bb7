package control

import (
	"errors"
	"log"
	"net"
	"net/http"
)

// The control socket (Server.ServeLocal) serves the web manager's routes,
// reads and actions alike, on a listener only this host reaches: a unix
// socket whose file permissions are its access control, as WireGuard's
// UAPI socket's are (wireguard-go ipc/uapi_linux.go). So it asks for no
// login and checks no Host header: whoever may open the socket may do
// what the daemon's user may, and a browser cannot open one (the Host
// check defends against DNS rebinding, a browser attack). Cross-origin
// POSTs stay refused, like everywhere else.

// maxLocalConns bounds the control socket's connections, beside the web
// manager's maxConns: a status command holds one for a moment.
const maxLocalConns = 16

// localSide is the control socket's state; guarded by Server.mu but for
// handler, which New sets.
type localSide struct {
	handler http.Handler // the routes without login or Host check
	srv     *http.Server
	ln      net.Listener
}

// LocalHandler returns what ServeLocal serves: every route of Handler,
// without its login and Host check.
func (s *Server) LocalHandler() http.Handler { return s.local.handler }

// ServeLocal serves LocalHandler on ln, a listener that only whoever the
// operator allows can reach (see above), in place of the listener it
// served before, which it closes; nil stops serving. The rate sampler runs
// while the control socket or the web manager serves. Close stops it too.
func (s *Server) ServeLocal(ln net.Listener) {
	s.mu.Lock()
	old, oldLn := s.local.srv, s.local.ln
	s.local.srv, s.local.ln = nil, nil
	if ln != nil {
		srv := &http.Server{
			Handler:           s.local.handler,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          log.New(logWriter{s.log, &s.httpLog}, "control socket: ", 0),
		}
		limited := newLimitListener(ln, maxLocalConns)
		s.local.srv, s.local.ln = srv, limited
		go func() {
			if err := srv.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.errorf("control socket %s stopped: %v", ln.Addr(), err)
			}
		}()
		s.startSamplerLocked()
	} else if s.srv == nil {
		s.stopSamplerLocked()
	}
	s.mu.Unlock()
	shutdown(old, oldLn)
}

// LocalAddr returns the address the control socket listens on, or nil.
func (s *Server) LocalAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local.ln == nil {
		return nil
	}
	return s.local.ln.Addr()
}

// startSamplerLocked starts the sampler if it is not running.
func (s *Server) startSamplerLocked() {
	if s.stop == nil {
		s.stop = make(chan struct{})
		s.stopped.Add(1)
		go s.sampleLoop(s.stop)
	}
}
