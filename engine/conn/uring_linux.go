package conn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/engarde-project/engarde/engine/internal/sys"
	"github.com/engarde-project/engarde/engine/internal/uring"
	"github.com/engarde-project/engarde/ring"
)

// uringBackend runs the receive side of a role, and the sends its receive
// handlers make, in one io_uring loop: one ring per role, on one locked OS
// thread, holding every socket of the role.
//
// Receives: each socket the engine hands to Serve gets a multishot
// IORING_OP_RECVMSG that takes buffers from one provided-buffer ring, whose
// buffers are the role's pool buffers: the kernel writes each datagram (a
// GRO train whole) straight into the buffer the engine then hands on, after
// a fixed header (Headroom) that Packet.SetHead skips. Nothing is copied.
// A buffer goes back to the buffer ring when every holder has released it
// (Reclaim), or a fresh one from the pool takes its place. The ring is set
// up with IORING_SETUP_SINGLE_ISSUER and IORING_SETUP_DEFER_TASKRUN: the
// kernel does receive work only inside the loop's io_uring_enter, so
// nothing writes into a lent buffer while the loop is elsewhere, and the
// kernel wakes exactly the loop's thread.
//
// The loop calls the engine's handler for each socket's batch on its own
// thread. The sends that handler makes with a batch whose messages are the
// loop's own (the messages it handed to the handler, which the engine fills
// in for its senders), on sockets of the loop, are queued as SENDMSG SQEs
// on the loop's ring with MSG_DONTWAIT, linked per socket, one per datagram
// or GSO train, and submitted and reaped in one io_uring_enter: the fan-out
// of a batch to every link costs one system call, and a full socket comes
// back as -EAGAIN for that socket alone, never blocking the loop.
//
// Everything else goes through the mmsg backend's code on the same socket:
// sends from other goroutines (a sender's backlog, probes, timers) and
// reads of a socket nobody serves. Those are the slow paths, and they are
// safe from any thread.
type uringBackend struct {
	opener
	log  Logf
	feat *uring.Features
	mmsg *mmsgBackend

	mu    sync.Mutex           // guards loops
	loops map[*ring.Pool]*loop // one per role (its pool)
}

var (
	_ Backend     = (*uringBackend)(nil)
	_ BatchWriter = (*uringBackend)(nil)
	_ Looper      = (*uringBackend)(nil)
	_ Conn        = (*uringConn)(nil)
)

// NewURing returns the io_uring backend, or an error wrapping
// errors.ErrUnsupported that says why this kernel or process cannot use it.
func NewURing(o URingOptions) (Backend, error) {
	f, err := uring.Probe()
	if err != nil {
		return nil, err
	}
	b := &uringBackend{log: o.Log, feat: f, loops: map[*ring.Pool]*loop{}}
	b.mmsg = NewMmsg(o.Log).(*mmsgBackend)
	b.opener = b.open
	return b, nil
}

func (b *uringBackend) Name() string { return "uring" }

func (b *uringBackend) open(laddr, raddr netip.AddrPort, o SocketOptions) (Conn, error) {
	mc, err := b.mmsg.open(laddr, raddr, o)
	if err != nil {
		return nil, err
	}
	c := &uringConn{mmsgConn: mc.(*mmsgConn), b: b}
	_ = c.rc.Control(func(fd uintptr) { c.fd = int(fd) })
	return c, nil
}

// uringConn is a socket of the uring backend: an mmsg socket that a loop
// may serve.
type uringConn struct {
	*mmsgConn
	b  *uringBackend
	fd int

	// lp is the loop serving the socket, nil when none does. Only the
	// loop sets it to nil (when it lets the socket go), so a send that
	// finds it set on the loop's thread may use the descriptor.
	lp     atomic.Pointer[loop]
	closed atomic.Bool

	// The loop's, on its thread.
	slot   int
	handle func([]*ring.Packet, []Message)
	armed  bool          // a multishot recvmsg is in flight
	leave  bool          // Close asked the loop to let go
	gone   chan struct{} // closed once the loop let go
}

// Headroom is what each pool buffer needs before the payload: the header,
// the source address and the control messages a multishot recvmsg writes
// first.
func (b *uringBackend) Headroom() int { return loopHeadroom }

var loopHeadroom = uring.SizeofRecvmsgOut + sys.SizeofSockaddr + sys.SizeofRecvCmsg

// Serve makes c's receives the role loop's (the loop of pool's role),
// starting the loop if need be.
func (b *uringBackend) Serve(cn Conn, pool *ring.Pool, h func([]*ring.Packet, []Message)) error {
	c, ok := cn.(*uringConn)
	if !ok || c.b != b {
		return errors.New("uring: not a socket of this backend")
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	if pool.Size() < loopHeadroom+64 {
		return fmt.Errorf("uring: buffers of %d bytes leave no room for the receive header (%d bytes)", pool.Size(), loopHeadroom)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.loops[pool]
	if l == nil {
		var err error
		if l, err = b.startLoop(pool, c.batch); err != nil {
			return err
		}
		b.loops[pool] = l
	}
	c.handle = h
	c.gone = make(chan struct{})
	c.lp.Store(l)
	l.post(loopCmd{c: c})
	return nil
}

// Close lets the loop go of the socket (waiting until it has, unless
// called on the loop's own thread), then closes it.
func (c *uringConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if l := c.lp.Load(); l != nil {
		if l.onLoop() {
			l.drop(c)
		} else {
			l.post(loopCmd{c: c, leave: true})
			<-c.gone
		}
	}
	return c.mmsgConn.Close()
}

func (c *uringConn) TryWriteBatch(msgs []Message) (int, error) {
	if l := c.lp.Load(); l != nil && l.owns(msgs) {
		return l.write(c, msgs)
	}
	return c.mmsgConn.TryWriteBatch(msgs)
}

// TryWriteBatches sends the batches of a loop's handler to the loop's
// sockets with one io_uring_enter (more when they do not fit in the
// ring); any other goes through its Conn's TryWriteBatch.
func (b *uringBackend) TryWriteBatches(ws []BatchWrite) {
	for len(ws) > 0 {
		l := b.loopOf(ws[0])
		k := 0
		for l != nil && k < len(ws) && k < loopJobs && b.loopOf(ws[k]) == l {
			k++
		}
		if k == 0 {
			ws[0].N, ws[0].Err = ws[0].Conn.TryWriteBatch(ws[0].Msgs)
			ws = ws[1:]
			continue
		}
		jobs := l.jobs[:k]
		for i := range jobs {
			jobs[i].reset(ws[i].Conn.(*uringConn), ws[i].Msgs)
		}
		l.send(jobs)
		for i := range jobs {
			ws[i].N, ws[i].Err = jobs[i].pos, jobs[i].err
			jobs[i].reset(nil, nil)
		}
		ws = ws[k:]
	}
}

// loopOf returns the loop that may send w through its ring: the one
// serving w's Conn, when w's messages are that loop's own; nil otherwise.
func (b *uringBackend) loopOf(w BatchWrite) *loop {
	c, ok := w.Conn.(*uringConn)
	if !ok || c.b != b {
		return nil
	}
	if l := c.lp.Load(); l != nil && l.owns(w.Msgs) {
		return l
	}
	return nil
}

// loopCmd is a request to the loop: take c (Serve), or let it go.
type loopCmd struct {
	c     *uringConn
	leave bool
}

// loop is one role's ring and the thread that owns it.
type loop struct {
	b    *uringBackend
	pool *ring.Pool
	r    *uring.Ring
	br   *uring.BufRing
	tid  int // the loop's OS thread (it is locked to it)

	// Receive buffers, by buffer id: lent[bid] is the pool buffer the
	// kernel may fill as bid, nil when the pool had none (missing).
	lent    []*ring.Packet
	missing []uint16
	hdr     sys.Mmsghdr // the recvmsg template: sizes of the name and control areas

	conns []*uringConn // by slot; nil where free
	free  []int
	gen   []uint32 // by slot: bumped when the slot is reused
	count int      // sockets served
	rearm []*uringConn
	acks  []chan struct{} // of sockets let go, for ack

	// Requests from other goroutines, and the eventfd that wakes the
	// loop for them.
	mu   sync.Mutex
	cmds []loopCmd
	efd  int
	wake bool // the multishot poll on efd is armed

	// q holds completions taken from the ring and not yet handled: those
	// of receives, and those a send's reap met on the way.
	q []uring.CQE

	// The batch being gathered for one socket, handed to its handler.
	// owns tells a send of these messages from any other.
	bc   *uringConn
	pkts []*ring.Packet
	bids []uint16
	msgs []Message
	lo   uintptr // msgs' address range
	hi   uintptr

	// Sends.
	plan sendPlan
	res  []int32 // res[h]: header h's completion result
	jobs []sendJob
	one  [1]sendJob
}

// User data of the loop's SQEs: the kind in the top byte; for a receive,
// the slot's generation and the slot; for a send, the header.
const (
	kindSend = iota
	kindRecv
	kindWake
	kindCancel
	kindShift = 56
)

func recvTag(slot int, gen uint32) uint64 {
	return kindRecv<<kindShift | uint64(gen&0xffffff)<<32 | uint64(uint32(slot))
}

// The loop waits in io_uring_enter holding its Go processor (woken by the
// kernel directly, without handing the processor to another thread and
// back), for at most loopHold; it lets the role's other goroutines run at
// least every loopYield. With one Go processor (a host of two CPUs) they
// run only then, so timers and the control plane may wait that long.
const (
	loopHold  = 2 * time.Millisecond
	loopYield = time.Millisecond
)

const (
	loopSQ      = 512  // SQEs: a batch of 64 to several links, datagram by datagram
	loopCQ      = 4096 // completions: every lent buffer's and the sends'
	loopBuffers = 256  // buffers lent to the kernel (a power of two)
	loopJobs    = 16   // sockets per io_uring_enter of a fan-out
	loopBatch   = 64   // the most datagrams handed to a handler at once
)

// startLoop starts the loop for pool's role on a thread of its own and
// waits until its ring is set up.
func (b *uringBackend) startLoop(pool *ring.Pool, batch int) (*loop, error) {
	batch = max(1, min(batch, loopBatch))
	l := &loop{
		b:    b,
		pool: pool,
		lent: make([]*ring.Packet, loopBuffers),
		q:    make([]uring.CQE, 0, loopCQ),
		pkts: make([]*ring.Packet, batch),
		bids: make([]uint16, 0, batch),
		msgs: make([]Message, batch),
		plan: newSendPlan(loopSQ / 2),
		res:  make([]int32, loopSQ/2),
		jobs: make([]sendJob, loopJobs),
	}
	l.lo = uintptr(unsafe.Pointer(&l.msgs[0]))
	l.hi = l.lo + uintptr(len(l.msgs))*unsafe.Sizeof(Message{})
	uring.SetRecvmsgSizes(&l.hdr, sys.SizeofSockaddr, sys.SizeofRecvCmsg)
	ready := make(chan error, 1)
	go l.run(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return l, nil
}

// owns reports whether msgs are the loop's own messages: only a handler
// the loop is running has them, so the caller is on the loop's thread.
func (l *loop) owns(msgs []Message) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(msgs)))
	return p >= l.lo && p < l.hi
}

// onLoop reports whether the caller is the loop (it alone runs on the
// loop's locked thread). A system call: for the control path only.
func (l *loop) onLoop() bool { return uring.Gettid() == l.tid }

// post hands a request to the loop and wakes it.
func (l *loop) post(c loopCmd) {
	l.mu.Lock()
	l.cmds = append(l.cmds, c)
	l.mu.Unlock()
	uring.SignalEventfd(uintptr(l.efd))
}

// setup makes the ring, the buffer ring and the eventfd, on the loop's
// thread.
func (l *loop) setup() error {
	f := l.b.feat
	flags := uring.SetupSingleIssuer | uring.SetupDeferTaskrun | f.Flags&(uring.SetupCoopTaskrun|uring.SetupTaskrunFlag|uring.SetupSubmitAll)
	r, err := uring.NewRing(loopSQ, loopCQ, flags)
	if err != nil {
		return fmt.Errorf("io_uring ring: %w", err)
	}
	br, err := r.RegisterBufRing(loopBuffers, 0)
	if err != nil {
		r.Close()
		return fmt.Errorf("io_uring buffer ring: %w", err)
	}
	efd, err := uring.NewEventfd()
	if err != nil {
		r.Close()
		br.Free()
		return err
	}
	l.r, l.br, l.efd = r, br, efd
	for bid := range l.lent {
		l.lend(uint16(bid))
	}
	l.br.Advance()
	return nil
}

// lend puts a pool buffer into the buffer ring as bid, or notes bid as
// missing when the pool has none.
func (l *loop) lend(bid uint16) {
	p := l.pool.Get()
	l.lent[bid] = p
	if p == nil {
		l.missing = append(l.missing, bid)
		return
	}
	l.br.Add(p.Whole(), bid)
}

// run is the loop: it submits what is queued and waits for completions
// in one io_uring_enter, then hands each socket's datagrams to its handler.
func (l *loop) run(ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.tid = uring.Gettid()
	if err := l.setup(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	yielded := time.Now()
	for {
		if !l.wake {
			l.r.GetSQE().PrepPollMultishot(l.efd, uring.PollIn, kindWake<<kindShift)
			l.wake = true
		}
		l.refill()
		for _, c := range l.rearm {
			l.arm(c)
		}
		clear(l.rearm)
		l.rearm = l.rearm[:0]
		wait := loopHold
		if len(l.missing) > 0 {
			wait = time.Millisecond // the pool ran out: ask it again soon
		}
		if _, err := l.r.SubmitAndWaitHeld(1, wait); err != nil && !errors.Is(err, uring.ETIME) && !errors.Is(err, uring.EINTR) {
			l.b.log.printf("io_uring loop: %v", err)
			time.Sleep(time.Millisecond)
		}
		l.take()
		l.handle()
		if now := time.Now(); now.Sub(yielded) >= loopYield {
			// Let the role's other goroutines (timers, the control
			// plane, a full socket's backlog) have the processor.
			runtime.Gosched()
			yielded = now
		}
		if l.count == 0 && l.quit() {
			l.ack()
			return
		}
		l.ack()
	}
}

// take moves every posted completion to q.
func (l *loop) take() {
	for n := l.r.CQReady(); n > 0; n = l.r.CQReady() {
		for i := range n {
			l.q = append(l.q, *l.r.CQEAt(i))
		}
		l.r.CQAdvance(n)
	}
}

// handle works through q: receives gathered into batches per socket for
// their handlers, the wake-up and its requests, and cancellations.
func (l *loop) handle() {
	// A handler's sends may append to q (the last flush's too); the index
	// loop sees those as well.
	for i := 0; ; i++ {
		if i == len(l.q) {
			if l.flush(); i == len(l.q) {
				break
			}
		}
		cqe := l.q[i]
		switch cqe.UserData >> kindShift {
		case kindRecv:
			l.received(&cqe)
		case kindWake:
			l.flush()
			uring.DrainEventfd(uintptr(l.efd))
			l.wake = l.wake && cqe.More()
			l.requests()
		}
		// kindCancel: the receive's own completion says it ended.
	}
	l.q = l.q[:0]
}

// received adds one receive completion to the batch, or ends a socket's
// multishot receive.
func (l *loop) received(cqe *uring.CQE) {
	slot := int(uint32(cqe.UserData))
	c := l.conns[slot]
	if c != nil && uint32(cqe.UserData>>32)&0xffffff != l.gen[slot]&0xffffff {
		c = nil // a socket that left; its slot serves another now
	}
	bid, hasBuf := cqe.Buffer()
	if c != nil && !cqe.More() {
		c.armed = false
		if c.leave {
			l.flush()
			l.release(c)
			c = nil
		} else {
			l.rearm = append(l.rearm, c)
		}
	}
	if cqe.Res < 0 {
		if c != nil && syscall.Errno(-cqe.Res) == syscall.ECONNREFUSED {
			// An ICMP error for an earlier send on a connected socket:
			// counted (Refuser); nothing is lost.
			c.refused.Add(1)
		}
		// ENOBUFS: every lent buffer was full; the datagrams wait in the
		// socket until the receive is armed again.
	}
	if !hasBuf {
		return
	}
	p := l.lent[bid]
	if c == nil || c.leave || cqe.Res < 0 {
		l.giveBack(p, bid) // nobody to hand it to
		return
	}
	if l.bc != c || len(l.bids) == cap(l.bids) {
		l.flush()
		l.bc = c
	}
	buf := p.Whole()
	name, ctl, payload, trunc, ok := uring.ParseRecvmsgOut(buf, int(cqe.Res), sys.SizeofSockaddr, sys.SizeofRecvCmsg)
	if !ok {
		l.giveBack(p, bid)
		return
	}
	k := len(l.bids)
	l.bids = append(l.bids, bid)
	p.SetHead(loopHeadroom)
	m := &l.msgs[k]
	*m = Message{Buf: p.Data(), N: len(payload), Truncated: trunc}
	if name != nil {
		m.Addr = sys.ParseSockaddr(name)
	}
	if len(ctl) > 0 {
		seg, local := sys.ParseRecvCmsg(ctl)
		m.Seg, m.Local = trainSeg(seg, m.N), local
	}
	l.pkts[k] = p
}

// giveBack lends the kernel the buffer it filled as bid again, untouched.
func (l *loop) giveBack(p *ring.Packet, bid uint16) {
	l.br.Add(p.Whole(), bid)
	l.br.Advance()
}

// flush hands the gathered batch to its socket's handler, then lends the
// buffers to the kernel again, or fresh ones in place of those still held.
func (l *loop) flush() {
	n := len(l.bids)
	if n == 0 {
		return
	}
	c := l.bc
	l.bc = nil
	if !c.leave {
		c.handle(l.pkts[:n], l.msgs[:n])
	}
	for _, bid := range l.bids {
		p := l.lent[bid]
		if p.Reclaim() {
			p.SetHead(0)
			l.br.Add(p.Whole(), bid)
		} else {
			l.lend(bid)
		}
	}
	l.br.Advance()
	clear(l.pkts[:n])
	clear(l.msgs[:n])
	l.bids = l.bids[:0]
}

// refill lends buffers to the ids the pool had none for.
func (l *loop) refill() {
	if len(l.missing) == 0 {
		return
	}
	ids := l.missing
	l.missing = nil
	for _, bid := range ids {
		l.lend(bid)
	}
	l.br.Advance()
	if len(l.missing) < len(ids) {
		// Receives that ran out of buffers end; arm them again.
		for _, c := range l.conns {
			if c != nil && !c.armed && !c.leave {
				l.rearm = append(l.rearm, c)
			}
		}
	}
}

// requests takes the sockets Serve handed over and lets go of those Close
// asked about.
func (l *loop) requests() {
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for _, cmd := range cmds {
		c := cmd.c
		if cmd.leave {
			l.drop(c)
			continue
		}
		if c.leave {
			continue // closed before the loop took it
		}
		c.slot = l.take1(c)
		l.arm(c)
	}
}

// take1 gives c a slot.
func (l *loop) take1(c *uringConn) int {
	l.count++
	if n := len(l.free); n > 0 {
		s := l.free[n-1]
		l.free = l.free[:n-1]
		l.conns[s] = c
		l.gen[s]++
		return s
	}
	l.conns = append(l.conns, c)
	l.gen = append(l.gen, 0)
	return len(l.conns) - 1
}

// arm queues c's multishot receive for the next io_uring_enter.
func (l *loop) arm(c *uringConn) {
	if c.armed || c.leave || l.conns[c.slot] != c {
		return
	}
	sqe := l.r.GetSQE()
	if sqe == nil {
		l.r.Submit()
		sqe = l.r.GetSQE()
	}
	sqe.PrepRecvmsgMultishot(c.fd, &l.hdr, 0, 0, recvTag(c.slot, l.gen[c.slot]))
	c.armed = true
}

// drop starts letting go of c: its receive is cancelled, and once its last
// completion is in, release frees the slot and tells Close.
func (l *loop) drop(c *uringConn) {
	if c.leave {
		return
	}
	c.leave = true
	c.lp.Store(nil) // no more sends through the ring with its descriptor
	if l.bc == c {
		// Its gathered datagrams go to nobody; flush lends them again.
		l.flush()
	}
	if c.slot < len(l.conns) && l.conns[c.slot] == c && c.armed {
		sqe := l.r.GetSQE()
		if sqe == nil {
			l.r.Submit()
			sqe = l.r.GetSQE()
		}
		sqe.PrepCancel(recvTag(c.slot, l.gen[c.slot]), true, kindCancel<<kindShift)
		return
	}
	l.release(c)
}

// release frees c's slot and tells Close that the loop is done with it.
func (l *loop) release(c *uringConn) {
	if c.slot < len(l.conns) && l.conns[c.slot] == c {
		l.conns[c.slot] = nil
		l.free = append(l.free, c.slot)
		l.count--
	}
	c.armed = false
	l.acks = append(l.acks, c.gone)
}

// ack tells the Close calls waiting for the sockets the loop let go of
// that it is done with them; when it serves none any more, only once it
// has given its buffers back to the pool.
func (l *loop) ack() {
	for _, ch := range l.acks {
		close(ch)
	}
	clear(l.acks)
	l.acks = l.acks[:0]
}

// quit ends the loop once it serves no socket and none is on its way:
// the buffers go back to the pool (which the role closes next), the ring
// closes. It reports whether the loop ended.
func (l *loop) quit() bool {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	l.mu.Lock()
	pending := len(l.cmds)
	l.mu.Unlock()
	if pending > 0 {
		return false
	}
	delete(l.b.loops, l.pool)
	// Closing the ring unregisters the buffer ring; with
	// IORING_SETUP_DEFER_TASKRUN no receive work runs outside our
	// io_uring_enter, and every receive has ended, so no lent buffer is
	// written after this.
	l.r.Close()
	l.br.Free()
	uring.CloseFd(l.efd)
	for bid, p := range l.lent {
		if p != nil {
			p.Release()
			l.lent[bid] = nil
		}
	}
	return true
}

// sendJob is one socket's batch within a send.
type sendJob struct {
	c        *uringConn
	msgs     []Message
	pos, off int // progress: messages sent, and bytes of msgs[pos] sent
	h0, h1   int // headers of the current round
	done     bool
	err      error
}

func (j *sendJob) reset(c *uringConn, msgs []Message) {
	*j = sendJob{c: c, msgs: msgs, done: len(msgs) == 0}
}

// write sends one socket's batch through the ring.
func (l *loop) write(c *uringConn, msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	j := &l.one[0]
	j.reset(c, msgs)
	l.send(l.one[:])
	n, err := j.pos, j.err
	j.reset(nil, nil)
	return n, err
}

// send runs rounds until every job is done: each round lays out as many
// headers of each unfinished job as fit, links each job's headers into one
// chain, and submits them, with whatever else is queued, and reaps their
// completions in one io_uring_enter.
func (l *loop) send(jobs []sendJob) {
	if l.r.SQSpace() < len(l.plan.hdrs) {
		l.r.Submit() // receives queued for arming: make room
	}
	for {
		h, iv := 0, 0
		hmax := min(len(l.plan.hdrs), l.r.SQSpace())
		for i := range jobs {
			j := &jobs[i]
			j.h0, j.h1 = h, h
			if j.done || h >= hmax {
				continue
			}
			c := j.c
			if c.lp.Load() != l {
				j.done, j.err = true, net.ErrClosed
				continue
			}
			j.h1, iv = l.plan.build(j.msgs, j.pos, j.off, h, iv, hmax, c.gso.Load(), c.connected, c.v6)
			for k := j.h0; k < j.h1; k++ {
				sqe := l.r.GetSQE()
				sqe.PrepSendmsg(c.fd, &l.plan.hdrs[k], uring.MsgDontwait, kindSend<<kindShift|uint64(k))
				if k+1 < j.h1 {
					sqe.Flags |= uring.SQELink
				}
			}
			h = j.h1
		}
		if h == 0 {
			return
		}
		if err := l.reap(h); err != nil {
			for i := range jobs {
				if j := &jobs[i]; j.h1 > j.h0 {
					j.done, j.err = true, err
				}
			}
			return
		}
		more := false
		for i := range jobs {
			j := &jobs[i]
			if j.h1 > j.h0 {
				l.settle(j)
			}
			more = more || !j.done
		}
		if !more {
			return
		}
	}
}

// reap submits the queued SQEs and collects the results of the n sends
// among them; other completions it meets go to q.
func (l *loop) reap(n int) error {
	got := 0
	for got < n {
		// MSG_DONTWAIT sends complete while io_uring_enter submits them
		// (linked ones as task work the same call runs before it
		// returns): the call never sleeps, so it is made as a raw system
		// call, like sendmmsg in the mmsg backend.
		if _, err := l.r.SubmitAndReap(uint32(n - got)); err != nil && !errors.Is(err, uring.EINTR) {
			return err
		}
		for k := l.r.CQReady(); k > 0; k-- {
			c := l.r.PeekCQE()
			if c.UserData>>kindShift == kindSend {
				l.res[uint32(c.UserData)] = c.Res
				got++
			} else {
				l.q = append(l.q, *c)
			}
			l.r.CQAdvance(1)
		}
	}
	return nil
}

// settle applies the results of job j's headers of this round.
func (l *loop) settle(j *sendJob) {
	p := &l.plan
	for k := j.h0; k < j.h1; k++ {
		res := l.res[k]
		if res >= 0 {
			j.pos, j.off = p.ends[k], p.offs[k]
			continue
		}
		err := syscall.Errno(-res)
		switch {
		case sys.IsWouldBlock(err):
			j.done, j.err = true, ErrWouldBlock
		case err == uring.EINTR:
			// Go on from here next round.
		case p.gsoh[k] && sys.IsGSOError(err) && j.c.gso.Swap(false):
			// As in the mmsg backend: the device or path cannot
			// segment; send datagram by datagram from now on.
			j.c.log.printf("UDP GSO refused on %v (%v); sending datagrams one by one on this socket", j.c.laddr, err)
		case err == uring.EBADF:
			j.done, j.err = true, net.ErrClosed
		default:
			j.done, j.err = true, err
		}
		return
	}
	if j.pos == len(j.msgs) {
		j.done = true
	}
}
