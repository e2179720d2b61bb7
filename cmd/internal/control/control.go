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
// Endpoints (every one but /healthz behind Basic authentication when a
// username and a password are set):
//
//	GET  /                          the web page
//	GET  /api/v1/get-list           state, as ClientList or ServerList
//	GET  /api/v1/history?since=MS   the last ten minutes, as History
//	POST /api/v1/swap-exclusion     {"interface": NAME}: toggle (client)
//	POST /api/v1/include            {"interface": NAME} (client)
//	POST /api/v1/exclude            {"interface": NAME} (client)
//	POST /api/v1/reset-exclusions   drop run-time toggles (client)
//	GET  /metrics                   Prometheus text format
//	GET  /healthz                   200 while the tunnel is up or degraded, 503 down (no login)
//
// Options.MetricsListenAddr adds a second listener that serves only
// /metrics and /healthz, without a login (see metrics_listen.go).
//
// State changes only by POST: a GET can be sent by any page the operator
// visits (an <img> tag) with the browser's stored credentials, so the
// original page's GET /api/v1/reset-exclusions is answered 405. Requests
// naming a host other than localhost, an IP address or one the operator
// allows are refused (421), which defeats DNS rebinding; browsers' POSTs
// from another origin are refused (403).
//
// Errors are JSON, {"error": "..."}, with a 4xx status (503 when the
// engine is stopping).
package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
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
	// MetricsListenAddr is a second host:port that serves only /metrics
	// and /healthz, without a login; empty serves none.
	MetricsListenAddr string
	// Username and Password turn on HTTP Basic authentication; set both
	// or neither.
	Username, Password string
	// AllowedHosts are the host names, besides localhost and IP
	// addresses, that a request's Host header may name.
	AllowedHosts []string
	// CertFile and KeyFile, both set or neither, serve HTTPS with that
	// certificate (PEM, leaf first) and key.
	CertFile, KeyFile string
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
	history *history // the last ten minutes, fed by the sampler
	handler http.Handler
	auth    atomic.Pointer[credentials] // nil: no authentication
	hosts   atomic.Pointer[hostPolicy]  // the Host headers answered
	mhosts  atomic.Pointer[hostPolicy]  // those the metrics listener answers
	metrics http.Handler                // GET /metrics
	mroutes http.Handler                // the metrics listener's handler
	cert    atomic.Pointer[tls.Certificate]
	refused hostRefusals
	httpLog rateLimit
	opts    Options // the last options accepted

	mu      sync.Mutex // guards what follows
	started bool       // between Start and Close
	addr    string     // the configured listen address
	allowed []string   // the configured AllowedHosts
	useTLS  bool       // configured for HTTPS (cert holds the certificate)
	srvTLS  bool       // srv serves HTTPS
	srv     *http.Server
	ln      net.Listener
	msrv    metricsSide   // the metrics listener
	stop    chan struct{} // closed to stop the sampler; nil when it is not running
	stopped sync.WaitGroup
	local   localSide // the control socket (local.go)
}

// credentials hold digests, so that comparing them takes the same time
// whatever the lengths of the strings compared.
type credentials struct {
	user, pass [sha256.Size]byte
}

//go:embed web
var webFiles embed.FS

// New returns a server for role; Start makes it listen (and reads the
// certificate, for HTTPS).
func New(o Options, role Role) (*Server, error) {
	if (role.Client == nil) == (role.Server == nil) {
		return nil, errors.New("control: exactly one of Role.Client and Role.Server must be set")
	}
	if err := checkOptions(o); err != nil {
		return nil, err
	}
	s := &Server{role: role, version: o.Version, log: o.Log, rates: newSampler(), history: newHistory()}
	s.setAuth(o)
	s.metrics = s.metricsHandler()
	s.handler = s.routes()
	s.mroutes = s.metricsRoutes()
	s.addr, s.allowed, s.useTLS = o.ListenAddr, o.AllowedHosts, o.CertFile != ""
	s.opts = o
	s.hosts.Store(newHostPolicy(o.ListenAddr, nil, o.AllowedHosts))
	s.mhosts.Store(newHostPolicy(o.MetricsListenAddr, nil, o.AllowedHosts))
	return s, nil
}

// checkOptions refuses options that would serve with less protection than
// they ask for: half a login would serve with none, half a TLS setup in
// clear.
func checkOptions(o Options) error {
	if (o.Username == "") != (o.Password == "") {
		return errors.New("web manager: a login needs both a username and a password; set both, or neither for none")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("web manager: HTTPS needs both a certificate file and a key file; set both, or neither for plain HTTP")
	}
	return nil
}

// loadCert reads the certificate and key of o, or returns nil when o
// serves plain HTTP.
func (s *Server) loadCert(o Options) (*tls.Certificate, error) {
	if o.CertFile == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("web manager: loading the certificate %s and its key %s: %w", o.CertFile, o.KeyFile, err)
	}
	if c.Leaf != nil && time.Now().After(c.Leaf.NotAfter) {
		s.log.warnf("web manager: the certificate %s expired on %s; browsers will refuse it", o.CertFile, c.Leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	return &c, nil
}

// Handler returns the server's HTTP handler, authentication included.
func (s *Server) Handler() http.Handler { return s.handler }

// setAuth takes the credentials of o, which checkOptions accepted.
func (s *Server) setAuth(o Options) {
	if o.Username != "" && o.Password != "" {
		s.auth.Store(&credentials{user: sha256.Sum256([]byte(o.Username)), pass: sha256.Sum256([]byte(o.Password))})
		return
	}
	s.auth.Store(nil)
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
	mux.Handle("/api/v1/history", methods(http.HandlerFunc(s.handleHistory), http.MethodGet, http.MethodHead))
	mux.Handle("/metrics", methods(s.metrics, http.MethodGet, http.MethodHead))
	mux.Handle("/healthz", methods(http.HandlerFunc(s.handleHealth), http.MethodGet, http.MethodHead))
	if s.role.Client != nil {
		// The original's page reset with GET; a GET must change nothing.
		reset := methods(http.HandlerFunc(s.handleReset), http.MethodPost)
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
	s.local.handler = headers(csrf.Handler(mux))
	return headers(s.checkHost(s.authenticate(csrf.Handler(mux))))
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
		// /healthz needs no login (see handleHealth); the mux serves it
		// on this exact path only.
		if c := s.auth.Load(); c != nil && r.URL.Path != "/healthz" {
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
// sampler runs while the server serves. A certificate that cannot be read
// is an error, and nothing is served until Reconfigure succeeds.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	if s.addr == "" && s.opts.MetricsListenAddr == "" {
		return nil
	}
	c, err := s.loadCert(s.opts)
	if err != nil {
		return err
	}
	s.cert.Store(c)
	if s.addr != "" {
		err = s.listenLocked(s.addr, s.useTLS)
	}
	return errors.Join(err, s.listenMetricsLocked(s.opts.MetricsListenAddr, s.useTLS))
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

// listenLocked starts serving on addr, over TLS with s.cert when useTLS,
// then stops serving on the previous address, if any. On error the
// previous server keeps running.
func (s *Server) listenLocked(addr string, useTLS bool) error {
	if addr == "" {
		shutdown(s.srv, s.ln)
		s.srv, s.ln, s.addr = nil, nil, ""
		if s.local.srv == nil { // else the control socket still shows rates
			s.stopSamplerLocked()
		}
		s.hosts.Store(newHostPolicy("", nil, s.allowed))
		return nil
	}
	ln, err := listenReplacing(addr, s.srv != nil, func() {
		shutdown(s.srv, s.ln)
		s.srv, s.ln = nil, nil
	}, func() {
		if back, err := net.Listen("tcp", s.addr); err == nil {
			s.serveLocked(back, s.addr, s.srvTLS)
		}
	})
	if err != nil {
		return fmt.Errorf("web manager: listening on %s: %w", addr, err)
	}
	old, oldLn := s.srv, s.ln
	s.serveLocked(ln, addr, useTLS)
	shutdown(old, oldLn)
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	s.log.infof("web manager listening on %s://%s/", scheme, ln.Addr())
	s.warnExposedLocked()
	return nil
}

// listenReplacing listens on addr. When that fails because the running
// listener (running) holds the port on another address (0.0.0.0:9001 to
// 127.0.0.1:9001, say), it stops that one and tries again, and if that
// fails too, restores the one it stopped.
func listenReplacing(addr string, running bool, stop, restore func()) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil || !running || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	stop()
	if ln, err = net.Listen("tcp", addr); err != nil {
		restore()
	}
	return ln, err
}

// serveLocked serves on ln, configured as addr, over TLS when useTLS, and
// starts the sampler if it is not running.
func (s *Server) serveLocked(ln net.Listener, addr string, useTLS bool) {
	s.hosts.Store(newHostPolicy(addr, ln.Addr(), s.allowed))
	ln = newLimitListener(ln, maxConns)
	if useTLS {
		ln = s.tlsListener(ln)
	}
	srv := s.httpServer(s.handler)
	s.srv, s.ln, s.addr, s.srvTLS = srv, ln, addr, useTLS
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

// tlsListener serves HTTPS on ln with s.cert.
func (s *Server) tlsListener(ln net.Listener) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		// Read at each handshake, so that a reload renews the
		// certificate without closing the listener.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
	})
}

// httpServer returns a server of h with the control plane's limits.
func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(logWriter{s.log, &s.httpLog}, "web manager: ", 0),
	}
}

// loopback reports whether a listening address accepts only this host.
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// logWriter passes net/http's own messages (accept errors, failed TLS
// handshakes, bad requests it answers itself) to the logger as warnings,
// at most logBurst in each logEvery: anyone who reaches the port can make
// net/http log.
type logWriter struct {
	l *Logger
	r *rateLimit
}

// The limit of net/http's messages logged.
const (
	logBurst = 10
	logEvery = time.Minute
)

// rateLimit lets through n events per window, and counts the rest.
type rateLimit struct {
	mu      sync.Mutex // guards what follows
	start   time.Time  // of the current window
	n       int        // events let through in it
	dropped int        // events not let through since the last one that was
}

// allow reports whether an event at now is let through, and how many were
// not since the last one that was.
func (r *rateLimit) allow(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.start) >= logEvery {
		r.start, r.n = now, 0
	}
	if r.n >= logBurst {
		r.dropped++
		return false, 0
	}
	r.n++
	d := r.dropped
	r.dropped = 0
	return true, d
}

func (w logWriter) Write(p []byte) (int, error) {
	ok, dropped := w.r.allow(time.Now())
	switch {
	case !ok:
	case dropped > 0:
		w.l.warnf("%s (and %d such messages not logged before it)", strings.TrimSuffix(string(p), "\n"), dropped)
	default:
		w.l.warnf("%s", strings.TrimSuffix(string(p), "\n"))
	}
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

// Reconfigure applies new options at run time: the credentials, the
// allowed hosts and a renewed certificate at once, and a new listen
// address or a change between HTTP and HTTPS by listening anew before
// closing the old listener. Options that checkOptions refuses, or a
// certificate that cannot be read, change nothing; a failure to listen
// keeps the old listener. The error says why.
func (s *Server) Reconfigure(o Options) error {
	if err := checkOptions(o); err != nil {
		return err
	}
	useTLS := o.CertFile != ""
	var cert *tls.Certificate
	if useTLS && (o.ListenAddr != "" || o.MetricsListenAddr != "") {
		c, err := s.loadCert(o)
		if err != nil {
			return err
		}
		cert = c
	}
	s.setAuth(o)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts, s.allowed, s.useTLS = o, o.AllowedHosts, useTLS
	if !s.started {
		// Not started: Start listens where the last options say.
		s.addr = o.ListenAddr
		s.hosts.Store(newHostPolicy(o.ListenAddr, nil, o.AllowedHosts))
		s.mhosts.Store(newHostPolicy(o.MetricsListenAddr, nil, o.AllowedHosts))
		return nil
	}
	if cert != nil {
		s.cert.Store(cert)
	}
	return errors.Join(s.reconfigureLocked(o, useTLS), s.listenMetricsLocked(o.MetricsListenAddr, useTLS))
}

// reconfigureLocked applies o to the main listener.
func (s *Server) reconfigureLocked(o Options, useTLS bool) error {
	if o.ListenAddr == s.addr && (o.ListenAddr == "" || s.srv != nil && s.srvTLS == useTLS) {
		var bound net.Addr
		if s.ln != nil {
			bound = s.ln.Addr()
			s.warnExposedLocked()
		}
		s.hosts.Store(newHostPolicy(s.addr, bound, s.allowed))
		return nil
	}
	err := s.listenLocked(o.ListenAddr, useTLS)
	if err != nil && s.ln != nil {
		// The old listener stays, with the new allowed hosts.
		s.hosts.Store(newHostPolicy(s.addr, s.ln.Addr(), s.allowed))
	}
	return err
}

// warnExposedLocked warns when the server takes requests from other hosts
// on plain HTTP, or without a password.
func (s *Server) warnExposedLocked() {
	if loopback(s.ln.Addr()) {
		return
	}
	if !s.srvTLS {
		s.log.warnf("web manager on %s serves plain HTTP beyond loopback: the login and everything the API says and does travel in clear; set webManager.certFile and webManager.keyFile, or listen on 127.0.0.1 (and reach it through an SSH tunnel)", s.ln.Addr())
	}
	if s.auth.Load() == nil {
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
	s.ServeLocal(nil)
	s.mu.Lock()
	srv, ln, m := s.srv, s.ln, s.msrv
	s.srv, s.ln, s.started = nil, nil, false
	s.msrv = metricsSide{}
	s.stopSamplerLocked()
	s.mu.Unlock()
	shutdown(srv, ln)
	shutdown(m.srv, m.ln)
	return nil
}
