package conn_test

import (
	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"

	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchBackends are the backends compared side by side: mmsg and, where the
// kernel has it, uring.
func benchBackends(b *testing.B) []conn.Backend { return conntest.Platform(b) }

// BenchmarkConnLoopback moves 1400-byte datagrams from one conn.Conn to another
// over loopback, a batch per iteration, with at most window datagrams in
// flight so that none is dropped: the rate is what sender and receiver
// sustain together, wake-ups included. "gso+gro" compares like with like:
// both backends send UDP_SEGMENT trains and receive coalesced ones.
func BenchmarkConnLoopback(b *testing.B) {
	const size, window = 1400, 512
	type variant struct {
		be   conn.Backend
		name string
	}
	var vs []variant
	for _, be := range benchBackends(b) {
		vs = append(vs, variant{be, be.Name()})
	}
	for _, v := range vs {
		be := v.be
		for _, opt := range []struct {
			name     string
			gso, gro bool
		}{{"plain", false, false}, {"gso+gro", true, true}} {
			for _, batch := range []int{1, 64} {
				b.Run(fmt.Sprintf("%s/%s/batch=%d", v.name, opt.name, batch), func(b *testing.B) {
					o := conn.SocketOptions{GSO: opt.gso, GRO: opt.gro, BatchSize: 64}
					rx, tx := conntest.Pair(b, be, o, o)
					var got atomic.Int64
					var waiting atomic.Bool
					credit := make(chan struct{}, 1)
					done := make(chan struct{})
					in := make([]conn.Message, 64)
					bufSize := 2048
					if opt.gro {
						bufSize = 65536
					}
					for i := range in {
						in[i].Buf = make([]byte, bufSize)
					}
					go func() {
						defer close(done)
						for {
							n, err := rx.ReadBatch(in)
							if err != nil {
								return
							}
							k := 0
							for _, m := range in[:n] {
								k += m.Count()
							}
							got.Add(int64(k))
							if waiting.Load() && waiting.CompareAndSwap(true, false) {
								credit <- struct{}{}
							}
						}
					}()
					out := make([]conn.Message, batch)
					for i := range out {
						out[i] = conn.Message{Buf: make([]byte, size), N: size}
					}
					b.ReportAllocs()
					b.SetBytes(int64(batch * size))
					sent := int64(0)
					cpu := cpuTime()
					for b.Loop() {
						for sent-got.Load() > window-int64(batch) {
							// Sleep until the receiver catches up:
							// spinning would skew the CPU figure.
							waiting.Store(true)
							if sent-got.Load() > window-int64(batch) {
								select {
								case <-credit:
								case <-time.After(10 * time.Millisecond):
								}
							}
							waiting.Store(false)
						}
						if _, err := tx.WriteBatch(out); err != nil {
							b.Fatal(err)
						}
						sent += int64(batch)
					}
					deadline := time.Now().Add(time.Second)
					for got.Load() < sent && time.Now().Before(deadline) {
						runtime.Gosched()
					}
					el := b.Elapsed().Seconds()
					b.ReportMetric(float64(got.Load())/el, "pkt/s")
					b.ReportMetric(float64(cpuTime()-cpu)/float64(max(got.Load(), 1)), "cpu-ns/pkt")
					b.ReportMetric(100*float64(sent-got.Load())/float64(max(sent, 1)), "%lost")
					rx.Close()
					<-done
				})
			}
		}
	}
}

// BenchmarkFanoutSend is the client's fan-out at the system-call level:
// one batch of 64 1400-byte datagrams sent on each of n link sockets (no
// one reads them; the receiving sockets drop what they cannot hold). mmsg
// and uring make one call per link; "uring-batched" puts every link's
// sends into one io_uring_enter (TryWriteBatches).
func BenchmarkFanoutSend(b *testing.B) {
	const size, batch = 1400, 64
	for _, be := range benchBackends(b) {
		modes := []string{be.Name()}
		if _, ok := be.(conn.BatchWriter); ok {
			modes = append(modes, be.Name()+"-batched")
		}
		for _, mode := range modes {
			for _, gso := range []bool{false, true} {
				for _, links := range []int{1, 2, 4} {
					b.Run(fmt.Sprintf("%s/gso=%v/links=%d", mode, gso, links), func(b *testing.B) {
						o := conn.SocketOptions{GSO: gso, BatchSize: batch}
						var conns []conn.Conn
						for range links {
							_, tx := conntest.Pair(b, be, conn.SocketOptions{RecvBuffer: 256 << 10}, o)
							conns = append(conns, tx)
						}
						msgs := make([]conn.Message, batch)
						for i := range msgs {
							msgs[i] = conn.Message{Buf: make([]byte, size), N: size}
						}
						ws := make([]conn.BatchWrite, links)
						bw, batched := be.(conn.BatchWriter)
						batched = batched && mode != be.Name()
						b.ReportAllocs()
						b.SetBytes(int64(batch * size * links))
						cpu := cpuTime()
						for b.Loop() {
							if batched {
								for i, c := range conns {
									ws[i] = conn.BatchWrite{Conn: c, Msgs: msgs}
								}
								bw.TryWriteBatches(ws)
								for _, w := range ws {
									if w.Err != nil || w.N != batch {
										b.Fatalf("sent %d, %v", w.N, w.Err)
									}
								}
								continue
							}
							for _, c := range conns {
								if n, err := c.TryWriteBatch(msgs); err != nil || n != batch {
									b.Fatalf("sent %d, %v", n, err)
								}
							}
						}
						b.ReportMetric(float64(b.N*batch*links)/b.Elapsed().Seconds(), "pkt/s")
						b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N*batch*links), "cpu-ns/pkt")
					})
				}
			}
		}
	}
}

// cpuTime returns the CPU time the process has used, user and system, in
// nanoseconds: on a shared machine it is steadier than the wall clock.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
