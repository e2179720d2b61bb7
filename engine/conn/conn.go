package conn

import (
	"errors"
	"net/netip"
	"time"

	"github.com/engarde-project/engarde/ring"
)

// Message is one datagram, or a train of equal-sized datagrams, moving
// through a Conn.
type Message struct {
	// Buf is the buffer. ReadBatch receives into all of Buf[:cap(Buf)];
	// WriteBatch sends Buf[:N].
	Buf []byte
	// N is the number of payload bytes in Buf.
	N int
	// Seg, when nonzero and less than N, says that Buf[:N] is a train of
	// datagrams of Seg bytes each, the last possibly shorter: ReadBatch
	// reports one when UDP GRO coalesced datagrams, WriteBatch sends one
	// as that many datagrams (with UDP GSO where it can).
	Seg int
	// Addr is the remote address: the source on read, the destination on
	// write. A connected Conn ignores it on write.
	Addr netip.AddrPort
	// Local is the address the datagram was sent to, filled on read when
	// the Conn was opened with SocketOptions.PacketInfo.
	Local netip.Addr
	// Truncated is set on read when the datagram did not fit in Buf; N is
	// then meaningless and the datagram must be dropped.
	Truncated bool
}

// Conn is a UDP socket that moves datagrams in batches. It is the seam
// between the engine and the kernel: the mmsg backend (recvmmsg/sendmmsg),
// the uring backend (io_uring), the portable std backend and the tests'
// fake network implement it.
//
// Rules:
//   - ReadBatch and WriteBatch may each be used by one goroutine at a time;
//     TryWriteBatch may run concurrently with anything, including itself.
//   - The caller owns every Buf; a Conn keeps no reference to one after the
//     call returns.
//   - After Close every call returns an error that satisfies
//     errors.Is(err, net.ErrClosed), and a ReadBatch or WriteBatch blocked
//     in another goroutine returns.
type Conn interface {
	// ReadBatch waits until at least one datagram is available, then
	// receives as many as are ready, up to len(msgs), without waiting for
	// more. It fills N, Seg, Addr, Local and Truncated of msgs[:n] and
	// returns n.
	ReadBatch(msgs []Message) (n int, err error)

	// WriteBatch sends msgs in order, waiting while the socket's send
	// buffer is full, until the write deadline. It returns the number of
	// messages sent. When a message cannot be sent (an error other than a
	// full buffer: unreachable network, message too long) it returns that
	// message's index and the error; the caller may drop it and go on
	// with msgs[n+1:].
	WriteBatch(msgs []Message) (n int, err error)

	// TryWriteBatch is WriteBatch without waiting: when the send buffer
	// fills it returns how many messages it sent and ErrWouldBlock.
	TryWriteBatch(msgs []Message) (n int, err error)

	// SetWriteDeadline bounds how long WriteBatch waits; the zero time
	// means no limit. A call that reaches the deadline returns an error
	// satisfying errors.Is(err, os.ErrDeadlineExceeded).
	SetWriteDeadline(t time.Time) error

	// LocalAddr returns the address the socket is bound to.
	LocalAddr() netip.AddrPort

	// Close closes the socket.
	Close() error
}

// ReadWaiter is implemented by a Conn whose receive loop can wait for a
// datagram without holding buffers for it: a server with thousands of
// sockets, most of them idle, then lends the pool's buffers only to the
// sockets that have something to read.
type ReadWaiter interface {
	// TryReadBatch is ReadBatch without waiting: it returns ErrWouldBlock
	// when nothing is queued.
	TryReadBatch(msgs []Message) (n int, err error)
	// WaitRead blocks until a datagram is queued, or the Conn is closed
	// (an error satisfying errors.Is(err, net.ErrClosed)). It may return
	// early: a TryReadBatch after it can still find nothing.
	WaitRead() error
}

// Looper is implemented by a Backend that runs the receive loops of its
// Conns itself: the uring backend receives on every socket of a role in one
// loop, on one thread, straight into the role's pool buffers, and calls
// each socket's handler there.
type Looper interface {
	// Headroom is how many bytes each pool buffer needs before the
	// payload: a pool for Serve has buffers of the largest payload plus
	// this.
	Headroom() int
	// Serve hands c's receives to the loop of pool's role, which calls h
	// with each batch received: bufs[i], a pool buffer holding one
	// reference (Data starts at the payload), holds msgs[i] (N, Seg, Addr,
	// Local and Truncated set). h may overwrite msgs as scratch space, must
	// add a reference (Ref) for every holder it hands a buffer to, and runs
	// on the loop's thread: it must not block. The loop takes the buffers
	// back when h returns. Once Serve returned nil, reading c is the
	// loop's; Close ends it, and after Close returns h is not called
	// again. An error leaves c as it was (its ReadBatch works).
	Serve(c Conn, pool *ring.Pool, h func(bufs []*ring.Packet, msgs []Message)) error
}

// Refuser is implemented by a Conn that counts what the kernel reports of
// its earlier sends on a receive: a connected UDP socket gets ECONNREFUSED
// when an ICMP port unreachable came back for one of them (udp_err in
// net/ipv4/udp.c, __udp6_lib_err in net/ipv6/udp.c, sets sk_err; the next
// receive or send returns it once). The receive itself carries on: the
// error says nothing about what is queued, but it says that nothing
// listens on the destination port, which the engine reports.
type Refuser interface {
	// Refused returns how many such errors the socket's receives met.
	Refused() uint64
}

// BatchWriter is implemented by a Backend that can send on several of its
// Conns with one system call: the uring backend queues every Conn's sends
// and submits them with one io_uring_enter. A fan-out that sends one batch
// to every link can use it instead of a TryWriteBatch per link.
type BatchWriter interface {
	// TryWriteBatches does TryWriteBatch(ws[i].Msgs) on each ws[i].Conn
	// and stores the results in ws[i].N and ws[i].Err, with the same
	// meaning. The Conns are independent: a full or failing socket stops
	// only its own batch. Conns of another backend are sent on with their
	// own TryWriteBatch. Several ws[i] may share one Msgs slice.
	TryWriteBatches(ws []BatchWrite)
}

// BatchWrite is one Conn's part of a BatchWriter call.
type BatchWrite struct {
	Conn Conn
	Msgs []Message
	// N and Err are set to what TryWriteBatch would have returned.
	N   int
	Err error
}

// ErrWouldBlock is returned by TryWriteBatch when the socket's send buffer
// is full, and by TryReadBatch when nothing is queued.
var ErrWouldBlock = errors.New("send buffer full")

// SocketOptions configures a socket opened by a Backend.
type SocketOptions struct {
	// Device binds the socket to a network interface (SO_BINDTODEVICE),
	// so that it sends and receives only through it.
	Device string
	// Mark sets the firewall mark of outgoing packets (SO_MARK); 0 leaves
	// it unset.
	Mark uint32
	// ReusePort lets several sockets share the local address and port
	// (SO_REUSEPORT).
	ReusePort bool
	// PacketInfo asks for the destination address of each received
	// datagram (Message.Local).
	PacketInfo bool
	// GSO allows sending trains with UDP generic segmentation offload.
	GSO bool
	// GRO asks the kernel to coalesce received datagrams into trains.
	GRO bool
	// RecvBuffer and SendBuffer size the socket buffers, in bytes; 0
	// keeps the system's default.
	RecvBuffer, SendBuffer int
	// BatchSize is the largest batch the caller will pass; it sizes the
	// per-socket scratch space.
	BatchSize int
}

// Backend opens Conns.
type Backend interface {
	// Name identifies the backend in logs and benchmarks: "mmsg",
	// "uring", "std" or "fake".
	Name() string
	// Listen opens a socket bound to laddr.
	Listen(laddr netip.AddrPort, o SocketOptions) (Conn, error)
	// Dial opens a socket bound to laddr (any address and a free port
	// when laddr is the zero value or its port is 0) and connected to
	// raddr.
	Dial(laddr, raddr netip.AddrPort, o SocketOptions) (Conn, error)
}

// MaxSegments is the largest number of datagrams sent as one UDP GSO train
// (UDP_MAX_SEGMENTS in the kernel).
const MaxSegments = 64

// maxGSOBytes bounds a GSO train's payload: an IP packet, and so a GSO
// super-packet, is at most 64 KiB with its headers.
const maxGSOBytes = 65535 - 8 - 40

// trainSeg returns the Seg of a received message of n bytes whose UDP_GRO
// control message said seg: seg when it makes a train (0 < seg < n), 0
// otherwise (no train: a single datagram, or a size that cannot be one,
// which the kernel does not send).
func trainSeg(seg, n int) int {
	if seg > 0 && seg < n {
		return seg
	}
	return 0
}

// Count returns the number of datagrams in the message.
func (m *Message) Count() int {
	if m.Seg <= 0 || m.Seg >= m.N {
		return 1
	}
	return (m.N + m.Seg - 1) / m.Seg
}

// opener gives a backend Listen and Dial from its one function that opens
// a socket, connected when raddr is valid.
type opener func(laddr, raddr netip.AddrPort, o SocketOptions) (Conn, error)

// Listen opens a socket bound to laddr.
func (open opener) Listen(laddr netip.AddrPort, o SocketOptions) (Conn, error) {
	return open(laddr, netip.AddrPort{}, o)
}

// Dial opens a socket bound to laddr and connected to raddr.
func (open opener) Dial(laddr, raddr netip.AddrPort, o SocketOptions) (Conn, error) {
	return open(laddr, raddr, o)
}
