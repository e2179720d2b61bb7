package conn

import (
	"net/netip"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// This file holds the GSO train builder that both Linux batch backends,
// mmsg and uring, lay their sends out with.

// sendPlan lays a batch of Messages out as sendmsg(2) headers, grouping
// runs of equal-sized datagrams to one address into UDP GSO trains. Both
// Linux backends use it: mmsg hands the headers to one sendmmsg, uring
// makes each header one IORING_OP_SENDMSG. Its arrays are allocated once
// and live as long as their owner, so the kernel may read them during the
// call that submits them (the Go heap does not move objects).
type sendPlan struct {
	hdrs  []sys.Mmsghdr
	iovs  []sys.Iovec
	names []sys.Sockaddr
	cmsg  []byte // one UDP_SEGMENT slot per header
	ends  []int  // ends[h]: messages completely sent once hdrs[:h+1] are
	offs  []int  // offs[h]: bytes of message ends[h] sent once hdrs[:h+1] are (split trains)
	gsoh  []bool // hdrs[h] carries a UDP_SEGMENT message
}

// newSendPlan allocates room for nh headers and as many iovecs as a full
// set of GSO trains can need.
func newSendPlan(nh int) sendPlan {
	return sendPlan{
		hdrs:  make([]sys.Mmsghdr, nh),
		iovs:  make([]sys.Iovec, nh+MaxSegments),
		names: make([]sys.Sockaddr, nh),
		cmsg:  make([]byte, nh*sys.SizeofSegmentCmsg),
		ends:  make([]int, nh),
		offs:  make([]int, nh),
		gsoh:  make([]bool, nh),
	}
}

// build fills headers hdrs[h:hmax] and iovecs from iovs[iv] for msgs from
// message pos, byte off, until the messages, the headers or the iovecs run
// out, grouping runs of equal-sized datagrams to one address into GSO
// trains when gso is on. It returns the index past the last header and
// iovec it used; ends and offs record the progress each header makes.
func (p *sendPlan) build(msgs []Message, pos, off, h, iv, hmax int, gso, connected, v6 bool) (int, int) {
	i := pos
	for i < len(msgs) && h < hmax && iv < len(p.iovs) {
		m := &msgs[i]
		p.gsoh[h] = false
		train := m.Seg > 0 && m.Seg < m.N
		switch {
		case train && gso && m.N <= maxGSOBytes && m.Count() <= MaxSegments:
			// A train from GRO goes out as it came in: one buffer, one
			// segment size.
			sys.SetIovec(&p.iovs[iv], m.Buf[:m.N])
			p.setHdr(h, iv, 1, m.Addr, m.Seg, connected, v6)
			iv++
			i, off = i+1, 0
		case train:
			// No GSO, or more than one GSO train can carry (the kernel
			// would refuse it with EINVAL, and GSO be switched off): one
			// datagram per header, cut from the train.
			end := min(off+m.Seg, m.N)
			sys.SetIovec(&p.iovs[iv], m.Buf[off:end])
			p.setHdr(h, iv, 1, m.Addr, 0, connected, v6)
			iv++
			if end == m.N {
				i, off = i+1, 0
			} else {
				off = end
			}
		default:
			// Gather following datagrams of the same size to the same
			// address into one GSO train; the last may be shorter.
			seg := m.N
			k := 1
			total := m.N
			sys.SetIovec(&p.iovs[iv], m.Buf[:m.N])
			if gso && seg > 0 {
				for j := i + 1; j < len(msgs) && k < MaxSegments && iv+k < len(p.iovs); j++ {
					n := &msgs[j]
					if (n.Seg > 0 && n.Seg < n.N) || n.N > seg || n.N == 0 || total+n.N > maxGSOBytes {
						break
					}
					if !connected && n.Addr != m.Addr {
						break
					}
					sys.SetIovec(&p.iovs[iv+k], n.Buf[:n.N])
					k++
					total += n.N
					if n.N < seg {
						break // a shorter datagram can only end a train
					}
				}
			}
			if k > 1 {
				p.setHdr(h, iv, k, m.Addr, seg, connected, v6)
			} else {
				p.setHdr(h, iv, 1, m.Addr, 0, connected, v6)
			}
			iv += k
			i, off = i+k, 0
		}
		p.ends[h], p.offs[h] = i, off
		h++
	}
	return h, iv
}

func (p *sendPlan) setHdr(h, iv, niov int, addr netip.AddrPort, seg int, connected, v6 bool) {
	hdr := &p.hdrs[h]
	sys.SetMsgIov(hdr, p.iovs[iv:iv+niov])
	if connected {
		sys.SetMsgName(hdr, nil, 0)
	} else {
		sys.SetMsgName(hdr, &p.names[h], sys.PutSockaddr(&p.names[h], addr, v6))
	}
	if seg > 0 {
		cm := p.cmsg[h*sys.SizeofSegmentCmsg : (h+1)*sys.SizeofSegmentCmsg]
		sys.SetMsgControl(hdr, cm[:sys.PutSegmentCmsg(cm, uint16(seg))])
		p.gsoh[h] = true
	} else {
		sys.SetMsgControl(hdr, nil)
	}
	hdr.Hdr.Flags = 0
}
