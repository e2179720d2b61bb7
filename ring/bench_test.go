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

func BenchmarkMPMC(b *testing.B) {
	q := NewMPMC[*Packet](1024)
	x := new(Packet)
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
			q := NewMPMC[*Packet](1024)
			x := new(Packet)
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
				bufs := make([]*Packet, batch)
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
