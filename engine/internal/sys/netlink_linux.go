package sys

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Links returns, by interface index, what an RTM_GETLINK dump says of each
// interface: its carrier and its link kind.
func Links() (map[int]Link, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return nil, os.NewSyscallError("netlink RTM_GETLINK", err)
	}
	return parseLinks(rib)
}

// parseLinks reads an RTM_GETLINK dump: per RTM_NEWLINK message, the
// struct ifinfomsg (its index and flags) and, among the attributes that
// follow it, IFLA_LINKINFO's nested IFLA_INFO_KIND (rtnetlink(7);
// rtnl_link_info_fill in net/core/rtnetlink.c writes the kind as a
// NUL-terminated string). The dump is the kernel's, but it is parsed as if
// it were anyone's: a malformed attribute ends the walk of its message,
// never a read past it.
func parseLinks(rib []byte) (map[int]Link, error) {
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("parsing netlink links: %w", err)
	}
	out := make(map[int]Link, len(msgs))
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		// struct ifinfomsg: family, pad, type (u16), index (s32),
		// flags (u32), change (u32); read field by field, since
		// m.Data need not be aligned for a cast.
		index := int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
		flags := binary.NativeEndian.Uint32(m.Data[8:12])
		l := Link{Carrier: flags&unix.IFF_LOWER_UP != 0}
		walkAttrs(m.Data[unix.SizeofIfInfomsg:], func(typ uint16, val []byte) {
			if typ != unix.IFLA_LINKINFO {
				return
			}
			walkAttrs(val, func(typ uint16, val []byte) {
				if typ == unix.IFLA_INFO_KIND {
					l.Kind = cString(val)
				}
			})
		})
		out[index] = l
	}
	return out, nil
}

// walkAttrs calls fn with the type (without the NLA_F_NESTED and
// NLA_F_NET_BYTEORDER flags) and the value of each route attribute in b: a
// struct rtattr (length including its 4-byte header, then type), the
// value, padding to 4 bytes (RTA_ALIGN). It stops at the first attribute
// whose length is shorter than its header or longer than what is left.
func walkAttrs(b []byte, fn func(typ uint16, val []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(typ, b[unix.SizeofRtAttr:l])
		b = b[min(rtaAlign(l), len(b)):]
	}
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
