package engine

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// gateConn is a conn.Conn whose send buffer the test opens and closes. It
// takes up to budget messages (unlimited when budget < 0) and is then
// full: TryWriteBatch returns conn.ErrWouldBlock, WriteBatch waits for
// room, the write deadline or Close. A message can be made to fail once
// with a kernel error, and WriteBatch alone can be held back while
// TryWriteBatch finds room (the flusher has not run yet when the socket
// drains). It records the first payload byte of every message
// it sends, and the destination.
type gateConn struct {
	mu        sync.Mutex // guards the fields below
	budget    int
	holdWait  bool          // WriteBatch waits even when there is room
	room      chan struct{} // closed and replaced when room is made
	deadline  time.Time
	deadlines int            // SetWriteDeadline calls with a nonzero time
	fail      map[byte]error // a message with this first byte fails once
	sent      []byte
	addrs     []netip.AddrPort
	tries     int // TryWriteBatch calls
	waiting   int // WriteBatch calls waiting for room now
	closed    bool
	done      chan struct{}
}

var _ conn.Conn = (*gateConn)(nil)

func newGateConn(budget int) *gateConn {
	return &gateConn{budget: budget, room: make(chan struct{}), fail: map[byte]error{}, done: make(chan struct{})}
}

// setBudget lets n more messages through (all when n < 0).
func (c *gateConn) setBudget(n int) {
	c.mu.Lock()
	c.budget = n
	close(c.room)
	c.room = make(chan struct{})
	c.mu.Unlock()
}

// holdWriteBatch holds WriteBatch back (or lets it go) whatever the
// budget.
func (c *gateConn) holdWriteBatch(hold bool) {
	c.mu.Lock()
	c.holdWait = hold
	close(c.room)
	c.room = make(chan struct{})
	c.mu.Unlock()
}

func (c *gateConn) failOnce(id byte, err error) {
	c.mu.Lock()
	c.fail[id] = err
	c.mu.Unlock()
}

func (c *gateConn) snapshot() (sent []byte, tries, waiting int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent), c.tries, c.waiting
}

// takeLocked sends what it can of msgs with c.mu held; it returns the number
// sent and the error that stopped it, or a nil error and a channel to
// wait on when the buffer is full.
func (c *gateConn) takeLocked(msgs []conn.Message, wait bool) (int, error, chan struct{}) {
	for i, m := range msgs {
		if c.closed {
			return i, net.ErrClosed, nil
		}
		if c.budget == 0 || wait && c.holdWait {
			return i, nil, c.room
		}
		id := m.Buf[0]
		if err, ok := c.fail[id]; ok {
			delete(c.fail, id)
			return i, err, nil
		}
		if c.budget > 0 {
			c.budget--
		}
		c.sent = append(c.sent, id)
		c.addrs = append(c.addrs, m.Addr)
	}
	return len(msgs), nil, nil
}

func (c *gateConn) TryWriteBatch(msgs []conn.Message) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tries++
	n, err, full := c.takeLocked(msgs, false)
	if full != nil {
		return n, conn.ErrWouldBlock
	}
	return n, err
}

func (c *gateConn) WriteBatch(msgs []conn.Message) (int, error) {
	total := 0
	for {
		c.mu.Lock()
		n, err, full := c.takeLocked(msgs[total:], true)
		total += n
		d := c.deadline
		if full != nil {
			c.waiting++
		}
		c.mu.Unlock()
		if full == nil {
			return total, err
		}
		var timer <-chan time.Time
		if !d.IsZero() {
			tm := time.NewTimer(time.Until(d))
			timer = tm.C
			defer tm.Stop()
		}
		select {
		case <-full:
			err = nil
		case <-timer:
			err = os.ErrDeadlineExceeded
		case <-c.done:
			err = net.ErrClosed
		}
		c.mu.Lock()
		c.waiting--
		c.mu.Unlock()
		if err != nil {
			return total, err
		}
	}
}

func (c *gateConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	if !t.IsZero() {
		c.deadlines++
	}
	c.mu.Unlock()
	return nil
}

// ReadBatch waits for Close: a sender never reads.
func (c *gateConn) ReadBatch(msgs []conn.Message) (int, error) {
	<-c.done
	return 0, net.ErrClosed
}

func (c *gateConn) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("192.0.2.10:40000") }

func (c *gateConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

// senderRig is one sender under test with its pool, conn and counters.
type senderRig struct {
	t       *testing.T
	pool    *ring.Pool
	c       *gateConn
	s       *sender
	stats   Stats
	timeout atomic.Int64
	warns   atomic.Int32
	lastLog atomic.Value
}

func newSenderRig(t *testing.T, queueLen, batch int, timeout time.Duration, own bool, dst *atomic.Pointer[netip.AddrPort]) *senderRig {
	t.Helper()
	pool, err := ring.NewPool(64, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	r := &senderRig{t: t, pool: pool, c: newGateConn(-1)}
	r.timeout.Store(int64(timeout))
	log := &Logger{Warnf: func(f string, args ...any) {
		r.warns.Add(1)
		r.lastLog.Store(fmt.Sprintf(f, args...))
	}}
	r.s = newSender(senderConfig{name: "test", conn: r.c, own: own, dst: dst, stats: &r.stats}, queueLen, batch, &r.timeout, log)
	t.Cleanup(func() {
		r.c.setBudget(-1) // let a flusher blocked for room finish
		r.close()
		r.checkPool()
		pool.Close()
	})
	return r
}

// packets takes buffers from the pool with payload ids from..to-1 (the
// first byte), stamped now.
func (r *senderRig) packets(from, to int) []*ring.Packet {
	r.t.Helper()
	var bufs []*ring.Packet
	for i := from; i < to; i++ {
		b := r.pool.Get()
		if b == nil {
			r.t.Fatalf("pool exhausted at packet %d", i)
		}
		b.Data()[0] = byte(i)
		b.N = 10 + i
		b.Stamp = nanotime()
		bufs = append(bufs, b)
	}
	return bufs
}

func (r *senderRig) send(bufs []*ring.Packet) {
	r.s.send(bufs, make([]conn.Message, len(bufs)))
}

// close closes the sender and waits for its flusher to exit.
func (r *senderRig) close() {
	r.t.Helper()
	done := make(chan struct{})
	go func() { r.s.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.t.Fatal("sender close did not return")
	}
	select {
	case <-r.s.exited:
	default:
		r.t.Fatal("flusher still running after close")
	}
}

// checkPool checks that every buffer is back in the pool. A flusher
// releases a buffer just after its write returns, so this waits a little.
func (r *senderRig) checkPool() {
	r.t.Helper()
	if !eventually(func() bool { return r.pool.Available() == r.pool.Allocated() }) {
		a, n := r.pool.Available(), r.pool.Allocated()
		r.t.Errorf("%d of %d buffers not returned to the pool", n-a, n)
	}
}

// eventually polls cond for a few seconds and reports whether it held.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// waitFor polls cond for a few seconds and fails the test if it does not
// hold by then.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !eventually(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func ids(from, to int) []byte {
	var r []byte
	for i := from; i < to; i++ {
		r = append(r, byte(i))
	}
	return r
}

func (r *senderRig) waitSent(want []byte) {
	r.t.Helper()
	waitFor(r.t, fmt.Sprintf("packets %v sent", want), func() bool {
		sent, _, _ := r.c.snapshot()
		return len(sent) >= len(want)
	})
	if sent, _, _ := r.c.snapshot(); !slices.Equal(sent, want) {
		r.t.Fatalf("sent %v, want %v", sent, want)
	}
}

func (r *senderRig) waitBlocked() {
	r.t.Helper()
	waitFor(r.t, "the flusher to wait for room", func() bool {
		_, _, w := r.c.snapshot()
		return w > 0
	})
}

// counters checks the sender's counters; they are updated just after a
// write returns, so this waits a little for them to reach want.
func (r *senderRig) counters(want Counters) {
	r.t.Helper()
	var got Counters
	read := func() bool {
		got = r.stats.Read()
		got.LastRx = time.Time{}
		return got == want
	}
	if !eventually(read) {
		r.t.Errorf("counters\n got %+v\nwant %+v", got, want)
	}
}

func bytesOf(from, to int) uint64 {
	var n uint64
	for i := from; i < to; i++ {
		n += uint64(10 + i)
	}
	return n
}

// TestSenderDirect: with nothing in the backlog, send writes at once on the
// caller's goroutine, and every buffer is back in the pool when it returns.
func TestSenderDirect(t *testing.T) {
	r := newSenderRig(t, 8, 4, time.Second, true, nil)
	r.send(r.packets(0, 3))
	sent, tries, _ := r.c.snapshot()
	if !slices.Equal(sent, ids(0, 3)) || tries != 1 {
		t.Fatalf("after send: sent %v in %d TryWriteBatch calls, want %v in 1", sent, tries, ids(0, 3))
	}
	r.checkPool()
	if p := r.s.pending.Load(); p != 0 {
		t.Errorf("pending %d after a direct write", p)
	}
	r.counters(Counters{TxPackets: 3, TxBytes: bytesOf(0, 3)})
}

// TestSenderUnconnected sends to the destination an unconnected sender is
// given, and drops (DropError) while it has none.
func TestSenderUnconnected(t *testing.T) {
	var dst atomic.Pointer[netip.AddrPort]
	r := newSenderRig(t, 8, 4, time.Second, true, &dst)
	r.send(r.packets(0, 2))
	r.checkPool()
	r.counters(Counters{DropError: 2})
	ap := netip.MustParseAddrPort("198.51.100.7:4000")
	dst.Store(&ap)
	r.send(r.packets(2, 4))
	r.waitSent(ids(2, 4))
	r.c.mu.Lock()
	addrs := slices.Clone(r.c.addrs)
	r.c.mu.Unlock()
	if !slices.Equal(addrs, []netip.AddrPort{ap, ap}) {
		t.Errorf("sent to %v, want %v twice", addrs, ap)
	}
	r.counters(Counters{DropError: 2, TxPackets: 2, TxBytes: bytesOf(2, 4)})
}

// TestSenderBacklogOrder: when the socket fills in the middle of a batch,
// the rest waits in the backlog; later batches queue behind it instead of
// jumping ahead on the direct path, even when the socket has drained
// before the flusher got to run, and everything leaves in the order it
// came. Then the sender goes back to direct writes. With a flusher batch
// as large as the backlog, the packets in the flusher's hands must still
// count as waiting (pending), or a direct write would overtake them.
func TestSenderBacklogOrder(t *testing.T) {
	for _, batch := range []int{2, 8} {
		t.Run(fmt.Sprintf("flusher batch %d", batch), func(t *testing.T) {
			r := newSenderRig(t, 16, batch, 0, true, nil) // no write timeout: wait as long as it takes
			r.c.setBudget(2)
			r.send(r.packets(0, 5)) // 0 and 1 go at once, the socket is then full
			r.waitBlocked()
			// The socket has room again, but the flusher has not taken it yet.
			r.c.holdWriteBatch(true)
			r.c.setBudget(-1)
			r.send(r.packets(5, 7))
			r.send(r.packets(7, 9))
			if sent, _, _ := r.c.snapshot(); !slices.Equal(sent, ids(0, 2)) {
				t.Fatalf("with the backlog waiting: sent %v, want %v", sent, ids(0, 2))
			}
			r.c.holdWriteBatch(false)
			r.waitSent(ids(0, 9))
			waitFor(t, "an empty backlog", func() bool { return r.s.pending.Load() == 0 })
			r.checkPool()
			_, before, _ := r.c.snapshot()
			r.send(r.packets(9, 10))
			if sent, after, _ := r.c.snapshot(); !slices.Equal(sent, ids(0, 10)) || after != before+1 {
				t.Errorf("after the backlog drained: sent %v in %d more TryWriteBatch calls; want %v in 1", sent, after-before, ids(0, 10))
			}
			r.counters(Counters{TxPackets: 10, TxBytes: bytesOf(0, 10)})
		})
	}
}

// TestSenderWriteTimeout: what waited in the backlog longer than the write
// timeout is dropped (DropTimeout), without waiting for the socket, and
// what has not is still sent.
func TestSenderWriteTimeout(t *testing.T) {
	t.Run("stale packets dropped, fresh ones wait", func(t *testing.T) {
		r := newSenderRig(t, 16, 8, 5*time.Second, true, nil)
		r.c.setBudget(0)
		bufs := r.packets(0, 3)
		bufs[0].Stamp -= int64(10 * time.Second)
		bufs[1].Stamp -= int64(10 * time.Second)
		r.send(bufs)
		waitFor(t, "stale packets dropped", func() bool { return r.stats.DropTimeout.Load() == 2 })
		r.waitBlocked() // on packet 2, within its deadline
		r.c.mu.Lock()
		d := time.Until(r.c.deadline)
		r.c.mu.Unlock()
		if d <= 0 || d > 5*time.Second {
			t.Errorf("write deadline %v from now, want within the 5s timeout of the oldest packet", d)
		}
		r.c.setBudget(-1)
		r.waitSent([]byte{2})
		r.counters(Counters{DropTimeout: 2, TxPackets: 1, TxBytes: bytesOf(2, 3)})
	})
	t.Run("a stalled socket times out", func(t *testing.T) {
		r := newSenderRig(t, 16, 8, 20*time.Millisecond, true, nil)
		r.c.setBudget(0)
		r.send(r.packets(0, 4))
		waitFor(t, "all packets dropped", func() bool { return r.stats.DropTimeout.Load() == 4 })
		waitFor(t, "an empty backlog", func() bool { return r.s.pending.Load() == 0 })
		r.checkPool()
		r.c.mu.Lock()
		deadlines := r.c.deadlines
		r.c.mu.Unlock()
		if deadlines == 0 {
			t.Error("the flusher never set a write deadline")
		}
		// The socket recovers: new packets go out.
		r.c.setBudget(-1)
		r.send(r.packets(4, 6))
		r.waitSent(ids(4, 6))
		r.counters(Counters{DropTimeout: 4, TxPackets: 2, TxBytes: bytesOf(4, 6)})
	})
}

// TestSenderFullBacklog: a backlog that is full drops (DropFull) and send
// returns at once, however long the socket stays full.
func TestSenderFullBacklog(t *testing.T) {
	r := newSenderRig(t, 4, 8, 0, true, nil)
	r.c.setBudget(0)
	returned := make(chan struct{})
	go func() { r.send(r.packets(0, 10)); close(returned) }()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("send blocked on a full socket")
	}
	if got := r.stats.DropFull.Load(); got != 6 {
		t.Errorf("DropFull %d, want 6 (10 packets, a backlog of 4)", got)
	}
	r.c.setBudget(-1)
	r.waitSent(ids(0, 4))
	waitFor(t, "an empty backlog", func() bool { return r.s.pending.Load() == 0 })
	r.checkPool()
	r.counters(Counters{DropFull: 6, TxPackets: 4, TxBytes: bytesOf(0, 4)})
}

// TestSenderClosed: a closed sender drops what it is given and what its
// backlog held (DropClosed), and every buffer returns to the pool.
func TestSenderClosed(t *testing.T) {
	t.Run("send after close", func(t *testing.T) {
		r := newSenderRig(t, 8, 4, time.Second, true, nil)
		r.close()
		r.send(r.packets(0, 3))
		r.checkPool()
		if sent, tries, _ := r.c.snapshot(); len(sent) != 0 || tries != 0 {
			t.Errorf("closed sender wrote: sent %v in %d calls", sent, tries)
		}
		r.counters(Counters{DropClosed: 3})
	})
	t.Run("own conn: close ends a blocked write", func(t *testing.T) {
		r := newSenderRig(t, 16, 4, 0, true, nil) // no timeout: only Close ends the wait
		r.c.setBudget(0)
		r.send(r.packets(0, 10)) // the flusher holds 4, the backlog 6
		r.waitBlocked()
		r.close()
		r.checkPool()
		r.counters(Counters{DropClosed: 10})
		r.send(r.packets(10, 12))
		r.checkPool()
		r.counters(Counters{DropClosed: 12})
	})
	t.Run("shared conn: close lets the blocked batch finish", func(t *testing.T) {
		r := newSenderRig(t, 16, 4, 0, false, nil)
		r.c.setBudget(0)
		r.send(r.packets(0, 10))
		r.waitBlocked()
		closed := make(chan struct{})
		go func() { r.s.close(); close(closed) }()
		waitFor(t, "the sender marked closed", r.s.closed.Load)
		select {
		case <-closed:
			t.Fatal("close returned while the flusher was still writing")
		default:
		}
		r.c.setBudget(-1)
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("close did not return")
		}
		r.waitSent(ids(0, 4))
		r.checkPool()
		r.c.mu.Lock()
		connClosed := r.c.closed
		r.c.mu.Unlock()
		if connClosed {
			t.Error("close closed a shared conn")
		}
		r.counters(Counters{DropClosed: 6, TxPackets: 4, TxBytes: bytesOf(0, 4)})
	})
}

// TestSenderKernelError: a message the kernel refuses (not a full buffer)
// is dropped alone (DropError, SendErrors, one warning) and the rest of the
// batch is sent, on the direct path and from the backlog.
func TestSenderKernelError(t *testing.T) {
	tooLong := os.NewSyscallError("sendmmsg", syscall.EMSGSIZE)
	t.Run("direct", func(t *testing.T) {
		r := newSenderRig(t, 8, 8, time.Second, true, nil)
		r.c.failOnce(2, tooLong)
		r.send(r.packets(0, 5))
		if sent, _, _ := r.c.snapshot(); !slices.Equal(sent, []byte{0, 1, 3, 4}) {
			t.Fatalf("sent %v, want [0 1 3 4]", sent)
		}
		r.checkPool()
		r.counters(Counters{DropError: 1, SendErrors: 1, TxPackets: 4, TxBytes: bytesOf(0, 5) - bytesOf(2, 3)})
		if r.warns.Load() != 1 || !strings.Contains(r.lastLog.Load().(string), "message too long") {
			t.Errorf("%d warnings, last %q; want one naming the error", r.warns.Load(), r.lastLog.Load())
		}
	})
	t.Run("last message fails", func(t *testing.T) {
		r := newSenderRig(t, 8, 8, time.Second, true, nil)
		r.c.failOnce(2, tooLong)
		r.send(r.packets(0, 3))
		r.checkPool()
		if p := r.s.pending.Load(); p != 0 {
			t.Errorf("pending %d", p)
		}
		r.counters(Counters{DropError: 1, SendErrors: 1, TxPackets: 2, TxBytes: bytesOf(0, 2)})
	})
	t.Run("from the backlog", func(t *testing.T) {
		r := newSenderRig(t, 8, 8, 0, true, nil)
		r.c.setBudget(0)
		r.send(r.packets(0, 4))
		r.waitBlocked()
		r.c.failOnce(1, tooLong)
		r.c.setBudget(-1)
		r.waitSent([]byte{0, 2, 3})
		waitFor(t, "an empty backlog", func() bool { return r.s.pending.Load() == 0 })
		r.checkPool()
		r.counters(Counters{DropError: 1, SendErrors: 1, TxPackets: 3, TxBytes: bytesOf(0, 4) - bytesOf(1, 2)})
	})
	t.Run("closed conn on the direct path", func(t *testing.T) {
		r := newSenderRig(t, 8, 8, time.Second, false, nil)
		r.c.Close()
		r.send(r.packets(0, 3))
		r.checkPool()
		r.counters(Counters{DropClosed: 3})
		if r.warns.Load() != 0 {
			t.Errorf("a closed socket logged %d send failures", r.warns.Load())
		}
	})
}

// TestSenderCloseRace closes a sender while several producers send to it,
// some packets going out directly, some through the backlog of a socket
// that fills: every packet is accounted for exactly once (sent or dropped
// for one reason) and every buffer returns to the pool. Run it with -race.
func TestSenderCloseRace(t *testing.T) {
	const producers, batches, per = 4, 40, 4
	for iter := range 10 {
		r := newSenderRig(t, 16, 4, time.Second, true, nil)
		r.c.setBudget(iter * 20) // the socket fills after a varying number of packets
		var wg sync.WaitGroup
		var warm sync.WaitGroup // each producer has sent a third
		closing := make(chan struct{})
		for range producers {
			wg.Add(1)
			warm.Add(1)
			go func() {
				defer wg.Done()
				warmed := sync.OnceFunc(warm.Done)
				defer warmed()
				scratch := make([]conn.Message, per)
				for b := range batches {
					if b == batches/3 {
						warmed()
						<-closing // the rest races with close
					}
					bufs := make([]*ring.Packet, per)
					for i := range bufs {
						if bufs[i] = r.pool.Get(); bufs[i] == nil {
							t.Error("pool exhausted: a sender holds on to buffers")
							return
						}
						bufs[i].N, bufs[i].Stamp = 10, nanotime()
					}
					r.s.send(bufs, scratch)
				}
			}()
		}
		warm.Wait()
		close(closing)
		r.close()
		wg.Wait()
		r.checkPool()
		c := r.stats.Read()
		if got := c.TxPackets + c.Drops(); got != producers*batches*per {
			t.Fatalf("iteration %d: %d packets sent or dropped (%+v), want %d", iter, got, c, producers*batches*per)
		}
	}
}
