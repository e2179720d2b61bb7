package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// maxUDP is the largest UDP payload over IPv4: 65535 minus the IPv4 and
// UDP headers.
const maxUDP = 65507

// sweepSizes returns the datagram sizes the bad-input sweep sends: every
// size up to 2048 (the WireGuard message sizes, the minimum transport
// message, IPv6's minimum MTU and Ethernet's), every size within 48 bytes
// of the usual MTUs, of the powers of two and of the largest datagram,
// and a step of 97 bytes in between; every size from 0 to 65507 when
// ENGARDE_SWEEP=full.
func sweepSizes() []int {
	if os.Getenv("ENGARDE_SWEEP") == "full" {
		s := make([]int, maxUDP+1)
		for i := range s {
			s[i] = i
		}
		return s
	}
	var s []int
	for i := 0; i <= 2048; i++ {
		s = append(s, i)
	}
	for i := 2049; i <= maxUDP; i += 97 {
		s = append(s, i)
	}
	for _, c := range []int{4096, 8192, 9000, 16384, 32768, 65000, 65487, 65535 - 8 - 40} {
		for i := c - 48; i <= c+48; i++ {
			s = append(s, i)
		}
	}
	for i := maxUDP - 48; i <= maxUDP; i++ {
		s = append(s, i)
	}
	slices.Sort(s)
	s = slices.Compact(s)
	for len(s) > 0 && s[len(s)-1] > maxUDP {
		s = s[:len(s)-1]
	}
	return s
}

// sweepRig is a client and a server over real loopback sockets, one link,
// and the WireGuard stand-ins on either side, in session.
type sweepRig struct {
	t              *testing.T
	client         *Client
	server         *Server
	wgC, wgS       conn.Conn      // client-side and server-side stand-ins
	endpoint       netip.AddrPort // the session's socket, as wgS sees it
	seq            uint64
	rx             []conn.Message
	bufSize        int
	delivered, cnt int // datagrams delivered intact, counted and dropped
}

// newSweepRig starts the rig on be, with stand-ins on tools (a
// conn.ReadWaiter's backend).
func newSweepRig(t *testing.T, be, tools conn.Backend, opts Options) *sweepRig {
	conntest.CheckGoroutines(t)
	r := &sweepRig{t: t, bufSize: opts.BufferSize}
	open := func() conn.Conn {
		c, err := tools.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{BatchSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	r.wgC, r.wgS = open(), open()
	r.rx = make([]conn.Message, 8)
	for i := range r.rx {
		r.rx[i].Buf = make([]byte, 65536)
	}
	opts.Backend = conntest.NoDevice(be)
	srv, err := NewServer(ServerConfig{Options: opts, ListenAddr: "127.0.0.1:0", DstAddr: r.wgS.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ifs := &testIfaces{ch: make(chan struct{}, 1), ifs: []Iface{{Name: "a", Index: 101, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}}}
	cl, err := NewClient(ClientConfig{Options: opts, ListenAddr: "127.0.0.1:0", DstAddr: srv.ListenAddr().String(), Interfaces: ifs.list, Watch: ifs.watcher})
	if err != nil {
		t.Fatal(err)
	}
	r.client, r.server = cl, srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { srv.Run(ctx); done <- struct{}{} }()
	go func() { cl.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	// The handshake: an initiation until the server-side stand-in has it,
	// then the response back.
	init := wgInitiation(testClientIndex, 1)
	for try := 0; ; try++ {
		if try == 50 {
			t.Fatal("no initiation through the tunnel")
		}
		r.write(r.wgC, init, cl.ListenAddr())
		if m, ok := r.read(r.wgS, 100*time.Millisecond, func(m *conn.Message) bool { return m.N == wgInitiationLen }); ok {
			r.endpoint = m.Addr
			break
		}
	}
	resp := wgResponse(testServerIndex, testClientIndex)
	r.write(r.wgS, resp, r.endpoint)
	if _, ok := r.read(r.wgC, 2*time.Second, func(m *conn.Message) bool { return m.N == wgResponseLen }); !ok {
		t.Fatal("no response through the tunnel")
	}
	return r
}

func (r *sweepRig) write(c conn.Conn, b []byte, to netip.AddrPort) {
	r.t.Helper()
	if _, err := c.WriteBatch([]conn.Message{{Buf: b, N: len(b), Addr: to}}); err != nil {
		r.t.Fatalf("sending %d bytes: %v", len(b), err)
	}
}

// read returns the first datagram on c that match accepts, waiting up to
// d; it hands every other one to r.other.
func (r *sweepRig) read(c conn.Conn, d time.Duration, match func(*conn.Message) bool) (conn.Message, bool) {
	deadline := time.Now().Add(d)
	rw := c.(conn.ReadWaiter)
	for time.Now().Before(deadline) {
		n, err := rw.TryReadBatch(r.rx)
		if err == conn.ErrWouldBlock {
			time.Sleep(20 * time.Microsecond)
			continue
		}
		if err != nil {
			r.t.Fatal(err)
		}
		for i := range n {
			if match(&r.rx[i]) {
				return r.rx[i], true
			}
		}
	}
	return conn.Message{}, false
}

// oversize sums the counters of datagrams larger than a buffer.
func (r *sweepRig) oversize() uint64 {
	n := r.client.WireGuardStats.Oversize.Load() + r.server.ListenStats.Oversize.Load() + r.server.UpstreamStats.Oversize.Load()
	for _, l := range r.client.Links() {
		if l.Stats != nil {
			n += l.Stats.Oversize.Load()
		}
	}
	for _, ss := range r.server.Sessions() {
		n += ss.Stats.Oversize.Load()
		for _, a := range ss.Addrs {
			n += a.Stats.Oversize.Load()
		}
	}
	return n
}

// drops sums every counter of a datagram dropped on either side.
func (r *sweepRig) drops() uint64 {
	var n uint64
	add := func(s *Stats) { c := s.Read(); n += c.Drops() + c.Oversize + c.RxErrors }
	add(&r.client.WireGuardStats)
	n += r.client.NoLink.Load() + r.client.Foreign.Load() + r.client.Duplicates.Load()
	for _, l := range r.client.Links() {
		if l.Stats != nil {
			add(l.Stats)
		}
	}
	s := r.server
	add(&s.ListenStats)
	add(&s.UpstreamStats)
	n += s.NoPeer.Load() + s.NotWireGuard.Load() + s.NotMember.Load() + s.Foreign.Load() + s.Unrouted.Load() + s.Duplicates.Load()
	for _, ss := range s.Sessions() {
		add(ss.Stats)
		for _, a := range ss.Addrs {
			add(a.Stats)
		}
	}
	return n
}

// datagram returns a datagram of n bytes: from 16 bytes on, a WireGuard
// transport header addressed to index with the next counter, then a
// pattern that depends on n; shorter, the pattern alone.
func (r *sweepRig) datagram(n int, index uint32) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + n)
	}
	if n > 0 {
		b[0] = wgTransportType
	}
	if n >= 16 {
		b[1], b[2], b[3] = 0, 0, 0
		binary.LittleEndian.PutUint32(b[4:], index)
		r.seq++
		binary.LittleEndian.PutUint64(b[8:], r.seq)
	}
	return b
}

// one sends a datagram of size n from one stand-in to the other, then a
// known-good one: the first must arrive intact or be counted as dropped,
// and the second must arrive byte for byte.
func (r *sweepRig) one(n int, up bool) {
	r.t.Helper()
	from, to, dst, index := r.wgC, r.wgS, r.client.ListenAddr(), uint32(testServerIndex)
	if !up {
		from, to, dst, index = r.wgS, r.wgC, r.endpoint, testClientIndex
	}
	dir := map[bool]string{true: "to the server", false: "to the client"}[up]
	before, overBefore := r.drops(), r.oversize()
	d, good := r.datagram(n, index), r.datagram(100, index)
	r.write(from, d, dst)
	r.write(from, good, dst)
	got := 0
	_, ok := r.read(to, 2*time.Second, func(m *conn.Message) bool {
		b := m.Buf[:m.N]
		switch {
		case bytes.Equal(b, good):
			return true
		case bytes.Equal(b, d) && !m.Truncated:
			got++
		default:
			r.t.Fatalf("%d bytes %s: received %d bytes (truncated %v) that are neither it nor the next", n, dir, m.N, m.Truncated)
		}
		return false
	})
	if !ok {
		r.t.Fatalf("after %d bytes %s, the next datagram did not arrive", n, dir)
	}
	dropped := r.drops() - before
	switch {
	case got > 1:
		r.t.Fatalf("%d bytes %s arrived %d times", n, dir, got)
	case got == 1:
		r.delivered++
		if n > r.bufSize {
			r.t.Fatalf("%d bytes %s delivered with %d-byte buffers", n, dir, r.bufSize)
		}
	case dropped == 0:
		r.t.Fatalf("%d bytes %s neither delivered nor counted", n, dir)
	default:
		r.cnt++
		if n >= wgTransportMinLen && n <= r.bufSize {
			r.t.Fatalf("%d bytes %s: a transport message that fits was dropped", n, dir)
		}
		if n > r.bufSize && r.oversize() == overBefore {
			r.t.Fatalf("%d bytes %s, larger than a %d-byte buffer, not counted as oversize", n, dir, r.bufSize)
		}
	}
}

// TestEveryDatagramSize sends datagrams of every size (sweepSizes) through
// the client and the server, both ways, over real loopback sockets with
// each backend, with 64 KiB buffers (GRO on) and with 2048-byte ones (so
// that larger datagrams are truncated on receive): each is delivered
// intact or counted and dropped, and the datagram after it always arrives
// byte for byte.
func TestEveryDatagramSize(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the datagram size sweep in -short mode")
	}
	// The stand-ins are the test's tools, on mmsg whatever the backend
	// under test: their reads must not wait forever.
	tools, err := conn.Open("mmsg", nil)
	if err != nil {
		t.Skipf("skipping: the stand-ins need the mmsg backend: %v", err)
	}
	sizes := sweepSizes()
	for _, be := range conntest.All(t) {
		for _, bs := range []int{65536, 2048} {
			t.Run(fmt.Sprintf("%s/buffers=%d", be.Name(), bs), func(t *testing.T) {
				r := newSweepRig(t, be, tools, Options{BufferSize: bs, Log: testLogger(t)})
				start := time.Now()
				for _, n := range sizes {
					r.one(n, true)
					r.one(n, false)
				}
				t.Logf("%d sizes from 0 to %d both ways in %v: %d delivered, %d counted and dropped", len(sizes), sizes[len(sizes)-1], time.Since(start).Round(time.Millisecond), r.delivered, r.cnt)
			})
		}
	}
}

// train returns a buffer of n bytes laid out as a train of seg-byte
// datagrams (the last shorter) when 0 < seg < n, each a transport message
// to index from 16 bytes on, and the datagrams it holds; otherwise one
// datagram of n bytes.
func (r *sweepRig) train(n, seg int, index uint32) ([]byte, [][]byte) {
	if seg <= 0 || seg >= n {
		d := r.datagram(n, index)
		return d, [][]byte{d}
	}
	var b []byte
	var ds [][]byte
	for off := 0; off < n; off += seg {
		d := r.datagram(min(seg, n-off), index)
		b = append(b, d...)
		ds = append(ds, d)
	}
	return b, ds
}

// TestOddTrains hands the client and the server trains as a receive may
// report them: a segment size that does not divide the payload (the last
// datagram short), zero, negative, one byte, equal to or larger than the
// payload, absurdly large. Each datagram of a train is delivered intact or
// counted and dropped; a segment size that makes no train leaves one
// datagram; nothing crashes, and the datagram after each train arrives
// byte for byte. It runs on the fake network, which delivers a Message's
// Seg as given, as no kernel would.
func TestOddTrains(t *testing.T) {
	fn := conntest.NewNet()
	r := newSweepRig(t, fn, fn, Options{Log: testLogger(t)})
	trains := 0
	defer func() {
		t.Logf("%d trains: %d datagrams delivered, %d counted and dropped", trains, r.delivered, r.cnt)
	}()
	for _, n := range []int{0, 1, 31, 32, 100, 1000, 4000, 65507} {
		for _, seg := range []int{0, -1, -65536, 1, 7, 16, 31, 32, 33, 100, 148, 999, n - 1, n, n + 1, 1 << 20, 1<<31 - 1} {
			for _, up := range []bool{true, false} {
				from, to, dst, index := r.wgC, r.wgS, r.client.ListenAddr(), uint32(testServerIndex)
				if !up {
					from, to, dst, index = r.wgS, r.wgC, r.endpoint, testClientIndex
				}
				before := r.drops()
				b, want := r.train(n, seg, index)
				good := r.datagram(100, index)
				if _, err := from.WriteBatch([]conn.Message{{Buf: b, N: len(b), Seg: seg, Addr: dst}, {Buf: good, N: len(good), Addr: dst}}); err != nil {
					t.Fatal(err)
				}
				trains++
				next := 0 // want[:next] arrived or were passed over
				got := 0
				_, ok := r.read(to, 2*time.Second, func(m *conn.Message) bool {
					parts := [][]byte{m.Buf[:m.N]}
					if m.Seg > 0 && m.Seg < m.N {
						parts = parts[:0]
						for off := 0; off < m.N; off += m.Seg {
							parts = append(parts, m.Buf[off:min(off+m.Seg, m.N)])
						}
					}
					for _, p := range parts {
						if bytes.Equal(p, good) {
							return true
						}
						k := slices.IndexFunc(want[next:], func(w []byte) bool { return bytes.Equal(w, p) })
						if k < 0 {
							t.Fatalf("train of %d bytes, segment %d (up %v): received %d bytes that are none of its datagrams, in order", n, seg, up, len(p))
						}
						next += k + 1
						got++
					}
					return false
				})
				if !ok {
					t.Fatalf("train of %d bytes, segment %d (up %v): the next datagram did not arrive", n, seg, up)
				}
				r.delivered += got
				r.cnt += len(want) - got
				if got < len(want) && r.drops() == before {
					t.Fatalf("train of %d bytes, segment %d (up %v): %d of %d datagrams arrived, the others were not counted", n, seg, up, got, len(want))
				}
			}
		}
	}
}

// FuzzTrainCopy gives the duplicate filter any buffer as a train of any
// segment size, as a receive hands it on: it must not read out of the
// buffer, must never call a first sight a copy, and may call a train a copy
// on its second sight only when every datagram in it is a transport
// message of a session it judges.
func FuzzTrainCopy(f *testing.F) {
	f.Add(append(wgData(7, 1, 64), wgData(7, 2, 64)...), 64)
	f.Add(append(wgData(7, 1, 64), wgData(7, 2, 40)...), 64) // short last
	f.Add(wgData(7, 1, 100), 0)
	f.Add(wgData(7, 1, 100), -1)
	f.Add(wgData(7, 1, 100), 1)
	f.Add(wgData(9, 1, 100), 33)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, seg int) {
		ws := newWindows(7)
		m := conn.Message{Buf: b, N: len(b), Seg: seg}
		parts := [][]byte{b}
		if seg > 0 && seg < len(b) {
			parts = parts[:0]
			for off := 0; off < len(b); off += seg {
				parts = append(parts, b[off:min(off+seg, len(b))])
			}
		}
		if m.Count() != len(parts) {
			t.Fatalf("Count %d, %d datagrams", m.Count(), len(parts))
		}
		now := nanotime()
		if ws.copy(&m, 0, now) {
			t.Fatal("a first sight judged a copy")
		}
		if !ws.copy(&m, 1, now+1) {
			return
		}
		for i, p := range parts {
			if idx, _, ok := wgTransport(p); !ok || idx != 7 {
				t.Fatalf("judged a copy, but datagram %d of %d is not a transport message of index 7", i, len(parts))
			}
		}
	})
}
