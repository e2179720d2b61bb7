package engine

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
	"github.com/engarde-project/engarde/ring"
)

// TestPathErrorDropsRestOfBatch pins the cost of a link whose path
// refuses every send (a firewall's EPERM, no route): the fan-out, which
// every link shares, made one failing system call per message of each
// batch. Now an error of the path drops the rest of the batch for that
// link alone, counted, at once, and a firewall's refusal after
// filteredRun in a row; the other link still delivers every datagram; an
// error about one message (EMSGSIZE) still drops that message only.
func TestPathErrorDropsRestOfBatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		errno  syscall.Errno
		calls  uint64 // send calls on the failing link for one batch
		failed uint64 // its send errors
	}{
		{"EPERM", syscall.EPERM, filteredRun, filteredRun},
		{"ENETUNREACH", syscall.ENETUNREACH, 1, 1},
		{"EHOSTUNREACH", syscall.EHOSTUNREACH, 1, 1},
		{"EMSGSIZE: per message", syscall.EMSGSIZE, 64, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const batch = 64
			fn := conntest.NewNet()
			srv, err := fn.Listen(netip.MustParseAddrPort("10.0.0.1:5000"), conn.SocketOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			bad, good := netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.2.2")
			pool, err := ring.NewPool(2048, 2*batch, 2*batch)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var timeout atomic.Int64
			timeout.Store(int64(time.Second))
			var stats [2]Stats
			var senders []*sender
			for i, a := range []netip.Addr{bad, good} {
				c, err := fn.Dial(netip.AddrPortFrom(a, 0), srv.LocalAddr(), conn.SocketOptions{})
				if err != nil {
					t.Fatal(err)
				}
				s := newSender(senderConfig{name: "link " + a.String(), conn: c, own: true, stats: &stats[i]}, batch, batch, &timeout, testLogger(t))
				defer s.close()
				senders = append(senders, s)
			}
			fn.Refuse(bad, tc.errno)
			bufs := make([]*ring.Packet, batch)
			for i := range bufs {
				bufs[i] = pool.Get()
				bufs[i].N = copy(bufs[i].Data(), bytes.Repeat([]byte{byte(i)}, 100+i))
				bufs[i].Stamp = nanotime()
			}
			f := newFanout(fn)
			before := fn.SendCalls(bad)
			f.send(bufs, make([]conn.Message, batch), senders)
			for _, b := range bufs {
				b.Release() // the receive loop's own reference
			}
			if got := fn.SendCalls(bad) - before; got != tc.calls {
				t.Errorf("%d send calls on the refused link for a batch of %d, want %d", got, batch, tc.calls)
			}
			bs := stats[0].Read()
			if bs.DropError != batch || bs.SendErrors != tc.failed || bs.TxPackets != 0 {
				t.Errorf("refused link: %d dropped (error), %d send errors, %d sent; want %d, %d, 0", bs.DropError, bs.SendErrors, bs.TxPackets, batch, tc.failed)
			}
			if gs := stats[1].Read(); gs.TxPackets != batch || gs.DropError != 0 {
				t.Errorf("other link: %d sent, %d dropped; want %d, 0", gs.TxPackets, gs.DropError, batch)
			}
			msgs := make([]conn.Message, batch)
			for i := range msgs {
				msgs[i].Buf = make([]byte, 2048)
			}
			got := 0
			for got < batch {
				n, err := srv.(conn.ReadWaiter).TryReadBatch(msgs[got:])
				if err != nil {
					t.Fatalf("after %d datagrams: %v", got, err)
				}
				for _, m := range msgs[got : got+n] {
					if m.Addr.Addr() != good {
						t.Fatalf("datagram from %v, the refused link", m.Addr)
					}
					if want := bytes.Repeat([]byte{byte(got)}, 100+got); !bytes.Equal(m.Buf[:m.N], want) {
						t.Fatalf("datagram %d: %d bytes, not what was sent", got, m.N)
					}
					got++
				}
			}
			if pool.Available() != pool.Allocated() {
				t.Errorf("%d buffers not back in the pool", pool.Allocated()-pool.Available())
			}
		})
	}
}

// TestRefusedRun: a firewall that refuses some messages (nftables' random
// drop in the loss tests, a rate limit) must not cost the rest of the
// batch: that turned 5% loss per link into 10% for the tunnel, as if one
// link carried it. Only a run of filteredRun refusals, with nothing sent
// between them, does; an error of the path does at once.
func TestRefusedRun(t *testing.T) {
	eperm, unreach, emsg := syscall.EPERM, syscall.ENETUNREACH, syscall.EMSGSIZE
	type call struct {
		sent int
		err  error
	}
	for _, tc := range []struct {
		name  string
		calls []call
		want  int // the index of the call that drops the rest, -1 for none
	}{
		{"unreachable", []call{{0, unreach}}, 0},
		{"unreachable after some sent", []call{{10, unreach}}, 0},
		{"refused alone", []call{{5, eperm}, {7, eperm}, {3, eperm}, {1, eperm}, {9, eperm}}, -1},
		{"refused in a row", []call{{5, eperm}, {0, eperm}, {0, eperm}, {0, eperm}}, 3},
		{"run broken by a send", []call{{0, eperm}, {0, eperm}, {0, eperm}, {1, eperm}, {0, eperm}, {0, eperm}}, -1},
		{"one message too long", []call{{0, emsg}, {0, emsg}, {0, emsg}, {0, emsg}, {0, emsg}}, -1},
		{"too long between refusals", []call{{0, eperm}, {0, eperm}, {0, emsg}, {0, eperm}, {0, eperm}}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run, got := 0, -1
			for i, c := range tc.calls {
				if run = refusedRun(run, c.sent, c.err); run < 0 {
					got = i
					break
				}
			}
			if got != tc.want {
				t.Errorf("rest dropped at call %d, want %d", got, tc.want)
			}
		})
	}
}
