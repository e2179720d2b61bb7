package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// The tests here drive a Server directly from sockets on the fake network
// that play engarde clients (several addresses each) and attackers, with a
// stand-in for WireGuard behind it that behaves as WireGuard does where it
// matters: it answers only initiations it can authenticate, accepts only
// transport messages it can authenticate and has not seen, and sends to a
// peer's endpoint, the source of the last message it accepted. "Can
// authenticate" is a mark byte that attackers, who have no key, do not set.

const (
	authMark   = 0xA5 // where WireGuard would check a MAC
	authOffset = 16   // of a transport message; initiations carry it at 8
)

// fakeWG is the stand-in for WireGuard behind the server.
type fakeWG struct {
	c conn.Conn

	mu        sync.Mutex
	next      uint32
	peers     map[uint32]*fakePeer // by the index WireGuard handed out
	endpoints map[netip.AddrPort]bool
	inits     int
	accepted  int // transport messages accepted
	rejected  int
}

type fakePeer struct {
	clientIdx uint32
	endpoint  netip.AddrPort
	seen      map[uint64]bool
}

func newFakeWG(t *testing.T, fn *conntest.Net) *fakeWG {
	c, err := fn.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWG{c: c, next: 1000, peers: map[uint32]*fakePeer{}, endpoints: map[netip.AddrPort]bool{}}
	go w.run()
	t.Cleanup(func() { c.Close() })
	return w
}

func (w *fakeWG) run() {
	msgs := make([]conn.Message, 16)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := w.c.ReadBatch(msgs)
		if err != nil {
			return
		}
		for _, m := range msgs[:n] {
			if reply := w.handle(m.Buf[:m.N], m.Addr); reply != nil {
				w.c.WriteBatch([]conn.Message{{Buf: reply, N: len(reply), Addr: m.Addr}})
			}
		}
	}
}

func (w *fakeWG) handle(b []byte, src netip.AddrPort) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case len(b) == wgInitiationLen && b[0] == wgInitiationType:
		if b[8] != authMark {
			w.rejected++
			return nil
		}
		w.inits++
		w.next++
		w.peers[w.next] = &fakePeer{clientIdx: wgSenderIndex(b), endpoint: src, seen: map[uint64]bool{}}
		return wgResponse(w.next, wgSenderIndex(b))
	case len(b) >= 32 && b[0] == wgTransportType:
		p := w.peers[binary.LittleEndian.Uint32(b[4:])]
		ctr := binary.LittleEndian.Uint64(b[8:])
		if p == nil || b[authOffset] != authMark || p.seen[ctr] {
			w.rejected++
			return nil
		}
		p.seen[ctr] = true
		p.endpoint = src // WireGuard roams to the source of what it accepts
		w.endpoints[src] = true
		w.accepted++
		// Echo to the peer, addressed to its index, keeping the counter.
		r := append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(r[4:], p.clientIdx)
		return r
	}
	if bytes.HasPrefix(b, []byte("echo:")) {
		return append([]byte(nil), b...) // another program behind the server, for forwardAnyUDP
	}
	w.rejected++
	return nil
}

func (w *fakeWG) stats() (inits, accepted, rejected, endpoints int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inits, w.accepted, w.rejected, len(w.endpoints)
}

// fakeClient is the sockets of one engarde client, one per link, aimed at
// the server; what arrives on each is counted.
type fakeClient struct {
	t      *testing.T
	srv    netip.AddrPort
	links  []conn.Conn
	index  uint32 // its WireGuard's index
	server uint32 // the server WireGuard's, once answered
	init   []byte

	mu    sync.Mutex
	got   map[uint64]int // transport counters received, any link
	perLn []int          // datagrams received per link
	resp  int
	other int // datagrams that are not this client's
}

func newFakeClient(t *testing.T, fn *conntest.Net, srv netip.AddrPort, index uint32, addrs ...string) *fakeClient {
	c := &fakeClient{t: t, srv: srv, index: index, got: map[uint64]int{}}
	for _, a := range addrs {
		c.addLink(fn, a)
	}
	return c
}

func (c *fakeClient) addLink(fn *conntest.Net, addr string) conn.Conn {
	l, err := fn.Listen(netip.MustParseAddrPort(addr), conn.SocketOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	i := len(c.links)
	c.links = append(c.links, l)
	c.perLn = append(c.perLn, 0)
	c.mu.Unlock()
	c.t.Cleanup(func() { l.Close() })
	go func() {
		msgs := make([]conn.Message, 16)
		for j := range msgs {
			msgs[j].Buf = make([]byte, 2048)
		}
		for {
			n, err := l.ReadBatch(msgs)
			if err != nil {
				return
			}
			c.mu.Lock()
			for _, m := range msgs[:n] {
				c.perLn[i]++
				b := m.Buf[:m.N]
				switch {
				case len(b) == wgResponseLen && b[0] == wgResponseType && wgReceiverIndex(b) == c.index:
					c.resp++
					c.server = wgSenderIndex(b)
				case len(b) >= 32 && b[0] == wgTransportType && wgReceiverIndex(b) == c.index:
					c.got[binary.LittleEndian.Uint64(b[8:])]++
				default:
					c.other++
				}
			}
			c.mu.Unlock()
		}
	}()
	return l
}

// send sends b over the given links (all when none are named).
func (c *fakeClient) send(b []byte, links ...int) {
	c.t.Helper()
	if len(links) == 0 {
		for i := range c.links {
			links = append(links, i)
		}
	}
	for _, i := range links {
		if _, err := c.links[i].WriteBatch([]conn.Message{{Buf: b, N: len(b), Addr: c.srv}}); err != nil {
			c.t.Fatal(err)
		}
	}
}

// handshake sends a fresh authentic initiation over every link and waits
// for the response.
func (c *fakeClient) handshake(fill byte) {
	c.t.Helper()
	c.mu.Lock()
	c.init = wgInitiation(c.index, fill)
	c.init[8] = authMark
	before := c.resp
	c.mu.Unlock()
	c.send(c.init)
	waitFor(c.t, "the handshake response", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.resp > before
	})
}

// data returns an authentic transport message to the server's index.
func (c *fakeClient) data(counter uint64) []byte {
	c.mu.Lock()
	b := wgData(c.server, counter, 64)
	c.mu.Unlock()
	b[authOffset] = authMark
	// The end of the authentication tag: one the attackers cannot make.
	b[62], b[63] = byte(counter)|0x80, byte(counter>>8)^0xa5
	return b
}

// stream sends counters [from, to) over every link and waits for all
// their echoes; it returns how many distinct ones came back.
func (c *fakeClient) stream(from, to uint64) int {
	c.t.Helper()
	for ctr := from; ctr < to; ctr++ {
		c.send(c.data(ctr))
	}
	count := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		k := 0
		for ctr := from; ctr < to; ctr++ {
			if c.got[ctr] > 0 {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(3 * time.Second)
	for count() < int(to-from) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return count()
}

// received is how many datagrams arrived on all the client's links.
func (c *fakeClient) received() int {
	links, _ := c.counts()
	total := 0
	for _, n := range links {
		total += n
	}
	return total
}

// setIndex changes the index of the client's WireGuard, as a rekey does.
func (c *fakeClient) setIndex(i uint32) {
	c.mu.Lock()
	c.index = i
	c.mu.Unlock()
}

func (c *fakeClient) counts() (perLink []int, other int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.perLn...), c.other
}

// sessionRig is a server between fake clients and the WireGuard stand-in.
type sessionRig struct {
	fn  *conntest.Net
	srv *Server
	wg  *fakeWG
}

func newSessionRig(t *testing.T, timeout time.Duration) *sessionRig {
	return newSessionRigAny(t, timeout, false)
}

func newSessionRigAny(t *testing.T, timeout time.Duration, anyUDP bool) *sessionRig {
	conntest.CheckGoroutines(t)
	fn := conntest.NewNet()
	w := newFakeWG(t, fn)
	srv, err := NewServer(ServerConfig{
		Options:       Options{Backend: fn, Log: testLogger(t), DisableGSO: true, DisableGRO: true},
		ListenAddr:    "10.0.0.1:4000",
		DstAddr:       w.c.LocalAddr().String(),
		ClientTimeout: timeout,
		ForwardAnyUDP: anyUDP,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &sessionRig{fn: fn, srv: srv, wg: w}
}

// TestSessionsTwoClients: two clients with two links each through one
// server port; each gets only its own replies, on both its links, and
// WireGuard sees one stable endpoint per client.
func TestSessionsTwoClients(t *testing.T) {
	r := newSessionRig(t, 0)
	a := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0xa1, "10.1.1.2:5000", "10.1.2.2:5000")
	b := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0xb1, "10.2.1.2:5000", "10.2.2.2:5000")
	a.handshake(1)
	b.handshake(1)
	if got := a.stream(0, 500); got != 500 {
		t.Fatalf("client a: %d of 500 came back", got)
	}
	bLinks, bOther := b.counts()
	if got := b.stream(0, 300); got != 300 {
		t.Fatalf("client b: %d of 300 came back", got)
	}
	if _, other := a.counts(); other != 0 {
		t.Errorf("client a received %d datagrams that were not its own", other)
	}
	if bOther != 0 || bLinks[0] > 1 || bLinks[1] > 1 {
		t.Errorf("idle client b received %v (other %d) while a streamed: only its handshake response is its own", bLinks, bOther)
	}
	aLinks, _ := a.counts()
	for i, n := range aLinks {
		if n < 500 {
			t.Errorf("client a's link %d received %d, want every reply (500) on every link", i, n)
		}
	}
	_, accepted, _, endpoints := r.wg.stats()
	if accepted != 800 || endpoints != 2 {
		t.Errorf("WireGuard accepted %d messages (want 800: the server passes one copy each) from %d endpoints (want 2)", accepted, endpoints)
	}
	ss := r.srv.Sessions()
	if len(ss) != 2 || len(ss[0].Addrs) != 2 || len(ss[1].Addrs) != 2 || ss[0].Endpoint == ss[1].Endpoint {
		t.Fatalf("sessions %+v, want two of two addresses with their own endpoints", ss)
	}
	if d := r.srv.Duplicates.Load(); d != 800 {
		t.Errorf("server dropped %d copies, want 800", d)
	}
}

// TestSessionForgedInitiations: an attacker who sends initiations it
// cannot authenticate, from many source ports of one prefix, receives
// nothing, and a real client that comes after is answered at once.
func TestSessionForgedInitiations(t *testing.T) {
	r := newSessionRig(t, 0)
	evil := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0xe1)
	const ports = 2000
	for p := range ports {
		l := evil.addLink(r.fn, netip.AddrPortFrom(netip.MustParseAddr("10.66.0.9"), uint16(20000+p)).String())
		// Fill never authMark: forged.
		for _, b := range [][]byte{wgInitiation(uint32(p), byte(p%100)), wgData(uint32(p), 1, 64), []byte("garbage from an attacker")} {
			l.WriteBatch([]conn.Message{{Buf: b, N: len(b), Addr: r.srv.ListenAddr()}})
		}
	}
	waitFor(t, "the attack to be counted", func() bool {
		return r.srv.Initiations.Load()+r.srv.NotMember.Load()+r.srv.NotWireGuard.Load() >= 3*ports
	})
	if got := r.srv.PendingEvicted.Load(); got < ports-MaxPendingPerPrefix {
		t.Errorf("only %d initiations evicted: the per-prefix bound did not hold", got)
	}
	real := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x99, "10.3.1.2:5000", "10.3.2.2:5000")
	real.handshake(7)
	if got := real.stream(0, 200); got != 200 {
		t.Fatalf("the real client got %d of 200 back during the attack", got)
	}
	time.Sleep(50 * time.Millisecond)
	total := evil.received()
	if total != 0 {
		t.Errorf("the attacker received %d datagrams", total)
	}
	if n := len(r.srv.Sessions()); n != 1 {
		t.Errorf("%d sessions, want the real client's only", n)
	}
	t.Logf("forged initiations: %d evicted, %d passed to WireGuard, attacker received %d", r.srv.PendingEvicted.Load(), r.srv.Initiations.Load(), total)
}

// TestSessionForgedTransport: an attacker who knows the live session's
// index and counters (it sees one link) sends transport messages ahead of
// the flow from its own addresses: it receives nothing, and the real
// client loses nothing (the duplicate filter is not poisoned).
func TestSessionForgedTransport(t *testing.T) {
	r := newSessionRig(t, 0)
	real := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
	real.handshake(3)
	if got := real.stream(0, 100); got != 100 {
		t.Fatalf("%d of 100 came back", got)
	}
	evil := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42)
	for p := range 50 {
		l := evil.addLink(r.fn, netip.AddrPortFrom(netip.MustParseAddr("10.66.0.9"), uint16(30000+p)).String())
		for ctr := uint64(100); ctr < 1100; ctr += 7 {
			b := wgData(real.server, ctr+uint64(p), 64) // live index, counters just ahead
			l.WriteBatch([]conn.Message{{Buf: b, N: len(b), Addr: r.srv.ListenAddr()}})
		}
		// And the random-index kind.
		b := wgData(uint32(p)*7919, 5, 64)
		l.WriteBatch([]conn.Message{{Buf: b, N: len(b), Addr: r.srv.ListenAddr()}})
	}
	waitFor(t, "the forgeries to be counted", func() bool { return r.srv.NotMember.Load() >= 50*143+50 })
	if got := real.stream(100, 1200); got != 1100 {
		t.Fatalf("the real client lost %d of 1100 after the forgeries", 1100-got)
	}
	total := evil.received()
	if total != 0 {
		t.Errorf("the attacker received %d datagrams", total)
	}
	t.Logf("forged transport: %d dropped as not from a member, attacker received %d, real lost 0", r.srv.NotMember.Load(), total)
}

// TestSessionAuthenticInitiationFromStranger: a stranger with a key of
// its own (an initiation WireGuard answers) gets one response for its one
// initiation, and its own session: none of another client's traffic.
func TestSessionAuthenticInitiationFromStranger(t *testing.T) {
	r := newSessionRig(t, 0)
	real := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
	real.handshake(3)
	other := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x43, "10.7.7.7:5000")
	other.handshake(9)
	if got := real.stream(0, 300); got != 300 {
		t.Fatalf("%d of 300 came back", got)
	}
	links, junk := other.counts()
	if links[0] != 1 || junk != 0 {
		t.Errorf("the stranger received %d datagrams (%d not its own), want its one response", links[0], junk)
	}
}

// TestSessionLinkJoins: a link that appears mid-session re-sends the
// session's initiation and gets replies at once, without WireGuard seeing
// the copy; a link that only sends data (an original engarde client)
// gets nothing until the next handshake.
func TestSessionLinkJoins(t *testing.T) {
	r := newSessionRig(t, 0)
	c := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
	c.handshake(3)
	c.addLink(r.fn, "10.1.3.2:5000")
	c.send(c.init, 2)
	waitFor(t, "the join", func() bool { return r.srv.Joins.Load() == 1 })
	if got := c.stream(0, 100); got != 100 {
		t.Fatalf("%d of 100 came back", got)
	}
	// The stream ends at the first copy of each reply; the joined link's
	// may still be on their way.
	waitFor(t, "the joined link's 100 replies", func() bool { links, _ := c.counts(); return links[2] >= 100 })
	if inits, _, _, _ := r.wg.stats(); inits != 1 {
		t.Errorf("WireGuard saw %d initiations, want 1 (the re-sent copy is the server's business)", inits)
	}

	// The original engarde client's way: data only, from a fourth link.
	c.addLink(r.fn, "10.1.4.2:5000")
	before := r.srv.NotMember.Load()
	c.send(c.data(100), 3)
	waitFor(t, "the data from the unknown link to be dropped", func() bool { return r.srv.NotMember.Load() > before })
	if got := c.stream(101, 150); got != 49 {
		t.Fatalf("%d of 49 came back", got)
	}
	if links, _ := c.counts(); links[3] != 0 {
		t.Errorf("a link that never sent the handshake received %d datagrams", links[3])
	}
	// The next handshake (WireGuard rekeys every two minutes) brings it in.
	c.setIndex(0x43)
	c.handshake(4)
	if got := c.stream(0, 100); got != 100 {
		t.Fatalf("after the rekey: %d of 100 came back", got)
	}
	// It is a member from the moment the listen socket's loop handled its
	// copy of the handshake, which a busy machine may schedule after the
	// other links' first replies: the next stream is its in full.
	before4, _ := c.counts()
	if got := c.stream(100, 200); got != 100 {
		t.Fatalf("after the rekey: %d of 100 came back", got)
	}
	if !eventually(func() bool { links, _ := c.counts(); return links[3]-before4[3] >= 100 }) {
		links, _ := c.counts()
		t.Fatalf("the fourth link received %d of the second stream's 100 replies", links[3]-before4[3])
	}
	if ss := r.srv.Sessions(); len(ss) != 1 || len(ss[0].Addrs) != 4 || len(ss[0].Indexes) != 2 {
		t.Errorf("sessions %+v, want one with four addresses and two indexes", ss)
	}
}

// TestSessionRekeyKeepsOldIndex: after a rekey, messages still in flight
// under the previous index pass and are deduplicated; a session's
// addresses beyond MaxSessionAddrs evict the one silent longest.
func TestSessionRekeyKeepsOldIndex(t *testing.T) {
	r := newSessionRig(t, 0)
	c := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
	c.handshake(3)
	c.mu.Lock()
	old := c.server
	c.mu.Unlock()
	if got := c.stream(0, 50); got != 50 {
		t.Fatalf("%d of 50 came back", got)
	}
	c.setIndex(0x43)
	c.handshake(4)
	c.mu.Lock()
	same := c.server == old
	c.mu.Unlock()
	if same {
		t.Fatal("the rekey gave no new index")
	}
	if got := c.stream(0, 50); got != 50 {
		t.Fatalf("new index: %d of 50 came back", got)
	}
	waitFor(t, "every copy of the stream to be dropped", func() bool { return r.srv.Duplicates.Load() == 100 })
	dups := r.srv.Duplicates.Load()
	late := wgData(old, 60, 64)
	late[authOffset] = authMark
	c.send(late)
	waitFor(t, "the late message's copy to be dropped", func() bool { return r.srv.Duplicates.Load() >= dups+1 })
	if d := r.srv.Duplicates.Load(); d != dups+1 {
		t.Errorf("%d copies dropped of the late message sent twice, want 1", d-dups)
	}
	if r.srv.Foreign.Load() != 0 {
		t.Errorf("%d messages of the previous index dropped as foreign", r.srv.Foreign.Load())
	}

	for i := range MaxSessionAddrs {
		c.addLink(r.fn, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(10 + i), 2}), 5000).String())
	}
	c.setIndex(0x44)
	c.handshake(5)
	waitFor(t, "the new links to join", func() bool {
		ss := r.srv.Sessions()
		return len(ss) == 1 && len(ss[0].Addrs) == MaxSessionAddrs
	})
	ss := r.srv.Sessions()
	if len(ss) != 1 || len(ss[0].Addrs) != MaxSessionAddrs {
		t.Fatalf("sessions %+v, want one with %d addresses", ss, MaxSessionAddrs)
	}
}

// TestSessionExpires: a session whose addresses all went silent ends
// after clientTimeout plus sessionLinger, closing its sockets.
func TestSessionMemberSilentThenBack(t *testing.T) {
	r := newSessionRig(t, 200*time.Millisecond)
	c := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
	c.handshake(3)
	if got := c.stream(0, 20); got != 20 {
		t.Fatalf("%d of 20 came back", got)
	}
	waitFor(t, "the addresses to go silent", func() bool {
		for _, p := range r.srv.Peers() {
			if p.Live {
				return false
			}
		}
		return true
	})
	// Silent addresses get nothing; the first datagram of the session
	// from one makes it live again at once.
	if got := c.stream(20, 40); got != 20 {
		t.Fatalf("%d of 20 came back after the silence", got)
	}
	var count atomic.Int32
	for _, p := range r.srv.Peers() {
		if p.Live {
			count.Add(1)
		}
	}
	if count.Load() != 2 {
		t.Errorf("%d live addresses after they spoke again, want 2", count.Load())
	}
}

// FuzzSessions runs a real client and an attacker through a sequence of
// moves that the input picks: handshakes, data, forged initiations,
// forged transport with the live index, garbage, and replays of the
// client's initiation (an attacker on one link can do that, and the
// design lets a replayed initiation join: those ports are on-path and are
// not counted). Whatever the order, the client's data all comes back, and
// the attacker's other ports receive nothing.
func FuzzSessions(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 1, 5, 1, 0, 1})
	f.Add([]byte{2, 2, 2, 0, 3, 3, 3, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1})
	f.Add([]byte{0, 6, 1, 3, 6, 0, 1})
	f.Add([]byte{4, 4, 0, 5, 6, 6, 6, 6, 6, 6, 6, 6, 1})
	f.Fuzz(func(t *testing.T, moves []byte) {
		if len(moves) > 40 {
			moves = moves[:40]
		}
		r := newSessionRig(t, 0)
		c := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
		c.handshake(1)
		evil := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0)
		onPath := map[int]bool{}
		var ctr uint64
		rekeys, links := 1, 2
		for i, mv := range moves {
			port := int(mv>>3) % 64
			for len(evil.links) <= port {
				evil.addLink(r.fn, netip.AddrPortFrom(netip.MustParseAddr("10.66.0.9"), uint16(30000+len(evil.links))).String())
			}
			switch mv % 7 {
			case 0:
				rekeys++
				c.setIndex(0x42 + uint32(rekeys)<<8)
				c.handshake(byte(rekeys))
			case 1:
				if got := c.stream(ctr, ctr+20); got != 20 {
					t.Fatalf("move %d: %d of 20 came back", i, got)
				}
				ctr += 20
			case 2:
				evil.send(wgInitiation(uint32(i), byte(i%100)), port)
			case 3:
				c.mu.Lock()
				b := wgData(c.server, ctr+uint64(mv), 64)
				c.mu.Unlock()
				evil.send(b, port)
			case 4:
				evil.send([]byte{mv, 0, 0, 0, 1, 2, 3}, port)
			case 5:
				c.mu.Lock()
				b := append([]byte(nil), c.init...)
				c.mu.Unlock()
				evil.send(b, port)
				onPath[port] = true
			case 6:
				if links < 6 {
					c.addLink(r.fn, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(1 + links), 2}), 5000).String())
					c.mu.Lock()
					b := append([]byte(nil), c.init...)
					c.mu.Unlock()
					c.send(b, links)
					links++
				}
			}
		}
		if got := c.stream(ctr, ctr+50); got != 50 {
			t.Fatalf("at the end: %d of 50 came back", got)
		}
		per, other := evil.counts()
		for p, n := range per {
			if n > 0 && !onPath[p] {
				t.Errorf("attacker port %d, which never replayed the client's initiation, received %d datagrams", p, n)
			}
		}
		_ = other
	})
}

// TestSessionIndexReuse: two clients whose WireGuards picked the same
// index (they are random, and collide) are still two sessions, each with
// its own filter: neither's counters make the other's look like copies.
func TestSessionIndexReuse(t *testing.T) {
	r := newSessionRig(t, 0)
	a := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
	b := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.2.1.2:5000", "10.2.2.2:5000")
	a.handshake(1)
	b.handshake(2)
	if got := a.stream(0, 200); got != 200 {
		t.Fatalf("client a: %d of 200", got)
	}
	if got := b.stream(0, 200); got != 200 {
		t.Fatalf("client b, same index and counters: %d of 200", got)
	}
	if n := len(r.srv.Sessions()); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
}

// TestSessionForwardAnyUDP: with forwardAnyUDP, datagrams that are not
// WireGuard's are forwarded and their sources get the replies to them,
// as in the original engarde, while WireGuard's sessions still keep to
// themselves.
func TestSessionForwardAnyUDP(t *testing.T) {
	r := newSessionRigAny(t, 0, true)
	wg := newFakeClient(t, r.fn, r.srv.ListenAddr(), 0x42, "10.1.1.2:5000", "10.1.2.2:5000")
	wg.handshake(1)
	other, err := r.fn.Listen(netip.MustParseAddrPort("10.5.5.5:7000"), conn.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got := make(chan string, 4)
	go func() {
		msgs := []conn.Message{{Buf: make([]byte, 2048)}}
		for {
			n, err := other.ReadBatch(msgs)
			if err != nil {
				return
			}
			if n == 1 {
				got <- string(msgs[0].Buf[:msgs[0].N])
			}
		}
	}()
	msg := []byte("echo: not WireGuard")
	if _, err := other.WriteBatch([]conn.Message{{Buf: msg, N: len(msg), Addr: r.srv.ListenAddr()}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != string(msg) {
			t.Errorf("got %q back", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no reply to a non-WireGuard datagram with forwardAnyUDP")
	}
	if n := wg.stream(0, 100); n != 100 {
		t.Fatalf("the WireGuard client got %d of 100 back", n)
	}
	select {
	case m := <-got:
		t.Errorf("the non-WireGuard source received %q: WireGuard's traffic", m)
	case <-time.After(50 * time.Millisecond):
	}
	if _, other := wg.counts(); other != 0 {
		t.Errorf("the WireGuard client received %d datagrams not its own", other)
	}
	var anyUDP int
	for _, ss := range r.srv.Sessions() {
		if ss.AnyUDP {
			anyUDP++
		}
	}
	if anyUDP != 1 {
		t.Errorf("%d forwardAnyUDP sessions, want 1", anyUDP)
	}
}
