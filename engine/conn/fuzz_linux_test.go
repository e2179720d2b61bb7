package conn

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"
)

// FuzzSendPlan lays out arbitrary batches as the Linux backends send them:
// datagrams of any size from 0 to 65535 bytes and received trains with any
// segment size (zero, negative, larger than the payload, not dividing it,
// so small that the train has more than MaxSegments datagrams), to one or
// two destinations, with and without GSO, into a plan of few headers so
// that batches take several rounds. Whatever the input, the datagrams the
// headers make (a GSO header's bytes cut at its segment size) must be
// exactly the batch's datagrams in order, every round must make progress,
// and no GSO header may carry more than the kernel takes (MaxSegments
// segments, maxGSOBytes bytes).
func FuzzSendPlan(f *testing.F) {
	enc := func(ms ...[3]int) []byte {
		var b []byte
		for _, m := range ms {
			b = binary.BigEndian.AppendUint16(b, uint16(m[0]))
			b = binary.BigEndian.AppendUint16(b, uint16(int16(m[1])))
			b = append(b, byte(m[2]))
		}
		return b
	}
	f.Add(enc([3]int{1400, 0, 0}, [3]int{1400, 0, 0}, [3]int{700, 0, 0}), true, true)
	f.Add(enc([3]int{4000, 1000, 0}, [3]int{3500, 1000, 0}), true, false)                // a train with a short last segment
	f.Add(enc([3]int{60000, 1, 0}), true, true)                                          // more segments than GSO takes
	f.Add(enc([3]int{65535, 1472, 0}, [3]int{100, -5, 1}, [3]int{0, 0, 0}), true, false) // over maxGSOBytes; negative seg; empty
	f.Add(enc([3]int{148, 200, 0}, [3]int{92, 92, 1}), false, true)                      // seg >= N: no train
	f.Fuzz(func(t *testing.T, desc []byte, gso, connected bool) {
		addrs := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820"), netip.MustParseAddrPort("192.0.2.2:51820")}
		var msgs []Message
		var want [][]byte // the datagrams, in order
		total := 0
		for i := 0; len(desc) >= 5 && i < 200; i++ {
			n := int(binary.BigEndian.Uint16(desc))
			seg := int(int16(binary.BigEndian.Uint16(desc[2:])))
			if total += n; total > 1<<18 || len(want) > 1<<14 {
				break // bounded work per input
			}
			to := addrs[desc[4]&1]
			desc = desc[5:]
			b := make([]byte, n)
			for j := range b {
				b[j] = byte(i*31 + j)
			}
			m := Message{Buf: b, N: n, Seg: seg, Addr: to}
			if rs := trainSeg(seg, n); rs != 0 && (rs != seg || rs <= 0 || rs >= n) || rs == 0 && seg > 0 && seg < n {
				t.Fatalf("trainSeg(%d, %d) = %d", seg, n, rs)
			}
			count := 0
			if seg > 0 && seg < n {
				for off := 0; off < n; off += seg {
					want = append(want, b[off:min(off+seg, n)])
					count++
				}
			} else {
				want = append(want, b)
				count = 1
			}
			if m.Count() != count {
				t.Fatalf("Count %d for %d bytes of %d-byte segments, want %d", m.Count(), n, seg, count)
			}
			msgs = append(msgs, m)
		}
		p := newSendPlan(8)
		var got [][]byte
		pos, off := 0, 0
		for rounds := 0; pos < len(msgs); rounds++ {
			if rounds > 100000 {
				t.Fatal("no end to the rounds")
			}
			h, _ := p.build(msgs, pos, off, 0, 0, len(p.hdrs), gso, connected, false)
			if h == 0 {
				t.Fatalf("no header built from (%d, %d) of %d messages", pos, off, len(msgs))
			}
			for i := range h {
				hdr := &p.hdrs[i]
				var data []byte
				for _, v := range unsafe.Slice(hdr.Hdr.Iov, hdr.Hdr.Iovlen) {
					if v.Len > 0 {
						data = append(data, unsafe.Slice(v.Base, v.Len)...)
					}
				}
				if !connected {
					if dst := p.names[i]; hdr.Hdr.Name == nil || dst.Family == 0 {
						t.Fatalf("header %d of an unconnected socket without a destination", i)
					}
				}
				if !p.gsoh[i] {
					got = append(got, data)
					continue
				}
				if !gso {
					t.Fatalf("header %d carries UDP_SEGMENT with GSO off", i)
				}
				seg := segmentSize(t, p, i)
				if seg <= 0 || len(data) > maxGSOBytes || (len(data)+seg-1)/seg > MaxSegments {
					t.Fatalf("header %d: %d bytes of %d-byte segments: more than the kernel takes", i, len(data), seg)
				}
				for o := 0; o < len(data); o += seg {
					got = append(got, data[o:min(o+seg, len(data))])
				}
			}
			npos, noff := p.ends[h-1], p.offs[h-1]
			if npos < pos || npos == pos && noff <= off {
				t.Fatalf("no progress: (%d, %d) to (%d, %d)", pos, off, npos, noff)
			}
			pos, off = npos, noff
		}
		if len(got) != len(want) {
			t.Fatalf("%d datagrams sent, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("datagram %d: %d bytes, not the %d expected", i, len(got[i]), len(want[i]))
			}
		}
	})
}
