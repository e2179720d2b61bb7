package conn_test

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
	"github.com/engarde-project/engarde/ring"
)

// loopPool is a pool for a role served by be's loop: buffers of size
// payload bytes after the loop's headroom.
func loopPool(t *testing.T, lp conn.Looper, payload int) *ring.Pool {
	t.Helper()
	p, err := ring.NewPool(payload+lp.Headroom(), 64, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoopServes receives on two sockets through the loop: every datagram
// reaches its own socket's handler, in order, in a pool buffer whose
// payload starts after the loop's headroom, and every buffer is back in the
// pool once the sockets are closed.
func TestLoopServes(t *testing.T) {
	be := conntest.URing(t, conn.URingOptions{})
	lp := be.(conn.Looper)
	pool := loopPool(t, lp, 2048)
	o := conn.SocketOptions{BatchSize: 16}
	var mu sync.Mutex
	got := map[int][]byte{}
	var rxs []conn.Conn
	var txs []conn.Conn
	for i := range 2 {
		rx, tx := conntest.Pair(t, be, o, o)
		if err := lp.Serve(rx, pool, func(bufs []*ring.Packet, msgs []conn.Message) {
			mu.Lock()
			defer mu.Unlock()
			for j, m := range msgs {
				if &bufs[j].Data()[0] != &m.Buf[0] {
					t.Errorf("socket %d: message %d is not in its pool buffer", i, j)
				}
				if m.Addr != tx.LocalAddr() {
					t.Errorf("socket %d: from %v, want %v", i, m.Addr, tx.LocalAddr())
				}
				got[i] = append(got[i], m.Buf[:m.N]...)
			}
		}); err != nil {
			t.Fatal(err)
		}
		rxs, txs = append(rxs, rx), append(txs, tx)
	}
	const total = 100
	for k := range total {
		for i, tx := range txs {
			if _, err := tx.WriteBatch([]conn.Message{{Buf: []byte{byte(i), byte(k)}, N: 2}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n0, n1 := len(got[0]), len(got[1])
		mu.Unlock()
		if n0 == 2*total && n1 == 2*total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d and %d bytes, want %d each", n0, n1, 2*total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 2 {
		for k := range total {
			if got[i][2*k] != byte(i) || got[i][2*k+1] != byte(k) {
				t.Fatalf("socket %d: datagram %d is %v", i, k, got[i][2*k:2*k+2])
			}
		}
	}
	for _, rx := range rxs {
		rx.Close()
	}
	if a, n := pool.Available(), pool.Allocated(); a != n {
		t.Errorf("%d of %d buffers back in the pool after Close", a, n)
	}
}

// TestLoopServeFromHandler opens and serves a socket from a handler the
// loop runs, as the server does for a new client address, and sends from
// the handler through the loop's ring.
func TestLoopServeFromHandler(t *testing.T) {
	be := conntest.URing(t, conn.URingOptions{})
	lp := be.(conn.Looper)
	pool := loopPool(t, lp, 2048)
	o := conn.SocketOptions{BatchSize: 16}
	rx, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), o)
	if err != nil {
		t.Fatal(err)
	}
	// tx is unconnected, so that it hears the echo from another socket.
	tx, err := conn.NewMmsg(nil).Listen(netip.MustParseAddrPort("127.0.0.1:0"), o)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	echo := make(chan int, 16)
	var second conn.Conn // the loop's
	made := make(chan conn.Conn, 1)
	if err := lp.Serve(rx, pool, func(bufs []*ring.Packet, msgs []conn.Message) {
		if second == nil {
			c, err := be.Dial(netip.AddrPort{}, tx.LocalAddr(), o)
			if err != nil {
				t.Error(err)
				return
			}
			if err := lp.Serve(c, pool, func(bufs []*ring.Packet, msgs []conn.Message) { echo <- len(msgs) }); err != nil {
				t.Error(err)
			}
			second = c
			made <- c
		}
		// Echo through the new socket, from the loop.
		if n, err := second.TryWriteBatch(msgs[:1]); n != 1 || err != nil {
			t.Errorf("echo: %d, %v", n, err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.WriteBatch([]conn.Message{{Buf: []byte("ping"), N: 4, Addr: rx.LocalAddr()}}); err != nil {
		t.Fatal(err)
	}
	in := []conn.Message{{Buf: make([]byte, 64)}}
	n, err := tx.ReadBatch(in)
	if err != nil || n != 1 || string(in[0].Buf[:in[0].N]) != "ping" {
		t.Fatalf("echo: %d, %v, %q", n, err, in[0].Buf[:in[0].N])
	}
	// And back into the second socket's own handler.
	their := <-made
	if _, err := tx.WriteBatch([]conn.Message{{Buf: []byte("pong"), N: 4, Addr: their.LocalAddr()}}); err == nil {
		select {
		case <-echo:
		case <-time.After(2 * time.Second):
			t.Error("the socket served from a handler received nothing")
		}
	}
	rx.Close()
	their.Close()
	if a, n := pool.Available(), pool.Allocated(); a != n {
		t.Errorf("%d of %d buffers back in the pool after Close", a, n)
	}
}

// TestLoopDeadSocketAlone fans a handler's batches out to two sockets
// through the loop's ring: one to a receiver that keeps up, one to a port
// nothing listens on (its sends fail with the ICMP errors that come back).
// The dead one fails for itself, and the other receives every datagram.
func TestLoopDeadSocketAlone(t *testing.T) {
	be := conntest.URing(t, conn.URingOptions{})
	lp, bw := be.(conn.Looper), be.(conn.BatchWriter)
	pool := loopPool(t, lp, 2048)
	o := conn.SocketOptions{BatchSize: 64}
	in, src := conntest.Pair(t, be, o, o)
	okRx, okTx := conntest.Pair(t, be, o, o)
	gone, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), o)
	if err != nil {
		t.Fatal(err)
	}
	deadTx, err := be.Dial(netip.AddrPort{}, gone.LocalAddr(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer deadTx.Close()
	gone.Close()
	var failed, sentOK int
	var mu sync.Mutex
	ws := make([]conn.BatchWrite, 2)
	if err := lp.Serve(in, pool, func(bufs []*ring.Packet, msgs []conn.Message) {
		ws[0] = conn.BatchWrite{Conn: deadTx, Msgs: msgs}
		ws[1] = conn.BatchWrite{Conn: okTx, Msgs: msgs}
		bw.TryWriteBatches(ws)
		mu.Lock()
		defer mu.Unlock()
		if ws[0].Err != nil {
			failed++
		}
		if ws[1].Err != nil || ws[1].N != len(msgs) {
			t.Errorf("the other socket: %d of %d, %v", ws[1].N, len(msgs), ws[1].Err)
		}
		sentOK += ws[1].N
	}); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		rd := make([]conn.Message, 64)
		for i := range rd {
			rd[i].Buf = make([]byte, 2048)
		}
		for {
			n, err := okRx.ReadBatch(rd)
			if err != nil {
				return
			}
			got.Add(int64(n))
		}
	}()
	const total = 2000
	payload := make([]byte, 1000)
	deadline := time.Now().Add(5 * time.Second)
	for k := 0; k < total; k++ {
		if _, err := src.WriteBatch([]conn.Message{{Buf: payload, N: len(payload)}}); err != nil {
			t.Fatal(err)
		}
		for got.Load() < int64(k-256) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond) // keep pace with the receiver
		}
	}
	for got.Load() < total && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	in.Close()
	okRx.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if n := got.Load(); n != total || sentOK != total {
		t.Errorf("the socket that keeps up: sent %d, received %d of %d", sentOK, n, total)
	}
	if failed == 0 {
		t.Error("the dead socket's sends never failed")
	}
	t.Logf("dead socket: sends failed in %d batches", failed)
}
