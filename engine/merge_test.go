package engine

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
	"github.com/engarde-project/engarde/ring"
)

// mergeRig feeds a merge from several goroutines, as the receive loops of
// several links do: each delivers the same counters 0..n-1, in order, in
// batches of random sizes, except those it loses. The handler keeps the
// first copy of each counter, as the duplicate filter does, with no
// synchronisation of its own: the merge is what must keep two handlers
// from running at once (the race detector sees it if not).
type mergeRig struct {
	mg    merge
	pool  *ring.Pool
	seen  []bool
	out   []uint64
	calls int
}

func newMergeRig(t *testing.T, n, batch int) *mergeRig {
	pool, err := ring.NewPool(64, 256, 1<<14)
	if err != nil {
		t.Fatal(err)
	}
	r := &mergeRig{pool: pool, seen: make([]bool, n)}
	r.mg.batch = batch
	t.Cleanup(func() {
		if a, n := pool.Available(), pool.Allocated(); a != n {
			t.Errorf("%d of %d buffers not returned to the pool", n-a, n)
		}
		pool.Close()
	})
	return r
}

func (r *mergeRig) handle(bufs []*ring.Packet, msgs []conn.Message) {
	r.calls++
	for i := range msgs {
		c := binary.LittleEndian.Uint64(msgs[i].Buf[:msgs[i].N])
		if bufs[i].N != msgs[i].N {
			panic("a message and its buffer parted")
		}
		if !r.seen[c] {
			r.seen[c] = true
			r.out = append(r.out, c)
		}
	}
}

// feed runs one link: its counters 0..n-1 except those lost says, in
// batches of 1..batch.
func (r *mergeRig) feed(t *testing.T, in *mergeInput, n, batch int, lost func(uint64) bool, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	bufs := make([]*ring.Packet, batch)
	msgs := make([]conn.Message, batch)
	c := uint64(0)
	for c < uint64(n) {
		k := 0
		for want := 1 + rng.IntN(batch); k < want && c < uint64(n); c++ {
			if lost(c) {
				continue
			}
			b := r.pool.Get()
			if b == nil {
				t.Error("pool exhausted")
				return
			}
			b.N = 8
			binary.LittleEndian.PutUint64(b.Data(), c)
			bufs[k], msgs[k] = b, conn.Message{Buf: b.Data(), N: 8}
			k++
		}
		r.mg.run(in, bufs[:k], msgs[:k])
		for i := range k {
			bufs[i].Release() // the receive loop's own reference
		}
	}
}

func (r *mergeRig) run(t *testing.T, links, n, batch int, lost func(link int, c uint64) bool) {
	var wg sync.WaitGroup
	ins := make([]mergeInput, links)
	for l := range links {
		ins[l].handle = r.handle
		wg.Go(func() { r.feed(t, &ins[l], n, batch, func(c uint64) bool { return lost(l, c) }, uint64(l)) })
	}
	wg.Wait()
}

// TestMergeKeepsOrder: links that deliver every counter in order give
// WireGuard every counter once, in order, however their batches meet.
func TestMergeKeepsOrder(t *testing.T) {
	for _, links := range []int{2, 3} {
		const n, batch = 200_000, 64
		r := newMergeRig(t, n, batch)
		r.run(t, links, n, batch, func(int, uint64) bool { return false })
		if len(r.out) != n {
			t.Fatalf("%d links: %d of %d counters delivered", links, len(r.out), n)
		}
		for i, c := range r.out {
			if c != uint64(i) {
				t.Fatalf("%d links: position %d holds counter %d: out of order", links, i, c)
			}
		}
		t.Logf("%d links: %d batches handed from one loop to another, %d handler calls", links, r.mg.Handed.Load(), r.calls)
	}
}

// TestMergeLoss: with one link losing every tenth counter, the other
// fills the gaps; every counter arrives once, and only a filled gap can
// come out of order, never a counter both links delivered.
func TestMergeLoss(t *testing.T) {
	const n, batch = 100_000, 32
	r := newMergeRig(t, n, batch)
	lostOnA := func(c uint64) bool { return c%10 == 3 }
	r.run(t, 2, n, batch, func(l int, c uint64) bool { return l == 0 && lostOnA(c) })
	if len(r.out) != n {
		t.Fatalf("%d of %d counters delivered", len(r.out), n)
	}
	var highest uint64
	late := 0
	for i, c := range r.out {
		if i > 0 && c < highest {
			if !lostOnA(c) {
				t.Fatalf("counter %d, which both links delivered, came after %d", c, highest)
			}
			late++
		}
		highest = max(highest, c)
	}
	t.Logf("%d of %d gaps filled late", late, n/10)
}

// BenchmarkMerge is a batch of 32 through a merge, from one loop (the
// common case: it finds the merge free) and from two at once (some of the
// other's batches handed over): a compare-and-swap per batch, and a push
// and a pop per datagram handed over; no allocation either way. ns/op is
// per batch.
func BenchmarkMerge(b *testing.B) {
	for _, loops := range []int{1, 2} {
		b.Run(fmt.Sprintf("loops=%d", loops), func(b *testing.B) {
			pool, err := ring.NewPool(64, 256, 1024)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			const batch = 32
			var mg merge
			mg.batch = batch
			mg.queue() // made once, outside the timing
			in := mergeInput{handle: func(_ []*ring.Packet, msgs []conn.Message) {
				for i := range msgs {
					msgs[i].N++ // touch each message, as a filter does
				}
			}}
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range loops {
				wg.Go(func() {
					bufs := make([]*ring.Packet, batch)
					msgs := make([]conn.Message, batch)
					for i := range bufs {
						bufs[i] = pool.Get()
						msgs[i] = conn.Message{Buf: bufs[i].Data(), N: 8}
					}
					for range b.N / loops {
						mg.run(&in, bufs, msgs)
					}
					for _, p := range bufs {
						p.Release()
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(mg.Handed.Load())/float64(b.N), "handed/op")
		})
	}
}

// TestMergeWiring: the client's links reach WireGuard only through the
// client's merge, and a session's client addresses only through the
// session's. While the test holds each merge, the datagrams of both links
// wait in it; let go, they all come out, in order.
func TestMergeWiring(t *testing.T) {
	tu := startTunnel(t, fakeTestNet(conntest.NewNet()), Options{DisableGSO: true, DisableGRO: true})
	if got, _ := tu.stream(20, 200, 5000, nil); got != 20 {
		t.Fatalf("%d of 20 came back before the test", got)
	}
	tu.server.mu.Lock()
	sess := tu.server.sessions[0]
	tu.server.mu.Unlock()
	hold := func(mg *merge) {
		deadline := time.Now().Add(5 * time.Second)
		for !mg.busy.CompareAndSwap(false, true) {
			if time.Now().After(deadline) {
				t.Fatal("the merge stayed busy")
			}
			runtime.Gosched()
		}
	}
	hold(&sess.merge)
	hold(&tu.client.toWG)

	var mu sync.Mutex
	var seqs []uint64
	go tu.readCounters(func(ctr uint64) {
		mu.Lock()
		seqs = append(seqs, ctr)
		mu.Unlock()
	}, nil)
	got := func() []uint64 { mu.Lock(); defer mu.Unlock(); return slices.Clone(seqs) }
	const n = 50
	base := tu.base
	buf := make([]byte, 200)
	for i := range uint64(n) {
		buf[0] = wgTransportType
		binary.LittleEndian.PutUint32(buf[4:], testServerIndex)
		binary.LittleEndian.PutUint64(buf[8:], base+i)
		if _, err := tu.wgApp.WriteBatch([]conn.Message{{Buf: buf, N: len(buf), Addr: tu.client.ListenAddr()}}); err != nil {
			t.Fatal(err)
		}
	}
	// Both links' copies reach the server's merge and wait there.
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after 5 s: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("not every copy waits in the server's merge", func() bool {
		q := sess.merge.q.Load()
		return q != nil && q.Len() >= 2*n // and perhaps a probe
	})
	time.Sleep(50 * time.Millisecond)
	if s := got(); len(s) != 0 {
		t.Fatalf("%d datagrams came back while the server's merge was held", len(s))
	}
	sess.merge.leave()
	// The echoes come back over both links and wait in the client's.
	waitFor("not every echo waits in the client's merge", func() bool {
		q := tu.client.toWG.q.Load()
		return q != nil && q.Len() >= 2*n // and perhaps a probe
	})
	if s := got(); len(s) != 0 {
		t.Fatalf("%d datagrams reached WireGuard while the client's merge was held", len(s))
	}
	tu.client.toWG.leave()
	waitFor("not every echo came back", func() bool { return len(got()) >= n })
	time.Sleep(50 * time.Millisecond)
	s := got()
	if len(s) != n {
		t.Fatalf("%d came back, want %d (no copy)", len(s), n)
	}
	for i, c := range s {
		if c != base+uint64(i) {
			t.Fatalf("echo %d is counter %d, want %d: %v", i, c-base, i, s)
		}
	}
}

// TestMergeSkipsLockedWork: a member's initiation takes the server's
// lock, so it does not go through the session's merge, where it would
// hold up the other addresses' data: held, the merge does not stop it.
func TestMergeSkipsLockedWork(t *testing.T) {
	tu := startTunnel(t, fakeTestNet(conntest.NewNet()), Options{DisableGSO: true, DisableGRO: true})
	tu.server.mu.Lock()
	sess := tu.server.sessions[0]
	tu.server.mu.Unlock()
	for !sess.merge.busy.CompareAndSwap(false, true) {
		runtime.Gosched()
	}
	defer sess.merge.leave()
	before := tu.initiations.Load()
	init := wgInitiation(testClientIndex, byte(tu.inits.Add(1)))
	if _, err := tu.wgApp.WriteBatch([]conn.Message{{Buf: init, N: len(init), Addr: tu.client.ListenAddr()}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tu.initiations.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("a member's initiation waited for the session's merge")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
