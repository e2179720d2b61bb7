package conn

import (
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// socket is what the Linux batch backends, mmsg and uring, keep of an open
// UDP socket: the descriptor behind Go's netpoller and the facts that lay
// out its sends.
type socket struct {
	uc        *net.UDPConn
	rc        syscall.RawConn
	v6        bool // AF_INET6 socket (IPv4 peers are v4-mapped)
	connected bool
	laddr     netip.AddrPort
	batch     int
	gso       atomic.Bool // cleared for good when the kernel refuses a GSO send
	log       Logf
	refused   atomic.Uint64 // ECONNREFUSED met by receives (Refuser)
}

// openSocket opens a socket as openUDP does, with its syscall.RawConn, and
// probes UDP GSO when o asks for it.
func openSocket(laddr, raddr netip.AddrPort, o SocketOptions, log Logf) (*socket, error) {
	uc, err := openUDP(laddr, raddr, o)
	if err != nil {
		return nil, err
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	s := &socket{
		uc:        uc,
		rc:        rc,
		v6:        udpNetwork(laddr, raddr) != "udp4",
		connected: raddr.IsValid(),
		laddr:     uc.LocalAddr().(*net.UDPAddr).AddrPort(),
		batch:     max(o.BatchSize, 1),
		log:       log,
	}
	if o.GSO {
		_ = rc.Control(func(fd uintptr) { s.gso.Store(sys.GSOSupported(fd)) })
	}
	return s, nil
}

func (s *socket) LocalAddr() netip.AddrPort { return s.laddr }

// Refused returns the ECONNREFUSED errors receives met (Refuser).
func (s *socket) Refused() uint64 { return s.refused.Load() }

func (s *socket) SetWriteDeadline(t time.Time) error { return s.uc.SetWriteDeadline(t) }
