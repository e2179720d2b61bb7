package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
)

// batchOf returns n datagrams of size bytes, from one source.
func batchOf(n, size int) []conn.Message {
	msgs := make([]conn.Message, n)
	for i := range msgs {
		msgs[i] = conn.Message{Buf: make([]byte, size), N: size, Addr: netip.MustParseAddrPort("192.0.2.1:4000")}
	}
	return msgs
}

// number writes headers addressed to index and numbered from seq into
// msgs.
func number(msgs []conn.Message, index uint32, seq uint64, sent int64) {
	for i := range msgs {
		Put(msgs[i].Buf, Header{Index: index, Seq: seq + uint64(i), Sent: sent})
	}
}

// newTestSink returns a Sink over a fake socket, for calling handle.
func newTestSink(mode Mode) *Sink {
	return &Sink{conn: newRecordConn(), mode: mode, runs: map[uint32]*sinkRun{}}
}

// initiation returns a datagram holding an initiation from index g.
func initiation(g uint32) conn.Message {
	m := batchOf(1, DefaultSinkBufSize)[0]
	putInitiation(m.Buf, g)
	m.N = initiationLen
	return m
}

// handshake gives s an initiation from g and returns the sink's index from
// the response, checking its shape.
func handshake(t testing.TB, s *Sink, g uint32) uint32 {
	t.Helper()
	return answered(t, s, initiation(g))
}

// answered gives s the initiation m and returns the sink's index from the
// response, checking its shape.
func answered(t testing.TB, s *Sink, m conn.Message) uint32 {
	t.Helper()
	g, _ := parseInitiation(m.Buf[:m.N])
	msgs := []conn.Message{m}
	if out := s.handle(msgs, nil); len(out) != 0 || len(s.replies) != 1 {
		t.Fatalf("initiation answered with %d echoes and %d responses, want 0 and 1", len(out), len(s.replies))
	}
	r := s.replies[0]
	b := r.Buf[:r.N]
	idx, to, ok := parseResponse(b)
	if !ok || len(b) != 92 || b[0] != 2 || b[1]|b[2]|b[3] != 0 || to != g || idx == 0 || r.Addr != msgs[0].Addr {
		t.Fatalf("response %x to %v, want 92 bytes, type 2, a nonzero index and %08x at 8, to %v", b, r.Addr, g, msgs[0].Addr)
	}
	return idx
}

// TestSinkHandle checks the sink's per-batch accounting, mode by mode, on a
// batch holding a foreign datagram, a truncated one, and copies, and that
// every echo carries the generator's index where the datagram carried the
// sink's.
func TestSinkHandle(t *testing.T) {
	const g = 0x600dcafe
	for _, tc := range []struct {
		mode  Mode
		echos int
	}{{ModeFirst, 3}, {ModeAll, 5}, {ModeCount, 0}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			s := newTestSink(tc.mode)
			idx := handshake(t, s, g)
			msgs := batchOf(7, 100)
			number(msgs[:3], idx, 0, 0)  // 0 1 2
			number(msgs[3:4], idx, 1, 0) // 1 again
			number(msgs[4:5], idx, 0, 0) // 0 again
			copy(msgs[5].Buf, "not ours")
			number(msgs[6:], idx, 9, 0)
			msgs[6].Truncated = true
			out := s.handle(msgs, nil)
			st := s.Stats()
			if len(out) != tc.echos || len(s.replies) != 0 || st.Received != 5 || st.Unique != 3 || st.Duplicates != 2 || st.Foreign != 1 || st.Truncated != 1 || st.Runs != 1 {
				t.Errorf("%d echoes, %d responses, stats %+v; want %d echoes, no response, 5 received, 3 unique, 2 duplicates, 1 foreign, 1 truncated, 1 run",
					len(out), len(s.replies), st, tc.echos)
			}
			for _, m := range out {
				h, err := Decode(m.Buf[:m.N])
				if err != nil || h.Index != g || m.N != 100 {
					t.Errorf("echo %x: %+v, %v; want %d bytes with the generator's index %08x", m.Buf[:HeaderLen], h, err, 100, g)
				}
			}
		})
	}
}

// TestSinkHandshake checks the sink's side of the handshake: one response
// for each initiation received, the same one for copies of an initiation
// (no more: a copy must not make the sink send more than it received),
// a new index for a new initiation, and no answer to what is only nearly
// an initiation.
func TestSinkHandshake(t *testing.T) {
	for _, mode := range []Mode{ModeFirst, ModeAll, ModeCount} {
		t.Run(mode.String(), func(t *testing.T) {
			s := newTestSink(mode)
			first := initiation(7)
			in := bytes.Clone(first.Buf[:initiationLen])
			idx := answered(t, s, first)
			resp := bytes.Clone(s.replies[0].Buf[:responseLen])

			// Three copies in one batch, from two links, and one later.
			msgs := batchOf(3, DefaultSinkBufSize)
			for i := range msgs {
				msgs[i].N = copy(msgs[i].Buf, in)
			}
			msgs[2].Addr = netip.MustParseAddrPort("198.51.100.7:4000")
			s.handle(msgs, nil)
			if len(s.replies) != 3 {
				t.Fatalf("%d responses to 3 copies, want 3", len(s.replies))
			}
			for i, r := range s.replies {
				if !bytes.Equal(r.Buf[:r.N], resp) || r.Addr != msgs[i].Addr {
					t.Errorf("response %d to a copy: %x to %v, want %x to %v", i, r.Buf[:r.N], r.Addr, resp, msgs[i].Addr)
				}
			}

			// A new initiation from the same index (WireGuard's next
			// handshake) is a new session.
			if idx2 := handshake(t, s, 7); idx2 == idx {
				t.Errorf("a new initiation got the old session's index %08x", idx)
			}

			// Nearly initiations: one byte short or long, a reserved
			// byte set; and a response, which a sink never expects.
			near := batchOf(4, DefaultSinkBufSize)
			for i := range near {
				near[i].N = copy(near[i].Buf, in)
			}
			near[0].N--
			near[1].N++
			near[2].Buf[2] = 1
			putResponse(near[3].Buf, 9, 7)
			near[3].N = responseLen
			if out := s.handle(near, nil); len(out)+len(s.replies) != 0 {
				t.Errorf("%d echoes and %d responses to malformed initiations", len(out), len(s.replies))
			}
			st := s.Stats()
			if st.Initiations != 5 || st.Handshakes != 2 || st.Foreign != 4 || st.Runs != 0 || st.Received != 0 {
				t.Errorf("stats %+v, want 5 initiations, 2 handshakes, 4 foreign, no run, nothing received", st)
			}
		})
	}
}

// TestSinkUnknownIndex checks that data for a session the sink never
// opened, or carrying the generator's index instead of the sink's, is
// counted as foreign and not echoed: the sink must not answer what it
// cannot attribute to a handshake.
func TestSinkUnknownIndex(t *testing.T) {
	const g = 0x0a0a0a0a
	for _, tc := range []struct {
		name  string
		index func(idx uint32) uint32
	}{
		{"unknown", func(idx uint32) uint32 { return idx ^ 1 }},
		{"generator's index", func(uint32) uint32 { return g }},
		{"zero", func(uint32) uint32 { return 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSink(ModeAll)
			idx := handshake(t, s, g)
			msgs := batchOf(4, 200)
			number(msgs, tc.index(idx), 0, 0)
			out := s.handle(msgs, nil)
			if st := s.Stats(); len(out) != 0 || st.Foreign != 4 || st.Received != 0 || st.Runs != 0 {
				t.Errorf("%d echoes, stats %+v; want none, 4 foreign", len(out), st)
			}
		})
	}
	t.Run("no handshake", func(t *testing.T) {
		s := newTestSink(ModeAll)
		msgs := batchOf(4, 200)
		number(msgs, 1, 0, 0)
		out := s.handle(msgs, nil)
		if st := s.Stats(); len(out) != 0 || st.Foreign != 4 || st.Runs != 0 {
			t.Errorf("%d echoes, stats %+v; want none, 4 foreign", len(out), st)
		}
	})
}

// TestSinkTwoRuns checks that the sink tells runs apart by the index the
// handshake gave them, not by their source: two sessions from one address
// (two generators behind one engarde server) send the same sequence
// numbers, and each gets its own echoes, carrying its own index.
func TestSinkTwoRuns(t *testing.T) {
	s := newTestSink(ModeFirst)
	a, b := handshake(t, s, 0xaaaa), handshake(t, s, 0xbbbb)
	if a == b {
		t.Fatalf("two handshakes got the same index %08x", a)
	}
	msgs := batchOf(6, 64)
	for i := range 3 {
		number(msgs[2*i:2*i+1], a, uint64(i), 0)
		number(msgs[2*i+1:2*i+2], b, uint64(i), 0)
	}
	out := s.handle(msgs, nil)
	if st := s.Stats(); len(out) != 6 || st.Runs != 2 || st.Unique != 6 || st.Duplicates != 0 {
		t.Fatalf("%d echoes, stats %+v; want 6 echoes, 2 runs, 6 unique", len(out), st)
	}
	for i, m := range out {
		want := uint32(0xaaaa)
		if i%2 == 1 {
			want = 0xbbbb
		}
		if h, _ := Decode(m.Buf[:m.N]); h.Index != want || h.Seq != uint64(i/2) {
			t.Errorf("echo %d: %+v, want index %08x, seq %d", i, h, want, i/2)
		}
	}
}

// TestSinkRunEviction checks that a sink forgets the least recently seen
// session once it tracks maxSinkRuns, preferring those that never carried
// data, and keeps deduplicating the others; data for a forgotten session
// is foreign.
func TestSinkRunEviction(t *testing.T) {
	s := newTestSink(ModeFirst)
	msgs := batchOf(1, HeaderLen)
	var idx []uint32
	for g := range uint32(maxSinkRuns) {
		idx = append(idx, handshake(t, s, g+1))
		number(msgs, idx[g], 0, 0)
		s.handle(msgs, nil)
	}
	idle := handshake(t, s, 100) // evicts the first, the least recently seen
	if len(s.runs) != maxSinkRuns || s.runs[idx[0]] != nil {
		t.Fatalf("%d sessions tracked, the first kept: %v", len(s.runs), s.runs[idx[0]] != nil)
	}
	handshake(t, s, 101) // evicts idle, which carried no data
	if s.runs[idle] != nil || s.runs[idx[1]] == nil {
		t.Fatalf("the session without data kept, or the oldest with data evicted")
	}
	number(msgs, idx[maxSinkRuns-1], 0, 0)
	if out := s.handle(msgs, nil); len(out) != 0 {
		t.Errorf("a duplicate of a tracked run was echoed")
	}
	number(msgs, idx[0], 1, 0)
	if out := s.handle(msgs, nil); len(out) != 0 {
		t.Errorf("data for a forgotten session was echoed")
	}
	if st := s.Stats(); st.Runs != maxSinkRuns || st.Duplicates != 1 || st.Foreign != 1 || st.Handshakes != maxSinkRuns+2 {
		t.Errorf("stats %+v, want %d runs, 1 duplicate, 1 foreign, %d handshakes", st, maxSinkRuns, maxSinkRuns+2)
	}
}

// TestHotPathAllocs checks that the sink's and the generator's per-batch
// work on data allocates nothing once the handshake is done.
func TestHotPathAllocs(t *testing.T) {
	s := newTestSink(ModeFirst)
	idx := handshake(t, s, 3)
	msgs := batchOf(64, 1400)
	out := make([]conn.Message, 0, len(msgs))
	var seq uint64
	if n := testing.AllocsPerRun(100, func() {
		number(msgs, idx, seq, 0)
		out = s.handle(msgs, out[:0])
		seq += uint64(len(msgs))
	}); n != 0 || len(out) != len(msgs) {
		t.Errorf("Sink.handle: %v allocations per batch, %d echoes of %d", n, len(out), len(msgs))
	}

	g := &gen{o: Options{SeriesInterval: time.Hour}, established: true, local: 3, tr: NewTracker(1 << 20)}
	g.issued.Store(1 << 20)
	seq = 0
	if n := testing.AllocsPerRun(100, func() {
		number(msgs, 3, seq, 0)
		g.arrived(msgs, 50_000)
		seq += uint64(len(msgs))
	}); n != 0 || g.foreign != 0 {
		t.Errorf("gen.arrived: %v allocations per batch, %d foreign", n, g.foreign)
	}
}

// BenchmarkSinkHandle measures the sink's per-batch work, without sockets.
func BenchmarkSinkHandle(b *testing.B) {
	const batch, window = 64, 1 << 20
	s := newTestSink(ModeFirst)
	idx := handshake(b, s, 1)
	msgs := batchOf(batch, 1400)
	out := make([]conn.Message, 0, batch)
	number(msgs, idx, 0, 0)
	s.handle(msgs, out) // makes the run current
	s.cur.t = NewTracker(window)
	b.ReportAllocs()
	b.SetBytes(batch * 1400)
	var seq uint64
	for b.Loop() {
		if seq+batch > window { // start over instead of growing the bitmap
			seq = 0
			clear(s.cur.t.bits)
			s.cur.t.highest = 0
		}
		number(msgs, idx, seq, 0)
		out = s.handle(msgs, out[:0])
		seq += batch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/pkt")
}

// BenchmarkGenArrived measures the generator's per-batch receive work,
// without sockets.
func BenchmarkGenArrived(b *testing.B) {
	const batch, window = 64, 1 << 20
	g := &gen{o: Options{SeriesInterval: time.Hour}, established: true, local: 1, tr: NewTracker(window)}
	g.issued.Store(window)
	msgs := batchOf(batch, 1400)
	b.ReportAllocs()
	b.SetBytes(batch * 1400)
	var seq uint64
	for b.Loop() {
		if seq+batch > window {
			seq = 0
			clear(g.tr.bits)
			g.tr.highest = 0
		}
		number(msgs, 1, seq, 0)
		g.arrived(msgs, 50_000)
		seq += batch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/pkt")
}

// BenchmarkLoopback runs the generator flat out against an in-process sink
// over loopback, 20 000 packets per op: the socket baseline under the
// tunnel's numbers.
func BenchmarkLoopback(b *testing.B) {
	const count = 20_000
	for _, be := range backendsForTest() {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("%s/size=%d", be.Name(), size), func(b *testing.B) {
				s, err := NewSink(netip.MustParseAddrPort("127.0.0.1:0"), SinkOptions{Backend: be})
				if err != nil {
					b.Fatal(err)
				}
				go s.Serve()
				defer s.Close()
				b.SetBytes(count * int64(size))
				var sent, recv uint64
				var sendTime time.Duration
				for b.Loop() {
					r, err := Run(context.Background(), Options{Target: s.Addr(), Backend: be, Size: size, Count: count, Wait: 50 * time.Millisecond})
					if err != nil {
						b.Fatal(err)
					}
					sent += r.Sent
					recv += r.Received
					sendTime += r.Duration
				}
				b.ReportMetric(float64(recv)/sendTime.Seconds(), "pkt/s")
				b.ReportMetric(100*float64(sent-recv)/float64(sent), "%lost")
			})
		}
	}
}
