package conntest

import (
	"github.com/engarde-project/engarde/engine/conn"

	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// Net is an in-memory UDP network, a conn.Backend for tests: sockets bind
// and connect like the kernel's (a connected socket wins over an
// unconnected one on the same address), each has a bounded receive queue
// that drops when full (deep: 65536, so that a test slowed down by a busy
// machine or the race detector does not lose), and a local address can be
// made to stall every send from it, as a socket whose path is dead does
// once its buffer is full.
type Net struct {
	mu       sync.Mutex // guards the fields below
	conns    map[*fakeConn]bool
	nextPort uint16
	stalled  map[netip.Addr]chan struct{} // closed when the stall ends
	refused  map[netip.Addr]error         // sends from here fail with it
	dropped  map[netip.Addr]bool          // what is sent from here is lost
	calls    map[netip.Addr]uint64        // write calls from each address
	filter   Filter
}

// Filter decides the fate of a datagram from src to dst on a Net: drop it
// (a lossy path), or deliver it after delay (a slow one; 0: at once). It
// sees the payload, which it must not keep or change, and may count it (a
// tap). It runs on the sender's goroutine, with no lock of the Net held.
type Filter func(src, dst netip.AddrPort, b []byte) (drop bool, delay time.Duration)

// SetFilter makes f judge every datagram from now on; nil delivers all.
func (n *Net) SetFilter(f Filter) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.filter = f
}

// Inject delivers b to whatever socket receives from src at dst, as if src
// had sent it: a forged source address, as a raw socket can write. It
// passes the Filter like any datagram, and reports whether a socket
// received it.
func (n *Net) Inject(src, dst netip.AddrPort, b []byte) bool {
	n.mu.Lock()
	to := n.route(src, dst)
	n.mu.Unlock()
	if to == nil {
		return false
	}
	return n.deliver(to, fakePacket{data: append([]byte(nil), b...), src: src, local: dst.Addr()}, dst)
}

// deliver queues p for to, after the filter's delay, unless the filter
// drops it or to's queue is full; it reports whether p was queued (or is
// on its way).
func (n *Net) deliver(to *fakeConn, p fakePacket, dst netip.AddrPort) bool {
	n.mu.Lock()
	f := n.filter
	n.mu.Unlock()
	if f != nil {
		drop, delay := f(p.src, dst, p.data)
		if drop {
			return false
		}
		if delay > 0 {
			time.AfterFunc(delay, func() {
				select {
				case to.q <- p:
				default:
				}
			})
			return true
		}
	}
	select {
	case to.q <- p:
		return true
	default: // receive buffer full: dropped, as the kernel would
		return false
	}
}

var _ conn.Backend = (*Net)(nil)

// NewNet returns an empty network.
func NewNet() *Net {
	return &Net{conns: map[*fakeConn]bool{}, nextPort: 40000, stalled: map[netip.Addr]chan struct{}{}, refused: map[netip.Addr]error{}, dropped: map[netip.Addr]bool{}, calls: map[netip.Addr]uint64{}}
}

// Refuse makes every send from a fail with errno, as the kernel's does on
// a path that a firewall rejects (EPERM) or that has no route
// (ENETUNREACH): sendmmsg(2) fails at the first message. A zero errno ends
// it.
func (n *Net) Refuse(a netip.Addr, errno syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if errno == 0 {
		delete(n.refused, a)
		return
	}
	n.refused[a] = os.NewSyscallError("sendmmsg", errno)
}

// Drop makes every datagram sent from a vanish on the way while drop is
// set, as behind a firewall that drops it or a path that died past the
// first hop: the send succeeds, nothing arrives, nothing comes back.
func (n *Net) Drop(a netip.Addr, drop bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if drop {
		n.dropped[a] = true
	} else {
		delete(n.dropped, a)
	}
}

// SendCalls returns the number of WriteBatch and TryWriteBatch calls made
// on sockets bound to a: a system call each on a kernel socket.
func (n *Net) SendCalls(a netip.Addr) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[a]
}

// Stall makes sends from a block (TryWriteBatch: conn.conn.ErrWouldBlock) until
// Unstall.
func (n *Net) Stall(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stalled[a] == nil {
		n.stalled[a] = make(chan struct{})
	}
}

// Unstall ends a Stall.
func (n *Net) Unstall(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch := n.stalled[a]; ch != nil {
		close(ch)
		delete(n.stalled, a)
	}
}

// Name returns "fake".
func (n *Net) Name() string { return "fake" }

// Listen opens a socket bound to laddr.
func (n *Net) Listen(laddr netip.AddrPort, o conn.SocketOptions) (conn.Conn, error) {
	return n.open(laddr, netip.AddrPort{}, o)
}

// Dial opens a socket bound to laddr (127.0.0.1 and a free port when it is
// the zero value) and connected to raddr.
func (n *Net) Dial(laddr, raddr netip.AddrPort, o conn.SocketOptions) (conn.Conn, error) {
	if !laddr.IsValid() {
		laddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
	}
	return n.open(laddr, raddr, o)
}

func (n *Net) open(laddr, raddr netip.AddrPort, o conn.SocketOptions) (conn.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if laddr.Port() == 0 {
		n.nextPort++
		laddr = netip.AddrPortFrom(laddr.Addr(), n.nextPort)
	}
	for c := range n.conns {
		if c.laddr == laddr && c.raddr == raddr && !(o.ReusePort && c.reuse) {
			// The kernel's errno, so that callers classify it as
			// they would a real bind's.
			return nil, &net.OpError{Op: "bind", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
		}
	}
	c := &fakeConn{net: n, laddr: laddr, raddr: raddr, reuse: o.ReusePort, q: make(chan fakePacket, 1<<16), closed: make(chan struct{})}
	n.conns[c] = true
	return c, nil
}

// route finds the socket that receives a datagram from src to dst.
func (n *Net) route(src, dst netip.AddrPort) *fakeConn {
	var best *fakeConn
	score := 0
	for c := range n.conns {
		s := 0
		switch {
		case c.raddr.IsValid() && (c.raddr != src || c.laddr != dst):
			continue
		case c.raddr.IsValid():
			s = 3
		case c.laddr == dst:
			s = 2
		case c.laddr.Addr().IsUnspecified() && c.laddr.Port() == dst.Port():
			s = 1
		default:
			continue
		}
		if s > score {
			best, score = c, s
		}
	}
	return best
}

type fakePacket struct {
	data  []byte
	seg   int
	src   netip.AddrPort
	local netip.Addr
}

type fakeConn struct {
	net          *Net
	laddr, raddr netip.AddrPort
	reuse        bool
	q            chan fakePacket
	closed       chan struct{}
	closeOnce    sync.Once
	peeked       fakePacket // taken from q by WaitRead (hasPeek); the reader's
	hasPeek      bool
	mu           sync.Mutex // guards deadline
	deadline     time.Time
}

func (c *fakeConn) LocalAddr() netip.AddrPort { return c.laddr }

func (c *fakeConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		delete(c.net.conns, c)
		c.net.mu.Unlock()
	})
	return nil
}

func (c *fakeConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

var _ conn.ReadWaiter = (*fakeConn)(nil)

func (c *fakeConn) ReadBatch(msgs []conn.Message) (int, error) {
	if err := c.WaitRead(); err != nil {
		return 0, err
	}
	return c.TryReadBatch(msgs)
}

// WaitRead waits for a packet and keeps it for the next read: a channel
// cannot be peeked at.
func (c *fakeConn) WaitRead() error {
	if c.isClosed() {
		return net.ErrClosed
	}
	if c.hasPeek {
		return nil
	}
	select {
	case c.peeked = <-c.q:
		c.hasPeek = true
		return nil
	case <-c.closed:
		return net.ErrClosed
	}
}

func (c *fakeConn) TryReadBatch(msgs []conn.Message) (int, error) {
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	var p fakePacket
	if c.hasPeek {
		p, c.peeked, c.hasPeek = c.peeked, fakePacket{}, false
	} else {
		select {
		case p = <-c.q:
		default:
			return 0, conn.ErrWouldBlock
		}
	}
	n := 0
	for {
		m := &msgs[n]
		m.Truncated = len(p.data) > cap(m.Buf)
		m.N = copy(m.Buf[:cap(m.Buf)], p.data)
		m.Seg, m.Addr, m.Local = p.seg, p.src, p.local
		n++
		if n == len(msgs) {
			return n, nil
		}
		select {
		case p = <-c.q:
		default:
			return n, nil
		}
	}
}

func (c *fakeConn) WriteBatch(msgs []conn.Message) (int, error) { return c.write(msgs, true) }

func (c *fakeConn) TryWriteBatch(msgs []conn.Message) (int, error) { return c.write(msgs, false) }

func (c *fakeConn) write(msgs []conn.Message, wait bool) (int, error) {
	c.net.mu.Lock()
	c.net.calls[c.laddr.Addr()]++
	refused := c.net.refused[c.laddr.Addr()]
	c.net.mu.Unlock()
	if refused != nil && len(msgs) > 0 && !c.isClosed() {
		return 0, refused
	}
	for i := range msgs {
		if c.isClosed() {
			return i, net.ErrClosed
		}
		c.net.mu.Lock()
		stall := c.net.stalled[c.laddr.Addr()]
		c.net.mu.Unlock()
		if stall != nil {
			if !wait {
				return i, conn.ErrWouldBlock
			}
			c.mu.Lock()
			d := c.deadline
			c.mu.Unlock()
			var timer <-chan time.Time
			if !d.IsZero() {
				t := time.NewTimer(time.Until(d))
				defer t.Stop()
				timer = t.C
			}
			select {
			case <-stall:
			case <-timer:
				return i, os.ErrDeadlineExceeded
			case <-c.closed:
				return i, net.ErrClosed
			}
		}
		m := &msgs[i]
		dst := m.Addr
		if c.raddr.IsValid() {
			dst = c.raddr
		}
		c.net.mu.Lock()
		to := c.net.route(c.laddr, dst)
		if c.net.dropped[c.laddr.Addr()] {
			to = nil
		}
		c.net.mu.Unlock()
		if to == nil {
			continue // nobody listening: UDP drops silently
		}
		p := fakePacket{data: append([]byte(nil), m.Buf[:m.N]...), seg: m.Seg, src: c.laddr, local: dst.Addr()}
		if p.seg >= m.N {
			p.seg = 0
		}
		c.net.deliver(to, p, dst)
	}
	return len(msgs), nil
}
