package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// testIfaces is a mutable interface list for a client under test.
type testIfaces struct {
	mu  sync.Mutex
	ifs []Iface
	ch  chan struct{}
}

func (t *testIfaces) list() ([]Iface, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Iface(nil), t.ifs...), nil
}

func (t *testIfaces) set(name string, f func(*Iface)) {
	t.mu.Lock()
	for i := range t.ifs {
		if t.ifs[i].Name == name {
			f(&t.ifs[i])
		}
	}
	t.mu.Unlock()
	select {
	case t.ch <- struct{}{}:
	default:
	}
}

func (t *testIfaces) watcher() (Watcher, error) {
	return &chanWatcher{ch: t.ch, done: make(chan struct{})}, nil
}

type chanWatcher struct {
	ch   chan struct{}
	done chan struct{}
	once sync.Once
}

func (w *chanWatcher) Wait() error {
	select {
	case <-w.ch:
		return nil
	case <-w.done:
		return net.ErrClosed
	}
}

func (w *chanWatcher) Close() error { w.once.Do(func() { close(w.done) }); return nil }

// testNet abstracts where an end-to-end test runs: real loopback sockets
// or the fake network.
type testNet struct {
	backend conn.Backend
	// addrs are the addresses of links a and b, the server, and the
	// WireGuard stand-ins on each side.
	linkA, linkB, server, wg netip.Addr
	// serverListen, when valid, is the server's listen address instead
	// of server:0 (a wildcard, say).
	serverListen netip.AddrPort
	// clientTimeout is the server's (30 s when 0: longer than any stall
	// of a test slowed down by the race detector on a busy machine).
	clientTimeout time.Duration
	// clientState is the client's state file (none when empty).
	clientState string
	// open opens a plain socket for the WireGuard stand-ins.
	open func(t *testing.T, laddr netip.AddrPort) conn.Conn
}

func loopbackNet(t *testing.T, be conn.Backend) *testNet {
	return &testNet{
		backend: be,
		linkA:   netip.MustParseAddr("127.0.0.2"),
		linkB:   netip.MustParseAddr("127.0.0.3"),
		server:  netip.MustParseAddr("127.0.0.1"),
		wg:      netip.MustParseAddr("127.0.0.1"),
		open: func(t *testing.T, laddr netip.AddrPort) conn.Conn {
			c, err := be.Listen(laddr, conn.SocketOptions{BatchSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
}

// tunnel is a client and a server joined by links a and b, with a
// WireGuard stand-in behind the server that echoes the first copy of each
// sequence number, as WireGuard drops replays.
type tunnel struct {
	t      *testing.T
	ifs    *testIfaces
	client *Client
	server *Server
	wgApp  conn.Conn // the client-side WireGuard stand-in
	ctx    context.Context
	cancel context.CancelFunc
	// clientCfg is the client's configuration; stopClient ends it alone.
	clientCfg  ClientConfig
	stopClient func()
	wg         sync.WaitGroup
	echoed     atomic.Uint64
	// initiations counts those the server-side stand-in received; inits
	// those the client-side one sent.
	initiations, inits atomic.Uint64
	base               uint64 // first sequence number of the next stream
}

func startTunnel(t *testing.T, n *testNet, opts Options) *tunnel {
	conntest.CheckGoroutines(t)
	tu := &tunnel{t: t}
	ctx, cancel := context.WithCancel(context.Background())
	tu.ctx, tu.cancel = ctx, cancel

	echo := n.open(t, netip.AddrPortFrom(n.wg, 0))
	// Links run over loopback addresses, not interfaces of their own.
	opts.Backend = conntest.NoDevice(n.backend)
	if opts.Log == nil {
		opts.Log = testLogger(t)
	}
	listen := netip.AddrPortFrom(n.server, 0)
	if n.serverListen.IsValid() {
		listen = n.serverListen
	}
	srv, err := NewServer(ServerConfig{
		Options:       opts,
		ListenAddr:    listen.String(),
		DstAddr:       echo.LocalAddr().String(),
		ClientTimeout: n.clientTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	tu.server = srv
	tu.ifs = &testIfaces{ch: make(chan struct{}, 1), ifs: []Iface{
		{Name: "a", Index: 101, Up: true, Running: true, Addrs: []netip.Addr{n.linkA}},
		{Name: "b", Index: 102, Up: true, Running: true, Addrs: []netip.Addr{n.linkB}},
	}}
	tu.clientCfg = ClientConfig{
		Options:    opts,
		ListenAddr: netip.AddrPortFrom(n.wg, 0).String(),
		DstAddr:    netip.AddrPortFrom(n.server, srv.ListenAddr().Port()).String(),
		Interfaces: tu.ifs.list,
		Watch:      tu.ifs.watcher,
		StateFile:  n.clientState,
	}
	tu.wgApp = n.open(t, netip.AddrPortFrom(n.wg, 0))

	tu.wg.Add(2)
	go func() { defer tu.wg.Done(); srv.Run(ctx) }()
	tu.startClient(ctx)
	go func() { defer tu.wg.Done(); tu.echoFirst(echo) }()
	t.Cleanup(func() {
		if t.Failed() {
			tu.dump()
		}
		cancel()
		echo.Close()
		tu.wgApp.Close()
		tu.wg.Wait()
	})
	tu.waitLinks(2)
	tu.handshake()
	return tu
}

// startClient starts a client of tu.clientCfg, to run until ctx ends or
// tu.stopClient.
func (tu *tunnel) startClient(ctx context.Context) {
	tu.t.Helper()
	cl, err := NewClient(tu.clientCfg)
	if err != nil {
		tu.t.Fatal(err)
	}
	tu.client = cl
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	tu.stopClient = func() { cancel(); <-done }
	tu.wg.Add(1)
	go func() { defer tu.wg.Done(); defer close(done); cl.Run(cctx) }()
}

// dump logs every counter, to show where packets went.
func (tu *tunnel) dump() {
	st := func(s *Stats) string {
		return fmt.Sprintf("rx %d tx %d full %d timeout %d err %d closed %d oversize %d rxerr %d",
			s.RxPackets.Load(), s.TxPackets.Load(), s.DropFull.Load(), s.DropTimeout.Load(), s.DropError.Load(), s.DropClosed.Load(), s.Oversize.Load(), s.RxErrors.Load())
	}
	tu.t.Logf("client wireguard: %s; no link %d", st(&tu.client.WireGuardStats), tu.client.NoLink.Load())
	for _, l := range tu.client.Links() {
		if l.Stats != nil {
			tu.t.Logf("client link %s: %s", l.Name, st(l.Stats))
		}
	}
	tu.t.Logf("server listen: %s", st(&tu.server.ListenStats))
	tu.t.Logf("server handshake socket: %s; no peer %d; not WireGuard %d; not member %d; foreign %d; unrouted %d; echoed %d",
		st(&tu.server.UpstreamStats), tu.server.NoPeer.Load(), tu.server.NotWireGuard.Load(), tu.server.NotMember.Load(), tu.server.Foreign.Load(), tu.server.Unrouted.Load(), tu.echoed.Load())
	for _, ss := range tu.server.Sessions() {
		tu.t.Logf("server session %d (%v, indexes %v): %s", ss.ID, ss.Endpoint, ss.Indexes, st(ss.Stats))
		for _, p := range ss.Addrs {
			tu.t.Logf("  address %v live %v: %s", p.Addr, p.Live, st(p.Stats))
		}
	}
}

// waitPeers waits up to 2 s for the server to know n client addresses (a
// stream can end before the slower link's first datagram arrives) and
// returns how many it knows.
func (tu *tunnel) waitPeers(n int) int {
	deadline := time.Now().Add(2 * time.Second)
	for len(tu.server.Peers()) != n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return len(tu.server.Peers())
}

func (tu *tunnel) waitLinks(n int) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if len(*tu.client.active.Load()) == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	tu.t.Fatalf("client has %d active links, want %d", len(*tu.client.active.Load()), n)
}

// The indexes of the tunnel's WireGuard session, in the stand-ins' made-up
// handshake: the client-side stand-in's (the receiver index of the replies)
// and the server-side one's (the receiver index of what the client sends).
const (
	testClientIndex = 0x11
	testServerIndex = 7
)

// wgInitiation returns a handshake initiation shaped like WireGuard's
// (no cryptography: the bytes after the index are fill).
func wgInitiation(index uint32, fill byte) []byte {
	b := make([]byte, wgInitiationLen)
	b[0] = wgInitiationType
	binary.LittleEndian.PutUint32(b[4:], index)
	for i := 8; i < len(b); i++ {
		b[i] = fill
	}
	return b
}

// wgResponse returns a handshake response shaped like WireGuard's.
func wgResponse(sender, receiver uint32) []byte {
	b := make([]byte, wgResponseLen)
	b[0] = wgResponseType
	binary.LittleEndian.PutUint32(b[4:], sender)
	binary.LittleEndian.PutUint32(b[8:], receiver)
	return b
}

// echoFirst stands in for the server's WireGuard: it answers every
// initiation with a response (from index testServerIndex), and echoes the
// first copy of each transport message's counter, addressed to
// testClientIndex, as WireGuard drops replays.
func (tu *tunnel) echoFirst(c conn.Conn) {
	seen := map[uint64]bool{}
	msgs := make([]conn.Message, 64)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	out := make([]conn.Message, 0, 64)
	for {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			return
		}
		out = out[:0]
		for _, m := range msgs[:n] {
			switch {
			case m.N == wgInitiationLen && m.Buf[0] == wgInitiationType:
				tu.initiations.Add(1)
				r := wgResponse(testServerIndex, binary.LittleEndian.Uint32(m.Buf[4:]))
				out = append(out, conn.Message{Buf: r, N: len(r), Addr: m.Addr})
				continue
			case m.N < 16 || m.Buf[0] != wgTransportType:
				continue
			}
			seq := binary.LittleEndian.Uint64(m.Buf[8:])
			if seen[seq] {
				continue
			}
			seen[seq] = true
			binary.LittleEndian.PutUint32(m.Buf[4:], testClientIndex)
			out = append(out, m)
		}
		k, _ := c.WriteBatch(out)
		tu.echoed.Add(uint64(k))
	}
}

// handshake has the client-side stand-in send an initiation until the
// response comes back through the tunnel.
func (tu *tunnel) handshake() {
	tu.t.Helper()
	got := make(chan bool, 1)
	go func() {
		msgs := make([]conn.Message, 8)
		for i := range msgs {
			msgs[i].Buf = make([]byte, 2048)
		}
		for {
			n, err := tu.wgApp.ReadBatch(msgs)
			if err != nil {
				got <- false
				return
			}
			for _, m := range msgs[:n] {
				if m.N == wgResponseLen && m.Buf[0] == wgResponseType && binary.LittleEndian.Uint32(m.Buf[8:]) == testClientIndex {
					got <- true
					return
				}
			}
		}
	}()
	init := wgInitiation(testClientIndex, byte(tu.inits.Add(1)))
	deadline := time.After(5 * time.Second)
	for {
		if _, err := tu.wgApp.WriteBatch([]conn.Message{{Buf: init, N: len(init), Addr: tu.client.ListenAddr()}}); err != nil {
			tu.t.Fatal(err)
		}
		select {
		case ok := <-got:
			if !ok {
				tu.t.Fatal("WireGuard stand-in closed during the handshake")
			}
			return
		case <-time.After(250 * time.Millisecond):
		case <-deadline:
			tu.t.Fatal("no handshake response through the tunnel within 5 s")
		}
	}
}

// readCounters reads what reaches the client-side WireGuard stand-in,
// handing each the counter of every transport message, until the socket
// closes or, after a batch, stop (when not nil) says so.
func (tu *tunnel) readCounters(each func(ctr uint64), stop func() bool) {
	msgs := make([]conn.Message, 64)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := tu.wgApp.ReadBatch(msgs)
		if err != nil {
			return
		}
		for _, m := range msgs[:n] {
			if m.N >= 16 && m.Buf[0] == wgTransportType {
				each(binary.LittleEndian.Uint64(m.Buf[8:]))
			}
		}
		if stop != nil && stop() {
			return
		}
	}
}

// stream sends count datagrams of size bytes at rate per second from the
// client-side WireGuard stand-in, and returns how many distinct sequence
// numbers came back (the client passes duplicates on; they are counted
// separately). during is called once, halfway.
func (tu *tunnel) stream(count, size, rate int, during func()) (got, dups int) {
	base := tu.base
	tu.base += uint64(count)
	var mu sync.Mutex
	seen := make([]bool, count)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tu.readCounters(func(ctr uint64) {
			mu.Lock()
			defer mu.Unlock()
			if seq := ctr - base; seq < uint64(count) {
				if seen[seq] {
					dups++
				} else {
					seen[seq] = true
					got++
				}
			}
		}, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return got == count
		})
	}()
	if raceEnabled {
		rate = min(rate, 3000)
	}
	dst := tu.client.ListenAddr()
	buf := make([]byte, size)
	start := time.Now()
	for i := range count {
		if i == count/2 && during != nil {
			during()
		}
		// A WireGuard transport header: the counter is the sequence
		// number, so that the duplicate filter recognises the copies.
		buf[0] = wgTransportType
		binary.LittleEndian.PutUint32(buf[4:], testServerIndex)
		binary.LittleEndian.PutUint64(buf[8:], base+uint64(i))
		if _, err := tu.wgApp.WriteBatch([]conn.Message{{Buf: buf, N: size, Addr: dst}}); err != nil {
			tu.t.Fatal(err)
		}
		if due := start.Add(time.Duration(i+1) * time.Second / time.Duration(rate)); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
	}
	// Wait for the stragglers while they keep coming (the race detector
	// and a busy machine slow the pipeline down; they do not lose).
	last, idle := -1, 0
	for idle < 40 {
		select {
		case <-done:
			idle = 40
			continue
		case <-time.After(50 * time.Millisecond):
		}
		mu.Lock()
		if got == last {
			idle++
		} else {
			last, idle = got, 0
		}
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	return got, dups
}

func e2eBody(t *testing.T, n *testNet) {
	t.Run("all arrive", func(t *testing.T) {
		tu := startTunnel(t, n, Options{DisableGRO: true, DisableDedup: true})
		got, dups := tu.stream(2000, 1200, 20000, nil)
		if got != 2000 {
			t.Fatalf("%d of 2000 came back", got)
		}
		// Two links out, two client addresses back: each reply arrives
		// twice, and the client hands both to WireGuard.
		if dups == 0 {
			t.Errorf("no duplicate came back: did both links carry traffic?")
		}
		if n := tu.waitPeers(2); n != 2 {
			t.Errorf("server knows %d client addresses, want 2", n)
		}
	})
	t.Run("duplicates filtered", func(t *testing.T) {
		tu := startTunnel(t, n, Options{DisableGRO: true})
		got, dups := tu.stream(2000, 1200, 20000, nil)
		if got != 2000 || dups != 0 {
			t.Fatalf("%d of 2000 came back, %d duplicates; want all, none", got, dups)
		}
		// Every message crossed both links; one copy each way was dropped
		// before WireGuard.
		if d := tu.server.Duplicates.Load(); d == 0 || d > 2000 {
			t.Errorf("server dropped %d copies, want 1..2000", d)
		}
		if d := tu.client.Duplicates.Load(); d == 0 || d > 2000 {
			t.Errorf("client dropped %d copies, want 1..2000", d)
		}
	})
	t.Run("link down loses nothing", func(t *testing.T) {
		tu := startTunnel(t, n, Options{DisableGRO: true, DisableDedup: true})
		got, _ := tu.stream(4000, 1200, 20000, func() {
			tu.ifs.set("a", func(i *Iface) { i.Up = false })
		})
		if got != 4000 {
			t.Fatalf("%d of 4000 came back with link a going down", got)
		}
		tu.waitLinks(1)
		// And back: the same socket, so the server sees no new address.
		before := tu.server.Peers()
		tu.ifs.set("a", func(i *Iface) { i.Up = true })
		tu.waitLinks(2)
		if got, _ := tu.stream(1000, 1200, 20000, nil); got != 1000 {
			t.Fatalf("%d of 1000 came back after link a returned", got)
		}
		if after := tu.server.Peers(); len(after) != len(before) {
			t.Errorf("server addresses went from %d to %d after link a returned", len(before), len(after))
		}
	})
	t.Run("exclusion at run time", func(t *testing.T) {
		tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true, DisableDedup: true})
		if ch, _ := tu.client.SetExclusion("a", true); !ch {
			t.Fatal("SetExclusion(a, true) changed nothing")
		}
		if ch, _ := tu.client.SetExclusion("a", true); ch {
			t.Fatal("SetExclusion(a, true) should change once")
		}
		tu.waitLinks(1)
		if !tu.client.Excluded("a") {
			t.Error("a not reported excluded")
		}
		got, _ := tu.stream(500, 500, 20000, func() {
			_ = tu.client.ResetExclusions()
		})
		if got != 500 {
			t.Fatalf("%d of 500 came back across an exclusion reset", got)
		}
		tu.waitLinks(2)
		// Reconfigure excluding b: a keeps its socket, b goes.
		before := tu.server.Peers()
		cfg := tu.client.cfg
		cfg.Excluded = []string{"b"}
		cfg.Labels = map[string]string{"a": "Fiber"}
		if err := tu.client.Reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
		tu.waitLinks(1)
		for _, l := range tu.client.Links() {
			if l.Name == "a" && (l.Label != "Fiber" || l.Status != "active") {
				t.Errorf("link a after reload: label %q status %q", l.Label, l.Status)
			}
			if l.Name == "b" && l.Status != "excluded" {
				t.Errorf("link b after reload: status %q, want excluded", l.Status)
			}
		}
		if got, _ := tu.stream(500, 500, 20000, nil); got != 500 {
			t.Fatalf("%d of 500 came back after the reload", got)
		}
		if after := tu.server.Peers(); len(after) != len(before) {
			t.Errorf("a reload that kept link a changed the server's addresses from %d to %d", len(before), len(after))
		}
		// A toggle on an interface whose configured exclusion a reload
		// changes is dropped: the file wins.
		if ch, _ := tu.client.SetExclusion("b", false); !ch {
			t.Fatal("SetExclusion(b, false) changed nothing")
		}
		cfg.Excluded = nil
		if err := tu.client.Reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
		if tu.client.Excluded("b") {
			t.Error("b excluded after a reload that includes it and a toggle that included it")
		}
		cfg.ListenAddr = "127.0.0.1:1"
		if err := tu.client.Reconfigure(cfg); err == nil {
			t.Error("Reconfigure accepted a new listen address")
		}
	})
	t.Run("interface gone", func(t *testing.T) {
		tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true, DisableDedup: true})
		tu.ifs.mu.Lock()
		tu.ifs.ifs = tu.ifs.ifs[1:]
		tu.ifs.mu.Unlock()
		tu.client.Rescan()
		tu.waitLinks(1)
		if got, _ := tu.stream(1000, 500, 20000, nil); got != 1000 {
			t.Fatalf("%d of 1000 came back on one link", got)
		}
	})
}

func fakeTestNet(fn *conntest.Net) *testNet {
	return &testNet{
		backend: fn,
		linkA:   netip.MustParseAddr("10.0.1.2"),
		linkB:   netip.MustParseAddr("10.0.2.2"),
		server:  netip.MustParseAddr("10.0.0.1"),
		wg:      netip.MustParseAddr("127.0.0.1"),
		open: func(t *testing.T, laddr netip.AddrPort) conn.Conn {
			c, err := fn.Listen(laddr, conn.SocketOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
}

func TestEndToEndFake(t *testing.T) {
	e2eBody(t, fakeTestNet(conntest.NewNet()))
}

// TestServerForgetsSilentAddresses checks clientTimeout: an address that
// stops sending gets no more replies, and gets them again as soon as it
// sends its session's datagrams.
func TestServerForgetsSilentAddresses(t *testing.T) {
	n := fakeTestNet(conntest.NewNet())
	n.clientTimeout = 300 * time.Millisecond
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true, DisableDedup: true})
	if got, _ := tu.stream(100, 200, 5000, nil); got != 100 {
		t.Fatalf("%d of 100 came back", got)
	}
	if n := tu.waitLive(2); n != 2 {
		t.Fatalf("server has %d live addresses, want 2", n)
	}
	if n := tu.waitLive(0); n != 0 {
		t.Fatalf("server still has %d live addresses after 5 s of silence", n)
	}
	if got, _ := tu.stream(100, 200, 5000, nil); got != 100 {
		t.Fatalf("%d of 100 came back after the addresses went silent", got)
	}
	if n := tu.waitLive(2); n != 2 {
		t.Fatalf("server has %d live addresses again, want 2", n)
	}
	if ss := tu.server.Sessions(); len(ss) != 1 {
		t.Errorf("%d sessions, want the one", len(ss))
	}
}

// waitLive waits up to 5 s for the server to have n live client addresses
// and returns how many it has.
func (tu *tunnel) waitLive(n int) int {
	live := func() int {
		k := 0
		for _, p := range tu.server.Peers() {
			if p.Live {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(5 * time.Second)
	for live() != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return live()
}

// TestServerAnswersOnlySessions: a datagram that is not WireGuard's, from
// an address in no session, is dropped, counted and not answered, and
// does not make the server send anything to that address: a forged source
// address must not turn the server into a reflector.
func TestServerAnswersOnlySessions(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true, DisableDedup: true})
	stranger, err := fn.Listen(netip.MustParseAddrPort("10.9.9.9:0"), conn.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	sent := tu.server.UpstreamStats.TxPackets.Load()
	junk := []byte("not a WireGuard message, whatever its source claims")
	if _, err := stranger.WriteBatch([]conn.Message{{Buf: junk, N: len(junk), Addr: tu.server.ListenAddr()}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for tu.server.NotWireGuard.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if tu.server.NotWireGuard.Load() != 1 {
		t.Fatalf("NotWireGuard = %d, want 1", tu.server.NotWireGuard.Load())
	}
	if got := tu.server.UpstreamStats.TxPackets.Load(); got != sent {
		t.Errorf("the datagram was forwarded to WireGuard")
	}
	if got, _ := tu.stream(100, 100, 5000, nil); got != 100 {
		t.Fatalf("%d of 100 came back", got)
	}
	for _, p := range tu.server.Peers() {
		if p.Addr == stranger.LocalAddr() {
			t.Errorf("the stranger became a client address")
		}
	}
	if got := received(stranger, 100*time.Millisecond); got != 0 {
		t.Errorf("the stranger received %d datagrams", got)
	}
}

// received counts the datagrams c receives within d.
func received(c conn.Conn, d time.Duration) int {
	n := atomic.Int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		msgs := []conn.Message{{Buf: make([]byte, 2048)}}
		for {
			k, err := c.ReadBatch(msgs)
			if err != nil {
				return
			}
			n.Add(int64(k))
		}
	}()
	time.Sleep(d)
	c.Close()
	<-done
	return int(n.Load())
}

// TestStalledLinkDoesNotStallOthers pins the original's worst failure: a
// link whose socket stops draining held every other link up for
// writeTimeout per packet. Here link a's sends block for good; link b must
// carry everything, and link a must count its own drops.
func TestStalledLinkDoesNotStallOthers(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tu := startTunnel(t, n, Options{QueueLength: 64, WriteTimeout: 5 * time.Millisecond, DisableGSO: true, DisableGRO: true, DisableDedup: true})
	var a *Stats
	for _, l := range tu.client.Links() {
		if l.Name == "a" {
			a = l.Stats
		}
	}
	if a == nil {
		t.Fatal("link a not found")
	}
	sent := a.TxPackets.Load() // the handshake
	fn.Stall(n.linkA)
	defer fn.Unstall(n.linkA)
	got, _ := tu.stream(3000, 1000, 30000, nil)
	if got != 3000 {
		t.Fatalf("%d of 3000 came back with link a stalled", got)
	}
	if a.DropTimeout.Load()+a.DropFull.Load() == 0 {
		t.Errorf("stalled link a counted no drops (timeout %d, full %d)", a.DropTimeout.Load(), a.DropFull.Load())
	}
	if a.TxPackets.Load() != sent {
		t.Errorf("stalled link a sent %d packets", a.TxPackets.Load()-sent)
	}
}

func TestEndToEndLoopback(t *testing.T) {
	for _, be := range conntest.All(t) {
		t.Run(be.Name(), func(t *testing.T) { e2eBody(t, loopbackNet(t, be)) })
	}
}

// TestServerWildcardListen runs the server on [::] (what ":59402" means):
// IPv4 clients arrive v4-mapped on a dual-stack socket, and each must still
// get its own socket, bound to the address it sent to.
func TestServerWildcardListen(t *testing.T) {
	for _, be := range conntest.Platform(t) {
		t.Run(be.Name(), func(t *testing.T) {
			n := loopbackNet(t, be)
			n.serverListen = netip.MustParseAddrPort("[::]:0")
			tu := startTunnel(t, n, Options{DisableGRO: true, DisableDedup: true})
			if got, _ := tu.stream(2000, 1000, 20000, nil); got != 2000 {
				t.Fatalf("%d of 2000 came back", got)
			}
			peers := tu.server.Peers()
			if len(peers) != 2 {
				t.Fatalf("server knows %d client addresses, want 2", len(peers))
			}
			for _, p := range peers {
				if p.Local.Addr() != n.server {
					t.Errorf("client %v is answered from %v, want %v", p.Addr, p.Local, n.server)
				}
			}
		})
	}
}

func testLogger(t *testing.T) *Logger {
	f := func(format string, args ...any) { t.Logf(format, args...) }
	return &Logger{Infof: f, Warnf: f, Errorf: f}
}

// TestLinkAddedJoinsAtOnce: a link that appears mid-session carries
// replies at once: the client re-sends WireGuard's last initiation over
// it, and the server adds its address without a new handshake. The old
// links then go down, and nothing is lost.
func TestLinkAddedJoinsAtOnce(t *testing.T) {
	n := fakeTestNet(conntest.NewNet())
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	if got, _ := tu.stream(100, 200, 5000, nil); got != 100 {
		t.Fatalf("%d of 100 came back", got)
	}
	tu.ifs.mu.Lock()
	tu.ifs.ifs = append(tu.ifs.ifs, Iface{Name: "c", Index: 103, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("10.0.3.2")}})
	tu.ifs.mu.Unlock()
	added := time.Now()
	tu.client.Rescan()
	tu.waitLinks(3)
	for tu.server.Joins.Load() == 0 {
		if time.Since(added) > time.Second {
			t.Fatalf("link c's address did not join the session within a second")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("link c joined %v after it appeared", time.Since(added).Round(time.Millisecond))
	inits := tu.initiations.Load()
	got, _ := tu.stream(1000, 200, 10000, func() {
		tu.ifs.set("a", func(i *Iface) { i.Up = false })
		tu.ifs.set("b", func(i *Iface) { i.Up = false })
	})
	if got != 1000 {
		t.Fatalf("%d of 1000 came back with only the new link left", got)
	}
	if tu.initiations.Load() != inits {
		t.Errorf("WireGuard saw %d more initiations: the re-sent one reached it", tu.initiations.Load()-inits)
	}
}

// TestClientFollowsOnlyWireGuard: replies go to the address WireGuard
// sends from; a datagram from another local socket does not move them,
// and is not forwarded, unless it is a handshake (WireGuard restarted on
// another port).
func TestClientFollowsOnlyWireGuard(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	other, err := fn.Listen(netip.AddrPortFrom(n.wg, 0), conn.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	junk := []byte("any local program can send this")
	if _, err := other.WriteBatch([]conn.Message{{Buf: junk, N: len(junk), Addr: tu.client.ListenAddr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the datagram to be counted foreign", func() bool { return tu.client.Foreign.Load() == 1 })
	if got, _ := tu.stream(100, 200, 5000, nil); got != 100 {
		t.Fatalf("%d of 100 came back to WireGuard after a stranger's datagram", got)
	}
	// WireGuard on a new port starts with a handshake: replies follow it.
	init := wgInitiation(testClientIndex, 0x77)
	if _, err := other.WriteBatch([]conn.Message{{Buf: init, N: len(init), Addr: tu.client.ListenAddr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client to follow the handshake", func() bool { return *tu.client.wgAddr.Load() == other.LocalAddr() })
	if got := received(other, 200*time.Millisecond); got < 1 {
		t.Errorf("the new WireGuard address received %d datagrams, want the handshake response", got)
	}
}

// TestClientRejoinsQuietLink: when the server stops answering one link
// (it forgot the address, as after a NAT gave the link a new port), the
// client notices that the link receives nothing while WireGuard sends, and
// re-sends WireGuard's last initiation over it: the link is back within a
// few seconds, without waiting for WireGuard's next handshake.
func TestClientRejoinsQuietLink(t *testing.T) {
	n := fakeTestNet(conntest.NewNet())
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	if got, _ := tu.stream(100, 200, 5000, nil); got != 100 {
		t.Fatalf("%d of 100 came back", got)
	}
	// The server forgets link a's address.
	srv := tu.server
	srv.mu.Lock()
	for _, m := range *srv.members.Load() {
		if m.addr.Addr() == n.linkA {
			srv.removeMemberLocked(m)
		}
	}
	srv.mu.Unlock()
	srv.closeLater()
	joins := srv.Joins.Load()
	forgot := time.Now()
	// WireGuard keeps sending; within quietFor+rescan link a re-sends.
	for srv.Joins.Load() == joins {
		if time.Since(forgot) > quietFor+3*time.Second {
			t.Fatalf("link a did not rejoin within %v", quietFor+3*time.Second)
		}
		tu.stream(20, 200, 2000, nil)
	}
	t.Logf("link a rejoined %v after the server forgot it", time.Since(forgot).Round(100*time.Millisecond))
	found := false
	for _, p := range srv.Peers() {
		if p.Addr.Addr() == n.linkA && p.Live {
			found = true
		}
	}
	if !found {
		t.Error("link a's address is not a live member after rejoining")
	}
}
