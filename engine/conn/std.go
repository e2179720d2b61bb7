package conn

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// stdBackend uses plain net.UDPConn calls: one system call per datagram.
// It runs anywhere Go does and is the one-syscall-per-packet baseline in
// benchmarks. Its TryWriteBatch is a blocking write (net.UDPConn has no
// non-blocking send), bounded by the write deadline.
type stdBackend struct{ opener }

var (
	_ Backend = stdBackend{}
	_ Conn    = (*stdConn)(nil)
)

// NewStd returns the portable backend.
func NewStd() Backend { return stdBackend{openStd} }

func (stdBackend) Name() string { return "std" }

func openStd(laddr, raddr netip.AddrPort, o SocketOptions) (Conn, error) {
	o.GRO = false // one datagram per read
	uc, err := openUDP(laddr, raddr, o)
	if err != nil {
		return nil, err
	}
	c := &stdConn{uc: uc, connected: raddr.IsValid(), laddr: uc.LocalAddr().(*net.UDPAddr).AddrPort()}
	if o.PacketInfo {
		c.oob = make([]byte, sys.SizeofRecvCmsg)
	}
	return c, nil
}

type stdConn struct {
	uc        *net.UDPConn
	connected bool
	laddr     netip.AddrPort
	oob       []byte
	refused   atomic.Uint64
}

// Refused returns the ECONNREFUSED errors receives met (Refuser).
func (c *stdConn) Refused() uint64 { return c.refused.Load() }

func (c *stdConn) LocalAddr() netip.AddrPort          { return c.laddr }
func (c *stdConn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }
func (c *stdConn) Close() error                       { return c.uc.Close() }

// ReadBatch reads one datagram: net.UDPConn cannot tell how many more are
// ready without blocking.
func (c *stdConn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	m := &msgs[0]
	n, oobn, flags, addr, err := c.uc.ReadMsgUDPAddrPort(m.Buf[:cap(m.Buf)], c.oob)
	for err != nil && c.connected && errors.Is(err, syscall.ECONNREFUSED) {
		// An ICMP port unreachable for an earlier send (Refuser).
		c.refused.Add(1)
		n, oobn, flags, addr, err = c.uc.ReadMsgUDPAddrPort(m.Buf[:cap(m.Buf)], c.oob)
	}
	if err != nil {
		return 0, err
	}
	m.N, m.Seg, m.Local = n, 0, netip.Addr{}
	m.Addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	m.Truncated = flags&truncFlag != 0
	if oobn > 0 {
		_, m.Local = sys.ParseRecvCmsg(c.oob[:oobn])
	}
	return 1, nil
}

func (c *stdConn) WriteBatch(msgs []Message) (int, error) {
	for i := range msgs {
		m := &msgs[i]
		seg := m.N
		if m.Seg > 0 && m.Seg < m.N {
			seg = m.Seg
		}
		for off := 0; off < m.N || off == 0; off += seg {
			p := m.Buf[off:min(off+seg, m.N)]
			var err error
			if c.connected {
				_, err = c.uc.Write(p)
			} else {
				_, err = c.uc.WriteToUDPAddrPort(p, m.Addr)
			}
			if err != nil {
				return i, err
			}
			if seg == 0 {
				break
			}
		}
	}
	return len(msgs), nil
}

func (c *stdConn) TryWriteBatch(msgs []Message) (int, error) { return c.WriteBatch(msgs) }
