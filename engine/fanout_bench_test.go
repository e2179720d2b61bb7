package engine

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// nullConn is a link that accepts every datagram at once and counts it:
// the fan-out benchmarks measure the engine's own work, not the kernel's.
type nullConn struct {
	sent   atomic.Uint64
	closed atomic.Bool
}

func (c *nullConn) ReadBatch([]conn.Message) (int, error) { return 0, net.ErrClosed }
func (c *nullConn) WriteBatch(m []conn.Message) (int, error) {
	return c.TryWriteBatch(m)
}

func (c *nullConn) TryWriteBatch(m []conn.Message) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.sent.Add(uint64(len(m)))
	return len(m), nil
}
func (c *nullConn) SetWriteDeadline(time.Time) error { return nil }
func (c *nullConn) LocalAddr() netip.AddrPort        { return netip.AddrPort{} }
func (c *nullConn) Close() error                     { c.closed.Store(true); return nil }

// fanoutRig is a client's WireGuard-side receive path wired to links
// null links: each round delivers one received batch through the real
// pump and fan-out code.
type fanoutRig struct {
	c     *Client
	p     *pump
	links []*nullConn
	have  int
}

func newFanoutRig(tb testing.TB, links, batch, size int) *fanoutRig {
	pool, err := ring.NewPool(2048, 1024, 1<<14)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Client{out: newFanout(nil)}
	c.opts, c.log, c.pool = &c.cfg.Options, nopLogger, pool
	c.cfg.QueueLength, c.cfg.BatchSize = 1024, batch
	c.wtimeout.Store(int64(time.Second))
	r := &fanoutRig{c: c}
	var act []*link
	var tx []*sender
	for i := range links {
		nc := &nullConn{}
		r.links = append(r.links, nc)
		l := &link{name: fmt.Sprint("l", i)}
		l.tx = c.newSender(senderConfig{name: l.name, conn: nc, own: true, stats: &l.stats})
		act = append(act, l)
		tx = append(tx, l.tx)
	}
	c.active.Store(&tx)
	r.p = c.newPump("wireguard", nil, &c.WireGuardStats, c.fromWireGuard)
	for i := range batch {
		b := pool.Get()
		r.p.bufs[i] = b
		r.p.msgs[i] = conn.Message{Buf: b.Data(), N: size, Addr: wgAppAddr}
	}
	r.have = batch
	tb.Cleanup(func() {
		for _, l := range act {
			l.tx.close()
		}
		for i := range r.have {
			r.p.bufs[i].Release()
		}
		pool.Close()
	})
	return r
}

var wgAppAddr = netip.MustParseAddrPort("127.0.0.1:51820")

// round delivers one full batch, as if recvmmsg had just filled it.
func (r *fanoutRig) round(size int) {
	for i := range r.have {
		// As recvmmsg would: the fan-out uses the messages as scratch.
		r.p.msgs[i].N, r.p.msgs[i].Addr = size, wgAppAddr
	}
	r.have = r.p.deliver(r.have, r.have)
}

// BenchmarkFanout measures the client's path from a received batch to
// every link's sendmmsg: reference counting, the senders and the buffer
// recycling, without the system calls. It must not allocate.
func BenchmarkFanout(b *testing.B) {
	const size = 1400
	for _, links := range []int{1, 2, 4} {
		for _, batch := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("links=%d/batch=%d", links, batch), func(b *testing.B) {
				r := newFanoutRig(b, links, batch, size)
				b.ReportAllocs()
				b.SetBytes(int64(batch * size))
				for b.Loop() {
					r.round(size)
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "pkt/s")
				if got := r.links[0].sent.Load(); got != uint64(b.N*batch) {
					b.Fatalf("link 0 sent %d, want %d", got, b.N*batch)
				}
			})
		}
	}
}

// TestFanoutAllocs pins the rule that the steady-state data path does not
// allocate.
func TestFanoutAllocs(t *testing.T) {
	r := newFanoutRig(t, 2, 64, 1400)
	r.round(1400) // first round logs WireGuard's address
	if a := testing.AllocsPerRun(100, func() { r.round(1400) }); a != 0 {
		t.Errorf("fan-out allocates %.1f times per batch, want 0", a)
	}
	for i, l := range r.links {
		// One round before, and AllocsPerRun runs one more than asked.
		if l.sent.Load() != 102*64 {
			t.Errorf("link %d sent %d, want %d", i, l.sent.Load(), 102*64)
		}
	}
}

// newMemberRig builds a server session by hand with one member whose
// datagrams go to a null socket: the server's path from a member's batch
// to WireGuard's socket, without system calls.
func newMemberRig(tb testing.TB, batch int) (*Server, func([]*ring.Packet, []conn.Message), *ring.Pool, *nullConn) {
	pool, err := ring.NewPool(2048, 4*batch, 4*batch)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{}
	s.opts = &Options{}
	s.opts.setDefaults()
	s.log = s.opts.Log
	s.pool = pool
	up := &nullConn{}
	sess := &session{id: 1}
	sess.upTx = s.newSender(senderConfig{name: "up", conn: up, own: true, stats: &sess.upStats})
	sess.win.learn(7)
	m := &member{addr: netip.MustParseAddrPort("198.18.1.2:4000")}
	m.live.Store(true)
	sess.members = []*member{m}
	m.place.Store(&place{sess: sess, path: 0})
	sess.win.paths.q[0].Store(&m.quality)
	tb.Cleanup(func() { sess.upTx.close(); pool.Close() })
	return s, s.fromMember(m), pool, up
}

// TestServerMemberPathAllocs pins that the server's path from a member's
// datagrams to WireGuard (session check, duplicate filter, quality
// sampling, the send) does not allocate.
func TestServerMemberPathAllocs(t *testing.T) {
	const batch = 64
	_, handle, pool, up := newMemberRig(t, batch)
	bufs := make([]*ring.Packet, batch)
	msgs := make([]conn.Message, batch)
	var ctr uint64
	round := func() {
		for i := range bufs {
			b := pool.Get()
			p := b.Data()[:1400]
			clear(p[:16])
			p[0] = wgTransportType
			binary.LittleEndian.PutUint32(p[4:], 7)
			binary.LittleEndian.PutUint64(p[8:], ctr/2)    // every message twice: a copy each
			p[1398], p[1399] = byte(ctr/2), byte(ctr/2>>8) // copies are the same bytes
			ctr++
			b.N, b.Stamp = 1400, int64(ctr)*1000
			bufs[i] = b
			msgs[i] = conn.Message{Buf: b.Data(), N: 1400, Addr: netip.MustParseAddrPort("198.18.1.2:4000")}
		}
		handle(bufs, msgs)
		for _, b := range bufs {
			b.Release()
		}
	}
	round()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Errorf("the member path allocates %.1f times per batch, want 0", a)
	}
	if got := up.sent.Load(); got != 102*batch/2 { // one round, then AllocsPerRun runs 101
		t.Errorf("WireGuard's socket got %d datagrams, want %d (one copy of each)", got, 102*batch/2)
	}
}
