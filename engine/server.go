package engine

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
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
}

// Server is the server role: it forwards what clients send to WireGuard,
// and every reply from WireGuard to every live client address.
//
// Each client address gets its own socket, bound to the listen port
// (SO_REUSEPORT) on the address the client sent to, and connected to the
// client. Replies to it leave from the address and port the client sent to,
// so they pass the client's NAT; and each address has its own send buffer,
// so packets the kernel holds for an unreachable address (waiting for
// neighbour resolution, say) cannot fill a buffer the live addresses need.
// Being connected, the socket also receives that address's traffic; the
// listen socket sees only addresses not known yet.
type Server struct {
	role
	cfg ServerConfig

	listen  conn.Conn
	laddr   netip.AddrPort
	up      conn.Conn // to WireGuard
	upTx    *sender
	dst     netip.AddrPort
	peers   atomic.Pointer[peerSet]
	timeout atomic.Int64 // client timeout, ns; reloadable
	out     *fanout      // used only on the upstream receive loop

	// ListenStats counts the listen socket (datagrams from addresses not
	// known yet); UpstreamStats the socket to WireGuard: Tx is what
	// went to WireGuard, Rx its replies.
	ListenStats, UpstreamStats Stats
	// NoPeer counts replies from WireGuard dropped because no client
	// address was live.
	NoPeer atomic.Uint64
	// NotLearned counts datagrams from unknown addresses that did not make
	// the server learn the address: not WireGuard's, or too many
	// addresses.
	NotLearned atomic.Uint64

	mu      sync.Mutex // guards peer creation and removal
	failLog rateLimit
	fullLog rateLimit
}

// peerSet is the client addresses the server knows, published whole: the
// data path reads it without a lock.
type peerSet struct {
	byAddr map[netip.AddrPort]*peer
	list   []*peer
	tx     []*sender // list's senders, for the fan-out
}

// newPeerSet indexes list.
func newPeerSet(list []*peer) *peerSet {
	ps := &peerSet{byAddr: make(map[netip.AddrPort]*peer, len(list)), list: list, tx: make([]*sender, len(list))}
	for i, p := range list {
		ps.byAddr[p.addr] = p
		ps.tx[i] = p.tx
	}
	return ps
}

// peer is one client address.
type peer struct {
	addr     netip.AddrPort
	local    netip.AddrPort
	conn     conn.Conn // nil when the peer shares the listen socket
	tx       *sender
	rx       *pump
	lastSeen atomic.Int64 // nanotime
	since    time.Time
	stats    Stats
	fixedDst atomic.Pointer[netip.AddrPort] // for a peer on the listen socket
}

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
	s := &Server{cfg: cfg, dst: dsts[0]}
	if err := s.role.init(&s.cfg.Options, 4); err != nil {
		return nil, err
	}
	s.out = newFanout(s.opts.Backend)
	s.timeout.Store(int64(cfg.ClientTimeout))
	s.peers.Store(newPeerSet(nil))
	o := s.opts.socket()
	lo := o
	lo.ReusePort = true
	lo.PacketInfo = true
	if s.listen, err = s.opts.Backend.Listen(laddr, lo); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.ListenAddr, err)
	}
	s.laddr = s.listen.LocalAddr()
	if s.up, err = s.opts.Backend.Dial(netip.AddrPort{}, s.dst, o); err != nil {
		s.listen.Close()
		s.pool.Close()
		return nil, fmt.Errorf("opening socket to %s: %w", s.dst, err)
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
	s.upTx = s.newSender(senderConfig{name: "wireguard", conn: s.up, own: true, stats: &s.UpstreamStats})
	listenRx := s.newPump("listen", s.listen, &s.ListenStats, s.fromListen).start()
	upRx := s.newPump("wireguard", s.up, &s.UpstreamStats, s.fromWireGuard).start()

	tick := time.NewTicker(min(time.Second, s.cfg.ClientTimeout/4)) // a reload to a shorter timeout is seen within a second
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			s.expire()
		}
	}

	listenRx.stop()
	// The closed peers stay in the set, so that their counters can still
	// be read once Run has returned.
	return s.shutdown(&s.mu, func() {
		for _, p := range s.peers.Load().list {
			s.closePeer(p)
		}
	}, upRx, s.upTx)
}

// fromListen handles datagrams on the listen socket: from client addresses
// seen for the first time, or before their own socket took over.
//
// A new address is learned (and will receive every reply) only from a
// datagram shaped like a WireGuard message, and only up to MaxClientAddrs
// addresses: a datagram with a forged source address must not turn the
// server into a reflector that floods the forged address with replies, or
// make it open sockets without bound. Anything else is still forwarded:
// WireGuard decides what it accepts.
func (s *Server) fromListen(bufs []*ring.Packet, msgs []conn.Message) {
	now := nanotime()
	set := s.peers.Load()
	for i := range msgs {
		m := &msgs[i]
		p := set.byAddr[m.Addr]
		if p == nil {
			if !wgMessage(m.Buf[:m.N], m.Seg) {
				s.NotLearned.Add(1)
				continue
			}
			if len(set.list) >= MaxClientAddrs {
				s.NotLearned.Add(1)
				if s.fullLog.allow() {
					s.log.warnf("client address %v not learned: already %d addresses", m.Addr, MaxClientAddrs)
				}
				continue
			}
			p = s.learn(m.Addr, m.Local)
			set = s.peers.Load()
		}
		p.lastSeen.Store(now)
	}
	s.forward(bufs, msgs)
}

// MaxClientAddrs is the most client addresses a server answers at once.
const MaxClientAddrs = 1024

// fromPeer handles datagrams on a client address's own socket.
func (s *Server) fromPeer(p *peer) func([]*ring.Packet, []conn.Message) {
	return func(bufs []*ring.Packet, msgs []conn.Message) {
		p.lastSeen.Store(nanotime())
		s.forward(bufs, msgs)
	}
}

func (s *Server) forward(bufs []*ring.Packet, msgs []conn.Message) {
	s.toWireGuard(s.upTx, bufs, msgs)
}

// fromWireGuard sends each reply from WireGuard to every live client
// address.
func (s *Server) fromWireGuard(bufs []*ring.Packet, msgs []conn.Message) {
	if !s.out.send(bufs, msgs, s.peers.Load().tx) {
		s.NoPeer.Add(uint64(len(bufs)))
	}
}

// learn adds a client address (slow path: once per address).
func (s *Server) learn(addr netip.AddrPort, local netip.Addr) *peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.peers.Load()
	if p := set.byAddr[addr]; p != nil {
		return p
	}
	p := &peer{addr: addr, since: time.Now()}
	p.lastSeen.Store(nanotime())
	laddr := s.laddr
	if laddr.Addr().IsUnspecified() && local.IsValid() {
		laddr = netip.AddrPortFrom(local, s.laddr.Port())
	}
	so := s.opts.socket()
	so.ReusePort = true
	name := "client " + addr.String()
	sock, err := s.opts.Backend.Dial(laddr, addr, so)
	if err == nil && !laddr.Addr().IsUnspecified() {
		p.conn, p.local = sock, laddr
		p.tx = s.newSender(senderConfig{name: name, conn: sock, own: true, stats: &p.stats})
		p.rx = s.newPump(name, sock, &p.stats, s.fromPeer(p))
	} else {
		// Without a socket of its own the address shares the listen
		// socket: replies still flow, without isolation.
		if sock != nil {
			sock.Close()
		}
		if err == nil {
			err = fmt.Errorf("local address unknown")
		}
		if s.failLog.allow() {
			s.log.warnf("client %v: no dedicated socket (%v); replying from the listen socket", addr, err)
		}
		p.local = s.laddr
		a := addr
		p.fixedDst.Store(&a)
		p.tx = s.newSender(senderConfig{name: name, conn: s.listen, dst: &p.fixedDst, stats: &p.stats})
	}
	s.peers.Store(newPeerSet(append(slices.Clone(set.list), p)))
	// Only now may the address's own socket forward anything: a reply to
	// what it forwards must find the address in the set. (Started before
	// the set was published, the pump forwarded datagrams queued on the
	// new socket, and the first replies found no address to go to.)
	if p.rx != nil {
		p.rx.start()
	}
	s.log.infof("client address %v appeared (replying from %v)", addr, p.local)
	return p
}

// expire forgets client addresses silent for longer than the timeout.
func (s *Server) expire() {
	now := nanotime()
	set := s.peers.Load()
	stale := false
	for _, p := range set.list {
		if now-p.lastSeen.Load() > s.timeout.Load() {
			stale = true
		}
	}
	if !stale {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set = s.peers.Load()
	var keep, gone []*peer
	for _, p := range set.list {
		if now-p.lastSeen.Load() > s.timeout.Load() {
			gone = append(gone, p)
		} else {
			keep = append(keep, p)
		}
	}
	s.peers.Store(newPeerSet(keep))
	for _, p := range gone {
		s.log.infof("client address %v timed out after %v of silence", p.addr, time.Duration(s.timeout.Load()))
		s.closePeer(p)
	}
}

func (s *Server) closePeer(p *peer) {
	if p.rx != nil {
		p.rx.stop()
	}
	p.tx.close()
}
