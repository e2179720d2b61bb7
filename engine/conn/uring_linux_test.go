package conn_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// TestTryWriteBatches sends to several Conns with one call: each gets its
// own batch, a closed one fails alone, and a conn.Conn of another backend is
// served by its own TryWriteBatch.
func TestTryWriteBatches(t *testing.T) {
	be := conntest.URing(t, conn.URingOptions{})
	bw := be.(conn.BatchWriter)
	o := conn.SocketOptions{BatchSize: 64, GSO: true}
	var rxs, txs []conn.Conn
	for i := range 4 {
		rx, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), o)
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		open := be.Dial
		if i == 3 {
			open = conn.NewMmsg(nil).Dial
		}
		tx, err := open(netip.AddrPort{}, rx.LocalAddr(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		rxs, txs = append(rxs, rx), append(txs, tx)
	}
	txs[1].Close()
	msgs := make([]conn.Message, 40)
	for i := range msgs {
		msgs[i] = conn.Message{Buf: make([]byte, 1000), N: 1000 - i/30} // a GSO train, then single datagrams
		msgs[i].Buf[0] = byte(i)
	}
	ws := make([]conn.BatchWrite, len(txs))
	for i, tx := range txs {
		ws[i] = conn.BatchWrite{Conn: tx, Msgs: msgs}
	}
	bw.TryWriteBatches(ws)
	for i, w := range ws {
		if i == 1 {
			if !errors.Is(w.Err, net.ErrClosed) || w.N != 0 {
				t.Errorf("closed conn.Conn: %d, %v; want 0, net.ErrClosed", w.N, w.Err)
			}
			continue
		}
		if w.Err != nil || w.N != len(msgs) {
			t.Errorf("conn.Conn %d: %d, %v; want %d, nil", i, w.N, w.Err, len(msgs))
			continue
		}
		in := make([]conn.Message, 64)
		for j := range in {
			in[j].Buf = make([]byte, 2048)
		}
		got := 0
		for got < len(msgs) {
			n, err := rxs[i].ReadBatch(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range in[:n] {
				if int(m.Buf[0]) != got || m.N != msgs[got].N {
					t.Fatalf("conn.Conn %d: datagram %d is %d bytes starting %d", i, got, m.N, m.Buf[0])
				}
				got++
			}
		}
	}
}
