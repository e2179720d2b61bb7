package engine

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/ring"
)

// nullConn is a link that accepts every datagram at once and counts it:
// the fan-out benchmarks measure the engine's own work, not the kernel's.
type nullConn struct {
	sent   atomic.Uint64
	closed atomic.Bool
}

func (c *nullConn) ReadBatch([]Message) (int, error) { return 0, net.ErrClosed }
func (c *nullConn) WriteBatch(m []Message) (int, error) {
	return c.TryWriteBatch(m)
}

func (c *nullConn) TryWriteBatch(m []Message) (int, error) {
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
	c := &Client{log: nopLogger, pool: pool}
	c.timeout.Store(int64(time.Second))
	r := &fanoutRig{c: c}
	var act []*link
	for i := range links {
		nc := &nullConn{}
		r.links = append(r.links, nc)
		l := &link{name: fmt.Sprint("l", i)}
		l.tx = newSender(l.name, nc, true, nil, 1024, batch, &c.timeout, &l.stats, nopLogger)
		act = append(act, l)
	}
	c.active.Store(&act)
	r.p = newPump("wireguard", nil, pool, batch, &c.WireGuardStats, nopLogger, c.fanout)
	for i := range batch {
		b := pool.Get()
		r.p.bufs[i] = b
		r.p.msgs[i] = Message{Buf: b.Data(), N: size, Addr: netip.MustParseAddrPort("127.0.0.1:51820")}
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

// round delivers one full batch, as if recvmmsg had just filled it.
func (r *fanoutRig) round(size int) {
	for i := range r.have {
		r.p.msgs[i].N = size
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

// TestConnAllocs checks that the mmsg backend's batch calls do not
// allocate once warmed up.
func TestConnAllocs(t *testing.T) {
	for _, be := range platformBackends() {
		t.Run(be.Name(), func(t *testing.T) {
			o := SocketOptions{GSO: true, BatchSize: 64}
			rx, tx := connPair(t, be, o, o)
			out := make([]Message, 16)
			in := make([]Message, 64)
			for i := range out {
				out[i] = Message{Buf: make([]byte, 1400), N: 1400}
			}
			for i := range in {
				in[i].Buf = make([]byte, 2048)
			}
			round := func() {
				if _, err := tx.WriteBatch(out); err != nil {
					t.Fatal(err)
				}
				got := 0
				for got < len(out) {
					n, err := rx.ReadBatch(in)
					if err != nil {
						t.Fatal(err)
					}
					got += n
				}
			}
			round()
			if a := testing.AllocsPerRun(50, round); a != 0 {
				t.Errorf("a write and read of 16 datagrams allocates %.1f times, want 0", a)
			}
		})
	}
}
