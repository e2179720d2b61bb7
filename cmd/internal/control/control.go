// Package control is engarde's control plane over HTTP: the original
// engarde's JSON API (so existing tools keep working), a small web page
// that shows the links or client addresses and toggles exclusions, and
// Prometheus metrics.
//
// It never touches the data path: it reads counters (engine.Counters)
// through ClientRole or ServerRole, which cmd/internal/app implements on
// top of the engine, and computes rates from successive reads on its own
// clock. Of the engine it imports only public types; it imports neither the
// configuration nor a logging library, so tests drive it with fakes.
//
// Endpoints (every one behind Basic authentication when a username and a
// password are set):
//
//	GET  /                          the web page
//	GET  /api/v1/get-list           state, as ClientList or ServerList
//	POST /api/v1/swap-exclusion     {"interface": NAME}: toggle (client)
//	POST /api/v1/include            {"interface": NAME} (client)
//	POST /api/v1/exclude            {"interface": NAME} (client)
//	POST /api/v1/reset-exclusions   drop run-time toggles (client; GET too,
//	                                as the original page sent it)
//	GET  /metrics                   Prometheus text format
//
// Errors are JSON, {"error": "..."}, with a 4xx status.
package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure the control server. The zero ListenAddr turns it off.
type Options struct {
	// ListenAddr is the host:port to serve on; empty serves nothing.
	ListenAddr string
	// Username and Password turn on HTTP Basic authentication when both
	// are set.
	Username, Password string
	// Version is reported by the API, the page and the metrics.
	Version string
	// Log receives what the control plane has to say; nil discards it.
	Log *Logger
}

// Logger is how the control plane reports; any func may be nil.
type Logger struct {
	Infof, Warnf, Errorf func(format string, args ...any)
}

func (l *Logger) infof(f string, a ...any) {
	if l != nil && l.Infof != nil {
		l.Infof(f, a...)
	}
}

func (l *Logger) warnf(f string, a ...any) {
	if l != nil && l.Warnf != nil {
		l.Warnf(f, a...)
	}
}

func (l *Logger) errorf(f string, a ...any) {
	if l != nil && l.Errorf != nil {
		l.Errorf(f, a...)
	}
}

// Role is what the server shows: set exactly one of the fields.
type Role struct {
	Client ClientRole
	Server ServerRole
}

// Timeouts and limits of the HTTP server. Every answer is small and
// computed at once, so a request that takes longer is a slow or stuck
// peer.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = 2 * time.Second
)

// Server is the control plane's HTTP server.
type Server struct {
	role    Role
	version string
	log     *Logger
	rates   *sampler
	handler http.Handler
	auth    atomic.Pointer[credentials] // nil: no authentication

	mu      sync.Mutex // guards started, addr, srv, ln and stop
	started bool       // between Start and Close
	addr    string     // the configured listen address
	srv     *http.Server
	ln      net.Listener
	stop    chan struct{} // closed to stop the sampler; nil when it is not running
	stopped sync.WaitGroup
}

// credentials hold digests, so that comparing them takes the same time
// whatever the lengths of the strings compared.
type credentials struct {
	user, pass [sha256.Size]byte
}

//go:embed web
var webFiles embed.FS

// New returns a server for role; Start makes it listen.
func New(o Options, role Role) (*Server, error) {
	if (role.Client == nil) == (role.Server == nil) {
		return nil, errors.New("control: exactly one of Role.Client and Role.Server must be set")
	}
	s := &Server{role: role, version: o.Version, log: o.Log, rates: newSampler()}
	s.setAuth(o)
	s.handler = s.routes()
	s.addr = o.ListenAddr
	return s, nil
}

// Handler returns the server's HTTP handler, authentication included.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) setAuth(o Options) {
	switch {
	case o.Username != "" && o.Password != "":
		s.auth.Store(&credentials{user: sha256.Sum256([]byte(o.Username)), pass: sha256.Sum256([]byte(o.Password))})
	case o.Username != "" || o.Password != "":
		s.auth.Store(nil)
		if o.ListenAddr != "" {
			s.log.warnf("web manager: a username and a password are both needed for authentication; serving without it")
		}
	default:
		s.auth.Store(nil)
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	page, _ := fs.Sub(webFiles, "web")
	files := http.FileServerFS(page)
	for _, p := range []string{"/{$}", "/app.js", "/app.css"} {
		mux.Handle(p, methods(files, http.MethodGet, http.MethodHead))
	}
	list := methods(http.HandlerFunc(s.handleList), http.MethodGet, http.MethodHead)
	mux.Handle("/api/v1/get-list", list)
	mux.Handle("/metrics", methods(http.HandlerFunc(s.handleMetrics), http.MethodGet, http.MethodHead))
	if s.role.Client != nil {
		reset := methods(http.HandlerFunc(s.handleReset), http.MethodPost, http.MethodGet)
		mux.Handle("/api/v1/swap-exclusion", methods(s.handleExclusion(swap), http.MethodPost))
		mux.Handle("/api/v1/include", methods(s.handleExclusion(include), http.MethodPost))
		mux.Handle("/api/v1/exclude", methods(s.handleExclusion(exclude), http.MethodPost))
		mux.Handle("/api/v1/reset-exclusions", reset)
		// The first releases of the original served these paths.
		mux.Handle("/swap-exclusion", methods(s.handleExclusion(swap), http.MethodPost))
		mux.Handle("/reset-exclusions", reset)
	}
	mux.Handle("/get-list", list)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})

	// A page on another site must not make a logged-in browser act here:
	// cross-origin POSTs from browsers are refused (tools such as curl
	// send no Origin or Sec-Fetch-Site header and pass).
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return s.authenticate(headers(csrf.Handler(mux)))
}

// methods answers 405 with a JSON error to methods other than allowed.
func methods(h http.Handler, allowed ...string) http.Handler {
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range allowed {
			if r.Method == m {
				h.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allow)
	})
}

// headers sets the headers every answer carries.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'none'")
		h.ServeHTTP(w, r)
	})
}

// authenticate requires Basic credentials when they are configured.
func (s *Server) authenticate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := s.auth.Load(); c != nil {
			user, pass, ok := r.BasicAuth()
			u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
			// Both comparisons always run: the time taken says nothing
			// about which one failed.
			good := subtle.ConstantTimeCompare(u[:], c.user[:]) & subtle.ConstantTimeCompare(p[:], c.pass[:])
			if !ok || good != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="engarde", charset="UTF-8"`)
				writeError(w, http.StatusUnauthorized, "authentication required")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// Start listens on the configured address and serves in the background;
// with no address it does nothing until Reconfigure gives one. The rate
// sampler runs while the server serves.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	return s.listenLocked(s.addr)
}

// Addr returns the address the server listens on, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) sampleLoop(stop chan struct{}) {
	defer s.stopped.Done()
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	s.sample(time.Now())
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// listenLocked starts serving on addr, then stops serving on the previous
// address, if any. On error the previous server keeps running.
func (s *Server) listenLocked(addr string) error {
	if addr == "" {
		shutdown(s.srv, s.ln)
		s.srv, s.ln, s.addr = nil, nil, ""
		s.stopSamplerLocked()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && s.srv != nil && errors.Is(err, syscall.EADDRINUSE) {
		// The same port on another address (0.0.0.0:9001 to
		// 127.0.0.1:9001, say): free it, and come back if that fails.
		shutdown(s.srv, s.ln)
		s.srv, s.ln = nil, nil
		if ln, err = net.Listen("tcp", addr); err != nil {
			if back, err2 := net.Listen("tcp", s.addr); err2 == nil {
				s.serveLocked(back, s.addr)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("web manager: listening on %s: %w", addr, err)
	}
	old, oldLn := s.srv, s.ln
	s.serveLocked(ln, addr)
	shutdown(old, oldLn)
	s.log.infof("web manager listening on http://%s/", ln.Addr())
	s.warnExposedLocked()
	return nil
}

// serveLocked serves on ln, configured as addr, and starts the sampler if
// it is not running.
func (s *Server) serveLocked(ln net.Listener, addr string) {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(logWriter{s.log}, "web manager: ", 0),
	}
	s.srv, s.ln, s.addr = srv, ln, addr
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.errorf("web manager on %s stopped: %v", ln.Addr(), err)
		}
	}()
	if s.stop == nil {
		s.stop = make(chan struct{})
		s.stopped.Add(1)
		go s.sampleLoop(s.stop)
	}
}

// loopback reports whether a listening address accepts only this host.
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// logWriter passes net/http's own messages (accept errors, bad requests
// it answers itself) to the logger as warnings.
type logWriter struct{ l *Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.warnf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// shutdown stops srv, serving on ln, letting requests under way finish
// for a moment. It closes ln itself: srv learns of ln only once its Serve
// goroutine runs, and the port must be free when shutdown returns.
func shutdown(srv *http.Server, ln net.Listener) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if srv.Shutdown(ctx) != nil {
		srv.Close()
	}
	_ = ln.Close() // usually closed already by Shutdown
}

// Reconfigure applies new options at run time: the credentials at once,
// and a new listen address by listening there before closing the old one
// (on error the old one stays, and the error says why).
func (s *Server) Reconfigure(o Options) error {
	s.setAuth(o)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		// Not started: Start listens where the last options say.
		s.addr = o.ListenAddr
		return nil
	}
	if o.ListenAddr == s.addr && (s.srv != nil || o.ListenAddr == "") {
		if s.ln != nil {
			s.warnExposedLocked()
		}
		return nil
	}
	return s.listenLocked(o.ListenAddr)
}

// warnExposedLocked warns when the server takes requests from other hosts
// without a password.
func (s *Server) warnExposedLocked() {
	if s.auth.Load() == nil && !loopback(s.ln.Addr()) {
		s.log.warnf("web manager on %s is reachable from other hosts without a password: set webManager.username and webManager.password, or listen on 127.0.0.1", s.ln.Addr())
	}
}

// stopSamplerLocked stops the sampler and waits for it (it never takes
// s.mu).
func (s *Server) stopSamplerLocked() {
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
		s.stopped.Wait()
	}
}

// Close stops serving, letting requests under way finish for a moment.
func (s *Server) Close() error {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln, s.started = nil, nil, false
	s.stopSamplerLocked()
	s.mu.Unlock()
	shutdown(srv, ln)
	return nil
}
