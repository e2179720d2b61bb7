package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// The probes over the fake network: what they measure, and what an
// attacker gets from them.

// probeEvery sets the client's probe interval (a reload).
func (tu *tunnel) probeEvery(d time.Duration) {
	tu.t.Helper()
	cfg := tu.clientCfg
	cfg.ProbeInterval = d
	if err := tu.client.Reconfigure(cfg); err != nil {
		tu.t.Fatal(err)
	}
}

// linkProbeStats returns link name's probe figures (nil: none).
func linkProbeStats(c *Client, name string) *ProbeStats {
	for _, l := range c.Links() {
		if l.Name == name {
			return l.Probe
		}
	}
	return nil
}

// probeWait polls cond every 10 ms for up to d.
func probeWait(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// probeTap counts, on a fake network, what the probes do: every
// probe-shaped datagram that reaches a WireGuard stand-in (on 127.0.0.1)
// and the replies sent to each address, with their bytes.
type probeTap struct {
	toWireGuard atomic.Uint64
	mu          sync.Mutex
	replies     map[netip.AddrPort]int // datagrams to each address
	bytes       map[netip.AddrPort]int
	last        map[netip.AddrPort][]byte // the last reply to each address
	judge       func(src, dst netip.AddrPort, b []byte) (bool, time.Duration)
}

func newProbeTap(fn *conntest.Net, judge func(src, dst netip.AddrPort, b []byte) (bool, time.Duration)) *probeTap {
	tp := &probeTap{replies: map[netip.AddrPort]int{}, bytes: map[netip.AddrPort]int{}, last: map[netip.AddrPort][]byte{}, judge: judge}
	fn.SetFilter(tp.filter)
	return tp
}

func (tp *probeTap) filter(src, dst netip.AddrPort, b []byte) (bool, time.Duration) {
	if !probeShaped(b, 0) {
		return false, 0
	}
	if dst.Addr() == netip.MustParseAddr("127.0.0.1") {
		tp.toWireGuard.Add(1)
	}
	if kind, _, _, _, ok := parseProbe(b); ok && kind == probeReply {
		tp.mu.Lock()
		tp.replies[dst]++
		tp.bytes[dst] += len(b)
		tp.last[dst] = append([]byte(nil), b...)
		tp.mu.Unlock()
	}
	if tp.judge != nil {
		return tp.judge(src, dst, b)
	}
	return false, 0
}

func (tp *probeTap) lastReply(dst netip.AddrPort) []byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.last[dst]
}

func (tp *probeTap) count(dst netip.AddrPort) (n, bytes int) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.replies[dst], tp.bytes[dst]
}

// TestProbeRTTAndLoss: without traffic, the probes measure each link: link
// a's replies are held 20 ms on the way back, link b loses every fifth
// probe on the way out. WireGuard's stand-ins never see a probe.
func TestProbeRTTAndLoss(t *testing.T) {
	const delay = 20 * time.Millisecond
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	var toB atomic.Uint64
	tp := newProbeTap(fn, func(src, dst netip.AddrPort, b []byte) (bool, time.Duration) {
		switch {
		case dst.Addr() == n.linkA && src.Addr() == n.server:
			return false, delay
		case src.Addr() == n.linkB && dst.Addr() == n.server:
			return toB.Add(1)%5 == 0, 0
		}
		return false, 0
	})
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	tu.probeEvery(20 * time.Millisecond)
	enough := func() bool {
		a, b := linkProbeStats(tu.client, "a"), linkProbeStats(tu.client, "b")
		return a != nil && b != nil && a.Window >= 60 && b.Window >= 60
	}
	if !probeWait(20*time.Second, enough) {
		t.Fatalf("fewer than 60 probes judged per link: a %+v, b %+v", linkProbeStats(tu.client, "a"), linkProbeStats(tu.client, "b"))
	}
	a, b := linkProbeStats(tu.client, "a"), linkProbeStats(tu.client, "b")
	t.Logf("link a: %+v", *a)
	t.Logf("link b: %+v", *b)
	if a.RTT50 < delay || a.RTT99 < a.RTT50 {
		t.Errorf("link a: RTT p50 %v, p99 %v; want p50 at least the %v delay", a.RTT50, a.RTT99, delay)
	}
	if a.Lost > 1 {
		t.Errorf("link a lost %d of %d probes, want none", a.Lost, a.Window)
	}
	// Every fifth probe of link b dropped: a fifth of the window, give or
	// take the window's edges and the probes still in flight.
	if lo, hi := b.Window/5-3, b.Window/5+3; b.Lost < lo || b.Lost > hi {
		t.Errorf("link b lost %d of %d probes, want about %d", b.Lost, b.Window, b.Window/5)
	}
	if b.RTT50 >= delay {
		t.Errorf("link b: RTT p50 %v, want below link a's delay", b.RTT50)
	}
	if a.LastAnswer.IsZero() || time.Since(a.LastAnswer) > time.Second {
		t.Errorf("link a: last answer %v", a.LastAnswer)
	}
	if m := tu.client.probeMode(); m != "on" {
		t.Errorf("probe mode %q, want on", m)
	}
	if got := tu.client.ProbesBad.Load(); got != 0 {
		t.Errorf("%d bad replies on an honest network", got)
	}
	if got := tp.toWireGuard.Load(); got != 0 {
		t.Errorf("WireGuard's stand-ins received %d probes", got)
	}
	if tu.server.ProbesAnswered.Load() == 0 || tu.server.ProbesLimited.Load() != 0 {
		t.Errorf("server: %d answered, %d rate-limited; want answers and no limit", tu.server.ProbesAnswered.Load(), tu.server.ProbesLimited.Load())
	}
}

// TestProbeStrangerGetsNothing: a probe from an address in no session, or
// from a forged one, is dropped and counted: nothing goes back, nothing to
// WireGuard, no entry in any table. Under forwardAnyUDP, a source outside
// WireGuard's sessions gets nothing back either, and its probe-shaped
// datagram is data, forwarded (it was dropped once).
func TestProbeStrangerGetsNothing(t *testing.T) {
	probe := make([]byte, probeLen)
	putProbe(probe, newProbeKey(), 1, 1)
	t.Run("session", func(t *testing.T) {
		fn := conntest.NewNet()
		n := fakeTestNet(fn)
		tp := newProbeTap(fn, nil)
		tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
		tu.probeEvery(-1)
		stranger, err := fn.Listen(netip.MustParseAddrPort("10.9.9.9:0"), conn.SocketOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer stranger.Close()
		// A socket at the forged address, to see whether anything comes.
		forgedSock, err := fn.Listen(netip.MustParseAddrPort("10.9.9.10:4000"), conn.SocketOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer forgedSock.Close()
		forged := forgedSock.LocalAddr()
		refused := tu.server.ProbesRefused.Load()
		upstream := tu.server.UpstreamStats.TxPackets.Load()
		peers := len(tu.server.Peers())
		for range 10 {
			if _, err := stranger.WriteBatch([]conn.Message{{Buf: probe, N: len(probe), Addr: tu.server.ListenAddr()}}); err != nil {
				t.Fatal(err)
			}
			fn.Inject(forged, tu.server.ListenAddr(), probe)
		}
		if !probeWait(2*time.Second, func() bool { return tu.server.ProbesRefused.Load()-refused == 20 }) {
			t.Fatalf("%d probes refused, want 20", tu.server.ProbesRefused.Load()-refused)
		}
		if got := received(stranger, 100*time.Millisecond); got != 0 {
			t.Errorf("the stranger received %d datagrams", got)
		}
		if got := received(forgedSock, 10*time.Millisecond); got != 0 {
			t.Errorf("the forged address received %d datagrams", got)
		}
		if got := tu.server.UpstreamStats.TxPackets.Load(); got != upstream || tp.toWireGuard.Load() != 0 {
			t.Errorf("probes went to WireGuard: %d datagrams on the handshake socket, %d probes at the stand-ins", got-upstream, tp.toWireGuard.Load())
		}
		if got := len(tu.server.Peers()); got != peers {
			t.Errorf("%d client addresses, want %d: a probe made a table entry", got, peers)
		}
		if got := tu.server.NotWireGuard.Load(); got != 0 {
			t.Errorf("probes counted as not WireGuard's (%d): they have their own counter", got)
		}
	})
	t.Run("forwardAnyUDP", func(t *testing.T) {
		conntest.CheckGoroutines(t)
		fn := conntest.NewNet()
		tp := newProbeTap(fn, nil)
		wg, err := fn.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer wg.Close()
		srv, err := NewServer(ServerConfig{Options: Options{Backend: fn, Log: testLogger(t)}, ListenAddr: "10.0.0.1:0", DstAddr: wg.LocalAddr().String(), ForwardAnyUDP: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); srv.Run(ctx) }()
		defer func() { cancel(); <-done }()
		src, err := fn.Listen(netip.MustParseAddrPort("10.9.9.9:0"), conn.SocketOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		junk := []byte("some other protocol, forwarded as the original did")
		src.WriteBatch([]conn.Message{{Buf: junk, N: len(junk), Addr: srv.ListenAddr()}})
		if !probeWait(2*time.Second, func() bool { return len(srv.Peers()) == 1 }) {
			t.Fatalf("the source did not join forwardAnyUDP's session")
		}
		// Under forwardAnyUDP a source outside WireGuard's sessions sends
		// data, whatever its first byte: a probe-shaped datagram is
		// forwarded as the original did, never answered.
		src.WriteBatch([]conn.Message{{Buf: probe, N: len(probe), Addr: srv.ListenAddr()}})
		if !probeWait(2*time.Second, func() bool { return tp.toWireGuard.Load() == 1 }) {
			t.Fatalf("%d probe-shaped datagrams forwarded, want 1: forwardAnyUDP's data was dropped", tp.toWireGuard.Load())
		}
		if got := received(src, 100*time.Millisecond); got != 0 {
			t.Errorf("forwardAnyUDP's source received %d datagrams", got)
		}
		if a, r := srv.ProbesAnswered.Load(), srv.ProbesRefused.Load(); a != 0 || r != 0 {
			t.Errorf("probes answered %d, refused %d: forwardAnyUDP's data is no probe", a, r)
		}
	})
}

// TestProbeForgedReplies: replies that do not come from the server's
// answer to a probe in flight on that link count as bad and change no
// figure: a forged tag, a replay, a reply moved to another link, a
// reply to no probe. None reaches WireGuard.
func TestProbeForgedReplies(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tp := newProbeTap(fn, nil)
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	tu.probeEvery(20 * time.Millisecond)
	var la, lb netip.AddrPort // the links' sockets
	for _, p := range tu.server.Peers() {
		switch p.Addr.Addr() {
		case n.linkA:
			la = p.Addr
		case n.linkB:
			lb = p.Addr
		}
	}
	if !la.IsValid() || !lb.IsValid() {
		t.Fatalf("the server has not both links: %+v", tu.server.Peers())
	}
	if !probeWait(5*time.Second, func() bool { return tp.lastReply(la) != nil && tu.client.ProbesAnswered.Load() > 0 }) {
		t.Fatal("no reply on link a")
	}
	tu.probeEvery(time.Hour)           // still on, so that the figures stay
	time.Sleep(200 * time.Millisecond) // the last probes' replies land
	genuine := tp.lastReply(la)
	srv := netip.AddrPortFrom(n.server, tu.server.ListenAddr().Port())
	answered, bad := tu.client.ProbesAnswered.Load(), tu.client.ProbesBad.Load()
	sa := linkProbeStats(tu.client, "a")

	forgedTag := append([]byte(nil), genuine...)
	forgedTag[16] ^= 0x80
	var random [probeLen]byte
	rand.Read(random[:])
	noProbe := append([]byte(nil), genuine[:4]...)
	noProbe = append(noProbe, random[4:]...)
	for _, f := range []struct {
		name string
		to   netip.AddrPort
		b    []byte
	}{
		{"forged tag", la, forgedTag},
		{"replay", la, genuine},
		{"replay on the other link", lb, genuine},
		{"reply to no probe", la, noProbe},
	} {
		if !fn.Inject(srv, f.to, f.b) {
			t.Fatalf("%s: no socket at %v", f.name, f.to)
		}
	}
	if !probeWait(2*time.Second, func() bool { return tu.client.ProbesBad.Load()-bad == 4 }) {
		t.Errorf("%d bad replies counted, want 4", tu.client.ProbesBad.Load()-bad)
	}
	if got := tu.client.ProbesAnswered.Load(); got != answered {
		t.Errorf("forgeries answered %d probes", got-answered)
	}
	if sa2 := linkProbeStats(tu.client, "a"); sa2 == nil || sa2.Answered != sa.Answered || sa2.RTT50 != sa.RTT50 {
		t.Errorf("link a's figures moved: %+v, then %+v", sa, sa2)
	}
	if got := tp.toWireGuard.Load(); got != 0 {
		t.Errorf("WireGuard's stand-ins received %d probe datagrams", got)
	}
}

// TestProbeFloodRateLimited: a flood of probes from a member's address
// (forged by someone who sees the link, or replayed) gets at most the
// member's rate limit in replies, never more bytes than it sent, and
// renews nothing.
func TestProbeFloodRateLimited(t *testing.T) {
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tp := newProbeTap(fn, nil)
	tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
	tu.probeEvery(-1)
	time.Sleep(100 * time.Millisecond) // the last probes' replies land
	var member PeerInfo
	for _, p := range tu.server.Peers() {
		if p.Addr.Addr() == n.linkA {
			member = p
		}
	}
	if !member.Addr.IsValid() {
		t.Fatalf("no member for link a: %+v", tu.server.Peers())
	}
	probe := make([]byte, probeLen)
	putProbe(probe, newProbeKey(), 1, 1)
	answered, limited := tu.server.ProbesAnswered.Load(), tu.server.ProbesLimited.Load()
	before, beforeBytes := tp.count(member.Addr)
	const flood = 2000
	start := time.Now()
	for range flood {
		fn.Inject(member.Addr, member.Local, probe)
	}
	if !probeWait(5*time.Second, func() bool {
		return tu.server.ProbesAnswered.Load()-answered+tu.server.ProbesLimited.Load()-limited == flood
	}) {
		t.Fatalf("the server judged %d of %d probes", tu.server.ProbesAnswered.Load()-answered+tu.server.ProbesLimited.Load()-limited, flood)
	}
	elapsed := time.Since(start)
	time.Sleep(50 * time.Millisecond)
	got, gotBytes := tp.count(member.Addr)
	got, gotBytes = got-before, gotBytes-beforeBytes
	allowed := probeBurst + int(elapsed/probeRefill) + 1
	t.Logf("%d probes (%d bytes) in %v: %d replies (%d bytes), %d rate-limited; the limit allows %d", flood, flood*probeLen, elapsed, got, gotBytes, tu.server.ProbesLimited.Load()-limited, allowed)
	if got > allowed || got == 0 {
		t.Errorf("%d replies to a flood of %d in %v, want between 1 and %d", got, flood, elapsed, allowed)
	}
	if gotBytes > flood*probeLen {
		t.Errorf("%d bytes back for %d received", gotBytes, flood*probeLen)
	}
	if int(tu.server.ProbesAnswered.Load()-answered) != got {
		t.Errorf("ProbesAnswered %d, %d replies seen", tu.server.ProbesAnswered.Load()-answered, got)
	}
	for _, p := range tu.server.Peers() {
		if p.Addr == member.Addr && !p.LastSeen.Equal(member.LastSeen) {
			t.Errorf("the flood renewed the member: last seen %v, was %v", p.LastSeen, member.LastSeen)
		}
	}
	if got := tp.toWireGuard.Load(); got != 0 {
		t.Errorf("WireGuard's stand-ins received %d probes", got)
	}
}

// TestProbeOriginalServer: a plain forwarder stands for an original
// engarde server: it passes everything to WireGuard (probes included,
// which WireGuard drops) and WireGuard's replies to every client address.
// The client carries the traffic, concludes that the server answers no
// probes, says so once, reports "unanswered" and probes every
// probeSlowEvery only.
func TestProbeOriginalServer(t *testing.T) {
	conntest.CheckGoroutines(t)
	fn := conntest.NewNet()
	n := fakeTestNet(fn)
	tp := newProbeTap(fn, nil)
	tu := &tunnel{t: t}
	echo := n.open(t, netip.AddrPortFrom(n.wg, 0))
	fwd := n.open(t, netip.AddrPortFrom(n.server, 0))
	up, err := fn.Dial(netip.AddrPort{}, echo.LocalAddr(), conn.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var said atomic.Int64
	log := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "answers no probes") {
			said.Add(1)
		}
		t.Log(msg)
	}
	tu.ifs = &testIfaces{ch: make(chan struct{}, 1), ifs: []Iface{
		{Name: "a", Index: 101, Up: true, Running: true, Addrs: []netip.Addr{n.linkA}},
		{Name: "b", Index: 102, Up: true, Running: true, Addrs: []netip.Addr{n.linkB}},
	}}
	tu.clientCfg = ClientConfig{
		Options:       Options{Backend: conntest.NoDevice(fn), DisableGSO: true, DisableGRO: true, Log: &Logger{Infof: log, Warnf: log, Errorf: log}},
		ListenAddr:    netip.AddrPortFrom(n.wg, 0).String(),
		DstAddr:       fwd.LocalAddr().String(),
		Interfaces:    tu.ifs.list,
		Watch:         tu.ifs.watcher,
		ProbeInterval: 20 * time.Millisecond,
	}
	tu.wgApp = n.open(t, netip.AddrPortFrom(n.wg, 0))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tu.echoFirst(echo) }()
	go func() { defer wg.Done(); plainForwarder(fwd, up) }()
	tu.startClient(ctx)
	t.Cleanup(func() {
		cancel()
		tu.wg.Wait()
		echo.Close()
		fwd.Close()
		up.Close()
		tu.wgApp.Close()
		wg.Wait()
	})
	tu.waitLinks(2)
	tu.handshake()
	if got, _ := tu.stream(3000, 200, 1000, nil); got != 3000 {
		t.Fatalf("%d of 3000 came back through the forwarder", got)
	}
	if !probeWait(5*time.Second, func() bool { return tu.client.probeMode() == "unanswered" }) {
		t.Fatalf("probe mode %q after 3 s of traffic and no probe answered, want unanswered", tu.client.probeMode())
	}
	if got := said.Load(); got != 1 {
		t.Errorf("said %d times that the server answers no probes, want once", got)
	}
	if st := linkProbeStats(tu.client, "a"); st != nil {
		t.Errorf("figures from unanswered probes: %+v", *st)
	}
	sent := tu.client.ProbesSent.Load()
	time.Sleep(time.Second)
	if got := tu.client.ProbesSent.Load() - sent; got != 0 {
		t.Errorf("%d probes in the second after, want none (one per link every %v)", got, probeSlowEvery)
	}
	if got, _ := tu.stream(500, 200, 1000, nil); got != 500 {
		t.Errorf("%d of 500 came back afterwards", got)
	}
	if tp.toWireGuard.Load() == 0 {
		t.Errorf("the forwarder passed no probe to WireGuard: the test saw no probe")
	}
	if got := tu.client.ProbesAnswered.Load() + tu.client.ProbesBad.Load(); got != 0 {
		t.Errorf("%d replies from a server that does not answer", got)
	}
}

// plainForwarder is the original engarde server's data path: whatever
// comes from a client address goes to WireGuard (up), whatever WireGuard
// answers goes to every client address seen.
func plainForwarder(fwd, up conn.Conn) {
	var mu sync.Mutex
	var clients []netip.AddrPort
	back := make(chan struct{})
	defer func() { <-back }()
	go func() {
		defer close(back)
		msgs := make([]conn.Message, 64)
		for i := range msgs {
			msgs[i].Buf = make([]byte, 2048)
		}
		for {
			n, err := up.ReadBatch(msgs)
			if err != nil {
				return
			}
			mu.Lock()
			to := append([]netip.AddrPort(nil), clients...)
			mu.Unlock()
			for _, c := range to {
				out := make([]conn.Message, n)
				for i := range n {
					out[i] = conn.Message{Buf: msgs[i].Buf, N: msgs[i].N, Addr: c}
				}
				fwd.WriteBatch(out)
			}
		}
	}()
	msgs := make([]conn.Message, 64)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := fwd.ReadBatch(msgs)
		if err != nil {
			return
		}
		mu.Lock()
		for _, m := range msgs[:n] {
			found := false
			for _, c := range clients {
				found = found || c == m.Addr
			}
			if !found {
				clients = append(clients, m.Addr)
			}
		}
		mu.Unlock()
		out := make([]conn.Message, n)
		for i, m := range msgs[:n] {
			out[i] = conn.Message{Buf: m.Buf, N: m.N}
		}
		up.WriteBatch(out)
	}
}
