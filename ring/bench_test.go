package ring

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// perItem reports the time per item and the item rate, for benchmarks
// whose op moves more than one item or shares the work with other
// goroutines.
func perItem(b *testing.B, items int) {
	if items == 0 {
		return
	}
	ns := float64(b.Elapsed().Nanoseconds())
	b.ReportMetric(ns/float64(items), "ns/item")
	b.ReportMetric(float64(items)/ns*1e9, "items/s")
}

func BenchmarkSPSC(b *testing.B) {
	q := NewSPSC[*Buf](1024)
	x := new(Buf)
	b.ReportAllocs()
	for b.Loop() {
		q.Push(x)
		q.Pop()
	}
}

func BenchmarkSPSCPopBatch(b *testing.B) {
	for _, batch := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			q := NewSPSC[*Buf](1024)
			dst := make([]*Buf, batch)
			x := new(Buf)
			items := 0
			b.ReportAllocs()
			for b.Loop() {
				for range batch {
					q.Push(x)
				}
				items += q.PopBatch(dst)
			}
			perItem(b, items)
		})
	}
}

// BenchmarkSPSCPipe has the loop push and another goroutine pop: one op is
// one item crossing between cores.
func BenchmarkSPSCPipe(b *testing.B) {
	q := NewSPSC[*Buf](1024)
	x := new(Buf)
	var (
		stop atomic.Bool
		got  int
		done = make(chan struct{})
	)
	dst := make([]*Buf, 64)
	go func() {
		defer close(done)
		for {
			n := q.PopBatch(dst)
			got += n
			if n == 0 {
				if stop.Load() && q.Len() == 0 {
					return
				}
				runtime.Gosched()
			}
		}
	}()
	items := 0
	b.ReportAllocs()
	for b.Loop() {
		for !q.Push(x) {
			runtime.Gosched()
		}
		items++
	}
	stop.Store(true)
	<-done
	if got != items {
		b.Fatalf("consumer got %d of %d", got, items)
	}
	perItem(b, items)
}

func BenchmarkMPMC(b *testing.B) {
	q := NewMPMC[*Buf](1024)
	x := new(Buf)
	b.ReportAllocs()
	for b.Loop() {
		q.Push(x)
		q.Pop()
	}
}

// BenchmarkMPMCProducers has producers goroutines push while the loop pops:
// one op is one item delivered, the engine's many-links-to-one-sender case.
func BenchmarkMPMCProducers(b *testing.B) {
	for _, producers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			q := NewMPMC[*Buf](1024)
			x := new(Buf)
			var (
				stop atomic.Bool
				wg   sync.WaitGroup
			)
			for range producers {
				wg.Go(func() {
					for !stop.Load() {
						if !q.Push(x) {
							runtime.Gosched()
						}
					}
				})
			}
			items := 0
			b.ReportAllocs()
			for b.Loop() {
				for {
					if _, ok := q.Pop(); ok {
						break
					}
					runtime.Gosched()
				}
				items++
			}
			stop.Store(true)
			wg.Wait()
			perItem(b, items)
		})
	}
}

func BenchmarkPool(b *testing.B) {
	p := newPool(b, 2048, 1024, 1024)
	b.ReportAllocs()
	for b.Loop() {
		p.Get().Release()
	}
}

// BenchmarkFanOut is the buffer traffic of one received batch sent on every
// link: Get, a reference per link, a Release per link and the receiver's
// own. One op is one batch.
func BenchmarkFanOut(b *testing.B) {
	for _, links := range []int{1, 2, 4} {
		for _, batch := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("links=%d/batch=%d", links, batch), func(b *testing.B) {
				p := newPool(b, 2048, 1024, 1024)
				bufs := make([]*Buf, batch)
				pkts := 0
				b.ReportAllocs()
				for b.Loop() {
					for i := range bufs {
						bufs[i] = p.Get()
						bufs[i].Ref(links)
					}
					for range links {
						for _, buf := range bufs {
							buf.Release()
						}
					}
					for _, buf := range bufs {
						buf.Release()
					}
					pkts += batch
				}
				ns := float64(b.Elapsed().Nanoseconds())
				b.ReportMetric(ns/float64(pkts), "ns/pkt")
				b.ReportMetric(float64(pkts)/ns*1e9, "pkt/s")
			})
		}
	}
}
