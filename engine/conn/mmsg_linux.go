package conn

import (
	"errors"
	"net/netip"
	"syscall"

	"github.com/engarde-project/engarde/engine/internal/sys"
	"github.com/engarde-project/engarde/ring"
)

// mmsgBackend moves batches with recvmmsg(2) and sendmmsg(2), called through
// syscall.RawConn so that waiting happens in Go's netpoller, with UDP GSO
// for runs of equal-sized datagrams and optional UDP GRO on receive.
//
// It does not use x/net's ipv4.PacketConn.ReadBatch/WriteBatch, which the
// design first suggested: they allocate a net.UDPAddr per received datagram
// and per-message scratch on send, and carry neither GSO nor GRO. The
// syscalls are the same; the scratch space here is allocated once per
// socket.
type mmsgBackend struct {
	opener
	log Logf
}

var _ Backend = (*mmsgBackend)(nil)

// NewMmsg returns the recvmmsg/sendmmsg backend; log receives its rare
// warnings.
func NewMmsg(log Logf) Backend {
	b := &mmsgBackend{log: log}
	b.opener = b.open
	return b
}

func (b *mmsgBackend) Name() string { return "mmsg" }

func (b *mmsgBackend) open(laddr, raddr netip.AddrPort, o SocketOptions) (Conn, error) {
	s, err := openSocket(laddr, raddr, o, b.log)
	if err != nil {
		return nil, err
	}
	c := &mmsgConn{socket: s, recvCmsg: o.PacketInfo || o.GRO}
	c.r.init(c)
	c.ws = ring.NewMPMC[*writeState](16)
	return c, nil
}

type mmsgConn struct {
	*socket
	recvCmsg bool

	r readState
	// ws holds idle send scratch spaces: TryWriteBatch may run on several
	// goroutines at once (every link's reader hands replies to the
	// WireGuard socket). Unlike a sync.Pool it is not emptied by the
	// garbage collector, so sends never allocate once warm.
	ws *ring.MPMC[*writeState]
}

var (
	_ Conn       = (*mmsgConn)(nil)
	_ ReadWaiter = (*mmsgConn)(nil)
)

func (c *mmsgConn) Close() error { return c.uc.Close() }

func (c *mmsgConn) ReadBatch(msgs []Message) (int, error) { return c.read(msgs, false) }

func (c *mmsgConn) TryReadBatch(msgs []Message) (int, error) { return c.read(msgs, true) }

func (c *mmsgConn) read(msgs []Message, try bool) (int, error) {
	r := &c.r
	r.msgs, r.try = msgs, try
	r.n, r.err = 0, nil
	err := c.rc.Read(r.fn)
	r.msgs = nil
	if err != nil {
		return 0, err
	}
	return r.n, r.err
}

// WaitRead parks in the netpoller until the socket is readable. RawConn.Read
// forgets a readiness the poller saw before it was called, so the first
// look is a peek at the queue: a datagram that arrived since the caller's
// last receive is not left waiting for the next one.
func (c *mmsgConn) WaitRead() error { return c.rc.Read(c.r.wait) }

func (c *mmsgConn) WriteBatch(msgs []Message) (int, error) {
	return c.write(msgs, true)
}

func (c *mmsgConn) TryWriteBatch(msgs []Message) (int, error) {
	return c.write(msgs, false)
}

func (c *mmsgConn) write(msgs []Message, wait bool) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	w, ok := c.ws.Pop()
	if !ok {
		w = newWriteState(c)
	}
	w.reset(msgs, wait)
	var err error
	if wait {
		err = c.rc.Write(w.fn)
	} else {
		// Control, unlike Write, takes no lock on the descriptor, so a
		// producer's attempt never queues behind a sender that is
		// waiting for buffer space.
		err = c.rc.Control(w.ctl)
	}
	if err == nil {
		err = w.err
	}
	n := w.pos
	w.msgs = nil
	c.ws.Push(w) // when 16 are idle already, let this one go
	return n, err
}

// readState is the scratch space of ReadBatch, built once per socket.
type readState struct {
	c     *mmsgConn
	hdrs  []sys.Mmsghdr
	iovs  []sys.Iovec
	names []sys.Sockaddr
	cmsg  []byte
	csz   int
	fn    func(fd uintptr) bool

	msgs []Message // the current call's
	try  bool      // return ErrWouldBlock rather than wait
	n    int
	err  error

	wait   func(fd uintptr) bool // WaitRead's
	looked bool                  // WaitRead peeked once already
}

func (r *readState) init(c *mmsgConn) {
	r.c = c
	r.hdrs = make([]sys.Mmsghdr, c.batch)
	r.iovs = make([]sys.Iovec, c.batch)
	r.names = make([]sys.Sockaddr, c.batch)
	if c.recvCmsg {
		r.csz = sys.SizeofRecvCmsg
		r.cmsg = make([]byte, r.csz*c.batch)
	}
	for i := range r.hdrs {
		sys.SetMsgIov(&r.hdrs[i], r.iovs[i:i+1])
	}
	r.fn = r.run
	r.wait = func(fd uintptr) bool {
		if r.looked {
			r.looked = false
			return true
		}
		if q, _ := sys.Queued(fd); q {
			return true
		}
		r.looked = true
		return false
	}
}

func (r *readState) run(fd uintptr) bool {
	n := min(len(r.msgs), len(r.hdrs))
	for i := 0; i < n; i++ {
		b := r.msgs[i].Buf
		sys.SetIovec(&r.iovs[i], b[:cap(b)])
		h := &r.hdrs[i]
		sys.SetMsgName(h, &r.names[i], sys.SizeofSockaddr)
		if r.csz > 0 {
			sys.SetMsgControl(h, r.cmsg[i*r.csz:(i+1)*r.csz])
		}
		h.Hdr.Flags = 0
	}
	for {
		k, err := sys.Recvmmsg(fd, r.hdrs[:n])
		if err == nil {
			r.n = k
			break
		}
		if sys.IsWouldBlock(err) {
			if r.try {
				r.err = ErrWouldBlock
				return true
			}
			return false // park in the netpoller until readable
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			// A connected socket reports an ICMP port unreachable for an
			// earlier send on the next receive; it says nothing about
			// what is queued now, but is counted (Refuser).
			r.c.refused.Add(1)
			continue
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		r.err = err
		return true
	}
	for i := 0; i < r.n; i++ {
		h := &r.hdrs[i]
		m := &r.msgs[i]
		m.N = int(h.Len)
		m.Truncated = sys.MsgTruncated(h)
		m.Addr = sys.ParseSockaddr(&r.names[i])
		m.Seg, m.Local = 0, netip.Addr{}
		if r.csz > 0 {
			if cl := sys.MsgControlLen(h); cl > 0 {
				seg, local := sys.ParseRecvCmsg(r.cmsg[i*r.csz : i*r.csz+cl])
				m.Seg = trainSeg(seg, m.N)
				m.Local = local
			}
		}
	}
	return true
}

// writeState is the scratch space of one send call.
type writeState struct {
	c    *mmsgConn
	plan sendPlan
	fn   func(fd uintptr) bool
	ctl  func(fd uintptr)

	msgs      []Message
	wait      bool
	pos, off  int // progress: messages sent, and bytes of msgs[pos] sent
	nh, sentH int // headers built, headers sent, of the current chunk
	err       error
}

func newWriteState(c *mmsgConn) *writeState {
	w := &writeState{c: c, plan: newSendPlan(max(c.batch, MaxSegments))}
	w.fn = w.run
	w.ctl = func(fd uintptr) { w.run(fd) }
	return w
}

func (w *writeState) reset(msgs []Message, wait bool) {
	w.msgs, w.wait = msgs, wait
	w.pos, w.off, w.nh, w.sentH, w.err = 0, 0, 0, 0, nil
}

// build lays out the next chunk of headers from (pos, off).
func (w *writeState) build() {
	c := w.c
	w.nh, _ = w.plan.build(w.msgs, w.pos, w.off, 0, 0, len(w.plan.hdrs), c.gso.Load(), c.connected, c.v6)
	w.sentH = 0
}

func (w *writeState) run(fd uintptr) bool {
	for w.pos < len(w.msgs) {
		if w.sentH == w.nh {
			w.build()
		}
		k, err := sys.Sendmmsg(fd, w.plan.hdrs[w.sentH:w.nh])
		if err != nil {
			switch {
			case sys.IsWouldBlock(err):
				w.err = ErrWouldBlock
				return !w.wait // false parks WriteBatch until writable
			case errors.Is(err, syscall.EINTR):
				continue
			case w.plan.gsoh[w.sentH] && sys.IsGSOError(err) && w.c.gso.Swap(false):
				// The device cannot segment (no checksum offload) or
				// the kernel cannot on this path: send datagram by
				// datagram from now on, and resend this chunk.
				w.c.log.printf("UDP GSO refused on %v (%v); sending datagrams one by one on this socket", w.c.laddr, err)
				w.sentH = w.nh
				continue
			}
			w.err = err
			return true
		}
		w.sentH += k
		w.pos, w.off = w.plan.ends[w.sentH-1], w.plan.offs[w.sentH-1]
		w.err = nil
	}
	return true
}
