package conn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/engarde-project/engarde/engine/internal/sys"
	"github.com/engarde-project/engarde/engine/internal/uring"
	"github.com/engarde-project/engarde/ring"
)

// uringBackend moves batches through io_uring.
//
// Sends: each call takes an idle send ring from a pool the backend's Conns
// share, lays the batch out with the same GSO grouping as the mmsg backend
// (sendPlan), queues one IORING_OP_SENDMSG per datagram or GSO train with
// MSG_DONTWAIT, linked so that a failure stops the rest, and submits and
// reaps them in one io_uring_enter: the sends run during the call, so no
// reference to a buffer outlives it, as the Conn contract wants.
// TryWriteBatches puts the sends of several Conns (every link of a fan-out)
// into one io_uring_enter.
//
// Receives: a multishot IORING_OP_RECVMSG per socket fills buffers of a
// provided-buffer ring, the socket's own slab outside the Go heap; ReadBatch
// copies each datagram into the caller's buffer and hands the slab buffer
// straight back to the kernel. The ring is set up on the reading
// goroutine's thread, which is locked to it, with IORING_SETUP_SINGLE_ISSUER
// and IORING_SETUP_DEFER_TASKRUN where the kernel has them: receive work
// then runs only when the reader asks, in batches. The reader waits for
// work through an eventfd registered with the ring, in Go's netpoller, so
// that no thread sits blocked in io_uring_enter holding a scheduler slot.
type uringBackend struct {
	opener
	log       Logf
	feat      *uring.Features
	waitEnter bool // URingOptions.WaitInEnter
	// idle holds send rings between calls; a call that finds none makes
	// one, and one returned to a full pool is closed.
	idle *ring.MPMC[*sendRing]
}

var (
	_ Backend     = (*uringBackend)(nil)
	_ BatchWriter = (*uringBackend)(nil)
	_ Conn        = (*uringConn)(nil)
)

// NewURing returns the io_uring backend, or an error wrapping
// errors.ErrUnsupported that says why this kernel or process cannot use it.
func NewURing(o URingOptions) (Backend, error) {
	f, err := uring.Probe()
	if err != nil {
		return nil, err
	}
	b := &uringBackend{log: o.Log, feat: f, waitEnter: o.WaitInEnter, idle: ring.NewMPMC[*sendRing](16)}
	b.opener = b.open
	// The idle send rings hold a descriptor each: once nothing uses the
	// backend (every Conn holds it), they are closed. The rings must not
	// point back at the backend, or it would never become unreachable.
	runtime.AddCleanup(b, closeIdle, b.idle)
	return b, nil
}

// closeIdle closes the send rings of a backend no longer in use.
func closeIdle(idle *ring.MPMC[*sendRing]) {
	for {
		sr, ok := idle.Pop()
		if !ok {
			return
		}
		sr.r.Close()
	}
}

func (b *uringBackend) Name() string { return "uring" }

func (b *uringBackend) open(laddr, raddr netip.AddrPort, o SocketOptions) (Conn, error) {
	s, err := openSocket(laddr, raddr, o, b.log)
	if err != nil {
		return nil, err
	}
	efd, err := uring.NewEventfd()
	if err != nil {
		s.uc.Close()
		return nil, err
	}
	c := &uringConn{b: b, socket: s}
	_ = s.rc.Control(func(fd uintptr) { c.fd = int(fd) })
	c.rx.init(c, efd, o.PacketInfo || o.GRO)
	return c, nil
}

type uringConn struct {
	*socket
	b  *uringBackend
	fd int // the socket's descriptor; valid while inflight > 0 or closed is false

	// closed is set first thing in Close; inflight counts sends that
	// passed the closed check, which Close waits out before it closes the
	// socket, so that no SQE names a descriptor that is closed or reused.
	closed   atomic.Bool
	inflight atomic.Int32

	rx uringReceiver
}

// Close stops the receiver (tearing its ring down once the reader has let
// go of it), waits out sends in progress, and closes the socket.
func (c *uringConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.rx.close()
	for c.inflight.Load() != 0 {
		runtime.Gosched() // a send in progress finishes within its io_uring_enter
	}
	return c.uc.Close()
}

// acquire pins the socket's descriptor for a send; release lets it go.
func (c *uringConn) acquire() bool {
	c.inflight.Add(1)
	if c.closed.Load() {
		c.inflight.Add(-1)
		return false
	}
	return true
}

func (c *uringConn) release() { c.inflight.Add(-1) }

func (c *uringConn) WriteBatch(msgs []Message) (int, error) { return c.write(msgs, true) }

func (c *uringConn) TryWriteBatch(msgs []Message) (int, error) { return c.write(msgs, false) }

func (c *uringConn) write(msgs []Message, wait bool) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	sr, err := c.b.getRing()
	if err != nil {
		return 0, err
	}
	j := &sr.one[0]
	j.reset(c, msgs)
	if wait {
		// The netpoller waits for room (sr.fn returns false on
		// EAGAIN) until the write deadline.
		err = c.rc.Write(sr.fn)
	} else {
		sr.send(sr.one[:])
	}
	n := j.pos
	if err == nil {
		err = j.err
	}
	j.reset(nil, nil)
	c.b.putRing(sr)
	return n, err
}

// TryWriteBatches submits the sends of every Conn in ws with one
// io_uring_enter (more when they do not fit in one ring).
func (b *uringBackend) TryWriteBatches(ws []BatchWrite) {
	sr, err := b.getRing()
	if err != nil {
		for i := range ws {
			ws[i].N, ws[i].Err = 0, err
		}
		return
	}
	defer b.putRing(sr)
	for len(ws) > 0 {
		k := 0
		for k < len(ws) && k < len(sr.jobs) {
			w := &ws[k]
			c, ok := w.Conn.(*uringConn)
			if !ok {
				break
			}
			sr.jobs[k].reset(c, w.Msgs)
			k++
		}
		if k == 0 {
			// Not ours: the Conn's own call.
			ws[0].N, ws[0].Err = ws[0].Conn.TryWriteBatch(ws[0].Msgs)
			ws = ws[1:]
			continue
		}
		sr.send(sr.jobs[:k])
		for i := range k {
			j := &sr.jobs[i]
			ws[i].N, ws[i].Err = j.pos, j.err
			j.reset(nil, nil)
		}
		ws = ws[k:]
	}
}

// sendRing is a ring for sends with the scratch space to lay batches out.
// It is used by one goroutine at a time (taken from and returned to the
// backend's pool), and from any thread: it is set up without
// IORING_SETUP_SINGLE_ISSUER.
type sendRing struct {
	r    *uring.Ring
	plan sendPlan
	res  []int32 // res[h]: header h's completion result
	jobs []sendJob
	one  [1]sendJob // a single Conn's call
	fn   func(fd uintptr) bool
	// broken is set when io_uring_enter failed: completions may still
	// be due, so the ring is closed rather than reused.
	broken bool
}

// sendJob is one Conn's batch within a send.
type sendJob struct {
	c        *uringConn
	msgs     []Message
	pos, off int // progress: messages sent, and bytes of msgs[pos] sent
	h0, h1   int // headers of the current round
	done     bool
	held     bool // the Conn's descriptor is pinned (acquire)
	err      error
}

func (j *sendJob) reset(c *uringConn, msgs []Message) {
	*j = sendJob{c: c, msgs: msgs, done: len(msgs) == 0}
}

const (
	sendRingEntries = 256 // SQEs: a batch of 64 to 4 links, datagram by datagram
	sendRingJobs    = 16  // Conns per io_uring_enter
)

// getRing takes an idle send ring, or makes one. The probe set up rings
// of this kind, so an error means the process is out of memory or
// descriptors.
func (b *uringBackend) getRing() (*sendRing, error) {
	if sr, ok := b.idle.Pop(); ok {
		return sr, nil
	}
	sr, err := b.newSendRing()
	if err != nil {
		return nil, fmt.Errorf("io_uring send ring: %w", err)
	}
	return sr, nil
}

func (b *uringBackend) putRing(sr *sendRing) {
	if sr.broken || !b.idle.Push(sr) {
		sr.r.Close()
	}
}

func (b *uringBackend) newSendRing() (*sendRing, error) {
	// Completions are posted inline during io_uring_enter (or as task work
	// of the submitting thread for linked SQEs, run before the call
	// returns), so there is nothing to interrupt a thread for.
	flags := b.feat.Flags & (uring.SetupCoopTaskrun | uring.SetupSubmitAll)
	r, err := uring.NewRing(sendRingEntries, 2*sendRingEntries, flags)
	if err != nil {
		return nil, err
	}
	sr := &sendRing{
		r:    r,
		plan: newSendPlan(sendRingEntries),
		res:  make([]int32, sendRingEntries),
		jobs: make([]sendJob, sendRingJobs),
	}
	sr.fn = func(uintptr) bool {
		sr.send(sr.one[:])
		j := &sr.one[0]
		if errors.Is(j.err, ErrWouldBlock) {
			j.done, j.err = false, nil
			return false // park until writable, then go on from pos
		}
		return true
	}
	return sr, nil
}

// send runs rounds until every job is done: each round lays out as many
// headers of each unfinished job as fit, links each job's headers into one
// chain, submits them all and reaps their completions in one
// io_uring_enter.
func (sr *sendRing) send(jobs []sendJob) {
	for i := range jobs {
		j := &jobs[i]
		if j.done {
			continue
		}
		if j.held = j.c.acquire(); !j.held {
			j.done, j.err = true, net.ErrClosed
		}
	}
	for {
		h, iv := 0, 0
		for i := range jobs {
			j := &jobs[i]
			j.h0, j.h1 = h, h
			if j.done || h >= len(sr.plan.hdrs) {
				continue
			}
			c := j.c
			j.h1, iv = sr.plan.build(j.msgs, j.pos, j.off, h, iv, len(sr.plan.hdrs), c.gso.Load(), c.connected, c.v6)
			for k := j.h0; k < j.h1; k++ {
				sqe := sr.r.GetSQE()
				sqe.PrepSendmsg(c.fd, &sr.plan.hdrs[k], uring.MsgDontwait, uint64(k))
				if k+1 < j.h1 {
					sqe.Flags |= uring.SQELink
				}
			}
			h = j.h1
		}
		if h == 0 {
			break
		}
		if err := sr.reap(h); err != nil {
			for i := range jobs {
				if j := &jobs[i]; j.h1 > j.h0 {
					j.done, j.err = true, err
				}
			}
			break
		}
		more := false
		for i := range jobs {
			j := &jobs[i]
			if j.h1 > j.h0 {
				sr.settle(j)
			}
			more = more || !j.done
		}
		if !more {
			break
		}
	}
	for i := range jobs {
		if j := &jobs[i]; j.held {
			j.held = false
			j.c.release()
		}
	}
}

// reap submits n SQEs and collects their n results.
func (sr *sendRing) reap(n int) error {
	got := 0
	for got < n {
		// MSG_DONTWAIT sends complete while io_uring_enter submits them
		// (linked ones as the submitting thread's task work, which the
		// same call runs before it returns): the call never sleeps, so
		// it is made as a raw system call, like sendmmsg in the mmsg
		// backend.
		if _, err := sr.r.SubmitAndReap(uint32(n - got)); err != nil && !errors.Is(err, uring.EINTR) {
			sr.broken = true
			return err
		}
		for k := sr.r.CQReady(); k > 0; k-- {
			c := sr.r.PeekCQE()
			sr.res[c.UserData] = c.Res
			sr.r.CQAdvance(1)
			got++
		}
	}
	return nil
}

// settle applies the results of job j's headers of this round.
func (sr *sendRing) settle(j *sendJob) {
	p := &sr.plan
	for k := j.h0; k < j.h1; k++ {
		res := sr.res[k]
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

// uringReceiver is a Conn's receive side: a ring owned by the reading
// thread, a provided-buffer ring over a slab of the Conn's own, and the
// multishot recvmsg that fills it.
type uringReceiver struct {
	c       *uringConn
	recvCm  bool
	efile   *os.File // the eventfd the ring signals; closing it wakes the reader
	erc     syscall.RawConn
	fn      func(fd uintptr) bool
	closing atomic.Bool

	mu        sync.Mutex // held by ReadBatch and by Close's teardown; guards the rest
	r         *uring.Ring
	br        *uring.BufRing
	slab      []byte // entries buffers of size bytes, outside the Go heap
	size      int
	ctlLen    int
	hdr       sys.Mmsghdr // the multishot template; the kernel reads it at submission
	armed     bool        // a multishot recvmsg is in flight
	arming    bool        // SQEs wait for the next io_uring_enter (a recvmsg among them unless armed)
	locked    bool        // we locked the reading goroutine to its thread
	taskFl    bool        // the ring flags pending work (IORING_SETUP_TASKRUN_FLAG)
	waitEnter bool        // this ring's reader waits in io_uring_enter (URingOptions.WaitInEnter)
	wakeArmed bool        // with waitEnter: the poll on the eventfd is armed
	efd       int         // the eventfd's descriptor, while efile is open

	// The current ReadBatch's.
	msgs    []Message
	n       int
	err     error
	rebuild bool // the ring belongs to another thread (EEXIST)
}

// User data of the receive ring's SQEs.
const (
	tagRecv = 1 + iota // the multishot recvmsg
	tagWake            // the poll on the eventfd, when waiting in io_uring_enter
)

func (rx *uringReceiver) init(c *uringConn, efd int, recvCmsg bool) {
	rx.c = c
	rx.recvCm = recvCmsg
	rx.efile = os.NewFile(uintptr(efd), "io_uring eventfd")
	rx.erc, _ = rx.efile.SyscallConn()
	rx.fn = rx.run
}

// close wakes a reader waiting in the netpoller and tears the ring down
// once it has left.
func (rx *uringReceiver) close() {
	rx.closing.Store(true)
	// Signal the eventfd: a reader in the netpoller wakes on it, one
	// blocked in io_uring_enter on its poll; closing it wakes the former
	// too.
	_ = rx.erc.Control(func(fd uintptr) { uring.SignalEventfd(fd) })
	rx.efile.Close()
	rx.mu.Lock()
	rx.teardownLocked()
	rx.mu.Unlock()
}

func (c *uringConn) ReadBatch(msgs []Message) (int, error) {
	rx := &c.rx
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if len(msgs) == 0 {
		return 0, nil
	}
	for {
		if rx.closing.Load() {
			rx.teardownLocked()
			if rx.locked {
				rx.locked = false
				runtime.UnlockOSThread()
			}
			return 0, net.ErrClosed
		}
		if rx.r == nil {
			if err := rx.setupLocked(cap(msgs[0].Buf)); err != nil {
				return 0, err
			}
		}
		rx.msgs, rx.n, rx.err, rx.rebuild = msgs, 0, nil, false
		var err error
		if rx.waitEnter {
			err = rx.waitInEnter()
		} else {
			err = rx.erc.Read(rx.fn)
		}
		rx.msgs = nil
		if rx.rebuild {
			// Another goroutine read before us, on another thread.
			// What it left posted is ours now; the rest of its ring
			// goes, and we make our own.
			rx.reap(msgs)
			rx.teardownLocked()
			if rx.n > 0 {
				return rx.n, nil
			}
			continue
		}
		if err != nil && rx.closing.Load() {
			continue
		}
		switch {
		case err != nil:
			return 0, err
		case rx.n > 0:
			return rx.n, nil
		case rx.err != nil:
			return 0, rx.err
		}
		// Woken with nothing to deliver (Close, or a spurious wake-up).
	}
}

// setupLocked makes the ring on the calling thread, sized for payloads of
// up to payload bytes.
func (rx *uringReceiver) setupLocked(payload int) error {
	c := rx.c
	f := c.b.feat
	rx.ctlLen = 0
	if rx.recvCm {
		rx.ctlLen = sys.SizeofRecvCmsg
	}
	rx.size = (uring.SizeofRecvmsgOut + sys.SizeofSockaddr + rx.ctlLen + payload + 63) &^ 63
	entries := 8
	want := c.batch
	if rx.size <= 4096 {
		want *= 2 // small buffers: room for a batch in flight and one arriving
	}
	for entries < want && entries < 1<<12 {
		entries <<= 1
	}
	flags := f.Flags & (uring.SetupCoopTaskrun | uring.SetupTaskrunFlag)
	if f.Flags&uring.SetupDeferTaskrun != 0 {
		// Receive work runs only when this thread enters the ring: the
		// reader takes it in batches, and nothing writes into our
		// buffers while it is elsewhere.
		flags = uring.SetupSingleIssuer | uring.SetupDeferTaskrun | f.Flags&uring.SetupTaskrunFlag
	}
	runtime.LockOSThread()
	rx.locked = true
	r, err := uring.NewRing(4, uint32(2*entries), flags)
	if err != nil {
		return fmt.Errorf("io_uring receive ring: %w", err)
	}
	rx.taskFl = flags&uring.SetupTaskrunFlag != 0
	br, err := r.RegisterBufRing(entries, 0)
	if err != nil {
		r.Close()
		return fmt.Errorf("io_uring buffer ring: %w", err)
	}
	slab, err := uring.MapAnon(entries * rx.size)
	if err != nil {
		r.Close()
		br.Free()
		return err
	}
	var efd int
	_ = rx.erc.Control(func(fd uintptr) { efd = int(fd) })
	rx.efd = efd
	rx.waitEnter = c.b.waitEnter
	if !rx.waitEnter {
		if err := r.RegisterEventfd(efd); err != nil {
			r.Close()
			br.Free()
			uring.Unmap(slab)
			return err
		}
	}
	for i := range entries {
		br.Add(slab[i*rx.size:(i+1)*rx.size], uint16(i))
	}
	br.Advance()
	uring.SetRecvmsgSizes(&rx.hdr, sys.SizeofSockaddr, rx.ctlLen)
	rx.r, rx.br, rx.slab = r, br, slab
	rx.armed, rx.arming, rx.wakeArmed = false, false, false
	rx.arm()
	return nil
}

// arm queues a multishot recvmsg, and with waitEnter the poll on the
// eventfd, for whichever is not in flight; the next io_uring_enter submits
// them.
func (rx *uringReceiver) arm() {
	if !rx.armed && !rx.arming {
		rx.r.GetSQE().PrepRecvmsgMultishot(rx.c.fd, &rx.hdr, 0, 0, tagRecv)
		rx.arming = true
	}
	if rx.waitEnter && !rx.wakeArmed {
		// Close signals the eventfd; this poll turns that into a
		// completion, which ends a wait in io_uring_enter.
		rx.r.GetSQE().PrepPollMultishot(rx.efd, uring.PollIn, tagWake)
		rx.wakeArmed, rx.arming = true, true
	}
}

// teardownLocked closes the ring. The kernel cancels the multishot
// receive; with IORING_SETUP_DEFER_TASKRUN its work ran only inside our
// io_uring_enter calls, and none is running (we hold mu), so nothing
// writes into the slab once the ring is closed and it can be unmapped.
func (rx *uringReceiver) teardownLocked() {
	if rx.r == nil {
		return
	}
	rx.r.Close()
	rx.br.Free()
	uring.Unmap(rx.slab)
	rx.r, rx.br, rx.slab = nil, nil, nil
	rx.armed, rx.arming = false, false
}

// run is the netpoller callback of ReadBatch: it lets the kernel post what
// is due, takes it, and, when there is nothing, clears the eventfd and
// looks once more before asking to wait.
func (rx *uringReceiver) run(efd uintptr) bool {
	for try := 0; ; try++ {
		if rx.arming || !rx.taskFl || rx.r.TaskrunPending() {
			if err := rx.r.GetEvents(); err != nil {
				switch {
				case uring.IsExist(err):
					rx.rebuild = true
					return true
				case errors.Is(err, uring.EINTR):
					continue
				}
				rx.err = err
				return true
			}
			if rx.arming {
				rx.arming, rx.armed = false, true
			}
		}
		rx.reap(rx.msgs)
		if rx.n > 0 || rx.err != nil || rx.closing.Load() {
			return true
		}
		if try > 0 {
			return false
		}
		uring.DrainEventfd(efd)
	}
}

// waitInEnter is run's counterpart for URingOptions.WaitInEnter: it waits in
// io_uring_enter, on the ring's thread, until a completion is posted.
func (rx *uringReceiver) waitInEnter() error {
	for {
		if rx.arming || rx.r.TaskrunPending() {
			if err := rx.r.GetEvents(); err != nil {
				return rx.enterErr(err)
			}
			rx.arming, rx.armed = false, rx.armed || rx.arming
		}
		rx.reap(rx.msgs)
		if rx.n > 0 || rx.err != nil || rx.closing.Load() {
			return nil
		}
		if _, err := rx.r.SubmitAndWait(1); err != nil {
			if err := rx.enterErr(err); err != nil || rx.rebuild {
				return err
			}
		}
		rx.arming, rx.armed = false, rx.armed || rx.arming
	}
}

func (rx *uringReceiver) enterErr(err error) error {
	switch {
	case uring.IsExist(err):
		rx.rebuild = true
		return nil
	case errors.Is(err, uring.EINTR):
		return nil
	}
	return err
}

// reap takes posted completions into msgs[rx.n:], copying each datagram
// out of its slab buffer and handing the buffer back to the kernel.
func (rx *uringReceiver) reap(msgs []Message) {
	r := rx.r
	recycled := false
	for rx.n < len(msgs) && r.CQReady() > 0 {
		cqe := r.PeekCQE()
		if cqe.UserData == tagWake {
			// Close woke us; or the poll ended, to be armed again.
			rx.wakeArmed = rx.wakeArmed && cqe.More()
			r.CQAdvance(1)
			continue
		}
		res := cqe.Res
		if !cqe.More() {
			rx.armed = false
		}
		bid, hasBuf := cqe.Buffer()
		if res < 0 {
			switch err := syscall.Errno(-res); err {
			case uring.ECONNREFUSED:
				// An ICMP error for an earlier send on a connected
				// socket: counted (Refuser), nothing is lost.
				rx.c.refused.Add(1)
			case uring.ENOBUFS, uring.ECANCELED, uring.EINTR:
				// ENOBUFS: every buffer was full; the datagrams wait
				// in the socket until we re-arm.
			default:
				if rx.n == 0 {
					rx.err = err
				}
			}
		} else if hasBuf {
			b := rx.slab[int(bid)*rx.size : (int(bid)+1)*rx.size]
			name, ctl, payload, trunc, ok := uring.ParseRecvmsgOut(b, int(res), sys.SizeofSockaddr, rx.ctlLen)
			if ok {
				m := &msgs[rx.n]
				m.N = copy(m.Buf[:cap(m.Buf)], payload)
				m.Truncated = trunc || len(payload) > cap(m.Buf)
				m.Addr = netip.AddrPort{}
				if name != nil {
					m.Addr = sys.ParseSockaddr(name)
				} else if rx.c.connected {
					m.Addr = rx.c.uc.RemoteAddr().(*net.UDPAddr).AddrPort()
				}
				m.Seg, m.Local = 0, netip.Addr{}
				if len(ctl) > 0 {
					seg, local := sys.ParseRecvCmsg(ctl)
					m.Seg = trainSeg(seg, m.N)
					m.Local = local
				}
				rx.n++
			}
		}
		if hasBuf {
			rx.br.Add(rx.slab[int(bid)*rx.size:(int(bid)+1)*rx.size], bid)
			recycled = true
		}
		r.CQAdvance(1)
	}
	if recycled {
		rx.br.Advance()
	}
	if (!rx.armed || rx.waitEnter && !rx.wakeArmed) && !rx.closing.Load() && rx.r != nil {
		rx.arm()
	}
}
