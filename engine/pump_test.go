package engine

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
	"github.com/engarde-project/engarde/ring"
)

// pumpRig is a receive loop on one socket of a fake network, fed by
// another, with a handler that records what it is given and can hold on
// to the buffers, as a link that has not sent them yet does.
type pumpRig struct {
	t     *testing.T
	pool  *ring.Pool
	rx    conn.Conn
	tx    conn.Conn
	p     *pump
	stats Stats

	mu    sync.Mutex // guards the fields below
	got   []byte     // first payload byte of each delivered buffer
	segs  []int      // Seg of each
	stamp []int64    // Stamp of each
	held  []*ring.Packet
	hold  bool
	warns []string
}

func newPumpRig(t *testing.T, bufSize, buffers, batch int) *pumpRig {
	t.Helper()
	pool, err := ring.NewPool(bufSize, buffers, buffers)
	if err != nil {
		t.Fatal(err)
	}
	n := conntest.NewNet()
	laddr := netip.MustParseAddrPort("10.0.0.1:5000")
	rx, err := n.Listen(laddr, conn.SocketOptions{BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := n.Dial(netip.MustParseAddrPort("10.0.0.2:0"), laddr, conn.SocketOptions{BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	r := &pumpRig{t: t, pool: pool, rx: rx, tx: tx}
	log := &Logger{Warnf: func(f string, args ...any) {
		r.mu.Lock()
		r.warns = append(r.warns, fmt.Sprintf(f, args...))
		r.mu.Unlock()
	}}
	r.p = newPump("test", rx, pool, batch, &r.stats, log, r.handle)
	t.Cleanup(func() {
		r.stop()
		r.release()
		tx.Close()
		if a, n := pool.Available(), pool.Allocated(); a != n {
			t.Errorf("after stop: %d of %d buffers not returned to the pool", n-a, n)
		}
		pool.Close()
	})
	return r
}

func (r *pumpRig) handle(bufs []*ring.Packet, msgs []conn.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range bufs {
		if msgs[i].N != b.N || &msgs[i].Buf[0] != &b.Data()[0] {
			r.t.Errorf("message %d (N %d) does not describe its buffer (N %d)", i, msgs[i].N, b.N)
		}
		r.got = append(r.got, b.Bytes()[0])
		r.segs = append(r.segs, b.Seg)
		r.stamp = append(r.stamp, b.Stamp)
		if r.hold {
			b.Ref(1)
			r.held = append(r.held, b)
		}
	}
}

// release gives back every buffer the handler holds, and stops holding.
func (r *pumpRig) release() {
	r.mu.Lock()
	held := r.held
	r.held, r.hold = nil, false
	r.mu.Unlock()
	for _, b := range held {
		b.Release()
	}
}

func (r *pumpRig) delivered() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *pumpRig) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.warns)
}

// send writes datagrams of the given sizes, the first byte of each its
// index from first.
func (r *pumpRig) send(first int, sizes ...int) {
	r.t.Helper()
	for i, n := range sizes {
		buf := make([]byte, n)
		buf[0] = byte(first + i)
		if _, err := r.tx.WriteBatch([]conn.Message{{Buf: buf, N: n}}); err != nil {
			r.t.Fatal(err)
		}
	}
}

// stop stops the pump and waits for its loop to end.
func (r *pumpRig) stop() {
	r.t.Helper()
	done := make(chan struct{})
	go func() { r.p.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.t.Fatal("pump did not stop")
	}
}

func (r *pumpRig) waitDelivered(want []byte) {
	r.t.Helper()
	waitFor(r.t, fmt.Sprintf("%v delivered", want), func() bool { return len(r.delivered()) >= len(want) })
	if got := r.delivered(); !slices.Equal(got, want) {
		r.t.Fatalf("delivered %v, want %v", got, want)
	}
}

// TestPumpPoolExhausted: while the handler holds every buffer, the pump
// pauses (without spinning, logging once) and the datagrams wait in the
// socket; once buffers come back it receives them all, in order. Pins that
// an empty pool neither crashes the loop (a nil buffer handed to
// ReadBatch) nor makes it spin on Get.
func TestPumpPoolExhausted(t *testing.T) {
	const buffers, total = 4, 10
	r := newPumpRig(t, 64, buffers, buffers)
	r.hold = true
	r.p.start()
	sizes := make([]int, total)
	for i := range sizes {
		sizes[i] = 20
	}
	r.send(0, sizes...)
	waitFor(t, "the pool exhausted warning", func() bool { return len(r.warnings()) > 0 })
	if got := r.delivered(); !slices.Equal(got, ids(0, buffers)) {
		t.Fatalf("with %d buffers held: delivered %v, want %v", buffers, got, ids(0, buffers))
	}
	// Paused: it keeps polling the pool, but at the pace of a timer,
	// not of a loop (which would miss millions of times here).
	m0 := r.pool.Misses()
	time.Sleep(50 * time.Millisecond)
	if m := r.pool.Misses() - m0; m > 1000 {
		t.Errorf("%d pool misses in 50ms while paused: the loop spins", m)
	}
	if got := r.delivered(); len(got) != buffers {
		t.Fatalf("delivered %v while every buffer was held", got)
	}
	w := r.warnings()
	if len(w) != 1 || !strings.Contains(w[0], "pool exhausted") || !strings.Contains(w[0], "test") {
		t.Errorf("warnings %q, want one naming the pump and the exhausted pool", w)
	}
	r.release()
	r.waitDelivered(ids(0, total))
	if c := r.stats.Read(); c.RxPackets != total || c.RxBytes != total*20 || c.Oversize != 0 || c.RxErrors != 0 {
		t.Errorf("counters %+v, want %d packets, %d bytes", c, total, total*20)
	}
	if w := r.warnings(); len(w) != 1 {
		t.Errorf("warnings %q, want the one", w)
	}
	r.stop()
}

// TestPumpStopWhilePaused: a pump with no buffer to receive into still
// stops.
func TestPumpStopWhilePaused(t *testing.T) {
	r := newPumpRig(t, 64, 2, 2)
	r.hold = true
	r.p.start()
	r.send(0, 20, 20, 20) // the third waits for a buffer
	waitFor(t, "the pool exhausted warning", func() bool { return len(r.warnings()) > 0 })
	r.stop()
	r.release()
}

// TestPumpHeldBuffersReplaced: the handler holds some buffers of a batch;
// the pump replaces them from the pool and goes on receiving with the
// rest, never handing the handler a buffer that someone still holds.
func TestPumpHeldBuffersReplaced(t *testing.T) {
	r := newPumpRig(t, 64, 16, 4)
	r.hold = true
	r.p.start()
	r.send(0, 20, 20, 20)
	r.waitDelivered(ids(0, 3))
	r.mu.Lock()
	held := slices.Clone(r.held)
	r.hold = false
	r.mu.Unlock()
	r.send(3, 20, 20, 20, 20, 20)
	r.waitDelivered(ids(0, 8))
	for i, b := range held {
		if b.Refs() != 1 || b.Bytes()[0] != byte(i) {
			t.Errorf("held buffer %d was reused while held: refs %d, payload %d", i, b.Refs(), b.Bytes()[0])
		}
	}
}

// TestPumpOversize: datagrams that did not fit a buffer are counted and
// not delivered; the datagrams around them are, in order.
func TestPumpOversize(t *testing.T) {
	r := newPumpRig(t, 64, 8, 4)
	r.p.start()
	r.send(0, 20, 100, 30, 65, 64)
	r.waitDelivered([]byte{0, 2, 4})
	waitFor(t, "counters", func() bool { return r.stats.RxPackets.Load() == 3 })
	if c := r.stats.Read(); c.Oversize != 2 || c.RxPackets != 3 || c.RxBytes != 20+30+64 {
		t.Errorf("counters %+v, want 2 oversize, 3 packets, %d bytes", c, 20+30+64)
	}
	r.stop()
}

// TestPumpTrains: a GRO train counts as its datagrams, and the buffer
// carries its segment size and receive time.
func TestPumpTrains(t *testing.T) {
	r := newPumpRig(t, 64, 8, 4)
	before := nanotime()
	r.p.start()
	buf := make([]byte, 50)
	if _, err := r.tx.WriteBatch([]conn.Message{{Buf: buf, N: 50, Seg: 20}}); err != nil {
		t.Fatal(err)
	}
	r.waitDelivered([]byte{0})
	waitFor(t, "counters", func() bool { return r.stats.RxPackets.Load() == 3 })
	r.mu.Lock()
	seg, stamp := r.segs[0], r.stamp[0]
	r.mu.Unlock()
	if seg != 20 {
		t.Errorf("buffer Seg %d, want 20", seg)
	}
	if stamp < before || stamp > nanotime() {
		t.Errorf("buffer Stamp %d outside [%d, now]", stamp, before)
	}
	if c := r.stats.Read(); c.RxBytes != 50 || c.LastRx.IsZero() {
		t.Errorf("counters %+v, want 50 bytes and a last receive time", c)
	}
	r.stop()
}

// TestPumpIdleHoldsNoBuffers: on a conn.ReadWaiter, a pump with nothing
// to read holds no buffer and does not poll the pool; woken, it receives
// everything queued.
func TestPumpIdleHoldsNoBuffers(t *testing.T) {
	r := newPumpRig(t, 64, 8, 4)
	if _, ok := r.rx.(conn.ReadWaiter); !ok {
		t.Fatal("the fake network's Conn is no conn.ReadWaiter")
	}
	r.p.start()
	r.send(0, 20, 20)
	r.waitDelivered(ids(0, 2))
	waitFor(t, "the idle pump to return its buffers", func() bool { return r.pool.Available() == r.pool.Allocated() })
	m0 := r.pool.Misses()
	time.Sleep(30 * time.Millisecond)
	if a, n, m := r.pool.Available(), r.pool.Allocated(), r.pool.Misses()-m0; a != n || m != 0 {
		t.Errorf("an idle pump held %d of %d buffers and missed %d times in 30ms", n-a, n, m)
	}
	r.send(2, 20, 20, 20, 20, 20, 20)
	r.waitDelivered(ids(0, 8))
	r.stop()
}

// TestPumpKeepBudget: a pump allowed to keep buffers holds them while it
// waits, as long as the role's budget has room; another finds it full and
// holds none; and the budget comes back when the first one stops.
func TestPumpKeepBudget(t *testing.T) {
	budget := new(atomic.Int64)
	budget.Store(4)
	a := newPumpRig(t, 64, 16, 4)
	b := newPumpRig(t, 64, 16, 4)
	for _, r := range []*pumpRig{a, b} {
		r.p.keep, r.p.budget = 4, budget
	}
	held := func(r *pumpRig) int { return r.pool.Allocated() - r.pool.Available() }
	a.p.start()
	a.send(0, 20, 20)
	a.waitDelivered(ids(0, 2))
	waitFor(t, "the first pump to keep its buffers", func() bool { return budget.Load() == 0 && held(a) > 0 })
	b.p.start()
	b.send(0, 20, 20)
	b.waitDelivered(ids(0, 2))
	waitFor(t, "the second pump to give its buffers back", func() bool { return held(b) == 0 })
	a.send(2, 20, 20)
	a.waitDelivered(ids(0, 4)) // a kept pump still receives
	a.stop()
	if got := budget.Load(); got != 4 {
		t.Errorf("budget %d after the keeping pump stopped, want 4", got)
	}
	if h := held(a); h != 0 {
		t.Errorf("a stopped pump holds %d buffers", h)
	}
	b.stop()
}

// TestPumpConnClosed: closing the Conn ends the loop, and the loop gives
// back every buffer it held.
func TestPumpConnClosed(t *testing.T) {
	r := newPumpRig(t, 64, 8, 4)
	r.hold = true
	r.p.start()
	r.send(0, 20, 20, 20, 20, 20)
	r.waitDelivered(ids(0, 5))
	r.release()
	time.Sleep(10 * time.Millisecond) // it may be back in a read, holding buffers
	r.rx.Close()
	select {
	case <-r.p.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end when its Conn closed")
	}
	if a, n := r.pool.Available(), r.pool.Allocated(); a != n {
		t.Errorf("%d of %d buffers not returned to the pool", n-a, n)
	}
	if c := r.stats.Read(); c.RxErrors != 0 {
		t.Errorf("a closed Conn counted %d receive errors", c.RxErrors)
	}
	if w := r.warnings(); len(w) != 0 {
		t.Errorf("a closed Conn logged %q", w)
	}
}
