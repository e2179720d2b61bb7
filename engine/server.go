package engine

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// ServerConfig configures the server role.
type ServerConfig struct {
	Options
	// ListenAddr is where clients send (host:port; an empty host means
	// every address).
	ListenAddr string
	// DstAddr is WireGuard (host:port).
	DstAddr string
	// ClientTimeout is how long a client address stays after its last
	// datagram (30 s when 0).
	ClientTimeout time.Duration
	// ForwardAnyUDP forwards datagrams that are not WireGuard's, as the
	// original engarde did: their sources join one session that gets
	// every reply WireGuard does not send to a session of its own. It
	// makes the server a reflector.
	ForwardAnyUDP bool
	// StateFile, when set, keeps the sessions across a restart (see
	// state.go): read when Run starts, written as they change and when
	// it ends.
	StateFile string
}

// Server is the server role: it forwards what the members of a WireGuard
// session send to WireGuard, through the session's own socket, and what
// WireGuard sends on that socket to the session's live members (see
// session for how addresses become members). Nothing from an address in
// no session is answered, except by WireGuard's own handshake response to
// its own initiation.
//
// Each member gets its own socket, bound to the listen port (SO_REUSEPORT)
// on the address the client sent to, and connected to the client. Replies
// to it leave from the address and port the client sent to, so they pass
// the client's NAT; and each address has its own send buffer, so packets
// the kernel holds for an unreachable address cannot fill a buffer the
// live addresses need. Being connected, the socket also receives that
// address's traffic; the listen socket sees only addresses in no session.
// Idle sockets hold no packet buffers (conn.ReadWaiter).
type Server struct {
	role
	cfg ServerConfig

	listen conn.Conn
	laddr  netip.AddrPort
	// hs is the handshake socket to WireGuard: it carries the initiations
	// of addresses in no session, and WireGuard's answers to them.
	hs      conn.Conn
	hsTx    *sender
	hsOut   *fanout // used on the handshake socket's receive loop only
	dst     netip.AddrPort
	members atomic.Pointer[map[netip.AddrPort]*member] // published whole: the listen loop reads it without a lock
	timeout atomic.Int64                               // client timeout, ns; reloadable

	// ListenStats counts the listen socket (datagrams from addresses in
	// no session, or before their own socket took over); UpstreamStats
	// the handshake socket to WireGuard.
	ListenStats, UpstreamStats Stats
	// NoPeer counts messages from WireGuard dropped because their session
	// had no live address.
	NoPeer atomic.Uint64
	// NotWireGuard counts datagrams not shaped like WireGuard's, dropped
	// (unless forwardAnyUDP).
	NotWireGuard atomic.Uint64
	// NotMember counts WireGuard-shaped datagrams other than initiations
	// from addresses in no session, dropped.
	NotMember atomic.Uint64
	// Foreign counts transport messages from members with an index not of
	// their session, dropped.
	Foreign atomic.Uint64
	// Initiations counts handshake initiations passed to WireGuard;
	// InitCopies their copies from other links, not passed again; Joins
	// the addresses that joined a session with a copy of its initiation
	// that came after WireGuard's answer (a slower link's, or one re-sent
	// by a link that appeared or went quiet).
	Initiations, InitCopies, Joins atomic.Uint64
	// PendingEvicted counts unanswered initiations forgotten to make room;
	// JoinsRefused re-sent initiations that found their session full of
	// addresses carrying traffic.
	PendingEvicted, JoinsRefused atomic.Uint64
	// Unrouted counts WireGuard's messages on the handshake socket that
	// answer no initiation seen.
	Unrouted atomic.Uint64
	ServerProbeCounters

	mu        sync.Mutex // guards what follows, and opening and closing sockets
	sessions  []*session
	inits     map[uint32][]*initGroup       // by the initiator's sender index
	pendingBy map[netip.Prefix][]*initGroup // unanswered initiations of no session, oldest first
	pendingN  int
	byClient  map[uint32]*session // the clients' indexes, for WireGuard's messages on hs
	legacy    *session            // forwardAnyUDP's
	nextID    uint64
	closing   []func() // closes to run once mu is released
	stopping  bool     // Run is ending: no new sessions
	failLog   rateLimit
	fullLog   rateLimit
	wgLog     rateLimit
	stateLog  rateLimit
	dirty     atomic.Bool         // the sessions changed since the state file was written
	notWGMu   sync.Mutex          // guards notWGLog
	notWGLog  map[netip.Addr]bool // sources logged once for non-WireGuard datagrams
	hl        serverHealth        // guarded by mu (health.go)
}

// serverKeepers is how many of a server's receive loops may keep buffers
// while they wait (pump.keep): a session's socket to WireGuard and the
// addresses of a client with a few links.
const serverKeepers = 4

// NewServer checks the configuration and opens the listen and WireGuard
// sockets.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.ClientTimeout <= 0 {
		cfg.ClientTimeout = defaults.ClientTimeout
	}
	laddr, err := conn.ResolveListen(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen address: %w", err)
	}
	var r resolver
	dsts, err := r.resolve(cfg.DstAddr)
	if err != nil || len(dsts) == 0 {
		return nil, fmt.Errorf("destination address %s: %w", cfg.DstAddr, err)
	}
	s := &Server{
		cfg:       cfg,
		dst:       dsts[0],
		inits:     map[uint32][]*initGroup{},
		pendingBy: map[netip.Prefix][]*initGroup{},
		byClient:  map[uint32]*session{},
		notWGLog:  map[netip.Addr]bool{},
	}
	if err := s.role.init(&s.cfg.Options, 4); err != nil {
		return nil, err
	}
	// A few sockets keep a batch of buffers while they wait (the first to
	// go idle: with a client or two, every one of them): the thousands of
	// idle client addresses a busy server has must not hold what the live
	// ones need.
	s.keepBufs, s.keepBudget = s.opts.BatchSize, new(atomic.Int64)
	s.keepBudget.Store(int64(serverKeepers * s.keepBufs))
	s.hsOut = newFanout(s.opts.Backend)
	s.timeout.Store(int64(cfg.ClientTimeout))
	s.members.Store(&map[netip.AddrPort]*member{})
	o := s.opts.socket()
	lo := o
	lo.ReusePort = true
	lo.PacketInfo = true
	err = claimPort(s.opts.Backend, laddr, o) // a second server on the port would take half the new clients
	if err == nil {
		s.listen, err = s.opts.Backend.Listen(laddr, lo)
	}
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.ListenAddr, err)
	}
	s.laddr = s.listen.LocalAddr()
	if s.hs, err = s.opts.Backend.Dial(netip.AddrPort{}, s.dst, o); err != nil {
		s.listen.Close()
		s.pool.Close()
		return nil, fmt.Errorf("opening socket to %s: %w", s.dst, err)
	}
	if cfg.StateFile != "" {
		if err := checkStateDir(cfg.StateFile); err != nil {
			s.log.warnf("the sessions cannot be kept for a restart (stateFile): %v", err)
		}
	}
	if cfg.ForwardAnyUDP {
		s.log.warnf("forwardAnyUDP is on: datagrams that are not WireGuard's are forwarded, and their source addresses get every reply of the tunnel; anyone can make this server send its traffic to a forged address")
	}
	return s, nil
}

// Reconfigure applies a new configuration without restarting: the client
// timeout and the write timeout. Other changes (listen or destination
// address, engine options) need a restart: Reconfigure keeps the running
// values and returns an error naming them, after applying the rest.
func (s *Server) Reconfigure(cfg ServerConfig) error {
	var fixed fixedSettings
	fixed.check("listenAddr", cfg.ListenAddr != s.cfg.ListenAddr)
	fixed.check("dstAddr", cfg.DstAddr != s.cfg.DstAddr)
	fixed.check("forwardAnyUDP", cfg.ForwardAnyUDP != s.cfg.ForwardAnyUDP)
	fixed.check("stateFile", cfg.StateFile != s.cfg.StateFile)
	fixed.engine(cfg.Options, s.cfg.Options)
	if cfg.ClientTimeout <= 0 {
		cfg.ClientTimeout = defaults.ClientTimeout
	}
	s.timeout.Store(int64(cfg.ClientTimeout))
	s.setWriteTimeout(cfg.Options)
	return fixed.err()
}

// ClientTimeout returns the current client timeout.
func (s *Server) ClientTimeout() time.Duration { return time.Duration(s.timeout.Load()) }

// ListenAddr returns the address clients send to.
func (s *Server) ListenAddr() netip.AddrPort { return s.laddr }

// Run forwards until ctx ends, then closes everything it opened.
func (s *Server) Run(ctx context.Context) error {
	s.hsTx = s.newSender(senderConfig{name: "wireguard (handshakes)", conn: s.hs, own: true, stats: &s.UpstreamStats})
	s.loadState() // before the listen socket is read: a member's first datagram finds its session
	listenRx := s.newPump("listen", s.listen, &s.ListenStats, s.fromListen).start()
	hsRx := s.newPump("wireguard (handshakes)", s.hs, &s.UpstreamStats, s.fromHandshakeSocket).start()

	tick := time.NewTicker(min(time.Second, s.cfg.ClientTimeout/4)) // a reload to a shorter timeout is seen within a second
	defer tick.Stop()
	healthCtx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() { defer close(healthDone); s.healthLoop(healthCtx) }()
	saved := nanotime()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			now := nanotime()
			s.mu.Lock()
			s.expireLocked(now)
			some := len(s.sessions) > 0
			s.mu.Unlock()
			s.closeLater()
			if s.dirty.Swap(false) || some && now-saved >= int64(stateRefresh) {
				s.saveState()
				saved = now
			}
		}
	}

	stopHealth()
	<-healthDone
	listenRx.stop()
	s.saveState() // before the sessions close: what the next process resumes
	// Closed members stay in their sessions' lists for their counters to
	// be read once Run has returned; the sessions stay too.
	s.mu.Lock()
	s.stopping = true // no new session from here on
	var stops []func()
	for _, sess := range s.sessions {
		sess.closed = true
		for _, m := range sess.members {
			m.live.Store(false)
			stops = append(stops, m.close)
		}
		stops = append(stops, func() { sess.upRx.stop(); sess.upTx.close() })
	}
	stops = append(stops, s.closing...)
	s.closing = nil
	s.mu.Unlock()
	for _, f := range stops {
		f()
	}
	hsRx.stop()
	s.closeLater() // what the last datagrams evicted
	s.hsTx.close()
	return s.pool.Close()
}

// fromListen handles datagrams on the listen socket: from addresses in no
// session, or from members before their own socket took over.
func (s *Server) fromListen(bufs []*ring.Packet, msgs []conn.Message) {
	now := nanotime()
	k := 0 // bufs[:k] go to WireGuard through the handshake socket
	for i := range msgs {
		m := &msgs[i]
		if probeShaped(m.Buf[:m.N], m.Seg) && s.probe((*s.members.Load())[m.Addr], bufs[i:i+1], msgs[i:i+1], now) {
			continue
		}
		// Looked up for each datagram: one earlier in the batch may have
		// made its address a member.
		if mb := (*s.members.Load())[m.Addr]; mb != nil {
			if s.judge(mb, bufs[i], m, now) {
				sendKept(mb.sess().upTx, bufs[i:i+1], msgs[i:i+1])
			}
			continue
		}
		b := m.Buf[:m.N]
		switch wgType(b, m.Seg) {
		case wgInitiationType:
			if m.Seg > 0 && m.Seg < m.N {
				s.NotMember.Add(uint64(m.Count()))
				continue // a train of initiations is no client's
			}
			s.mu.Lock()
			fwd := s.initiationLocked(m.Addr, m.Local, b, nil, now)
			s.mu.Unlock()
			if !fwd {
				continue
			}
		case 0:
			if !s.cfg.ForwardAnyUDP {
				s.notWireGuard(m.Addr, m.Count())
				continue
			}
			mb := s.legacyMember(m.Addr, m.Local, now)
			if mb != nil && s.judge(mb, bufs[i], m, now) {
				sendKept(mb.sess().upTx, bufs[i:i+1], msgs[i:i+1])
			}
			continue
		default:
			s.NotMember.Add(uint64(m.Count()))
			continue
		}
		keep(bufs, msgs, i, k)
		k++
	}
	sendKept(s.hsTx, bufs[:k], msgs[:k])
}

// notWireGuard counts datagrams from src that are not WireGuard's, and
// logs the source the first time (up to a bound of sources).
func (s *Server) notWireGuard(src netip.AddrPort, n int) {
	s.NotWireGuard.Add(uint64(n))
	s.notWGMu.Lock() // not mu: a flood of garbage must not contend with the sessions' work
	defer s.notWGMu.Unlock()
	a := src.Addr()
	if s.notWGLog[a] {
		return
	}
	if len(s.notWGLog) >= 1024 {
		if s.wgLog.allow() {
			s.log.warnf("datagrams that are not WireGuard's keep coming from many sources (%d so far); dropped, never answered", s.NotWireGuard.Load())
		}
		return
	}
	s.notWGLog[a] = true
	s.log.warnf("datagram from %v is not WireGuard's: dropped, not answered (logged once per source; forwardAnyUDP forwards such datagrams)", src)
}

// legacyMember returns addr's member entry in forwardAnyUDP's session.
func (s *Server) legacyMember(addr netip.AddrPort, local netip.Addr, now int64) *member {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.legacy == nil || s.legacy.closed {
		sess, err := s.newSessionLocked(true)
		if err != nil {
			if s.failLog.allow() {
				s.log.warnf("forwardAnyUDP: %v", err)
			}
			return nil
		}
		s.legacy = sess
		s.log.infof("session %d: forwardAnyUDP's, for sources that are not WireGuard's; its endpoint is %v", sess.id, sess.up.LocalAddr())
	}
	return s.addMemberLocked(s.legacy, addr, local, now, false)
}

// fromMember handles datagrams on a member's own socket, through its
// session's merge: the members' batches reach WireGuard in one order.
func (s *Server) fromMember(m *member) func([]*ring.Packet, []conn.Message) {
	m.in.handle = func(bufs []*ring.Packet, msgs []conn.Message) {
		now := nanotime()
		k := 0
		for i := range msgs {
			if msgs[i].Addr != m.addr {
				// Queued on the socket between its bind and its connect,
				// when it was one more listener on the port: someone
				// else's, to be judged as the listen socket would.
				s.fromListen(bufs[i:i+1], msgs[i:i+1])
				continue
			}
			if probeShaped(msgs[i].Buf[:msgs[i].N], msgs[i].Seg) && s.probe(m, bufs[i:i+1], msgs[i:i+1], now) {
				continue
			}
			if !s.judge(m, bufs[i], &msgs[i], now) {
				continue
			}
			keep(bufs, msgs, i, k)
			k++
		}
		sendKept(m.sess().upTx, bufs[:k], msgs[:k])
	}
	return func(bufs []*ring.Packet, msgs []conn.Message) {
		if !m.live.Load() || needsLock(m, msgs) {
			// Outside the merge: the server's lock must not hold up the
			// session's other addresses. A handshake or an address
			// coming back is no stream whose order matters.
			m.in.handle(bufs, msgs)
			return
		}
		m.sess().merge.run(&m.in, bufs, msgs)
	}
}

// needsLock reports whether handling msgs, from member m's socket, takes
// the server's lock: an initiation, or a datagram of another address
// queued before the socket was connected.
func needsLock(m *member, msgs []conn.Message) bool {
	for i := range msgs {
		if msgs[i].Addr != m.addr || wgType(msgs[i].Buf[:msgs[i].N], msgs[i].Seg) == wgInitiationType {
			return true
		}
	}
	return false
}

// judge decides whether a member's datagram goes to WireGuard: it belongs
// to the member's session and is no copy of one passed already. A datagram
// of the session keeps the member live.
func (s *Server) judge(m *member, b *ring.Packet, msg *conn.Message, now int64) bool {
	pl := m.place.Load()
	sess := pl.sess
	p := msg.Buf[:msg.N]
	fwd := true
	switch wgType(p, msg.Seg) {
	case wgTransportType:
		if sess.legacy {
			break
		}
		idx, ctr, _ := wgTransport(p) // of the first datagram, for a train
		w := sess.win.find(idx)
		if w == nil {
			s.Foreign.Add(uint64(msg.Count()))
			return false
		}
		if s.opts.DisableDedup {
			break
		}
		var dup bool
		if msg.Seg > 0 && msg.Seg < msg.N {
			dup = sess.win.copy(msg, pl.path, b.Stamp)
		} else {
			dup = w.seen(ctr, fingerprint(p), pl.path, b.Stamp)
		}
		if dup {
			s.Duplicates.Add(uint64(msg.Count()))
			fwd = false
		}
	case wgInitiationType:
		if msg.Seg > 0 && msg.Seg < msg.N {
			s.Foreign.Add(uint64(msg.Count()))
			return false
		}
		s.mu.Lock()
		fwd = s.initiationLocked(m.addr, msg.Local, p, m, now)
		s.mu.Unlock()
	case wgResponseType, wgCookieType:
	default:
		if !sess.legacy {
			s.notWireGuard(m.addr, msg.Count())
			return false
		}
	}
	m.lastSeen.Store(now)
	if !m.live.Load() {
		s.reactivate(m)
	}
	return fwd
}

// fromSession handles what WireGuard sends on a session's socket: to the
// session's live members. Its handshake messages name the session's
// indexes.
func (s *Server) fromSession(sess *session) func([]*ring.Packet, []conn.Message) {
	return func(bufs []*ring.Packet, msgs []conn.Message) {
		for i := range msgs {
			m := &msgs[i]
			b := m.Buf[:m.N]
			switch wgType(b, m.Seg) {
			case wgResponseType:
				s.mu.Lock()
				s.responseLocked(b, sess, nanotime())
				s.mu.Unlock()
			case wgInitiationType:
				// WireGuard initiating: the client's transport messages
				// will carry this index.
				sess.win.learn(wgSenderIndex(b))
				s.dirty.Store(true)
			}
		}
		if !sess.out.send(bufs, msgs, *sess.tx.Load()) {
			s.NoPeer.Add(uint64(len(bufs)))
		}
	}
}

// fromHandshakeSocket handles what WireGuard sends on the handshake socket:
// its answers to initiations of addresses in no session (routed by their
// receiver index), and transport messages to a client whose endpoint it
// still has there.
func (s *Server) fromHandshakeSocket(bufs []*ring.Packet, msgs []conn.Message) {
	now := nanotime()
	for i := range msgs {
		m := &msgs[i]
		b := m.Buf[:m.N]
		var to *session
		s.mu.Lock()
		switch wgType(b, m.Seg) {
		case wgResponseType:
			to = s.responseLocked(b, nil, now)
		case wgTransportType:
			to = s.byClient[wgReceiverIndex(b)]
		case wgCookieType:
			s.cookieLocked(b)
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		if to == nil {
			s.Unrouted.Add(uint64(m.Count()))
			continue
		}
		if !s.hsOut.send(bufs[i:i+1], msgs[i:i+1], *to.tx.Load()) {
			s.NoPeer.Add(1)
		}
	}
}

// cookieLocked sends WireGuard's cookie reply b (it is under load, and
// asks the initiator to prove its address) to the addresses that sent the
// initiation it answers: each sent one, and each gets one reply, smaller
// than the initiation.
func (s *Server) cookieLocked(b []byte) {
	idx := wgReceiverIndex(b)
	sent := false
	for _, g := range s.inits[idx] {
		for _, a := range g.addrs {
			msg := []conn.Message{{Buf: b, N: len(b), Addr: a}}
			if n, _ := s.listen.TryWriteBatch(msg); n == 1 {
				sent = true
			}
		}
	}
	if !sent {
		s.Unrouted.Add(1)
	}
}
