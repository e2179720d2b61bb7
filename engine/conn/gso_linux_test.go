package conn

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
	"unsafe"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// hdrWant is what one sendmsg header of a plan should carry.
type hdrWant struct {
	iovs     int // iovecs in the header
	seg      int // UDP_SEGMENT size, 0 for no control message
	end, off int // plan.ends[h], plan.offs[h]
	addr     string
}

// TestSendPlanBuild lays batches out as sendmmsg headers and checks each
// header's iovecs, GSO segment size, destination and the progress it
// records. Besides the table, every layout must cover the batch's bytes in
// order, without gaps or repeats, from (pos, off) to the last header's
// (end, off): that is what the backends resume from after a partial send.
func TestSendPlanBuild(t *testing.T) {
	const (
		a = "192.0.2.1:51820"
		b = "192.0.2.2:51820"
	)
	type in struct {
		n, seg int
		addr   string // a when empty
	}
	rep := func(count, n int) []in {
		r := make([]in, count)
		for i := range r {
			r[i] = in{n: n}
		}
		return r
	}
	gsoTrains := func(count, n, per int) []hdrWant {
		// Trains of per datagrams of n bytes, then the rest.
		var w []hdrWant
		for done := 0; done < count; {
			k := min(per, count-done)
			seg := n
			if k == 1 {
				seg = 0
			}
			done += k
			w = append(w, hdrWant{iovs: k, seg: seg, end: done})
		}
		return w
	}
	perByteLimit := maxGSOBytes / 1400
	if perByteLimit >= MaxSegments {
		t.Fatalf("1400-byte datagrams no longer reach maxGSOBytes (%d) before MaxSegments; pick a larger size", maxGSOBytes)
	}
	tests := []struct {
		name      string
		msgs      []in
		pos, off  int
		nh        int // plan size; 8 when 0
		hmax      int // nh when 0
		gso       bool
		connected bool
		v6        bool
		want      []hdrWant
		wantIov   int // iovecs used; the sum of want's when 0
	}{
		{
			name: "single datagram",
			msgs: []in{{n: 100}},
			gso:  true,
			want: []hdrWant{{iovs: 1, end: 1}},
		},
		{
			name: "equal sizes make one train",
			msgs: rep(5, 100),
			gso:  true,
			want: []hdrWant{{iovs: 5, seg: 100, end: 5}},
		},
		{
			name: "a shorter datagram ends the train",
			msgs: []in{{n: 100}, {n: 100}, {n: 60}, {n: 100}, {n: 100}},
			gso:  true,
			want: []hdrWant{{iovs: 3, seg: 100, end: 3}, {iovs: 2, seg: 100, end: 5}},
		},
		{
			name: "two shorter datagrams: only the first joins",
			msgs: []in{{n: 100}, {n: 60}, {n: 60}},
			gso:  true,
			want: []hdrWant{{iovs: 2, seg: 100, end: 2}, {iovs: 1, end: 3}},
		},
		{
			name: "a longer datagram starts a new header",
			msgs: []in{{n: 100}, {n: 100}, {n: 150}, {n: 150}},
			gso:  true,
			want: []hdrWant{{iovs: 2, seg: 100, end: 2}, {iovs: 2, seg: 150, end: 4}},
		},
		{
			name: "unconnected: a change of address splits the train",
			msgs: []in{{n: 100}, {n: 100}, {n: 100, addr: b}, {n: 100, addr: b}, {n: 100}},
			gso:  true,
			want: []hdrWant{
				{iovs: 2, seg: 100, end: 2, addr: a},
				{iovs: 2, seg: 100, end: 4, addr: b},
				{iovs: 1, end: 5, addr: a},
			},
		},
		{
			name: "unconnected IPv6 socket: IPv4 destinations written v4-mapped",
			msgs: []in{{n: 100}, {n: 100, addr: b}},
			gso:  true,
			v6:   true,
			want: []hdrWant{{iovs: 1, end: 1, addr: a}, {iovs: 1, end: 2, addr: b}},
		},
		{
			name:      "connected: addresses are ignored",
			msgs:      []in{{n: 100}, {n: 100}, {n: 100, addr: b}, {n: 100, addr: b}},
			gso:       true,
			connected: true,
			want:      []hdrWant{{iovs: 4, seg: 100, end: 4}},
		},
		{
			name:      "65 equal datagrams: trains of MaxSegments and 1",
			msgs:      rep(MaxSegments+1, 1000),
			nh:        4,
			gso:       true,
			connected: true,
			want:      gsoTrains(MaxSegments+1, 1000, MaxSegments),
		},
		{
			name:      "byte limit: a train stays within maxGSOBytes",
			msgs:      rep(50, 1400),
			gso:       true,
			connected: true,
			want:      gsoTrains(50, 1400, perByteLimit),
		},
		{
			name: "gso off: one header per datagram",
			msgs: rep(3, 100),
			want: []hdrWant{{iovs: 1, end: 1}, {iovs: 1, end: 2}, {iovs: 1, end: 3}},
		},
		{
			name: "GRO train with gso goes out whole",
			msgs: []in{{n: 1000, seg: 300}},
			gso:  true,
			want: []hdrWant{{iovs: 1, seg: 300, end: 1}},
		},
		{
			name: "GRO train without gso is cut into Seg-sized datagrams",
			msgs: []in{{n: 1000, seg: 300}, {n: 100}},
			want: []hdrWant{
				{iovs: 1, end: 0, off: 300},
				{iovs: 1, end: 0, off: 600},
				{iovs: 1, end: 0, off: 900},
				{iovs: 1, end: 1},
				{iovs: 1, end: 2},
			},
		},
		{
			name: "a GRO train neither joins nor extends a run",
			msgs: []in{{n: 300}, {n: 300}, {n: 900, seg: 300}, {n: 300}, {n: 300}},
			gso:  true,
			want: []hdrWant{
				{iovs: 2, seg: 300, end: 2},
				{iovs: 1, seg: 300, end: 3},
				{iovs: 2, seg: 300, end: 5},
			},
		},
		{
			name: "Seg equal to N is a single datagram",
			msgs: []in{{n: 300, seg: 300}, {n: 300}},
			gso:  true,
			want: []hdrWant{{iovs: 2, seg: 300, end: 2}},
		},
		{
			name: "zero-length datagram alone",
			msgs: []in{{n: 0}},
			gso:  true,
			want: []hdrWant{{iovs: 1, end: 1}},
		},
		{
			name: "zero-length datagrams never join a train",
			msgs: []in{{n: 100}, {n: 0}, {n: 0}, {n: 100}},
			gso:  true,
			want: []hdrWant{{iovs: 1, end: 1}, {iovs: 1, end: 2}, {iovs: 1, end: 3}, {iovs: 1, end: 4}},
		},
		{
			name: "header limit reached mid-batch",
			msgs: []in{{n: 100}, {n: 100}, {n: 200}, {n: 300}, {n: 300}},
			hmax: 2,
			gso:  true,
			want: []hdrWant{{iovs: 2, seg: 100, end: 2}, {iovs: 1, end: 3}},
		},
		{
			name: "header limit reached inside a GRO train",
			msgs: []in{{n: 1000, seg: 300}, {n: 100}},
			hmax: 2,
			want: []hdrWant{{iovs: 1, end: 0, off: 300}, {iovs: 1, end: 0, off: 600}},
		},
		{
			name: "resume inside a GRO train",
			msgs: []in{{n: 1000, seg: 300}, {n: 100}},
			pos:  0, off: 600,
			hmax: 2,
			want: []hdrWant{{iovs: 1, end: 0, off: 900}, {iovs: 1, end: 1}},
		},
		{
			name: "resume after the first messages",
			msgs: []in{{n: 100}, {n: 100}, {n: 200}, {n: 300}, {n: 300}},
			pos:  3,
			gso:  true,
			want: []hdrWant{{iovs: 2, seg: 300, end: 5}},
		},
		{
			name:      "iovecs run out: the last train is cut short",
			msgs:      rep(MaxSegments+4, 100),
			nh:        2,
			gso:       true,
			connected: true,
			want:      []hdrWant{{iovs: MaxSegments, seg: 100, end: MaxSegments}, {iovs: 2, seg: 100, end: MaxSegments + 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := make([]Message, len(tt.msgs))
			for i, m := range tt.msgs {
				addr := a
				if m.addr != "" {
					addr = m.addr
				}
				buf := make([]byte, m.n, m.n+16)
				for j := range buf {
					buf[j] = byte(i*37 + j) // tells messages and offsets apart
				}
				msgs[i] = Message{Buf: buf, N: m.n, Seg: m.seg, Addr: netip.MustParseAddrPort(addr)}
			}
			nh := tt.nh
			if nh == 0 {
				nh = 8
			}
			hmax := tt.hmax
			if hmax == 0 {
				hmax = nh
			}
			p := newSendPlan(nh)
			h, iv := p.build(msgs, tt.pos, tt.off, 0, 0, hmax, tt.gso, tt.connected, tt.v6)
			if h != len(tt.want) {
				t.Errorf("built %d headers, want %d", h, len(tt.want))
			}
			wantIov := tt.wantIov
			if wantIov == 0 {
				for _, w := range tt.want {
					wantIov += w.iovs
				}
			}
			if iv != wantIov {
				t.Errorf("used %d iovecs, want %d", iv, wantIov)
			}
			var got []byte
			next := 0 // the next iovec a header should start at
			for i := range min(h, len(tt.want)) {
				w := tt.want[i]
				hdr := &p.hdrs[i]
				niov := int(hdr.Hdr.Iovlen)
				if niov != w.iovs {
					t.Errorf("header %d: %d iovecs, want %d", i, niov, w.iovs)
				}
				if hdr.Hdr.Iov != &p.iovs[next] {
					t.Errorf("header %d does not start at iovec %d", i, next)
				}
				seg := segmentSize(t, p, i)
				if seg != w.seg {
					t.Errorf("header %d: segment size %d, want %d", i, seg, w.seg)
				}
				if p.ends[i] != w.end || p.offs[i] != w.off {
					t.Errorf("header %d: progress (%d, %d), want (%d, %d)", i, p.ends[i], p.offs[i], w.end, w.off)
				}
				switch {
				case tt.connected && hdr.Hdr.Name != nil:
					t.Errorf("header %d: connected socket given a destination", i)
				case !tt.connected:
					checkName(t, p, i, tt.v6, w.addr, a)
				}
				var total int
				for j := range min(niov, len(p.iovs)-next) {
					v := p.iovs[next+j]
					l := int(v.Len)
					if w.seg > 0 && niov > 1 && (l > w.seg || l < w.seg && j != niov-1) {
						t.Errorf("header %d, iovec %d: %d bytes in a train of %d-byte segments", i, j, l, w.seg)
					}
					total += l
					if l > 0 {
						got = append(got, unsafe.Slice(v.Base, l)...)
					}
				}
				if w.seg > 0 && (total > maxGSOBytes || total > w.seg*MaxSegments) {
					t.Errorf("header %d: %d bytes of %d-byte segments, more than a GSO train can carry", i, total, w.seg)
				}
				next += niov
			}
			// The headers together carry exactly the bytes from where
			// the build started to where the last header says it ended.
			var want []byte
			endM, endOff := tt.pos, tt.off
			if h > 0 {
				endM, endOff = p.ends[h-1], p.offs[h-1]
			}
			for i := tt.pos; i < len(msgs) && i <= endM; i++ {
				from, to := 0, msgs[i].N
				if i == tt.pos {
					from = tt.off
				}
				if i == endM {
					to = endOff
				}
				if from < to {
					want = append(want, msgs[i].Buf[from:to]...)
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("headers carry %d bytes that are not the batch's %d bytes from (%d, %d) to (%d, %d) in order",
					len(got), len(want), tt.pos, tt.off, endM, endOff)
			}
		})
	}
}

// TestSendPlanReuse builds twice into one plan: a header that carried a
// GSO train must not keep its UDP_SEGMENT message when it is reused for a
// single datagram (the kernel would otherwise segment a datagram that is
// not a train).
func TestSendPlanReuse(t *testing.T) {
	addr := netip.MustParseAddrPort("192.0.2.1:51820")
	mk := func(sizes ...int) []Message {
		m := make([]Message, len(sizes))
		for i, n := range sizes {
			m[i] = Message{Buf: make([]byte, n), N: n, Addr: addr}
		}
		return m
	}
	p := newSendPlan(4)
	if h, _ := p.build(mk(100, 100, 100), 0, 0, 0, 0, 4, true, true, false); h != 1 || segmentSize(t, p, 0) != 100 {
		t.Fatalf("first build: %d headers, segment %d; want one train of 100", h, segmentSize(t, p, 0))
	}
	if h, _ := p.build(mk(100, 200), 0, 0, 0, 0, 4, true, true, false); h != 2 {
		t.Fatalf("second build: %d headers, want 2", h)
	}
	for i := range 2 {
		if seg := segmentSize(t, p, i); seg != 0 || p.gsoh[i] {
			t.Errorf("header %d reused: segment %d, gsoh %v; want none", i, seg, p.gsoh[i])
		}
	}
}

// segmentSize returns the UDP_SEGMENT size header h of p carries, 0 if it
// carries no control message. It checks that the control message is the
// one sys.PutSegmentCmsg writes and that gsoh agrees.
func segmentSize(t *testing.T, p sendPlan, h int) int {
	t.Helper()
	hdr := &p.hdrs[h]
	cl := int(hdr.Hdr.Controllen)
	if hdr.Hdr.Control == nil || cl == 0 {
		if p.gsoh[h] {
			t.Errorf("header %d: gsoh set without a control message", h)
		}
		return 0
	}
	if !p.gsoh[h] {
		t.Errorf("header %d: control message without gsoh", h)
	}
	ref := make([]byte, sys.SizeofSegmentCmsg)
	ref = ref[:sys.PutSegmentCmsg(ref, 1)]
	want, err := syscall.ParseSocketControlMessage(ref)
	if err != nil || len(want) != 1 {
		t.Fatalf("parsing a reference UDP_SEGMENT message: %v", err)
	}
	got, err := syscall.ParseSocketControlMessage(unsafe.Slice(hdr.Hdr.Control, cl))
	if err != nil {
		t.Fatalf("header %d: parsing its control message: %v", h, err)
	}
	if len(got) != 1 || got[0].Header.Level != want[0].Header.Level || got[0].Header.Type != want[0].Header.Type || len(got[0].Data) < 2 {
		t.Fatalf("header %d: control message %+v is not one UDP_SEGMENT", h, got)
	}
	return int(binary.NativeEndian.Uint16(got[0].Data))
}

// checkName checks the destination of header h of p on an unconnected
// socket.
func checkName(t *testing.T, p sendPlan, h int, v6 bool, want, def string) {
	t.Helper()
	if want == "" {
		want = def
	}
	hdr := &p.hdrs[h]
	if hdr.Hdr.Name != (*byte)(unsafe.Pointer(&p.names[h])) {
		t.Errorf("header %d: name does not point at its own sockaddr", h)
		return
	}
	wantLen := 16 // sockaddr_in
	if v6 {
		wantLen = sys.SizeofSockaddr
	}
	if int(hdr.Hdr.Namelen) != wantLen {
		t.Errorf("header %d: name length %d, want %d", h, hdr.Hdr.Namelen, wantLen)
	}
	if got := sys.ParseSockaddr(&p.names[h]); got != netip.MustParseAddrPort(want) {
		t.Errorf("header %d: destination %v, want %v", h, got, want)
	}
}
