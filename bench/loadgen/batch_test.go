package loadgen

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
)

// batchOf returns n datagrams of size bytes from run, numbered from seq.
func batchOf(n, size int, run uint32) []conn.Message {
	msgs := make([]conn.Message, n)
	for i := range msgs {
		msgs[i] = conn.Message{Buf: make([]byte, size), N: size, Addr: netip.MustParseAddrPort("192.0.2.1:4000")}
	}
	return msgs
}

// number writes headers numbered from seq into msgs.
func number(msgs []conn.Message, run uint32, seq uint64, sent int64) {
	for i := range msgs {
		Put(msgs[i].Buf, Header{Run: run, Seq: seq + uint64(i), Sent: sent})
	}
}

// newTestSink returns a Sink over a fake socket, for calling handle.
func newTestSink(mode Mode) *Sink {
	return &Sink{conn: newRecordConn(), mode: mode, runs: map[uint32]*sinkRun{}}
}

// TestSinkHandle checks the sink's per-batch accounting, mode by mode, on a
// batch holding a foreign datagram, a truncated one, and copies.
func TestSinkHandle(t *testing.T) {
	for _, tc := range []struct {
		mode  Mode
		echos int
	}{{ModeFirst, 3}, {ModeAll, 5}, {ModeCount, 0}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			s := newTestSink(tc.mode)
			msgs := batchOf(7, 100, 1)
			number(msgs[:3], 1, 0, 0)  // 0 1 2
			number(msgs[3:4], 1, 1, 0) // 1 again
			number(msgs[4:5], 1, 0, 0) // 0 again
			copy(msgs[5].Buf, "not ours")
			number(msgs[6:], 1, 9, 0)
			msgs[6].Truncated = true
			out := s.handle(msgs, nil)
			st := s.Stats()
			if len(out) != tc.echos || st.Received != 5 || st.Unique != 3 || st.Duplicates != 2 || st.Foreign != 1 || st.Truncated != 1 || st.Runs != 1 {
				t.Errorf("%d echoes, stats %+v; want %d echoes, 5 received, 3 unique, 2 duplicates, 1 foreign, 1 truncated, 1 run", len(out), st, tc.echos)
			}
		})
	}
}

// TestSinkRunEviction checks that a sink forgets the least recently seen
// run once it tracks maxSinkRuns, and keeps deduplicating the others.
func TestSinkRunEviction(t *testing.T) {
	s := newTestSink(ModeFirst)
	msgs := batchOf(1, HeaderLen, 0)
	for run := range uint32(maxSinkRuns + 1) {
		number(msgs, run, 0, 0)
		s.handle(msgs, nil)
	}
	if len(s.runs) != maxSinkRuns || s.runs[0] != nil {
		t.Fatalf("%d runs tracked, run 0 kept: %v", len(s.runs), s.runs[0] != nil)
	}
	number(msgs, maxSinkRuns, 0, 0)
	if out := s.handle(msgs, nil); len(out) != 0 {
		t.Errorf("a duplicate of a tracked run was echoed")
	}
	if st := s.Stats(); st.Runs != maxSinkRuns+1 || st.Duplicates != 1 {
		t.Errorf("stats %+v, want %d runs and 1 duplicate", st, maxSinkRuns+1)
	}
}

// BenchmarkSinkHandle measures the sink's per-batch work, without sockets.
func BenchmarkSinkHandle(b *testing.B) {
	const batch, window = 64, 1 << 20
	s := newTestSink(ModeFirst)
	msgs := batchOf(batch, 1400, 1)
	out := make([]conn.Message, 0, batch)
	number(msgs, 1, 0, 0)
	s.handle(msgs, out) // creates the run's tracker
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
		number(msgs, 1, seq, 0)
		out = s.handle(msgs, out[:0])
		seq += batch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/pkt")
}

// BenchmarkGenArrived measures the generator's per-batch receive work,
// without sockets.
func BenchmarkGenArrived(b *testing.B) {
	const batch, window = 64, 1 << 20
	g := &gen{o: Options{SeriesInterval: time.Hour}, run: 1, tr: NewTracker(window)}
	g.issued.Store(window)
	msgs := batchOf(batch, 1400, 1)
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
