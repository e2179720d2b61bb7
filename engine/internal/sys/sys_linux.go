package sys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel structures used by the batch I/O paths.
type (
	// Mmsghdr is struct mmsghdr (recvmmsg(2), sendmmsg(2)).
	Mmsghdr = unix.Mmsghdr
	// Iovec is struct iovec.
	Iovec = unix.Iovec
	// Sockaddr is storage for a struct sockaddr_in or sockaddr_in6.
	Sockaddr = unix.RawSockaddrInet6
)

// SizeofSockaddr is the size of Sockaddr.
const SizeofSockaddr = unix.SizeofSockaddrInet6

// Supported reports whether this OS has the batch I/O and socket options of
// this package.
const Supported = true

// Socket option helpers. Each takes the raw file descriptor from
// syscall.RawConn.Control.

// BindToDevice sets SO_BINDTODEVICE.
func BindToDevice(fd uintptr, dev string) error {
	return os.NewSyscallError("setsockopt SO_BINDTODEVICE", unix.BindToDevice(int(fd), dev))
}

// SetMark sets SO_MARK. A refusal for want of a capability wraps
// ErrMarkPermission as well as EPERM.
func SetMark(fd uintptr, mark uint32) error {
	err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	if err == unix.EPERM {
		return fmt.Errorf("%w (%w)", os.NewSyscallError("setsockopt SO_MARK", err), ErrMarkPermission)
	}
	return os.NewSyscallError("setsockopt SO_MARK", err)
}

// SetReusePort sets SO_REUSEPORT.
func SetReusePort(fd uintptr) error {
	return os.NewSyscallError("setsockopt SO_REUSEPORT", unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
}

// SetBuffers sizes the receive and send buffers, beyond the sysctl limits
// (SO_RCVBUFFORCE, which needs CAP_NET_ADMIN) when it can, within them
// otherwise. Sizes of 0 are left alone.
func SetBuffers(fd uintptr, rcv, snd int) {
	if rcv > 0 {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv) != nil {
			// Without the capability the kernel clamps to rmem_max:
			// a smaller buffer, more drops under bursts.
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcv)
		}
	}
	if snd > 0 {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, snd)
		}
	}
}

// EnableGRO sets UDP_GRO: the kernel may hand over several datagrams of a
// flow as one train, with their size in a control message.
func EnableGRO(fd uintptr) error {
	return os.NewSyscallError("setsockopt UDP_GRO", unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1))
}

// EnablePacketInfo asks for IP_PKTINFO (or IPV6_RECVPKTINFO) control
// messages, which carry each datagram's destination address.
func EnablePacketInfo(fd uintptr, v6 bool) error {
	if v6 {
		err := unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		if err != nil {
			return os.NewSyscallError("setsockopt IPV6_RECVPKTINFO", err)
		}
		// A dual-stack socket receives IPv4 too; ask for both. An
		// IPv6-only socket refuses this, which costs nothing.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		return nil
	}
	return os.NewSyscallError("setsockopt IP_PKTINFO", unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1))
}

// GSOSupported reports whether the kernel knows UDP_SEGMENT (Linux 4.18).
func GSOSupported(fd uintptr) bool {
	_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	return err == nil
}

// Recvmmsg calls recvmmsg(2) without blocking (MSG_DONTWAIT) and returns
// the number of messages received.
//
// Both batch calls are raw system calls: they never block, so they need not
// tell the Go scheduler they are in the kernel. Telling it costs more than
// the bookkeeping: a call that runs for a few tens of microseconds (a
// sendmmsg whose packets the kernel delivers to a veth peer synchronously)
// is taken for a blocked one, and the runtime's monitor hands the
// goroutine's processor to another thread, waking it to do so.
func Recvmmsg(fd uintptr, hdrs []Mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Queued reports, without blocking and without taking it, whether a
// datagram (or a pending socket error) waits on fd: recvfrom(2) with
// MSG_PEEK into no buffer.
func Queued(fd uintptr) (bool, error) {
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, 0, 0, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	switch {
	case e == 0:
		return true, nil
	case e == unix.EAGAIN:
		return false, nil
	case e == unix.EINTR:
		return false, nil
	}
	// An error (an ICMP report on a connected socket, say) is something
	// for the next receive to take: the socket is readable.
	return true, nil
}

// Sendmmsg calls sendmmsg(2) without blocking and returns the number of
// messages sent.
func Sendmmsg(fd uintptr, hdrs []Mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// SetIovec points v at b.
func SetIovec(v *Iovec, b []byte) {
	v.Base = unsafe.SliceData(b)
	v.SetLen(len(b))
}

// SetMsgIov points h at iov.
func SetMsgIov(h *Mmsghdr, iov []Iovec) {
	h.Hdr.Iov = unsafe.SliceData(iov)
	h.Hdr.SetIovlen(len(iov))
}

// SetMsgName points h at sa with length n (0 clears it).
func SetMsgName(h *Mmsghdr, sa *Sockaddr, n uint32) {
	if n == 0 {
		h.Hdr.Name, h.Hdr.Namelen = nil, 0
		return
	}
	h.Hdr.Name = (*byte)(unsafe.Pointer(sa))
	h.Hdr.Namelen = n
}

// SetMsgControl points h at b (nil or empty clears it).
func SetMsgControl(h *Mmsghdr, b []byte) {
	if len(b) == 0 {
		h.Hdr.Control = nil
		h.Hdr.SetControllen(0)
		return
	}
	h.Hdr.Control = unsafe.SliceData(b)
	h.Hdr.SetControllen(len(b))
}

// MsgControlLen returns the control bytes the kernel wrote into h.
func MsgControlLen(h *Mmsghdr) int { return int(h.Hdr.Controllen) }

// MsgTruncated reports whether the kernel cut the datagram short.
func MsgTruncated(h *Mmsghdr) bool { return h.Hdr.Flags&unix.MSG_TRUNC != 0 }

// PutSockaddr writes ap into sa for a socket of the given family and
// returns the length to pass to the kernel. An IPv4 address on an IPv6
// socket is written v4-mapped.
func PutSockaddr(sa *Sockaddr, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	if !v6 {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		s4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], ap.Port())
		s4.Addr = a.Unmap().As4()
		s4.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Flowinfo = 0
	sa.Addr = a.As16()
	sa.Scope_id = 0
	if z := a.Zone(); z != "" {
		// Link-local destinations are skipped by the engine; a zone here
		// is rare enough to pay for a lookup.
		if ifi, err := netInterfaceIndex(z); err == nil {
			sa.Scope_id = uint32(ifi)
		}
	}
	return unix.SizeofSockaddrInet6
}

// ParseSockaddr reads the address the kernel wrote into sa.
func ParseSockaddr(sa *Sockaddr) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		// Unmap so that a dual-stack socket reports IPv4 peers as IPv4.
		// Zones are dropped: the engine does not use link-local peers.
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// Control-message sizes.
var (
	// SizeofSegmentCmsg is the space for a UDP_SEGMENT control message.
	SizeofSegmentCmsg = unix.CmsgSpace(2)
	// SizeofRecvCmsg is enough space for the control messages a receive
	// can carry: UDP_GRO and IP_PKTINFO or IPV6_PKTINFO.
	SizeofRecvCmsg = unix.CmsgSpace(4) + unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(unix.SizeofInet4Pktinfo)
)

// PutSegmentCmsg writes a UDP_SEGMENT control message (the GSO segment
// size) into b and returns its length.
func PutSegmentCmsg(b []byte, seg uint16) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = seg
	return unix.CmsgSpace(2)
}

// ParseRecvCmsg walks the control messages of a received datagram and
// returns the GRO segment size (0 if none) and the destination address (the
// zero Addr if none).
func ParseRecvCmsg(b []byte) (seg int, dst netip.Addr) {
	hdrLen := unix.CmsgLen(0)
	for len(b) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(b) {
			return // malformed; nothing more to trust
		}
		data := b[hdrLen:l]
		switch {
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 4:
			seg = int(*(*int32)(unsafe.Pointer(&data[0])))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			dst = netip.AddrFrom4(pi.Addr)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			dst = netip.AddrFrom16(pi.Addr).Unmap()
		}
		b = b[min(unix.CmsgSpace(l-hdrLen), len(b)):]
	}
	return
}

// IsWouldBlock reports whether err means the socket buffer is full (or
// empty, for reads).
func IsWouldBlock(err error) bool {
	return errors.Is(err, unix.EAGAIN)
}

// IsGSOError reports whether err is the kernel refusing a GSO send: EIO
// from a device without checksum offload, or EINVAL from a kernel without
// UDP_SEGMENT on this path.
func IsGSOError(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)
}

// Errno returns the errno of err, or 0.
func Errno(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func netInterfaceIndex(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}

// LinkWatcher reports changes to network interfaces and their addresses,
// from the kernel's rtnetlink multicast groups.
type LinkWatcher struct {
	f   *os.File
	buf []byte
}

// NewLinkWatcher subscribes to link and address events.
func NewLinkWatcher() (*LinkWatcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, os.NewSyscallError("socket AF_NETLINK", err)
	}
	sa := &unix.SockaddrNetlink{
		Family: unix.AF_NETLINK,
		Groups: unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR,
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind AF_NETLINK", err)
	}
	// The descriptor is non-blocking, so the os.File goes through the
	// runtime poller: Wait parks the goroutine and Close wakes it.
	return &LinkWatcher{f: os.NewFile(uintptr(fd), "rtnetlink"), buf: make([]byte, 64<<10)}, nil
}

// Wait blocks until the kernel reports at least one change. The message
// itself is not parsed: the engine rescans on any change. An overflow of
// the socket (ENOBUFS: events were lost) counts as a change.
func (w *LinkWatcher) Wait() error {
	_, err := w.f.Read(w.buf)
	if errors.Is(err, unix.ENOBUFS) {
		return nil
	}
	return err
}

// Close stops the watcher; a blocked Wait returns an error.
func (w *LinkWatcher) Close() error { return w.f.Close() }
