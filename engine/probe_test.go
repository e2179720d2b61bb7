package engine

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// TestSipHash checks sipHash24 against the reference vectors of the
// SipHash paper and its reference implementation (key 00..0f, message
// 00..n-1).
func TestSipHash(t *testing.T) {
	var key [16]byte
	var msg [64]byte
	for i := range key {
		key[i] = byte(i)
	}
	for i := range msg {
		msg[i] = byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	for _, v := range []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{2, 0x0d6c8009d9a94f5a},
		{3, 0x85676696d7fb7e2d},
		{4, 0xcf2794e0277187b7},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5},
	} {
		if got := sipHash24(k0, k1, msg[:v.n]); got != v.want {
			t.Errorf("SipHash-2-4 of %d bytes = %#x, want %#x", v.n, got, v.want)
		}
	}
}

// TestProbeFormat: a probe parses back to what was written, its tag
// verifies under its key only, the reply is the probe with another kind
// byte (never larger), and neither is shaped like a WireGuard message.
func TestProbeFormat(t *testing.T) {
	k := &probeKey{1, 2}
	b := make([]byte, 64)
	n := putProbe(b, k, 7, 123456789)
	b = b[:n]
	if n != probeLen {
		t.Fatalf("probe is %d bytes, want %d", n, probeLen)
	}
	kind, seq, sent, tag, ok := parseProbe(b)
	if !ok || kind != probeRequest || seq != 7 || sent != 123456789 || tag != k.tag(b[4:16]) {
		t.Fatalf("parse = %d %d %d %#x %v", kind, seq, sent, tag, ok)
	}
	if other := (&probeKey{1, 3}); other.tag(b[4:16]) == tag {
		t.Errorf("another key gives the same tag")
	}
	if wgMessage(b, 0) || wgType(b, 0) != 0 {
		t.Errorf("a probe is shaped like WireGuard's")
	}
	if !probeShaped(b, 0) {
		t.Errorf("probeShaped(probe) = false")
	}
	r := append([]byte(nil), b...)
	r[1] = probeReply
	if kind, _, _, _, ok := parseProbe(r); !ok || kind != probeReply || wgMessage(r, 0) {
		t.Errorf("reply: kind %d ok %v, WireGuard-shaped %v", kind, ok, wgMessage(r, 0))
	}
	for _, bad := range []struct {
		name string
		b    []byte
	}{
		{"short", b[:probeLen-1]},
		{"long", append(append([]byte(nil), b...), 0)},
		{"magic", func() []byte { c := append([]byte(nil), b...); c[0] = 4; return c }()},
		{"kind", func() []byte { c := append([]byte(nil), b...); c[1] = 3; return c }()},
		{"version", func() []byte { c := append([]byte(nil), b...); c[2] = 2; return c }()},
		{"reserved", func() []byte { c := append([]byte(nil), b...); c[3] = 1; return c }()},
	} {
		if _, _, _, _, ok := parseProbe(bad.b); ok {
			t.Errorf("%s: parsed", bad.name)
		}
	}
	// No WireGuard message type begins a probe: 1 to 4 (whitepaper 5.4).
	for typ := byte(1); typ <= 4; typ++ {
		if probeMagic == typ {
			t.Errorf("probeMagic is WireGuard's type %d", typ)
		}
	}
}

// FuzzProbeParse checks the parser's invariants on any input: what
// parses is exactly probeLen bytes, never WireGuard-shaped, and writing
// its fields back (with its own tag) gives the same bytes.
func FuzzProbeParse(f *testing.F) {
	b := make([]byte, probeLen)
	putProbe(b, &probeKey{5, 6}, 1, 1000)
	f.Add(b)
	f.Add(b[:probeLen-1])
	f.Add(make([]byte, probeLen))
	f.Add(wgData(7, 1, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, seq, sent, tag, ok := parseProbe(b)
		if !ok {
			return
		}
		if len(b) != probeLen || wgMessage(b, 0) || !probeShaped(b, 0) {
			t.Fatalf("parsed %x: len %d, WireGuard-shaped %v", b, len(b), wgMessage(b, 0))
		}
		c := make([]byte, probeLen)
		c[0], c[1], c[2] = probeMagic, kind, probeVersion
		binary.LittleEndian.PutUint32(c[4:], seq)
		binary.LittleEndian.PutUint64(c[8:], uint64(sent))
		binary.LittleEndian.PutUint64(c[16:], tag)
		if string(c) != string(b) {
			t.Fatalf("fields of %x write back as %x", b, c)
		}
	})
}

// TestAllowProbe checks the per-member token bucket: a burst of
// probeBurst, then one per probeRefill, whatever the number of tries.
func TestAllowProbe(t *testing.T) {
	var tat atomic.Int64
	now := int64(time.Hour)
	got := 0
	for range 1000 {
		if allowProbe(&tat, now) {
			got++
		}
	}
	if got != probeBurst {
		t.Errorf("a burst at one instant got %d, want %d", got, probeBurst)
	}
	got = 0
	for i := range 1000 {
		if allowProbe(&tat, now+int64(i)*int64(time.Millisecond)) {
			got++
		}
	}
	// A second of tries one every millisecond: the refill's share.
	if want := int(time.Second / probeRefill); got < want-1 || got > want+1 {
		t.Errorf("a second of tries got %d, want about %d", got, want)
	}
	var fresh atomic.Int64
	if !allowProbe(&fresh, 0) {
		t.Errorf("a first probe at time 0 refused")
	}
}

// probeRig is a link of a client, by hand, whose sends land on a null
// socket: the prober's bookkeeping without a network.
type probeRig struct {
	c    *Client
	l    *link
	out  *nullConn
	pool *ring.Pool
}

func newProbeRig(tb testing.TB) *probeRig {
	pool, err := ring.NewPool(2048, 256, 1024)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Client{}
	c.opts, c.log, c.pool = &c.cfg.Options, nopLogger, pool
	c.cfg.QueueLength, c.cfg.BatchSize = 1024, 64
	c.probes.interval.Store(int64(10 * time.Millisecond))
	wg := &nullConn{}
	c.wgTx = c.newSender(senderConfig{name: "wireguard", conn: wg, own: true, stats: &c.WireGuardStats})
	out := &nullConn{}
	l := &link{name: "a", path: 0, up: true}
	l.tx = c.newSender(senderConfig{name: "link a", conn: out, own: true, stats: &l.stats})
	c.links = map[string]*link{"a": l}
	tb.Cleanup(func() { l.tx.close(); c.wgTx.close(); pool.Close() })
	return &probeRig{c: c, l: l, out: out, pool: pool}
}

// sendProbe sends one probe at now and returns its reply's bytes, as the
// server would send them back.
func (r *probeRig) sendProbe(now int64) []byte {
	p := &r.l.probe
	if !p.send(r.l, r.pool, now, r.c.WireGuardStats.TxPackets.Load()) {
		panic("no buffer")
	}
	seq := p.next - 1
	b := make([]byte, probeLen)
	putProbe(b, p.key.Load(), seq, now)
	b[1] = probeReply
	return b
}

// TestProbeBookkeeping: answers give the round trip, the unanswered are
// lost after probeTimeout, and forged, replayed, foreign and late
// replies change nothing but their counters.
func TestProbeBookkeeping(t *testing.T) {
	r := newProbeRig(t)
	p := &r.l.probe
	base := nanotime() - int64(30*time.Second)
	var replies [][]byte
	for i := range 100 {
		replies = append(replies, r.sendProbe(base+int64(i)*int64(10*time.Millisecond)))
	}
	// Every tenth probe lost; the others answered 5 ms + i µs later.
	for i, b := range replies {
		if i%10 == 9 {
			continue
		}
		at := base + int64(i)*int64(10*time.Millisecond) + int64(5*time.Millisecond) + int64(i)*1000
		if got := p.answer(b, at); got != replyAnswered {
			t.Fatalf("reply %d: outcome %d", i, got)
		}
	}
	if got := p.answer(replies[0], base+int64(time.Second)); got != replyBad {
		t.Errorf("a replayed reply: outcome %d, want bad", got)
	}
	forged := append([]byte(nil), replies[9]...)
	forged[20] ^= 1
	if got := p.answer(forged, base+int64(time.Second)); got != replyBad {
		t.Errorf("a reply with a forged tag: outcome %d, want bad", got)
	}
	other := newProbeRig(t)
	other.sendProbe(base) // its own probe 1, under its own key
	if got := other.l.probe.answer(replies[0], base+1000); got != replyBad {
		t.Errorf("a reply of another link: outcome %d, want bad", got)
	}
	ask := append([]byte(nil), replies[29]...)
	ask[1] = probeRequest
	if got := p.answer(ask, base); got != replyBad {
		t.Errorf("a probe as a reply: outcome %d, want bad", got)
	}
	p.judge(nanotime(), 0)
	if got := p.answer(replies[39], nanotime()); got != replyLate {
		t.Errorf("a reply after its probe was judged lost: outcome %d, want late", got)
	}
	p.on.Store(true)
	st := p.stats()
	if st.Sent != 100 || st.Answered != 90 || st.Window != 100 || st.Lost != 10 {
		t.Errorf("stats %+v: want 100 sent, 90 answered, window 100, 10 lost", *st)
	}
	if st.RTT50 < 5*time.Millisecond+40*time.Microsecond || st.RTT50 > 5*time.Millisecond+50*time.Microsecond {
		t.Errorf("RTT50 %v, want about 5.045ms", st.RTT50)
	}
	if st.RTT99 < 5*time.Millisecond+97*time.Microsecond || st.RTT99 > 5*time.Millisecond+99*time.Microsecond {
		t.Errorf("RTT99 %v, want about 5.098ms", st.RTT99)
	}
	// Consecutive answers differ by 1 µs, 2 µs across a lost probe.
	if st.Jitter < time.Microsecond || st.Jitter > 1200*time.Nanosecond {
		t.Errorf("jitter %v, want about 1.1µs", st.Jitter)
	}
	if st.LastAnswer.IsZero() || p.lastAnswer() == 0 {
		t.Errorf("no last answer")
	}
}

// TestProbeWindowAges: probes older than probeWindow leave the figures.
func TestProbeWindowAges(t *testing.T) {
	r := newProbeRig(t)
	p := &r.l.probe
	now := nanotime()
	old := now - int64(probeWindow) - int64(time.Second)
	p.answer(r.sendProbe(old), old+int64(time.Millisecond))
	r.sendProbe(old + 1) // lost, long ago
	recent := now - int64(2*time.Second)
	p.answer(r.sendProbe(recent), recent+int64(2*time.Millisecond))
	r.sendProbe(now) // in flight: not judged yet
	p.answer(r.sendProbe(now), now+int64(3*time.Millisecond))
	p.on.Store(true)
	st := p.stats()
	if st.Window != 1 || st.Lost != 0 || st.Sent != 5 || st.Answered != 3 {
		t.Errorf("stats %+v: want one probe judged in the window, of 5 sent and 3 answered", *st)
	}
	// The round trips of every answer in the window, judged or not.
	if st.RTT50 != 2*time.Millisecond || st.RTT99 != 3*time.Millisecond {
		t.Errorf("RTT p50 %v p99 %v, want 2ms and 3ms (the answer of a minute ago left)", st.RTT50, st.RTT99)
	}
}

// TestProbeStatsOff: no figures before a link is probed or with probes
// off.
func TestProbeStatsOff(t *testing.T) {
	r := newProbeRig(t)
	if st := r.l.probe.stats(); st != nil {
		t.Errorf("stats before any probe: %+v", *st)
	}
	r.c.probeTick(nanotime(), 10*time.Millisecond)
	if r.l.probe.stats() == nil || r.out.sent.Load() != 1 || r.c.ProbesSent.Load() != 1 {
		t.Errorf("after a tick: stats %v, %d sent", r.l.probe.stats(), r.out.sent.Load())
	}
	r.c.probeTick(nanotime(), -1)
	if st := r.l.probe.stats(); st != nil || r.out.sent.Load() != 1 {
		t.Errorf("probes off: stats %+v, %d sent", st, r.out.sent.Load())
	}
}

// TestProbeUnanswered: a server whose WireGuard replies arrive but which
// answers no probe is taken for one that does not speak probes, and the
// links are then probed every probeSlowEvery; an answer turns probing
// back on. A dead tunnel (no WireGuard reply either) is not taken for an
// old server.
func TestProbeUnanswered(t *testing.T) {
	r := newProbeRig(t)
	now := nanotime()
	tick := func(n int) {
		for range n {
			r.c.probeTick(now, 10*time.Millisecond)
			now += int64(100 * time.Millisecond)
		}
	}
	tick(100) // 10 s of probes, nothing back at all: dead
	if m := r.c.probeMode(); m != "on" {
		t.Fatalf("a dead tunnel: probe mode %q, want on", m)
	}
	// WireGuard's replies arrive now, and still no probe is answered.
	for range 30 {
		r.c.WireGuardStats.TxPackets.Add(1)
		tick(1)
	}
	if m := r.c.probeMode(); m != "unanswered" {
		t.Fatalf("WireGuard answers, probes do not: probe mode %q, want unanswered", m)
	}
	if r.l.probe.stats() != nil {
		t.Errorf("figures while the server answers no probes")
	}
	sent := r.c.ProbesSent.Load()
	tick(600) // 60 s
	if got := r.c.ProbesSent.Load() - sent; got < 1 || got > 3 {
		t.Errorf("%d probes in 60 s on one link once unanswered, want 2 (one per %v)", got, probeSlowEvery)
	}
	// An upgrade: the next slow probe is answered.
	now += int64(probeSlowEvery)
	r.c.probeTick(now, 10*time.Millisecond)
	p := &r.l.probe
	b := make([]byte, probeLen)
	putProbe(b, p.key.Load(), p.next-1, p.lastSent)
	b[1] = probeReply
	if got := p.answer(b, p.lastSent+1000); got != replyAnswered {
		t.Fatalf("the upgraded server's answer: outcome %d", got)
	}
	r.c.count(replyAnswered)
	tick(1)
	if m := r.c.probeMode(); m != "on" || r.l.probe.stats() == nil {
		t.Errorf("after an answer: probe mode %q, stats %v", m, r.l.probe.stats())
	}
	r.c.probes.interval.Store(-1)
	if m := r.c.probeMode(); m != "off" {
		t.Errorf("interval off: probe mode %q", m)
	}
}

// BenchmarkLinkReplies measures the client's path from a link's batch to
// WireGuard's sender with probe replies among the messages: the reply
// check before the duplicate filter, the tag, the slot's
// compare-and-swap. It must not allocate.
func BenchmarkLinkReplies(b *testing.B) {
	for _, every := range []int{0, 16, 1} {
		b.Run(fmt.Sprintf("replyEvery=%d", every), func(b *testing.B) {
			r, round := newReplyRound(b, 64, every)
			round() // the first makes the reply buffers and the link's key
			b.ReportAllocs()
			b.SetBytes(64 * 1400)
			for b.Loop() {
				round()
			}
			b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "pkt/s")
			if every > 0 && r.c.ProbesAnswered.Load() == 0 {
				b.Fatal("no reply answered")
			}
		})
	}
}

// TestLinkRepliesAllocs pins that probe replies on a link's receive path
// allocate nothing, and that they never reach WireGuard.
func TestLinkRepliesAllocs(t *testing.T) {
	r, round := newReplyRound(t, 64, 4)
	round()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Errorf("the link receive path with probe replies allocates %.1f times per batch, want 0", a)
	}
	// 101 rounds and the first: 16 replies in each, all answered; 48
	// transport messages in each to WireGuard.
	if got := r.c.ProbesAnswered.Load(); got != 102*16 {
		t.Errorf("%d replies answered, want %d", got, 102*16)
	}
	if got := r.c.ProbesBad.Load(); got != 0 {
		t.Errorf("%d bad replies", got)
	}
	if got := r.c.WireGuardStats.TxPackets.Load(); got != 102*48 {
		t.Errorf("WireGuard got %d datagrams, want %d (no reply)", got, 102*48)
	}
}

// newReplyRound returns a function that delivers one batch of batch
// datagrams to the link's handler, every every-th a fresh probe's reply.
func newReplyRound(tb testing.TB, batch, every int) (*probeRig, func()) {
	r := newProbeRig(tb)
	r.c.opts.DisableDedup = true // the duplicate filter has its own benchmark
	handle := r.c.fromLink(r.l)
	bufs := make([]*ring.Packet, batch)
	msgs := make([]conn.Message, batch)
	replies := make([][]byte, batch)
	var ctr uint64
	now := nanotime()
	return r, func() {
		for i := range bufs {
			if every > 0 && i%every == every-1 {
				replies[i] = r.sendProbeInto(now, replies[i])
			} else {
				replies[i] = nil
			}
		}
		for i := range bufs {
			pb := r.pool.Get()
			p := pb.Data()
			n := 1400
			if replies[i] != nil {
				n = copy(p, replies[i])
			} else {
				clear(p[:16])
				p[0] = wgTransportType
				binary.LittleEndian.PutUint32(p[4:], 7)
				binary.LittleEndian.PutUint64(p[8:], ctr)
				ctr++
			}
			pb.N, pb.Stamp = n, now+int64(time.Millisecond)
			bufs[i] = pb
			msgs[i] = conn.Message{Buf: p, N: n, Addr: wgAppAddr}
		}
		handle(bufs, msgs)
		for _, pb := range bufs {
			pb.Release()
		}
		now += int64(time.Millisecond)
	}
}

// sendProbeInto is sendProbe writing the reply into buf (reused when it
// is large enough), for the allocation test.
func (r *probeRig) sendProbeInto(now int64, buf []byte) []byte {
	p := &r.l.probe
	p.send(r.l, r.pool, now, 0)
	if cap(buf) < probeLen {
		buf = make([]byte, probeLen)
	}
	buf = buf[:probeLen]
	putProbe(buf, p.key.Load(), p.next-1, now)
	buf[1] = probeReply
	return buf
}
