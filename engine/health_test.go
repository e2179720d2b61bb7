package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
	"github.com/engarde-project/engarde/ring"
)

// within polls cond until it holds or d passes, and fails the test then.
// The states take stallAfter and a tick or two to change: d leaves room
// for a machine slowed down by the race detector.
func within(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// keepSending has the client-side WireGuard stand-in send a transport
// message every 20 ms (fresh counters, so that no copy is a replay) until
// the returned func is called. Nothing reads the replies: the fake
// network's queue holds them.
func (tu *tunnel) keepSending() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	base := tu.base + 1<<32 // clear of stream's counters
	tu.base += 1 << 33
	go func() {
		defer wg.Done()
		buf := make([]byte, 200)
		buf[0] = wgTransportType
		binary.LittleEndian.PutUint32(buf[4:], testServerIndex)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for i := uint64(0); ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			binary.LittleEndian.PutUint64(buf[8:], base+i)
			if _, err := tu.wgApp.WriteBatch([]conn.Message{{Buf: buf, N: len(buf), Addr: tu.client.ListenAddr()}}); err != nil {
				return
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	tu.t.Cleanup(stop)
	return stop
}

// noProbes turns the client's probes off, as against an original engarde
// server.
func (tu *tunnel) noProbes() {
	cfg := tu.clientCfg
	cfg.ProbeInterval = -1
	if err := tu.client.Reconfigure(cfg); err != nil {
		tu.t.Fatal(err)
	}
}

func linkState(c *Client, name string) (LinkStatus, string) {
	for _, l := range c.Links() {
		if l.Name == name {
			return l.Status, l.Reason
		}
	}
	return "", "no such link"
}

func hasEvent(es []Event, link, from, to, reasonPart string) bool {
	for _, e := range es {
		if e.Link == link && (from == "" || e.From == from) && e.To == to && strings.Contains(e.Reason, reasonPart) {
			return true
		}
	}
	return false
}

// eventSink collects what a Logger's Event func receives.
type eventSink struct {
	mu   sync.Mutex
	got  []Event
	msgs []string
}

func (s *eventSink) logger(t *testing.T) *Logger {
	l := testLogger(t)
	l.Event = func(e Event, msg string) {
		s.mu.Lock()
		s.got = append(s.got, e)
		s.msgs = append(s.msgs, msg)
		s.mu.Unlock()
		t.Logf("event link=%q from=%q to=%q reason=%q: %s", e.Link, e.From, e.To, e.Reason, msg)
	}
	return l
}

func (s *eventSink) events() ([]Event, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.got...), append([]string(nil), s.msgs...)
}

// TestAllLinksDeadServerSilent pins the worst failure: with
// everything the links send dropped on the way, the client showed every
// link active and the tunnel fine. Now each link is stalled and the tunnel
// down, saying the server is silent, within a few seconds, with the probes
// and without them (an original engarde server answers none).
func TestAllLinksDeadServerSilent(t *testing.T) {
	for _, probes := range []bool{true, false} {
		t.Run(fmt.Sprintf("probes=%v", probes), func(t *testing.T) {
			fn := conntest.NewNet()
			n := fakeTestNet(fn)
			tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
			if probes {
				within(t, 10*time.Second, "a probe answered", tu.client.probesAnswered)
			} else {
				tu.noProbes()
			}
			tu.keepSending()
			within(t, 10*time.Second, "the tunnel up", func() bool { return tu.client.Tunnel().State == TunnelUp })
			fn.Drop(n.linkA, true)
			fn.Drop(n.linkB, true)
			took := within(t, 15*time.Second, "the tunnel down, the server silent", func() bool {
				tn := tu.client.Tunnel()
				return tn.State == TunnelDown && strings.HasPrefix(tn.Reason, "server silent: ")
			})
			t.Logf("tunnel down %v after the links died: %s", took.Round(100*time.Millisecond), tu.client.Tunnel().Reason)
			for _, name := range []string{"a", "b"} {
				if st, why := linkState(tu.client, name); st != LinkStalled {
					t.Errorf("link %s is %s (%s), want stalled", name, st, why)
				}
				if !hasEvent(tu.client.Events(), name, "active", "stalled", "") {
					t.Errorf("no event of link %s stalling in %v", name, tu.client.Events())
				}
			}
			if !hasEvent(tu.client.Events(), "", "", "down", "server silent") {
				t.Errorf("no event of the tunnel going down in %v", tu.client.Events())
			}
			fn.Drop(n.linkA, false)
			fn.Drop(n.linkB, false)
			within(t, 10*time.Second, "the tunnel up again", func() bool { return tu.client.Tunnel().State == TunnelUp })
			for _, name := range []string{"a", "b"} {
				if st, why := linkState(tu.client, name); st != LinkActive {
					t.Errorf("link %s is %s (%s) after the path came back, want active", name, st, why)
				}
			}
		})
	}
}

// TestPulledCable: a link losing its carrier is down on the client, with
// a warning event, and the tunnel degraded; the original showed a grey
// "idle" on the client while the server showed the same event in red.
func TestPulledCable(t *testing.T) {
	var sink eventSink
	n := fakeTestNet(conntest.NewNet())
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true, Log: sink.logger(t)})
	tu.keepSending()
	within(t, 10*time.Second, "the tunnel up", func() bool { return tu.client.Tunnel().State == TunnelUp })
	tu.ifs.set("a", func(i *Iface) { i.Running = false })
	within(t, 5*time.Second, "link a down", func() bool {
		st, _ := linkState(tu.client, "a")
		return st == LinkDown
	})
	if _, why := linkState(tu.client, "a"); why != "no carrier" {
		t.Errorf("link a down for %q, want no carrier", why)
	}
	tn := tu.client.Tunnel()
	if tn.State != TunnelDegraded || !strings.Contains(tn.Reason, "a down (no carrier)") {
		t.Errorf("tunnel %s (%s), want degraded by a", tn.State, tn.Reason)
	}
	if !hasEvent(tu.client.Events(), "a", "active", "down", "no carrier") {
		t.Errorf("no event of link a going down in %v", tu.client.Events())
	}
	evs, msgs := sink.events()
	found := false
	for i, e := range evs {
		if e.Link == "a" && e.To == "down" {
			found = true
			if !e.Failure() {
				t.Errorf("link a going down is no failure (not logged as a warning)")
			}
			if msgs[i] != "link a down: no carrier" {
				t.Errorf("log message %q", msgs[i])
			}
		}
	}
	if !found {
		t.Errorf("the logger got no event of link a going down: %v", evs)
	}
	tu.ifs.set("a", func(i *Iface) { i.Running = true })
	within(t, 5*time.Second, "the tunnel up again", func() bool { return tu.client.Tunnel().State == TunnelUp })
	if !hasEvent(tu.client.Events(), "a", "down", "active", "") {
		t.Errorf("no event of link a coming back in %v", tu.client.Events())
	}
}

// TestExcludeIncludeKeepsSocket pins issue 11's item 7: exclude then
// include closed and reopened the link, so it came back from a new source
// port (the server kept the old address for clientTimeout, reported it
// not receiving and kept sending to it) with its counters at zero. Now an
// exclusion only stops the link sending; including it again resumes on
// the same socket. What an excluded link receives is not WireGuard's.
func TestExcludeIncludeKeepsSocket(t *testing.T) {
	n := fakeTestNet(conntest.NewNet())
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true, DisableDedup: true})
	if got, _ := tu.stream(200, 200, 5000, nil); got != 200 {
		t.Fatalf("%d of 200 came back", got)
	}
	tu.client.mu.Lock()
	l := tu.client.links["a"]
	port := l.tx.conn.LocalAddr()
	tu.client.mu.Unlock()
	if _, err := tu.client.SetExclusion("a", true); err != nil {
		t.Fatal(err)
	}
	tu.waitLinks(1)
	if st, _ := linkState(tu.client, "a"); st != LinkExcluded {
		t.Errorf("link a is %s, want excluded", st)
	}
	tx, rx := l.stats.TxPackets.Load(), l.stats.RxPackets.Load()
	got, dups := tu.stream(200, 200, 5000, nil)
	if got != 200 {
		t.Fatalf("%d of 200 came back with a excluded", got)
	}
	if d := l.stats.TxPackets.Load() - tx; d != 0 {
		t.Errorf("excluded link a sent %d datagrams", d)
	}
	// The server still has a's address live, and replies to it: a
	// receives, and drops what it receives.
	if l.stats.RxPackets.Load() == rx {
		t.Logf("the server sent nothing to excluded link a")
	}
	if dups != 0 {
		t.Errorf("%d duplicates reached WireGuard: excluded link a passed what it received on", dups)
	}
	if _, err := tu.client.SetExclusion("a", false); err != nil {
		t.Fatal(err)
	}
	tu.waitLinks(2)
	tu.client.mu.Lock()
	same := tu.client.links["a"] == l
	tu.client.mu.Unlock()
	if !same {
		t.Fatal("including link a again opened a new socket")
	}
	if now := l.tx.conn.LocalAddr(); now != port {
		t.Errorf("link a sends from %v after the exclusion, was %v", now, port)
	}
	if l.stats.TxPackets.Load() < tx {
		t.Errorf("link a's counters restarted")
	}
	if got, _ := tu.stream(200, 200, 5000, nil); got != 200 {
		t.Fatalf("%d of 200 came back after including a again", got)
	}
	if l.stats.TxPackets.Load() <= tx {
		t.Errorf("link a sent nothing after being included again")
	}
	peers := tu.server.Peers()
	if len(peers) != 2 {
		t.Errorf("the server knows %d client addresses, want the same 2", len(peers))
	}
	for _, p := range peers {
		if p.Addr.Addr() == n.linkA && p.Addr != port {
			t.Errorf("the server knows link a at %v, want %v", p.Addr, port)
		}
	}
	if st, _ := linkState(tu.client, "a"); st != LinkActive {
		t.Errorf("link a is %s, want active", st)
	}
	for _, want := range [][2]string{{"active", "excluded"}, {"excluded", "active"}} {
		if !hasEvent(tu.client.Events(), "a", want[0], want[1], "") {
			t.Errorf("no event of link a going from %s to %s in %v", want[0], want[1], tu.client.Events())
		}
	}
}

// closedPort returns a loopback UDP port nothing listens on.
func closedPort(t *testing.T, be conn.Backend) netip.AddrPort {
	c, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr()
	c.Close()
	return a
}

// TestWrongServerPortUnreachable: with dstAddr naming a port nothing
// listens on, the kernel answers every link's datagrams with an ICMP port
// unreachable, which a connected socket reports as ECONNREFUSED on its
// next receive. The original showed "LAST RX never" and logged nothing;
// now each link is stalled and the tunnel down, saying the server is
// unreachable. Real loopback sockets: the fake network has no ICMP.
func TestWrongServerPortUnreachable(t *testing.T) {
	for _, be := range conntest.Platform(t) {
		t.Run(be.Name(), func(t *testing.T) {
			conntest.CheckGoroutines(t)
			dst := closedPort(t, be)
			ifs := &testIfaces{ch: make(chan struct{}, 1), ifs: []Iface{
				{Name: "a", Index: 101, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}},
				{Name: "b", Index: 102, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.3")}},
			}}
			c, err := NewClient(ClientConfig{
				Options:       Options{Backend: conntest.NoDevice(be), Log: testLogger(t), BufferSize: 2048},
				ListenAddr:    "127.0.0.1:0",
				DstAddr:       dst.String(),
				Interfaces:    ifs.list,
				Watch:         ifs.watcher,
				ProbeInterval: -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { defer close(ran); c.Run(ctx) }()
			defer func() { cancel(); <-ran }()
			wg, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{BatchSize: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer wg.Close()
			stop := make(chan struct{})
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				init := wgInitiation(testClientIndex, 1)
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					wg.WriteBatch([]conn.Message{{Buf: init, N: len(init), Addr: c.ListenAddr()}})
				}
			}()
			defer func() { close(stop); <-sent }()
			took := within(t, 15*time.Second, "the tunnel down, the server unreachable", func() bool {
				tn := c.Tunnel()
				return tn.State == TunnelDown && strings.HasPrefix(tn.Reason, "server unreachable: ")
			})
			tn := c.Tunnel()
			t.Logf("tunnel down %v after start: %s", took.Round(100*time.Millisecond), tn.Reason)
			if !strings.Contains(tn.Reason, "ICMP port unreachable") || !strings.Contains(tn.Reason, dst.String()) {
				t.Errorf("the reason %q does not say that nothing listens on %v", tn.Reason, dst)
			}
			for _, name := range []string{"a", "b"} {
				if st, why := linkState(c, name); st != LinkStalled || !strings.HasPrefix(why, "unreachable: ") {
					t.Errorf("link %s is %s (%s), want stalled, unreachable", name, st, why)
				}
			}
		})
	}
}

// TestSendErrorsUnreachable: links whose sends the kernel refuses (no
// route) are stalled, and the tunnel down saying the server is
// unreachable, with the kernel's error.
func TestSendErrorsUnreachable(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	tu.noProbes()
	tu.keepSending()
	fn.Refuse(n.linkA, syscall.ENETUNREACH)
	fn.Refuse(n.linkB, syscall.ENETUNREACH)
	defer fn.Refuse(n.linkA, 0)
	defer fn.Refuse(n.linkB, 0)
	within(t, 15*time.Second, "the tunnel down, the server unreachable", func() bool {
		tn := tu.client.Tunnel()
		return tn.State == TunnelDown && strings.HasPrefix(tn.Reason, "server unreachable: ")
	})
	if tn := tu.client.Tunnel(); !strings.Contains(tn.Reason, "network is unreachable") {
		t.Errorf("the reason %q does not say what the kernel said", tn.Reason)
	}
}

// TestServerMemberStalls: on the server, an address that stops sending
// while the other address of its client sends is stalled, the server
// degraded, with an event; it is active again when it sends. Slots are
// the members' link numbers.
func TestServerMemberStalls(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	tu.keepSending()
	if n := tu.waitPeers(2); n != 2 {
		t.Fatalf("server knows %d addresses, want 2", n)
	}
	slots := map[int]bool{}
	var slotA int
	for _, p := range tu.server.Peers() {
		slots[p.Slot] = true
		if p.Addr.Addr() == n.linkA {
			slotA = p.Slot
		}
	}
	if !slots[0] || !slots[1] {
		t.Errorf("slots %v, want 0 and 1", slots)
	}
	link := fmt.Sprintf("session %d link %d", tu.server.Sessions()[0].ID, slotA)
	if !hasEvent(tu.server.Events(), link, noState, "active", "joined") {
		t.Errorf("no event of %s joining in %v", link, tu.server.Events())
	}
	fn.Drop(n.linkA, true)
	within(t, 15*time.Second, "the server degraded", func() bool { return tu.server.Tunnel().State == TunnelDegraded })
	for _, p := range tu.server.Peers() {
		if want := map[bool]LinkStatus{true: LinkStalled, false: LinkActive}[p.Addr.Addr() == n.linkA]; p.Status != want {
			t.Errorf("address %v is %s, want %s", p.Addr, p.Status, want)
		}
	}
	if !hasEvent(tu.server.Events(), link, "active", "stalled", "") {
		t.Errorf("no event of %s stalling in %v", link, tu.server.Events())
	}
	fn.Drop(n.linkA, false)
	within(t, 10*time.Second, "the server up again", func() bool { return tu.server.Tunnel().State == TunnelUp })
	if !hasEvent(tu.server.Events(), link, "stalled", "active", "") {
		t.Errorf("no event of %s coming back in %v", link, tu.server.Events())
	}
	// A member leaving (aged out, made way, its session closed) is an
	// event too, and its slot is free for the next.
	srv := tu.server
	srv.mu.Lock()
	for _, m := range *srv.members.Load() {
		if m.addr.Addr() == n.linkA {
			m.why = "forgotten after 3m30s of silence"
			srv.removeMemberLocked(m)
		}
	}
	srv.mu.Unlock()
	srv.closeLater()
	if !hasEvent(srv.Events(), link, "active", noState, "forgotten after") {
		t.Errorf("no event of %s leaving in %v", link, srv.Events())
	}
	within(t, 10*time.Second, "link a back in its slot", func() bool {
		for _, p := range srv.Peers() {
			if p.Addr.Addr() == n.linkA {
				return p.Slot == slotA
			}
		}
		return false
	})
}

// TestServerWireGuardUnreachable: a server whose dstAddr names a port
// nothing listens on is down, saying so, as soon as a client's handshake
// meets the ICMP port unreachable.
func TestServerWireGuardUnreachable(t *testing.T) {
	for _, be := range conntest.Platform(t) {
		t.Run(be.Name(), func(t *testing.T) {
			conntest.CheckGoroutines(t)
			dst := closedPort(t, be)
			srv, err := NewServer(ServerConfig{
				Options:    Options{Backend: be, Log: testLogger(t), BufferSize: 2048},
				ListenAddr: "127.0.0.1:0",
				DstAddr:    dst.String(),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { defer close(ran); srv.Run(ctx) }()
			defer func() { cancel(); <-ran }()
			cl, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{BatchSize: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if st := srv.Tunnel().State; st != TunnelUp {
				t.Errorf("a server waiting for clients is %s, want up", st)
			}
			for i := 0; srv.Tunnel().State != TunnelDown; i++ {
				if i > 500 {
					t.Fatalf("server still %s after 10 s of initiations to a closed port", srv.Tunnel().State)
				}
				init := wgInitiation(uint32(i+1), byte(i))
				cl.WriteBatch([]conn.Message{{Buf: init, N: len(init), Addr: srv.ListenAddr()}})
				time.Sleep(20 * time.Millisecond)
			}
			if tn := srv.Tunnel(); !strings.Contains(tn.Reason, "wireguard unreachable") || !strings.Contains(tn.Reason, dst.String()) {
				t.Errorf("reason %q", tn.Reason)
			}
		})
	}
}

func TestEventLogKeepsTheLast(t *testing.T) {
	var l eventLog
	if got := l.list(); len(got) != 0 {
		t.Fatalf("empty log lists %d", len(got))
	}
	for i := range maxEvents + 30 {
		l.add(Event{Reason: fmt.Sprint(i)})
	}
	got := l.list()
	if len(got) != maxEvents {
		t.Fatalf("%d events, want %d", len(got), maxEvents)
	}
	for i, e := range got {
		if want := fmt.Sprint(i + 30); e.Reason != want {
			t.Fatalf("event %d is %s, want %s (oldest first)", i, e.Reason, want)
		}
	}
}

func TestEventFailure(t *testing.T) {
	for _, tc := range []struct {
		to   string
		fail bool
	}{
		{"stalled", true}, {"down", true}, {"degraded", true},
		{"active", false}, {"up", false}, {"excluded", false}, {noState, false},
	} {
		if got := (Event{To: tc.to}).Failure(); got != tc.fail {
			t.Errorf("to %s: Failure %v, want %v", tc.to, got, tc.fail)
		}
	}
}

// refusingConn is a Conn whose every send fails with err, as a path
// without a route or behind a firewall's reject.
type refusingConn struct {
	nullConn
	err error
}

func (c *refusingConn) TryWriteBatch([]conn.Message) (int, error) { return 0, c.err }

// TestRefusedSendAllocs pins that a path refusing every packet costs no
// allocation per packet: the sender notes the error for the states at
// most once a second.
func TestRefusedSendAllocs(t *testing.T) {
	const batch = 64
	pool, err := ring.NewPool(2048, 2*batch, 2*batch)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var st Stats
	var timeout atomic.Int64
	c := &refusingConn{err: os.NewSyscallError("sendmmsg", syscall.ENETUNREACH)}
	s := newSender(senderConfig{name: "link a", conn: c, stats: &st}, 16, batch, &timeout, nopLogger)
	defer s.close()
	bufs := make([]*ring.Packet, batch)
	scratch := make([]conn.Message, batch)
	round := func() {
		for i := range bufs {
			bufs[i] = pool.Get()
			bufs[i].N = 200
		}
		s.send(bufs, scratch)
	}
	round()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Errorf("a refused send allocates %.2f times per batch, want 0", a)
	}
	if st.SendErrors.Load() == 0 || s.lastErr.Load() == nil {
		t.Fatalf("no send error noted (%d)", st.SendErrors.Load())
	}
	if got := (*s.lastErr.Load()).Error(); !strings.Contains(got, "network is unreachable") {
		t.Errorf("noted %q", got)
	}
}

// TestForgedDatagramsChangeNoState plays an attacker who cannot see the
// traffic against the states: with every link dead, a flood of
// WireGuard-shaped datagrams from strangers to the links' addresses and to
// the server must not make a link look alive, nor add a server event or
// change the server's state (only members of a session, which WireGuard's
// answer makes, move either).
func TestForgedDatagramsChangeNoState(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	tu.noProbes()
	tu.keepSending()
	fn.Drop(n.linkA, true)
	fn.Drop(n.linkB, true)
	within(t, 15*time.Second, "the tunnel down", func() bool { return tu.client.Tunnel().State == TunnelDown })
	serverEvents, serverState := len(tu.server.Events()), tu.server.Tunnel().State

	var targets []netip.AddrPort
	tu.client.mu.Lock()
	for _, l := range tu.client.links {
		targets = append(targets, l.tx.conn.LocalAddr())
	}
	tu.client.mu.Unlock()
	targets = append(targets, tu.server.ListenAddr())
	sent := 0
	for i := range 50 {
		src, err := fn.Listen(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i), 9}), 0), conn.SocketOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []conn.Message
		for k, dst := range targets {
			tr := make([]byte, 64)
			tr[0] = wgTransportType
			binary.LittleEndian.PutUint32(tr[4:], uint32(testClientIndex+k%2*(testServerIndex-testClientIndex))) // the real indexes
			binary.LittleEndian.PutUint64(tr[8:], uint64(i))
			junk := []byte("not WireGuard")
			msgs = append(msgs, conn.Message{Buf: tr, N: len(tr), Addr: dst}, conn.Message{Buf: junk, N: len(junk), Addr: dst})
		}
		k, _ := src.WriteBatch(msgs)
		sent += k
		src.Close()
	}
	time.Sleep(2 * healthEvery)
	t.Logf("%d forged datagrams sent", sent)
	for _, name := range []string{"a", "b"} {
		if st, why := linkState(tu.client, name); st != LinkStalled {
			t.Errorf("link %s is %s (%s) after the forged flood, want still stalled", name, st, why)
		}
	}
	if st := tu.client.Tunnel().State; st != TunnelDown {
		t.Errorf("the tunnel is %s after the forged flood, want still down", st)
	}
	if got := len(tu.server.Events()); got != serverEvents {
		t.Errorf("the flood added %d server events: %v", got-serverEvents, tu.server.Events()[serverEvents:])
	}
	if st := tu.server.Tunnel().State; st != serverState {
		t.Errorf("the server went from %s to %s", serverState, st)
	}
}

// TestIdleTunnelNotStalled: with WireGuard idle, what the client itself
// sends expects no answer (a re-sent initiation, which the server absorbs;
// probes to an original engarde server): a link that comes up and re-sends
// the handshake must stay active, not be taken for a dead one.
func TestIdleTunnelNotStalled(t *testing.T) {
	n := fakeTestNet(conntest.NewNet())
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	tu.noProbes()
	tu.ifs.mu.Lock()
	tu.ifs.ifs = append(tu.ifs.ifs, Iface{Name: "c", Index: 103, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("10.0.3.2")}})
	tu.ifs.mu.Unlock()
	tu.client.Rescan()
	tu.waitLinks(3)
	within(t, 5*time.Second, "link c's re-sent initiation to join", func() bool { return tu.server.Joins.Load() > 0 })
	time.Sleep(stallAfter + time.Second)
	for _, name := range []string{"a", "b", "c"} {
		if st, why := linkState(tu.client, name); st != LinkActive {
			t.Errorf("idle link %s is %s (%s), want active", name, st, why)
		}
	}
	if tn := tu.client.Tunnel(); tn.State != TunnelUp {
		t.Errorf("idle tunnel %s (%s), want up", tn.State, tn.Reason)
	}
}
