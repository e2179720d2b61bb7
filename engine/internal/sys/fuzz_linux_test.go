package sys

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// putCmsg appends a control message to b as the kernel lays it out
// (cmsg(3): CMSG_LEN, padded to CMSG_SPACE).
func putCmsg(b []byte, level, typ int32, data []byte) []byte {
	off := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(len(data)))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[off]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[off+unix.CmsgLen(0):], data)
	return b
}

func groCmsg(b []byte, seg int32) []byte {
	return putCmsg(b, unix.SOL_UDP, unix.UDP_GRO, binary.NativeEndian.AppendUint32(nil, uint32(seg)))
}

func pktinfo4(b []byte, a [4]byte) []byte {
	var pi unix.Inet4Pktinfo
	pi.Addr = a
	return putCmsg(b, unix.IPPROTO_IP, unix.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&pi)), unix.SizeofInet4Pktinfo))
}

func pktinfo6(b []byte, a [16]byte) []byte {
	var pi unix.Inet6Pktinfo
	pi.Addr = a
	return putCmsg(b, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&pi)), unix.SizeofInet6Pktinfo))
}

// FuzzParseRecvCmsg feeds the control-message walker what a receive may
// carry: a UDP_GRO segment size (any int32: zero, negative, absurd) and a
// packet-info address, laid out as the kernel does, followed by arbitrary
// bytes; and arbitrary bytes alone. It must never read past the buffer,
// must return exactly what the well-formed messages say, and must stop at
// a malformed header rather than trust it.
func FuzzParseRecvCmsg(f *testing.F) {
	f.Add(int32(1200), []byte{192, 0, 2, 1}, false, []byte{})
	f.Add(int32(0), []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, true, []byte{})
	f.Add(int32(-1), []byte{10, 0, 0, 1}, false, []byte{1, 2, 3})
	f.Add(int32(1<<31-1), []byte{}, false, groCmsg(nil, 7))
	f.Add(int32(64), []byte{127, 0, 0, 1}, false, make([]byte, 15))
	f.Fuzz(func(t *testing.T, seg int32, addr []byte, v6 bool, tail []byte) {
		ParseRecvCmsg(tail) // anything: no panic, no out-of-bounds read

		var b []byte
		want := netip.Addr{}
		b = groCmsg(b, seg)
		switch {
		case v6 && len(addr) >= 16:
			b = pktinfo6(b, [16]byte(addr))
			want = netip.AddrFrom16([16]byte(addr)).Unmap()
		case !v6 && len(addr) >= 4:
			b = pktinfo4(b, [4]byte(addr))
			want = netip.AddrFrom4([4]byte(addr))
		}
		gotSeg, gotDst := ParseRecvCmsg(b)
		if gotSeg != int(seg) || gotDst != want {
			t.Fatalf("parsed (%d, %v) from GRO %d and %v", gotSeg, gotDst, seg, want)
		}
		// Garbage after well-formed messages: what those said stands
		// unless the garbage holds well-formed messages of its own.
		tailSeg, tailDst := ParseRecvCmsg(tail)
		gotSeg, gotDst = ParseRecvCmsg(append(b, tail...))
		if tailSeg == 0 && !tailDst.IsValid() && gotDst != want {
			t.Fatalf("garbage %x changed the address to %v", tail, gotDst)
		}
		if tailDst.IsValid() && gotDst != tailDst {
			t.Fatalf("address %v, want the later %v", gotDst, tailDst)
		}
	})
}

// FuzzParseSockaddr: any bytes the kernel might leave in a source address
// parse to an IPv4 or IPv6 address of their family, or to the zero value;
// and an address written with PutSockaddr reads back the same.
func FuzzParseSockaddr(f *testing.F) {
	f.Add([]byte{2, 0, 0x13, 0x88, 192, 0, 2, 1}, uint16(5000), false)
	f.Add([]byte{10, 0, 0x13, 0x88}, uint16(1), true)
	f.Add([]byte{}, uint16(0), false)
	f.Fuzz(func(t *testing.T, raw []byte, port uint16, v6 bool) {
		var sa Sockaddr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&sa)), SizeofSockaddr), raw)
		ap := ParseSockaddr(&sa)
		switch sa.Family {
		case unix.AF_INET:
			if !ap.Addr().Is4() {
				t.Fatalf("AF_INET parsed to %v", ap)
			}
		case unix.AF_INET6:
			if !ap.Addr().IsValid() || ap.Addr().Zone() != "" {
				t.Fatalf("AF_INET6 parsed to %v", ap)
			}
		default:
			if ap.IsValid() {
				t.Fatalf("family %d parsed to %v", sa.Family, ap)
			}
		}
		// Round trip, with the raw bytes as the address.
		var a netip.Addr
		switch {
		case v6 && len(raw) >= 16:
			a = netip.AddrFrom16([16]byte(raw)).Unmap()
		case len(raw) >= 4:
			a = netip.AddrFrom4([4]byte(raw))
		default:
			return
		}
		in := netip.AddrPortFrom(a, port)
		var out Sockaddr
		PutSockaddr(&out, in, v6 || a.Is6())
		if got := ParseSockaddr(&out); got != in {
			t.Fatalf("wrote %v, read %v", in, got)
		}
	})
}

// FuzzParseCarrier: any bytes as an RTM_GETLINK dump give an error or a
// map with at most one entry per message, never a panic; a real dump
// seeds it.
func FuzzParseCarrier(f *testing.F) {
	if rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC); err == nil {
		f.Add(rib)
	}
	f.Add([]byte{})
	f.Add(make([]byte, unix.NLMSG_HDRLEN))
	f.Fuzz(func(t *testing.T, rib []byte) {
		m, err := parseCarrier(rib)
		if err != nil {
			return
		}
		msgs, perr := syscall.ParseNetlinkMessage(rib)
		if perr != nil || len(m) > len(msgs) {
			t.Fatalf("%d interfaces from %d messages (%v)", len(m), len(msgs), perr)
		}
	})
}
