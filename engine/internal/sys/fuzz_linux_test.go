package sys

import (
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
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

// rtattr returns a route attribute as the kernel lays it out: length,
// type, value, padding to 4 bytes.
func rtattr(typ uint16, val []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(unix.SizeofRtAttr+len(val)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// linkMsg returns an RTM_NEWLINK message for interface index with flags,
// followed by attrs.
func linkMsg(index int32, flags uint32, attrs ...[]byte) []byte {
	body := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(body[4:], uint32(index))
	binary.NativeEndian.PutUint32(body[8:], flags)
	for _, a := range attrs {
		body = append(body, a...)
	}
	b := binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+len(body)))
	b = binary.NativeEndian.AppendUint16(b, unix.RTM_NEWLINK)
	b = append(b, make([]byte, unix.NLMSG_HDRLEN-6)...) // flags, seq, pid
	return append(b, body...)
}

// kindAttr returns IFLA_LINKINFO holding IFLA_INFO_KIND kind, NUL-ended
// as rtnl_link_info_fill writes it, with nested's flag when asked.
func kindAttr(kind string, nested bool) []byte {
	typ := uint16(unix.IFLA_LINKINFO)
	if nested {
		typ |= unix.NLA_F_NESTED
	}
	return rtattr(typ, rtattr(unix.IFLA_INFO_KIND, append([]byte(kind), 0)))
}

// TestParseLinks: the kinds and carriers of a dump as the kernel writes
// it, and of malformed ones.
func TestParseLinks(t *testing.T) {
	ifname := rtattr(unix.IFLA_IFNAME, []byte("wg0\x00"))
	mtu := rtattr(unix.IFLA_MTU, binary.NativeEndian.AppendUint32(nil, 1420))
	for _, c := range []struct {
		name string
		rib  []byte
		want map[int]Link
	}{
		{"wireguard", linkMsg(5, unix.IFF_UP|unix.IFF_LOWER_UP, ifname, mtu, kindAttr("wireguard", false)),
			map[int]Link{5: {Carrier: true, Kind: "wireguard"}}},
		{"tun without carrier, nested flag", linkMsg(7, unix.IFF_UP, kindAttr("tun", true), ifname),
			map[int]Link{7: {Kind: "tun"}}},
		{"no link info", linkMsg(2, unix.IFF_LOWER_UP, ifname, mtu), map[int]Link{2: {Carrier: true}}},
		{"two messages", append(linkMsg(1, 0, kindAttr("veth", false)), linkMsg(3, unix.IFF_LOWER_UP, kindAttr("wireguard", false))...),
			map[int]Link{1: {Kind: "veth"}, 3: {Carrier: true, Kind: "wireguard"}}},
		{"kind without NUL", linkMsg(4, 0, rtattr(unix.IFLA_LINKINFO, rtattr(unix.IFLA_INFO_KIND, []byte("tun")))),
			map[int]Link{4: {Kind: "tun"}}},
		// An attribute claiming more than its message holds ends the
		// walk: what came before it stands.
		{"overlong attribute", linkMsg(6, unix.IFF_LOWER_UP, kindAttr("wireguard", false), []byte{0xff, 0x00, 0x03, 0x00}),
			map[int]Link{6: {Carrier: true, Kind: "wireguard"}}},
		{"attribute shorter than its header", linkMsg(8, 0, []byte{0x02, 0x00, 0x12, 0x00}, kindAttr("tun", false)),
			map[int]Link{8: {}}},
		{"kind outside link info", linkMsg(9, 0, rtattr(unix.IFLA_INFO_KIND, []byte("tun\x00"))), map[int]Link{9: {}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseLinks(c.rib)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, c.want) {
				t.Errorf("parsed %v, want %v", got, c.want)
			}
		})
	}
}

// TestLinksHere reads this host's interfaces: loopback has no kind. As
// root, TUN and TAP devices made for the test, in a network namespace of
// the test's thread alone (gone with the thread), report "tun": the kind
// the client skips them by.
func TestLinksHere(t *testing.T) {
	ls, err := Links()
	if err != nil {
		t.Fatal(err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("skipping: no lo: %v", err)
	}
	if l, ok := ls[lo.Index]; !ok || l.Kind != "" {
		t.Errorf("lo: %+v (present %v), want no kind", l, ok)
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping the TUN devices: not root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping the TUN devices: %v", err)
	}
	type result struct {
		kinds map[string]Link
		err   error
	}
	done := make(chan result)
	go func() {
		// The thread goes back to its namespace before it goes back to
		// the scheduler; if it cannot, it stays locked and ends with the
		// goroutine (the main thread, which cannot end, would stay
		// wedged: /proc/self/net is the main thread's).
		runtime.LockOSThread()
		r := result{kinds: map[string]Link{}}
		defer func() { done <- r }()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			r.err = err
			return
		}
		defer unix.Close(orig)
		if r.err = unix.Unshare(unix.CLONE_NEWNET); r.err != nil {
			return
		}
		defer func() {
			if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		for _, d := range []struct {
			name  string
			flags uint16
		}{{"sutun0", unix.IFF_TUN}, {"sutap0", unix.IFF_TAP}} {
			fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				r.err = err
				return
			}
			defer unix.Close(fd)
			ifr, err := unix.NewIfreq(d.name)
			if err != nil {
				r.err = err
				return
			}
			ifr.SetUint16(d.flags | unix.IFF_NO_PI)
			if r.err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); r.err != nil {
				return
			}
		}
		ls, err := Links()
		if err != nil {
			r.err = err
			return
		}
		for _, name := range []string{"sutun0", "sutap0"} {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				r.err = err
				return
			}
			r.kinds[name] = ls[ifi.Index]
		}
	}()
	r := <-done
	if r.err != nil {
		t.Skipf("skipping the TUN devices: %v", r.err)
	}
	for name, l := range r.kinds {
		if l.Kind != "tun" || l.Carrier {
			t.Errorf("%s: %+v, want kind tun and no carrier (the device is down)", name, l)
		}
	}
}

// FuzzParseLinks: any bytes as an RTM_GETLINK dump give an error or a map
// with at most one entry per message, kinds without a NUL, never a panic;
// a message built as the kernel builds it, with any kind and any bytes
// after its link info, reads back its index, carrier and kind. A real
// dump seeds it.
func FuzzParseLinks(f *testing.F) {
	if rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC); err == nil {
		f.Add(rib, int32(1), true, "", []byte{})
	}
	f.Add([]byte{}, int32(5), true, "wireguard", []byte{})
	f.Add(make([]byte, unix.NLMSG_HDRLEN), int32(7), false, "tun", []byte{0xff, 0xff, 0x12, 0x00})
	f.Add(linkMsg(3, 0, kindAttr("wireguard", true)), int32(-1), false, "veth", rtattr(unix.IFLA_LINKINFO, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, rib []byte, index int32, carrier bool, kind string, tail []byte) {
		if m, err := parseLinks(rib); err == nil {
			msgs, perr := syscall.ParseNetlinkMessage(rib)
			if perr != nil || len(m) > len(msgs) {
				t.Fatalf("%d interfaces from %d messages (%v)", len(m), len(msgs), perr)
			}
			for i, l := range m {
				if strings.IndexByte(l.Kind, 0) >= 0 {
					t.Fatalf("interface %d: kind %q holds a NUL", i, l.Kind)
				}
			}
		}

		if strings.IndexByte(kind, 0) >= 0 || len(kind) > 256 || len(tail) > 4096 {
			return
		}
		var flags uint32
		if carrier {
			flags = unix.IFF_LOWER_UP
		}
		// The tail sits in an attribute of its own, as an unknown
		// attribute of the kernel's would.
		msg := linkMsg(index, flags, kindAttr(kind, carrier), rtattr(unix.IFLA_AF_SPEC, tail))
		got, err := parseLinks(msg)
		if err != nil {
			t.Fatalf("parsing a well-formed message: %v", err)
		}
		want := map[int]Link{int(index): {Carrier: carrier, Kind: kind}}
		if !maps.Equal(got, want) {
			t.Fatalf("parsed %v, want %v", got, want)
		}
	})
}

// TestPortHolders finds this process as the holder of a port it binds.
func TestPortHolders(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	got := PortHolders(port)
	if !slices.ContainsFunc(got, func(h Holder) bool { return h.PID == os.Getpid() && h.Name != "" }) {
		t.Errorf("holders of port %d: %v, want this process (%d)", port, got, os.Getpid())
	}
}
