package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
)

// A session is one engarde client as WireGuard knows it: the client
// addresses (one per link) that sent the same handshake initiation, once
// WireGuard answered it. It has its own socket towards WireGuard, so that
// WireGuard sees one stable endpoint per client, and WireGuard's messages
// on that socket go to the session's live addresses and nowhere else.
//
// How an address gets in:
//   - An initiation (WireGuard type 1) from an address in no session is
//     passed to WireGuard through the server's handshake socket, once: its
//     copies from the client's other links join its group (initGroup)
//     without being passed again. Nothing is sent to the group, and nothing
//     else from it is passed on, until WireGuard answers.
//   - WireGuard's response (type 2), whose receiver index is the
//     initiation's sender index, makes the group's addresses members of a
//     session (a new one, or the one whose member sent the initiation),
//     each with its own socket; the response goes to them. Its sender
//     index is the index that the client's transport messages will carry:
//     the session's duplicate filter now judges it.
//   - A link that appears later re-sends the session's last answered
//     initiation, byte for byte (the engarde client does that): the bytes
//     name the session, and the address joins at once, without the copy
//     going to WireGuard again (which would reject it as a replay anyway).
//     An original engarde client does not re-send: its new link joins at
//     the next handshake, within two minutes.
//
// How it stays: a member is live while it sends datagrams of the session
// (handshake messages, transport messages with one of the session's
// indexes) at least every clientTimeout; a silent one gets nothing until
// it sends again, and is forgotten after sessionLinger more. Replies go to
// live members only.
type session struct {
	id     uint64
	since  time.Time
	legacy bool // the forwardAnyUDP session of addresses that are not WireGuard's

	up      conn.Conn
	upTx    *sender
	upRx    *pump
	upStats Stats
	merge   merge   // orders the members' datagrams to upTx (merge.go)
	out     *fanout // used on upRx's goroutine only
	win     windows
	tx      atomic.Pointer[[]*sender] // the live members' senders

	// Guarded by Server.mu.
	members  []*member
	last     *initGroup // the initiation WireGuard answered last
	inflight *initGroup // the members' initiation WireGuard has not answered yet
	clientIx []uint32   // the client's recent indexes, newest last (Server.byClient)
	closed   bool
}

// member is one client address of a session.
type member struct {
	addr  netip.AddrPort
	local netip.AddrPort
	place atomic.Pointer[place] // its session; replaced when it moves to another
	since time.Time

	resent   bool      // joined by a re-sent initiation, not a handshake WireGuard answered; guarded by Server.mu
	conn     conn.Conn // nil when the member shares the listen socket
	tx       *sender
	rx       *pump
	lastSeen atomic.Int64 // nanotime of its last datagram of the session
	probeTAT atomic.Int64 // its probes' rate limit (allowProbe)
	live     atomic.Bool  // it gets replies
	stats    Stats
	in       mergeInput // its socket's way into its session's merge
	quality  pathQuality
	fixedDst atomic.Pointer[netip.AddrPort] // for a member on the listen socket

	// Guarded by Server.mu (health.go): its link number in its session,
	// its state, since when, and when it last stalled (nanotime); why it
	// leaves, for the event.
	slot      int
	status    LinkStatus
	statusAt  time.Time
	stalledAt int64
	why       string
}

// place is where a member is: its session, and its number in the
// session's duplicate filter (-1: none).
type place struct {
	sess *session
	path int
}

func (m *member) sess() *session { return m.place.Load().sess }
func (m *member) path() int      { return m.place.Load().path }

// initGroup is one handshake initiation and the addresses it came from.
type initGroup struct {
	idx      uint32 // the initiator's sender index
	sum      uint64 // hash of msg
	msg      [wgInitiationLen]byte
	addrs    []netip.AddrPort
	locals   []netip.Addr
	sess     *session // the session of the member that sent it; nil for a new client
	at       int64    // nanotime of the first copy
	prefix   netip.Prefix
	answered bool
	made     bool   // WireGuard's answer to it made a new session
	index    uint32 // the responder's index, once answered
	resp     []byte // WireGuard's response, once answered
}

// Limits of the session table. None refuses a newcomer: each evicts the
// least useful entry instead.
const (
	// MaxSessionAddrs is the most addresses a session has (links of one
	// client): a ninth evicts the one silent longest.
	MaxSessionAddrs = maxPaths
	// MaxPending is the most unanswered initiations from addresses in no
	// session; MaxPendingPerPrefix the most from one /24 (IPv4) or /64
	// (IPv6). A newcomer evicts the oldest of its own prefix when that is
	// full, or the oldest of all. WireGuard answers within a round trip to
	// it, so a real initiation needs its entry for milliseconds: a flood
	// from one prefix evicts only that prefix's entries, and a flood from
	// thousands of prefixes must outpace WireGuard itself.
	MaxPending          = 4096
	MaxPendingPerPrefix = 64
	// MaxAnyUDPAddrs bounds forwardAnyUDP's session of sources that are
	// not WireGuard's; a newcomer evicts the one silent longest.
	MaxAnyUDPAddrs = 1024
	// MaxSessions bounds the sessions; a new one evicts the session silent
	// longest. Only WireGuard's answer makes a session.
	MaxSessions = 4096
	// pendingLife is how long an initiation waits for WireGuard's answer
	// (WireGuard retries with a new one after 5 s).
	pendingLife = 10 * time.Second
	// sessionLinger is how long a silent member stays known (getting
	// nothing) after clientTimeout, so that a tunnel idle for a while
	// resumes without a handshake: WireGuard's keys last 180 s without one.
	sessionLinger = 180 * time.Second
)

var initSeed = maphash.MakeSeed()

// wgType returns the WireGuard message type of b (a datagram or the first
// of a train of seg-sized ones), 0 if it is not shaped like one.
func wgType(b []byte, seg int) byte {
	if !wgMessage(b, seg) {
		return 0
	}
	return b[0]
}

// wgSenderIndex returns the sender index of a handshake initiation or
// response.
func wgSenderIndex(b []byte) uint32 { return binary.LittleEndian.Uint32(b[4:8]) }

// wgReceiverIndex returns the receiver index of a response, a cookie reply
// or a transport message.
func wgReceiverIndex(b []byte) uint32 {
	if b[0] == wgTransportType || b[0] == wgCookieType {
		return binary.LittleEndian.Uint32(b[4:8])
	}
	return binary.LittleEndian.Uint32(b[8:12])
}

// prefixOf is the source prefix an address is counted under.
func prefixOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// initiationLocked handles a handshake initiation b from addr (sent to
// local) and reports whether it must go to WireGuard. m is addr's member
// entry, nil if it is in no session.
func (s *Server) initiationLocked(addr netip.AddrPort, local netip.Addr, b []byte, m *member, now int64) bool {
	idx := wgSenderIndex(b)
	sum := maphash.Bytes(initSeed, b)
	for _, g := range s.inits[idx] {
		if g.sum != sum || !bytes.Equal(g.msg[:], b) {
			continue
		}
		if g.answered {
			switch {
			case m != nil && m.sess() != g.sess && g.made:
				// WireGuard answered the copy from a new link before a
				// member's copy came: the new session is this one's.
				s.mergeLocked(g, m.sess(), now)
			case m == nil || m.sess() != g.sess:
				// A re-sent initiation its session has had answered: a
				// link joining.
				if s.addMemberLocked(g.sess, addr, local, now, true) != nil {
					s.Joins.Add(1)
				}
			}
			return false
		}
		// A copy from another link: the group grows, WireGuard has it.
		g.add(addr, local)
		if g.sess == nil && m != nil {
			g.sess = m.sess()
		}
		s.InitCopies.Add(1)
		return false
	}
	g := &initGroup{idx: idx, sum: sum, at: now, prefix: prefixOf(addr.Addr())}
	copy(g.msg[:], b)
	g.add(addr, local)
	if m != nil {
		g.sess = m.sess()
		if old := m.sess().inflight; old != nil && !old.answered {
			s.dropGroupLocked(old)
		}
		m.sess().inflight = g
	} else {
		s.pendLocked(g)
	}
	s.inits[idx] = append(s.inits[idx], g)
	s.Initiations.Add(1)
	return true
}

func (g *initGroup) add(addr netip.AddrPort, local netip.Addr) {
	if slices.Contains(g.addrs, addr) || len(g.addrs) >= MaxSessionAddrs {
		return
	}
	g.addrs = append(g.addrs, addr)
	g.locals = append(g.locals, local)
}

// pendLocked queues an initiation from addresses in no session, evicting
// as the limits say.
func (s *Server) pendLocked(g *initGroup) {
	q := s.pendingBy[g.prefix]
	if len(q) >= MaxPendingPerPrefix {
		s.PendingEvicted.Add(1)
		s.dropGroupLocked(q[0])
	} else if s.pendingN >= MaxPending {
		s.PendingEvicted.Add(1)
		s.dropGroupLocked(s.oldestPendingLocked())
	}
	s.pendingBy[g.prefix] = append(s.pendingBy[g.prefix], g)
	s.pendingN++
}

// oldestPendingLocked finds the oldest unanswered initiation of all: the
// first of some prefix's queue (a scan of the prefixes, on the rare path
// where MaxPending initiations wait at once).
func (s *Server) oldestPendingLocked() *initGroup {
	var old *initGroup
	for _, q := range s.pendingBy {
		if len(q) > 0 && (old == nil || q[0].at < old.at) {
			old = q[0]
		}
	}
	return old
}

// unpendLocked takes g out of the unanswered initiations' queue, if it is
// there.
func (s *Server) unpendLocked(g *initGroup) {
	q := s.pendingBy[g.prefix]
	i := slices.Index(q, g)
	if i < 0 {
		return
	}
	q = slices.Delete(q, i, i+1)
	s.pendingN--
	if len(q) == 0 {
		delete(s.pendingBy, g.prefix)
	} else {
		s.pendingBy[g.prefix] = q
	}
}

// dropGroupLocked forgets an initiation group.
func (s *Server) dropGroupLocked(g *initGroup) {
	if g == nil {
		return
	}
	gs := slices.DeleteFunc(s.inits[g.idx], func(x *initGroup) bool { return x == g })
	if len(gs) == 0 {
		delete(s.inits, g.idx)
	} else {
		s.inits[g.idx] = gs
	}
	s.unpendLocked(g)
	if g.sess != nil {
		if g.sess.inflight == g {
			g.sess.inflight = nil
		}
		if g.sess.last == g {
			g.sess.last = nil
		}
	}
}

// responseLocked handles WireGuard's handshake response b, seen on via's
// socket (nil: the handshake socket). It returns the session whose live
// members must get it, or nil to drop it.
func (s *Server) responseLocked(b []byte, via *session, now int64) *session {
	idx := wgReceiverIndex(b)
	var answered *session
	for _, g := range slices.Clone(s.inits[idx]) {
		if g.answered {
			continue
		}
		sess := g.sess
		if sess == nil || sess.closed {
			sess = via
		}
		if sess == nil || sess.closed {
			var err error
			if sess, err = s.newSessionLocked(false); err != nil {
				if s.failLog.allow() {
					s.log.warnf("new session for %v: %v", g.addrs, err)
				}
				continue
			}
			g.made = true
			s.log.infof("session %d: WireGuard answered; its endpoint is %v", sess.id, sess.up.LocalAddr())
		}
		s.confirmLocked(g, sess, wgSenderIndex(b), now)
		g.resp = append(g.resp[:0], b...)
		answered = sess
	}
	if answered == nil && via != nil {
		// WireGuard answering an initiation we did not see it get
		// (forwardAnyUDP, or one older than pendingLife): the session's
		// own members asked.
		via.win.learn(wgSenderIndex(b))
		s.dirty.Store(true)
		return via
	}
	return answered
}

// confirmLocked makes g the answered initiation of sess: its addresses
// become members, and the filter judges index.
func (s *Server) confirmLocked(g *initGroup, sess *session, index uint32, now int64) {
	sess.win.learn(index)
	s.dirty.Store(true)
	if old := sess.last; old != nil && old != g {
		s.dropGroupLocked(old)
	}
	if sess.inflight == g {
		sess.inflight = nil
	}
	// Out of the pending queue, still in inits: its bytes name the
	// session for links that join later.
	s.unpendLocked(g)
	g.answered, g.sess, g.index = true, sess, index
	sess.last = g
	s.byClient[g.idx] = sess
	sess.clientIx = append(sess.clientIx, g.idx)
	if len(sess.clientIx) > indexesPerSession {
		if s.byClient[sess.clientIx[0]] == sess {
			delete(s.byClient, sess.clientIx[0])
		}
		sess.clientIx = slices.Delete(sess.clientIx, 0, 1)
	}
	for i, a := range g.addrs {
		s.addMemberLocked(sess, a, g.locals[i], now, false)
	}
}

// mergeLocked moves everything of the session made moments ago for g, an
// initiation that turns out to be into's, to into, and closes it. The
// handshake went through the handshake socket, so WireGuard never had the
// made session's socket as its endpoint.
func (s *Server) mergeLocked(g *initGroup, into *session, now int64) {
	from := g.sess
	s.log.infof("session %d is session %d's new handshake: merged", from.id, into.id)
	for len(from.members) > 0 {
		m := from.members[0]
		if !s.makeRoomLocked(into, m.addr, false) {
			s.removeMemberLocked(m)
			continue
		}
		s.moveMemberLocked(m, into)
	}
	if from.last == g {
		from.last = nil // keep g: it becomes into's
	}
	s.closeSessionLocked(from)
	s.confirmLocked(g, into, g.index, now)
	// The response may have gone to from's members as they moved: send
	// it again (WireGuard ignores a second copy of a response).
	for _, m := range into.members {
		if m.live.Load() && len(g.resp) > 0 {
			msg := []conn.Message{{Buf: g.resp, N: len(g.resp), Addr: m.addr}}
			if m.conn != nil {
				m.conn.TryWriteBatch(msg)
			} else {
				s.listen.TryWriteBatch(msg)
			}
		}
	}
}

// newSessionLocked opens a session's socket to WireGuard and starts its
// receive loop.
func (s *Server) newSessionLocked(legacy bool) (*session, error) {
	if s.stopping {
		return nil, fmt.Errorf("the server is stopping")
	}
	if len(s.sessions) >= MaxSessions {
		s.evictSessionLocked()
	}
	up, err := s.opts.Backend.Dial(netip.AddrPort{}, s.dst, s.opts.socket())
	if err != nil {
		return nil, fmt.Errorf("opening a socket to %v: %w", s.dst, err)
	}
	s.nextID++
	sess := &session{id: s.nextID, since: time.Now(), legacy: legacy, up: up, out: newFanout(s.opts.Backend)}
	sess.merge.batch = s.opts.BatchSize
	sess.tx.Store(&[]*sender{})
	name := fmt.Sprintf("session %d", sess.id)
	sess.upTx = s.newSender(senderConfig{name: name + " to wireguard", conn: up, own: true, stats: &sess.upStats})
	sess.upRx = s.newPump(name+" from wireguard", up, &sess.upStats, s.fromSession(sess)).start()
	s.sessions = append(s.sessions, sess)
	return sess, nil
}

// evictSessionLocked closes the session silent longest.
func (s *Server) evictSessionLocked() {
	var old *session
	var oldSeen int64
	for _, sess := range s.sessions {
		if seen := sess.lastSeenLocked(); old == nil || seen < oldSeen {
			old, oldSeen = sess, seen
		}
	}
	if old != nil {
		s.log.warnf("session %d evicted: already %d sessions", old.id, MaxSessions)
		s.closeSessionLocked(old)
	}
}

func (sess *session) lastSeenLocked() int64 {
	var t int64
	for _, m := range sess.members {
		t = max(t, m.lastSeen.Load())
	}
	return t
}

// addMemberLocked makes addr a live member of sess, opening its socket; an
// address of another session moves. It returns nil when it cannot.
func (s *Server) addMemberLocked(sess *session, addr netip.AddrPort, local netip.Addr, now int64, byResend bool) *member {
	if sess.closed {
		return nil
	}
	if m := (*s.members.Load())[addr]; m != nil {
		if m.sess() != sess {
			if !s.makeRoomLocked(sess, addr, byResend) {
				return nil
			}
			s.log.infof("client address %v moves from session %d to session %d", addr, m.sess().id, sess.id)
			s.moveMemberLocked(m, sess)
			m.resent = byResend
		} else if !byResend {
			m.resent = false
		}
		m.lastSeen.Store(now)
		if !m.live.Load() {
			m.live.Store(true)
			s.publishLocked(sess)
		}
		return m
	}
	if !s.makeRoomLocked(sess, addr, byResend) {
		return nil
	}
	m := &member{addr: addr, since: time.Now(), resent: byResend}
	m.lastSeen.Store(now)
	m.live.Store(true)
	s.placeLocked(m, sess)
	s.openMemberLocked(m, local)
	next := make(map[netip.AddrPort]*member, len(*s.members.Load())+1)
	for a, x := range *s.members.Load() {
		next[a] = x
	}
	next[addr] = m
	s.members.Store(&next)
	s.publishLocked(sess)
	// Only now may the address's own socket forward anything: a reply to
	// what it forwards must find the address live.
	if m.rx != nil {
		m.rx.start()
	}
	s.joinedLocked(m)
	return m
}

// makeRoomLocked makes room in sess for addr, if sess is full, by evicting
// its least useful member, and reports whether there is room. The least
// useful is one that gets no replies, then one that joined by a re-sent
// initiation and has delivered nothing first since, then the one that
// delivered fewest first copies. A newcomer by a re-sent initiation (one
// anyone who sees a link can replay, from any number of source ports) may
// evict only the first two kinds: a replay cannot push out the links the
// client's own handshake brought, or those that carry its traffic.
func (s *Server) makeRoomLocked(sess *session, addr netip.AddrPort, byResend bool) bool {
	if sess.legacy {
		if len(sess.members) >= MaxAnyUDPAddrs {
			old := sess.members[0]
			for _, m := range sess.members {
				if m.lastSeen.Load() < old.lastSeen.Load() {
					old = m
				}
			}
			s.removeMemberLocked(old)
		}
		return true
	}
	if len(sess.members) < MaxSessionAddrs {
		return true
	}
	var old *member
	oldRank, oldScore := 3, int64(0)
	for _, m := range sess.members {
		rank, score := 2, int64(m.quality.first.Load())
		switch {
		case !m.live.Load():
			rank = 0
		case m.resent && score == 0:
			rank = 1
		}
		if rank == 2 && byResend {
			continue
		}
		if old == nil || rank < oldRank || (rank == oldRank && (score < oldScore || score == oldScore && m.lastSeen.Load() < old.lastSeen.Load())) {
			old, oldRank, oldScore = m, rank, score
		}
	}
	if old == nil {
		s.JoinsRefused.Add(1)
		if s.fullLog.allow() {
			s.log.warnf("session %d: client address %v not joined: its %d addresses all carry traffic (a replayed initiation?)", sess.id, addr, MaxSessionAddrs)
		}
		return false
	}
	old.why = fmt.Sprintf("made way for %v (already %d addresses)", addr, MaxSessionAddrs)
	s.removeMemberLocked(old)
	return true
}

// placeLocked adds m to sess's members, with a number in its filter.
func (s *Server) placeLocked(m *member, sess *session) {
	pl := &place{sess: sess, path: -1}
	if !sess.legacy {
		pl.path = sess.freePathLocked()
	}
	sess.members = append(sess.members, m)
	m.slot = pl.path
	if pl.path < 0 {
		m.slot = sess.freeSlotLocked(m)
	}
	m.status, m.statusAt = LinkActive, time.Now()
	if pl.path >= 0 {
		m.quality.since.Store(nanotime())
		sess.win.paths.q[pl.path].Store(&m.quality)
	}
	m.place.Store(pl)
}

// moveMemberLocked moves m, socket and all, to another session.
func (s *Server) moveMemberLocked(m *member, to *session) {
	s.unplaceLocked(m)
	s.placeLocked(m, to)
	s.publishLocked(to)
}

// unplaceLocked takes m out of its session's members and filter.
func (s *Server) unplaceLocked(m *member) {
	pl := m.place.Load()
	sess := pl.sess
	sess.members = slices.DeleteFunc(sess.members, func(x *member) bool { return x == m })
	if pl.path >= 0 && sess.win.paths.q[pl.path].Load() == &m.quality {
		sess.win.paths.q[pl.path].Store(nil)
	}
	s.publishLocked(sess)
}

// freeSlotLocked returns the lowest link number no other member of sess
// has: forwardAnyUDP's session has more members than filter numbers.
func (sess *session) freeSlotLocked(m *member) int {
	used := make([]bool, len(sess.members)+1)
	for _, x := range sess.members {
		if x != m && x.slot >= 0 && x.slot < len(used) {
			used[x.slot] = true
		}
	}
	for i, u := range used {
		if !u {
			return i
		}
	}
	return len(used)
}

func (sess *session) freePathLocked() int {
	var used uint32
	for _, m := range sess.members {
		if m.path() >= 0 {
			used |= 1 << m.path()
		}
	}
	for i := range maxPaths {
		if used&(1<<i) == 0 {
			return i
		}
	}
	return -1
}

// openMemberLocked gives m its socket: bound to the listen port on the
// address the client sent to (SO_REUSEPORT), connected to the client, so
// that replies leave from where the client sent to and pass its NAT, and
// each address has its own send buffer.
func (s *Server) openMemberLocked(m *member, local netip.Addr) {
	laddr := s.laddr
	if laddr.Addr().IsUnspecified() && local.IsValid() {
		laddr = netip.AddrPortFrom(local, s.laddr.Port())
	}
	so := s.opts.socket()
	so.ReusePort = true
	name := "client " + m.addr.String()
	sock, err := s.opts.Backend.Dial(laddr, m.addr, so)
	if err == nil && !laddr.Addr().IsUnspecified() {
		m.conn, m.local = sock, laddr
		m.tx = s.newSender(senderConfig{name: name, conn: sock, own: true, stats: &m.stats})
		m.rx = s.newPump(name, sock, &m.stats, s.fromMember(m))
		return
	}
	// Without a socket of its own the address shares the listen socket:
	// replies still flow, without isolation.
	if sock != nil {
		sock.Close()
	}
	if err == nil {
		err = fmt.Errorf("local address unknown")
	}
	if s.failLog.allow() {
		s.log.warnf("client %v: no dedicated socket (%v); replying from the listen socket", m.addr, err)
	}
	m.local = s.laddr
	a := m.addr
	m.fixedDst.Store(&a)
	m.tx = s.newSender(senderConfig{name: name, conn: s.listen, dst: &m.fixedDst, stats: &m.stats})
}

// publishLocked republishes the senders of sess's live members and its
// filter's live paths.
func (s *Server) publishLocked(sess *session) {
	var tx []*sender
	var live uint32
	for _, m := range sess.members {
		if m.live.Load() {
			tx = append(tx, m.tx)
			if m.path() >= 0 {
				live |= 1 << m.path()
			}
		}
	}
	sess.tx.Store(&tx)
	sess.win.paths.live.Store(live)
	s.dirty.Store(true)
}

// removeMemberLocked takes m out of its session and of the address table;
// its socket closes once the lock is released (closeLater).
func (s *Server) removeMemberLocked(m *member) {
	if m.why == "" {
		m.why = "removed"
	}
	s.leftLocked(m, m.why)
	m.live.Store(false)
	s.unplaceLocked(m)
	cur := *s.members.Load()
	if cur[m.addr] == m {
		next := make(map[netip.AddrPort]*member, len(cur))
		for a, x := range cur {
			if x != m {
				next[a] = x
			}
		}
		s.members.Store(&next)
	}
	s.closing = append(s.closing, m.close)
}

func (m *member) close() {
	if m.rx != nil {
		m.rx.stop()
	}
	m.tx.close()
}

// closeSessionLocked forgets sess and everything in it.
func (s *Server) closeSessionLocked(sess *session) {
	if sess.closed {
		return
	}
	for len(sess.members) > 0 {
		m := sess.members[len(sess.members)-1]
		if m.why == "" {
			m.why = fmt.Sprintf("session %d closed", sess.id)
		}
		s.removeMemberLocked(m)
	}
	s.dropGroupLocked(sess.last)
	s.dropGroupLocked(sess.inflight)
	for _, ix := range sess.clientIx {
		if s.byClient[ix] == sess {
			delete(s.byClient, ix)
		}
	}
	sess.closed = true
	s.sessions = slices.DeleteFunc(s.sessions, func(x *session) bool { return x == sess })
	s.closing = append(s.closing, func() {
		sess.upRx.stop()
		sess.upTx.close()
	})
	if s.legacy == sess {
		s.legacy = nil
	}
}

// closeLater runs the closes queued under the lock: a receive loop being
// stopped may itself be waiting for the lock, or be the one whose handler
// queued the close. So only the expiry tick runs them (within a second:
// what they close is out of every table already), and Run at the end.
func (s *Server) closeLater() {
	s.mu.Lock()
	fs := s.closing
	s.closing = nil
	s.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// expireLocked ends the liveness of silent members, forgets those silent
// for long and the sessions left without members, and the initiations
// WireGuard never answered.
func (s *Server) expireLocked(now int64) {
	timeout := s.timeout.Load()
	for _, sess := range s.sessions {
		sess.win.sweep(now)
	}
	for _, sess := range slices.Clone(s.sessions) {
		changed := false
		for _, m := range slices.Clone(sess.members) {
			silent := now - m.lastSeen.Load()
			switch {
			case silent > timeout+int64(sessionLinger):
				m.why = fmt.Sprintf("forgotten after %v of silence", time.Duration(silent).Round(time.Second))
				s.removeMemberLocked(m)
			case silent > timeout && m.live.Load():
				s.log.infof("session %d: client address %v timed out after %v of silence", sess.id, m.addr, time.Duration(timeout))
				m.live.Store(false)
				changed = true
			}
		}
		if changed {
			s.publishLocked(sess)
		}
		if len(sess.members) == 0 && (sess.inflight == nil || now-sess.inflight.at > int64(pendingLife)) {
			s.log.infof("session %d ended", sess.id)
			s.closeSessionLocked(sess)
		}
	}
	for _, q := range s.pendingBy {
		for _, g := range slices.Clone(q) {
			if now-g.at > int64(pendingLife) {
				s.dropGroupLocked(g)
			}
		}
	}
	for _, sess := range s.sessions {
		if g := sess.inflight; g != nil && now-g.at > int64(pendingLife) {
			s.dropGroupLocked(g)
		}
	}
}

// reactivate makes a member that was silent live again: it sent a
// datagram of its session.
func (s *Server) reactivate(m *member) {
	s.mu.Lock()
	if !m.sess().closed && !m.live.Load() && slices.Contains(m.sess().members, m) {
		m.live.Store(true)
		s.publishLocked(m.sess())
		s.log.infof("session %d: client address %v is back", m.sess().id, m.addr)
	}
	s.mu.Unlock()
}
