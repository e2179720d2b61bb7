package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// uringForTest returns the io_uring backend, or skips the test saying why
// it is unavailable here.
func uringForTest(t testing.TB) Backend {
	t.Helper()
	b, err := NewURingBackend(nil)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAutoFallback pins what "auto" does on a machine without io_uring: it
// runs mmsg and says why in one log line, however often it is asked.
func TestAutoFallback(t *testing.T) {
	saved := probeURing
	defer func() { probeURing = saved }()
	probeURing = func() (*sys.URingFeatures, error) {
		return nil, fmt.Errorf("%w: disabled by sysctl kernel.io_uring_disabled=2", sys.ErrURingUnsupported)
	}
	fallbackLogged = sync.Once{}
	var lines []string
	log := &Logger{Warnf: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}
	for range 3 {
		if b := autoBackend(log, true); b.Name() != "mmsg" {
			t.Fatalf("auto without io_uring chose %s", b.Name())
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "io_uring_disabled=2") || !strings.Contains(lines[0], "mmsg") {
		t.Errorf("log lines %q, want one naming the reason and mmsg", lines)
	}
	probeURing = saved
	if _, err := saved(); err == nil {
		if b := autoBackend(nil, true); b.Name() != "uring" {
			t.Errorf("auto with io_uring available chose %s", b.Name())
		}
	}
}

// TestCloseUnblocksRead checks the Conn rule that Close makes a ReadBatch
// blocked in another goroutine return net.ErrClosed, and that later calls
// fail the same way.
func TestCloseUnblocksRead(t *testing.T) {
	for _, be := range backendsForTest(t) {
		t.Run(be.Name(), func(t *testing.T) {
			checkGoroutines(t)
			c, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), SocketOptions{BatchSize: 8})
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				msgs := []Message{{Buf: make([]byte, 2048)}}
				_, err := c.ReadBatch(msgs)
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond) // let it block
			c.Close()
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("blocked ReadBatch returned %v, want net.ErrClosed", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("ReadBatch still blocked 2s after Close")
			}
			msgs := []Message{{Buf: make([]byte, 64), N: 1, Addr: c.LocalAddr()}}
			if _, err := c.ReadBatch(msgs); !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadBatch after Close: %v", err)
			}
			if _, err := c.TryWriteBatch(msgs); !errors.Is(err, net.ErrClosed) {
				t.Errorf("TryWriteBatch after Close: %v", err)
			}
			if _, err := c.WriteBatch(msgs); !errors.Is(err, net.ErrClosed) {
				t.Errorf("WriteBatch after Close: %v", err)
			}
		})
	}
}

// TestURingReaderHandover reads one socket from two goroutines in turn.
// The receive ring belongs to the first reader's thread; the second must
// get every datagram the first did not take, including those its ring had
// already received.
func TestURingReaderHandover(t *testing.T) {
	be := uringForTest(t)
	rx, tx := connPair(t, be, SocketOptions{BatchSize: 16}, SocketOptions{BatchSize: 16})
	const total = 10
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := tx.WriteBatch([]Message{{Buf: []byte{byte(i)}, N: 1}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 4)
	var seen []byte
	read := func(max int) {
		msgs := make([]Message, max)
		for i := range msgs {
			msgs[i].Buf = make([]byte, 2048)
		}
		n, err := rx.ReadBatch(msgs)
		if err != nil {
			t.Error(err)
			return
		}
		for _, m := range msgs[:n] {
			seen = append(seen, m.Buf[0])
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); read(1) }() // its ring takes all four; it hands over one
	<-done
	send(4, total)
	deadline := time.Now().Add(2 * time.Second)
	for len(seen) < total && time.Now().Before(deadline) {
		done := make(chan struct{})
		go func() { defer close(done); read(3) }()
		<-done
	}
	if len(seen) != total {
		t.Fatalf("received %v, want 0..%d", seen, total-1)
	}
	for i, b := range seen {
		if int(b) != i {
			t.Fatalf("received %v, want 0..%d in order", seen, total-1)
		}
	}
}

// TestTryWriteBatches sends to several Conns with one call: each gets its
// own batch, a closed one fails alone, and a Conn of another backend is
// served by its own TryWriteBatch.
func TestTryWriteBatches(t *testing.T) {
	be := uringForTest(t)
	bw := be.(BatchWriter)
	o := SocketOptions{BatchSize: 64, GSO: true}
	var rxs, txs []Conn
	for i := range 4 {
		rx, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), o)
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		open := be.Dial
		if i == 3 {
			open = NewMmsgBackend(nil).Dial
		}
		tx, err := open(netip.AddrPort{}, rx.LocalAddr(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		rxs, txs = append(rxs, rx), append(txs, tx)
	}
	txs[1].Close()
	msgs := make([]Message, 40)
	for i := range msgs {
		msgs[i] = Message{Buf: make([]byte, 1000), N: 1000 - i/30} // a GSO train, then single datagrams
		msgs[i].Buf[0] = byte(i)
	}
	ws := make([]BatchWrite, len(txs))
	for i, tx := range txs {
		ws[i] = BatchWrite{Conn: tx, Msgs: msgs}
	}
	bw.TryWriteBatches(ws)
	for i, w := range ws {
		if i == 1 {
			if !errors.Is(w.Err, net.ErrClosed) || w.N != 0 {
				t.Errorf("closed Conn: %d, %v; want 0, net.ErrClosed", w.N, w.Err)
			}
			continue
		}
		if w.Err != nil || w.N != len(msgs) {
			t.Errorf("Conn %d: %d, %v; want %d, nil", i, w.N, w.Err, len(msgs))
			continue
		}
		in := make([]Message, 64)
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
					t.Fatalf("Conn %d: datagram %d is %d bytes starting %d", i, got, m.N, m.Buf[0])
				}
				got++
			}
		}
	}
}

// TestURingWaitInEnter runs the Conn tests with readers that wait blocked
// in io_uring_enter instead of in the netpoller.
func TestURingWaitInEnter(t *testing.T) {
	uringForTest(t)
	defer func(w bool) { uringWaitInEnter = w }(uringWaitInEnter)
	uringWaitInEnter = true
	t.Run("loopback", TestConnLoopback)
	t.Run("close", TestCloseUnblocksRead)
	t.Run("handover", TestURingReaderHandover)
}
