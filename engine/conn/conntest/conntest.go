// Package conntest holds the test doubles and the conformance test of the
// socket layer: Net, an in-memory network that implements conn.Backend;
// Run, the tests every backend must pass; and helpers (Pair, NoDevice,
// Platform) that the engine's, the bench's and the end-to-end tests share.
// Nothing here is linked into the programs.
package conntest

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
)

// Platform returns the batch backends this kernel and process can run:
// mmsg, and uring where io_uring is available (tb logs why when it is not).
// Elsewhere it returns none.
func Platform(tb testing.TB) []conn.Backend {
	var bs []conn.Backend
	for _, name := range []string{"mmsg", "uring"} {
		b, err := conn.Open(name, nil)
		if err == nil {
			bs = append(bs, b)
		} else if tb != nil {
			tb.Logf("%s backend not tested: %v", name, err)
		}
	}
	return bs
}

// All returns Platform's backends and the portable std backend.
func All(tb testing.TB) []conn.Backend {
	return append(Platform(tb), conn.NewStd())
}

// URing returns the io_uring backend with o, or skips the test saying why
// io_uring is unavailable here.
func URing(tb testing.TB, o conn.URingOptions) conn.Backend {
	tb.Helper()
	b, err := conn.NewURing(o)
	if errors.Is(err, errors.ErrUnsupported) {
		tb.Skipf("skipping: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Pair opens a receiving socket on loopback and a sending one connected to
// it, both closed when the test ends.
func Pair(tb testing.TB, be conn.Backend, rxo, txo conn.SocketOptions) (rx, tx conn.Conn) {
	tb.Helper()
	rx, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), rxo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rx.Close() })
	tx, err = be.Dial(netip.AddrPort{}, rx.LocalAddr(), txo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tx.Close() })
	return rx, tx
}

// NoDevice wraps be so that its sockets ignore SocketOptions.Device: a
// test can then run several client links over loopback addresses, which
// SO_BINDTODEVICE to interfaces that do not exist would refuse.
// A BatchWriter or a Looper stays one, so the engine takes the same paths.
func NoDevice(be conn.Backend) conn.Backend {
	bw, batch := be.(conn.BatchWriter)
	lp, loop := be.(conn.Looper)
	switch {
	case batch && loop:
		return noDeviceLoop{noDevice{be}, bw, lp}
	case batch:
		return noDeviceBatch{noDevice{be}, bw}
	}
	return noDevice{be}
}

type noDeviceLoop struct {
	noDevice
	conn.BatchWriter
	conn.Looper
}

type noDevice struct{ conn.Backend }

type noDeviceBatch struct {
	noDevice
	conn.BatchWriter
}

func (b noDevice) Listen(laddr netip.AddrPort, o conn.SocketOptions) (conn.Conn, error) {
	o.Device = ""
	return b.Backend.Listen(laddr, o)
}

func (b noDevice) Dial(laddr, raddr netip.AddrPort, o conn.SocketOptions) (conn.Conn, error) {
	o.Device = ""
	return b.Backend.Dial(laddr, raddr, o)
}

// CheckGoroutines fails the test if, once its cleanups have run, more
// goroutines are left than when it started: everything a test starts must
// end when it stops.
func CheckGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines left running (%d before):\n%s", n, before, buf)
		}
	})
}

// Run runs the conformance tests of the Conn contract on be's sockets.
func Run(t *testing.T, be conn.Backend) {
	t.Run("loopback", func(t *testing.T) { testLoopback(t, be) })
	t.Run("close", func(t *testing.T) { testCloseUnblocksRead(t, be) })
	t.Run("readwaiter", func(t *testing.T) { CheckReadWaiter(t, be) })
	if be.Name() != "std" {
		t.Run("allocs", func(t *testing.T) { testAllocs(t, be) })
	}
}

// CheckReadWaiter checks a conn.ReadWaiter's contract, where the backend's
// Conns are one: TryReadBatch on an empty socket says ErrWouldBlock;
// WaitRead returns once a datagram is queued (also one queued before it
// was called), after which TryReadBatch takes it; and WaitRead returns
// net.ErrClosed once the Conn closes.
func CheckReadWaiter(t *testing.T, be conn.Backend) {
	rx, tx := Pair(t, be, conn.SocketOptions{BatchSize: 8}, conn.SocketOptions{BatchSize: 8})
	rw, ok := rx.(conn.ReadWaiter)
	if !ok {
		t.Skipf("%s Conns are no conn.ReadWaiter: their receive loops hold buffers while idle", be.Name())
	}
	msgs := make([]conn.Message, 8)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	if n, err := rw.TryReadBatch(msgs); !errors.Is(err, conn.ErrWouldBlock) {
		t.Fatalf("TryReadBatch on an empty socket: %d, %v; want ErrWouldBlock", n, err)
	}
	send := func(s string) {
		t.Helper()
		if _, err := tx.WriteBatch([]conn.Message{{Buf: []byte(s), N: len(s)}}); err != nil {
			t.Fatal(err)
		}
	}
	take := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := rw.TryReadBatch(msgs)
			if err == nil && n == 1 && string(msgs[0].Buf[:msgs[0].N]) == want {
				return
			}
			if (err != nil && !errors.Is(err, conn.ErrWouldBlock)) || time.Now().After(deadline) {
				t.Fatalf("TryReadBatch after WaitRead: %d, %v; want %q", n, err, want)
			}
			// WaitRead may return early; wait again.
			if err := rw.WaitRead(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Queued before WaitRead is called: it must not wait for the next.
	send("one")
	time.Sleep(10 * time.Millisecond)
	waited := make(chan error, 1)
	go func() { waited <- rw.WaitRead() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRead did not see a datagram queued before it was called")
	}
	take("one")
	// Sent while waiting.
	go func() { waited <- rw.WaitRead() }()
	time.Sleep(10 * time.Millisecond)
	send("two")
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRead did not return when a datagram came")
	}
	take("two")
	go func() { waited <- rw.WaitRead() }()
	time.Sleep(10 * time.Millisecond)
	rx.Close()
	select {
	case err := <-waited:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WaitRead after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end WaitRead")
	}
}

// testLoopback sends batches of datagrams of mixed sizes between two
// sockets and checks that each arrives whole and in order, with and
// without GSO and GRO.
func testLoopback(t *testing.T, be conn.Backend) {
	for _, opt := range []struct {
		name     string
		gso, gro bool
	}{{"plain", false, false}, {"gso", true, false}, {"gso+gro", true, true}} {
		t.Run(opt.name, func(t *testing.T) {
			o := conn.SocketOptions{GSO: opt.gso, GRO: opt.gro, BatchSize: 64}
			rx, tx := Pair(t, be, o, o)
			sizes := []int{100, 100, 100, 50, 1400, 1400, 1400, 1400, 7, 0, 1400}
			var out []conn.Message
			for i, s := range sizes {
				b := make([]byte, s)
				for j := range b {
					b[j] = byte(i)
				}
				out = append(out, conn.Message{Buf: b, N: s})
			}
			n, err := tx.WriteBatch(out)
			if err != nil || n != len(out) {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			in := make([]conn.Message, 64)
			for i := range in {
				in[i].Buf = make([]byte, 65536)
			}
			var got [][]byte
			trains := 0
			deadline := time.Now().Add(2 * time.Second)
			for len(got) < len(sizes) && time.Now().Before(deadline) {
				k, err := rx.ReadBatch(in)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range in[:k] {
					if m.Seg > 0 {
						trains++
					}
					if m.Addr != tx.LocalAddr() {
						t.Errorf("source %v, want %v", m.Addr, tx.LocalAddr())
					}
					seg := m.N
					if m.Seg > 0 {
						seg = m.Seg
					}
					for off := 0; off < m.N || (off == 0 && m.N == 0); off += seg {
						got = append(got, bytes.Clone(m.Buf[off:min(off+seg, m.N)]))
						if seg == 0 {
							break
						}
					}
				}
			}
			if opt.gro && be.Name() != "std" && trains == 0 {
				t.Errorf("GSO sends to a GRO socket arrived as no trains")
			}
			if len(got) != len(sizes) {
				t.Fatalf("got %d datagrams, want %d", len(got), len(sizes))
			}
			for i, g := range got {
				if len(g) != sizes[i] || (len(g) > 0 && g[0] != byte(i)) {
					t.Errorf("datagram %d: len %d first %v, want len %d first %d", i, len(g), g[:min(1, len(g))], sizes[i], i)
				}
			}
		})
	}
}

// testCloseUnblocksRead checks the Conn rule that Close makes a ReadBatch
// blocked in another goroutine return net.ErrClosed, and that later calls
// fail the same way.
func testCloseUnblocksRead(t *testing.T, be conn.Backend) {
	CheckGoroutines(t)
	c, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		msgs := []conn.Message{{Buf: make([]byte, 2048)}}
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
	msgs := []conn.Message{{Buf: make([]byte, 64), N: 1, Addr: c.LocalAddr()}}
	if _, err := c.ReadBatch(msgs); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadBatch after Close: %v", err)
	}
	if _, err := c.TryWriteBatch(msgs); !errors.Is(err, net.ErrClosed) {
		t.Errorf("TryWriteBatch after Close: %v", err)
	}
	if _, err := c.WriteBatch(msgs); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteBatch after Close: %v", err)
	}
}

// testAllocs checks that a batch backend's calls do not allocate once
// warmed up.
func testAllocs(t *testing.T, be conn.Backend) {
	o := conn.SocketOptions{GSO: true, BatchSize: 64}
	rx, tx := Pair(t, be, o, o)
	out := make([]conn.Message, 16)
	in := make([]conn.Message, 64)
	for i := range out {
		out[i] = conn.Message{Buf: make([]byte, 1400), N: 1400}
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
}
