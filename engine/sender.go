package engine

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/internal/sys"
	"github.com/engarde-project/engarde/ring"
)

// sender moves packet buffers to one destination through one Conn, so that
// a slow, full or dead destination costs only itself.
//
// Producers (the goroutines that receive packets) call send. While nothing
// is waiting in the backlog, send writes the batch at once, without
// blocking, on the producer's goroutine: no hand-off, no wake-up, which is
// what keeps latency at the level of the direct path. When the socket's
// buffer is full, the rest of the batch goes to the backlog, a bounded
// lock-free queue, and the sender's own goroutine (the flusher) writes it
// out as the socket drains, dropping what waited longer than the write
// timeout. While the backlog holds anything, producers append to it, so
// packets leave in the order they came (for one producer). A full backlog
// drops the packet for this destination only.
type sender struct {
	conn    conn.Conn
	dst     *atomic.Pointer[netip.AddrPort] // nil for a connected Conn
	timeout *atomic.Int64                   // nanoseconds; <= 0: wait as long as it takes; shared, reloadable
	stats   *Stats
	log     *Logger
	name    string

	// The backlog, its flusher and their scratch exist from the first
	// time the socket is full (start): a server's thousands of idle
	// senders hold none of it.
	start    sync.Once
	queueLen int
	batch    int
	q        *ring.MPMC[*ring.Packet] // nil until start, and for good if closed first
	pending  atomic.Int64             // buffers in q or in the flusher's hands
	wake     chan struct{}
	closed   atomic.Bool
	done     chan struct{}
	exited   chan struct{}
	errLog   rateLimit
	// lastErr is the latest send error, noted at most once a second
	// (errAt, nanotime) so that a path refusing every packet costs no
	// allocation per packet; the health evaluator says what it was.
	lastErr atomic.Pointer[error]
	errAt   atomic.Int64

	// The flusher's scratch.
	fbufs []*ring.Packet
	fmsgs []conn.Message

	ownConn bool // close closes conn
}

// newSender starts a sender as c says, with a backlog of queueLen
// packets, batch-sized writes and the shared, reloadable write timeout.
func newSender(c senderConfig, queueLen, batch int, timeout *atomic.Int64, log *Logger) *sender {
	s := &sender{
		conn:     c.conn,
		ownConn:  c.own,
		dst:      c.dst,
		timeout:  timeout,
		stats:    c.stats,
		log:      log,
		name:     c.name,
		queueLen: queueLen,
		batch:    batch,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	return s
}

// backlog returns the backlog, making it and starting the flusher the
// first time; nil once the sender closed without ever needing one.
func (s *sender) backlog() *ring.MPMC[*ring.Packet] {
	s.start.Do(func() {
		s.q = ring.NewMPMC[*ring.Packet](s.queueLen)
		s.fbufs = make([]*ring.Packet, s.batch)
		s.fmsgs = make([]conn.Message, s.batch)
		go s.flush()
	})
	return s.q
}

// destination returns where an unconnected sender sends, and false when it
// does not know yet (no WireGuard peer has spoken).
func (s *sender) destination() (netip.AddrPort, bool) {
	if s.dst == nil {
		return netip.AddrPort{}, true
	}
	p := s.dst.Load()
	if p == nil {
		return netip.AddrPort{}, false
	}
	return *p, true
}

// send takes one reference of each buffer in bufs: it releases each once
// the packet is sent or dropped. scratch is the caller's, at least as long
// as bufs.
func (s *sender) send(bufs []*ring.Packet, scratch []conn.Message) {
	if len(bufs) == 0 {
		return
	}
	if s.closed.Load() {
		s.drop(bufs, &s.stats.DropClosed)
		return
	}
	dst, ok := s.destination()
	if !ok {
		s.drop(bufs, &s.stats.DropError)
		return
	}
	if s.pending.Load() == 0 {
		msgs := fill(scratch, bufs, dst)
		k, err := s.conn.TryWriteBatch(msgs)
		s.finish(bufs, msgs, k, err)
		return
	}
	s.enqueue(bufs)
}

// direct reports whether send would write at once rather than queue: the
// fan-out then may write for it, and call finish with the outcome.
func (s *sender) direct() bool {
	return s.dst == nil && s.pending.Load() == 0 && !s.closed.Load()
}

// finish takes the outcome of a non-blocking write of msgs (for bufs) that
// sent k of them and returned err: it accounts for what went, drops a
// message the kernel refused and goes on with the rest (or drops the rest
// too when the error refuses the path, sys.IsPathError), and queues what
// a full socket did not take.
func (s *sender) finish(bufs []*ring.Packet, msgs []conn.Message, k int, err error) {
	off, refused := 0, 0
	for {
		s.sent(bufs[off:off+k], msgs[off:off+k])
		off += k
		if err == nil || errors.Is(err, conn.ErrWouldBlock) || off >= len(bufs) {
			break
		}
		if errors.Is(err, net.ErrClosed) {
			s.drop(bufs[off:], &s.stats.DropClosed)
			return
		}
		s.failed(bufs[off], err)
		off++
		if off == len(bufs) {
			return
		}
		if refused = refusedRun(refused, k, err); refused < 0 {
			// The path refuses: the rest of the batch would fail the
			// same way, one system call each, on the fan-out loop every
			// link shares.
			s.drop(bufs[off:], &s.stats.DropError)
			return
		}
		k, err = s.conn.TryWriteBatch(msgs[off:])
	}
	if off < len(bufs) {
		s.enqueue(bufs[off:])
	}
}

// filteredRun is how many messages in a row a firewall must refuse before
// the rest of the batch is taken as refused too: a rule that drops some
// messages (a random drop, a rate limit) refuses four in a row rarely (at
// 5% loss, once in 160 000), one that drops them all costs four system
// calls a batch instead of one per message.
const filteredRun = 4

// refusedRun follows the refusals of a batch's sends: refused is the run
// so far, sent what the last call sent before failing with err. It
// returns the new run, or -1 when the rest of the batch is to be dropped:
// at once for an error of the path, after filteredRun refusals in a row
// for a firewall's.
func refusedRun(refused, sent int, err error) int {
	switch {
	case sys.IsPathError(err):
		return -1
	case !sys.IsFiltered(err):
		return 0
	case sent > 0:
		refused = 0 // something passed between the refusals
	}
	if refused++; refused >= filteredRun {
		return -1
	}
	return refused
}

// enqueue puts bufs in the backlog for the flusher, dropping (and
// counting) what does not fit.
func (s *sender) enqueue(bufs []*ring.Packet) {
	q := s.backlog()
	if q == nil {
		s.drop(bufs, &s.stats.DropClosed)
		return
	}
	queued := false
	for _, b := range bufs {
		s.pending.Add(1)
		if q.Push(b) {
			queued = true
			continue
		}
		s.pending.Add(-1)
		s.stats.DropFull.Add(1)
		b.Release()
	}
	if queued {
		select {
		case s.wake <- struct{}{}:
		default: // already signalled
		}
	}
	if s.closed.Load() {
		// Closed while we queued: the flusher may be gone; take back
		// what it will not send.
		s.drain()
	}
}

// fill points msgs at the buffers' payloads.
func fill(msgs []conn.Message, bufs []*ring.Packet, dst netip.AddrPort) []conn.Message {
	msgs = msgs[:len(bufs)]
	for i, b := range bufs {
		msgs[i] = conn.Message{Buf: b.Data(), N: b.N, Seg: b.Seg, Addr: dst}
	}
	return msgs
}

func (s *sender) sent(bufs []*ring.Packet, msgs []conn.Message) {
	if len(bufs) == 0 {
		return
	}
	var pkts, bytes uint64
	for i, b := range bufs {
		pkts += uint64(msgs[i].Count())
		bytes += uint64(b.N)
		b.Release()
	}
	s.stats.TxPackets.Add(pkts)
	s.stats.TxBytes.Add(bytes)
}

func (s *sender) failed(b *ring.Packet, err error) {
	s.stats.SendErrors.Add(1)
	s.stats.DropError.Add(1)
	b.Release()
	if now, at := nanotime(), s.errAt.Load(); at == 0 || now-at >= int64(time.Second) {
		s.errAt.Store(now)
		e := err // not &err: the parameter would then move to the heap on every call
		s.lastErr.Store(&e)
	}
	if s.errLog.allow() {
		s.log.warnf("%s: send failed: %v (further errors counted, logged at most every 10s)", s.name, err)
	}
}

func (s *sender) drop(bufs []*ring.Packet, counter *atomic.Uint64) {
	counter.Add(uint64(len(bufs)))
	for _, b := range bufs {
		b.Release()
	}
}

// drain releases everything in the backlog.
func (s *sender) drain() {
	if s.q == nil {
		return
	}
	for {
		b, ok := s.q.Pop()
		if !ok {
			return
		}
		s.pending.Add(-1)
		s.stats.DropClosed.Add(1)
		b.Release()
	}
}

// flush is the sender's goroutine: it writes out the backlog.
func (s *sender) flush() {
	defer close(s.exited)
	for {
		select {
		case <-s.wake:
		case <-s.done:
			s.drain()
			return
		}
		for {
			n := 0
			for n < len(s.fbufs) {
				b, ok := s.q.Pop()
				if !ok {
					break
				}
				s.fbufs[n] = b
				n++
			}
			if n == 0 {
				break
			}
			s.writeOut(s.fbufs[:n])
			clear(s.fbufs[:n])
			s.pending.Add(int64(-n))
		}
	}
}

// writeOut sends bufs, waiting for socket space but not past the write
// timeout of the oldest packet, and releases every buffer.
func (s *sender) writeOut(bufs []*ring.Packet) {
	refused := 0
	for len(bufs) > 0 {
		if s.closed.Load() {
			s.drop(bufs, &s.stats.DropClosed)
			return
		}
		// Drop what has already waited too long.
		if timeout := s.timeout.Load(); timeout > 0 {
			now := nanotime()
			k := 0
			for k < len(bufs) && now-bufs[k].Stamp > timeout {
				k++
			}
			s.drop(bufs[:k], &s.stats.DropTimeout)
			bufs = bufs[k:]
			if len(bufs) == 0 {
				return
			}
			_ = s.conn.SetWriteDeadline(time.Now().Add(time.Duration(bufs[0].Stamp + timeout - now)))
		} else {
			_ = s.conn.SetWriteDeadline(time.Time{})
		}
		dst, ok := s.destination()
		if !ok {
			s.drop(bufs, &s.stats.DropError)
			return
		}
		msgs := fill(s.fmsgs, bufs, dst)
		k, err := s.conn.WriteBatch(msgs)
		s.sent(bufs[:k], msgs[:k])
		bufs = bufs[k:]
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Loop: the expired head is dropped above.
		case errors.Is(err, net.ErrClosed):
			s.drop(bufs, &s.stats.DropClosed)
			return
		default:
			if len(bufs) > 0 {
				s.failed(bufs[0], err)
				bufs = bufs[1:]
			}
			if refused = refusedRun(refused, k, err); refused < 0 {
				s.drop(bufs, &s.stats.DropError) // as in finish
				return
			}
		}
	}
}

// close stops the flusher, closes the socket if it owns it, and releases
// the backlog. On a shared socket a flusher blocked for space finishes its
// batch first (within the write timeout).
func (s *sender) close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.done)
	if s.ownConn {
		s.conn.Close()
	}
	// Never full, never started: there is no flusher to wait for, and
	// there will be no backlog.
	s.start.Do(func() { close(s.exited) })
	<-s.exited
	s.drain()
}
