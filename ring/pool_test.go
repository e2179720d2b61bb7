package ring

import (
	"encoding/binary"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// newPool returns a pool that is closed when the test ends.
func newPool(t testing.TB, size, initial, limit int) *Pool {
	t.Helper()
	p, err := NewPool(size, initial, limit)
	if err != nil {
		t.Fatalf("NewPool(%d, %d, %d): %v", size, initial, limit, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// getN takes n buffers from p and fails the test if any Get returns nil.
func getN(t *testing.T, p *Pool, n int) []*Packet {
	t.Helper()
	bufs := make([]*Packet, n)
	for i := range bufs {
		if bufs[i] = p.Get(); bufs[i] == nil {
			t.Fatalf("Get %d of %d returned nil (Allocated %d)", i, n, p.Allocated())
		}
	}
	return bufs
}

func TestNewPoolBadShape(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		size, initial, limit int
	}{
		{"zero size", 0, 1, 1},
		{"negative size", -1, 1, 1},
		{"negative initial", 64, -1, 1},
		{"zero limit", 64, 0, 0},
		{"initial over limit", 64, 5, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := NewPool(tc.size, tc.initial, tc.limit); err == nil {
				p.Close()
				t.Fatal("NewPool succeeded")
			}
		})
	}
}

func TestPoolGet(t *testing.T) {
	p := newPool(t, 1500, 1, 1)
	if p.Size() != 1500 {
		t.Fatalf("Size = %d", p.Size())
	}
	b := p.Get()
	if b == nil {
		t.Fatal("Get returned nil")
	}
	if len(b.Data()) != 1500 || cap(b.Data()) != 1500 {
		t.Fatalf("Data len %d cap %d, want 1500", len(b.Data()), cap(b.Data()))
	}
	if b.Refs() != 1 || b.N != 0 || b.Seg != 0 || b.Stamp != 0 {
		t.Fatalf("fresh buffer: refs %d N %d Seg %d Stamp %d", b.Refs(), b.N, b.Seg, b.Stamp)
	}
	if p.Available() != 0 {
		t.Fatalf("Available = %d with the only buffer out", p.Available())
	}
	copy(b.Data(), "hello, world")
	b.N, b.Seg, b.Stamp = 5, 3, 12345
	if string(b.Bytes()) != "hello" {
		t.Fatalf("Bytes = %q, want hello", b.Bytes())
	}
	b.Release()
	if p.Available() != 1 {
		t.Fatalf("Available = %d after Release, want 1", p.Available())
	}
	// The pool has one buffer, so this is the same one: its fields are
	// reset, its contents are not.
	b2 := p.Get()
	if b2 != b {
		t.Fatal("a one-buffer pool returned a different buffer")
	}
	if b2.Refs() != 1 || b2.N != 0 || b2.Seg != 0 || b2.Stamp != 0 {
		t.Fatalf("reused buffer: refs %d N %d Seg %d Stamp %d", b2.Refs(), b2.N, b2.Seg, b2.Stamp)
	}
	b2.Release()
}

func TestPoolReleaseReturns(t *testing.T) {
	p := newPool(t, 256, 8, 8)
	bufs := getN(t, p, 8)
	for i, b := range bufs {
		if p.Available() != i {
			t.Fatalf("Available = %d after %d releases", p.Available(), i)
		}
		b.Release()
	}
	if p.Available() != 8 || p.Allocated() != 8 {
		t.Fatalf("Available %d Allocated %d, want 8 8", p.Available(), p.Allocated())
	}
}

func TestBufFanOut(t *testing.T) {
	p := newPool(t, 256, 4, 4)
	b := p.Get()
	b.Ref(3) // three links
	if b.Refs() != 4 {
		t.Fatalf("Refs = %d after Ref(3), want 4", b.Refs())
	}
	for i := range 3 {
		b.Release()
		if p.Available() != 3 {
			t.Fatalf("buffer returned after %d of 4 releases", i+1)
		}
	}
	b.Release()
	if p.Available() != 4 {
		t.Fatalf("Available = %d after the last release, want 4", p.Available())
	}
	// It went back once: the free list holds four distinct buffers.
	got := getN(t, p, 4)
	for i := range got {
		if slices.Contains(got[i+1:], got[i]) {
			t.Fatal("the fanned-out buffer is in the free list twice")
		}
	}
}

func TestBufReclaim(t *testing.T) {
	t.Run("last holder", func(t *testing.T) {
		p := newPool(t, 256, 2, 2)
		b := p.Get()
		if !b.Reclaim() {
			t.Fatal("Reclaim by the only holder = false")
		}
		if b.Refs() != 1 || p.Available() != 1 {
			t.Fatalf("after Reclaim: refs %d Available %d, want 1 1", b.Refs(), p.Available())
		}
		b.Release() // the holder still owns it and can give it back
		if p.Available() != 2 {
			t.Fatalf("Available = %d, want 2", p.Available())
		}
	})
	t.Run("links still hold it", func(t *testing.T) {
		p := newPool(t, 256, 2, 2)
		b := p.Get()
		b.Ref(2)
		if b.Reclaim() {
			t.Fatal("Reclaim with two links holding = true")
		}
		if b.Refs() != 2 || p.Available() != 1 {
			t.Fatalf("after Reclaim: refs %d Available %d, want 2 1", b.Refs(), p.Available())
		}
		b.Release()
		if p.Available() != 1 {
			t.Fatal("returned while a link still holds it")
		}
		b.Release()
		if p.Available() != 2 {
			t.Fatalf("Available = %d after the last link released, want 2", p.Available())
		}
	})
	t.Run("links done first", func(t *testing.T) {
		// The receive loop's case: every link has sent it already.
		p := newPool(t, 256, 2, 2)
		b := p.Get()
		b.Ref(2)
		b.Release()
		b.Release()
		if !b.Reclaim() || b.Refs() != 1 || p.Available() != 1 {
			t.Fatalf("Reclaim after links released: refs %d Available %d", b.Refs(), p.Available())
		}
		b.Release()
	})
}

func TestBufMisusePanics(t *testing.T) {
	for _, tc := range []struct {
		name   string
		misuse func(b *Packet)
	}{
		{"over-release", func(b *Packet) { b.Release(); b.Release() }},
		{"over-release after fan-out", func(b *Packet) { b.Ref(2); b.Release(); b.Release(); b.Release(); b.Release() }},
		{"Ref on a released buffer", func(b *Packet) { b.Release(); b.Ref(1) }},
		{"Ref(0) on a released buffer", func(b *Packet) { b.Release(); b.Ref(0) }},
		{"Reclaim on a released buffer", func(b *Packet) { b.Release(); b.Reclaim() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPool(256, 2, 2) // not closed: a misused buffer may be in its free list
			if err != nil {
				t.Fatal(err)
			}
			b := p.Get()
			if v := panics(func() { tc.misuse(b) }); v == nil {
				t.Fatal("no panic")
			} else {
				t.Logf("panic: %v", v)
			}
		})
	}
}

func TestPoolGrowth(t *testing.T) {
	const size = 1 << 18 // 4 buffers per 1 MiB slab
	p := newPool(t, size, 3, 10)
	if p.perSlab != 4 {
		t.Fatalf("perSlab = %d, want 4", p.perSlab)
	}
	// initial is rounded up to whole slabs.
	if p.Allocated() != 4 || p.Available() != 4 {
		t.Fatalf("new pool: Allocated %d Available %d, want 4 4", p.Allocated(), p.Available())
	}
	var bufs []*Packet
	wantAlloc := []int{4, 4, 4, 4, 8, 8, 8, 8, 10, 10} // the last slab is cut to the limit
	for i, want := range wantAlloc {
		b := p.Get()
		if b == nil {
			t.Fatalf("Get %d returned nil", i)
		}
		bufs = append(bufs, b)
		if p.Allocated() != want {
			t.Fatalf("after Get %d: Allocated %d, want %d", i, p.Allocated(), want)
		}
	}
	if p.Misses() != 0 {
		t.Fatalf("Misses = %d before the limit", p.Misses())
	}
	for i := range 2 {
		if b := p.Get(); b != nil {
			t.Fatal("Get at the limit returned a buffer")
		}
		if p.Misses() != uint64(i+1) {
			t.Fatalf("Misses = %d, want %d", p.Misses(), i+1)
		}
	}
	if p.Allocated() != 10 {
		t.Fatalf("Allocated = %d past the limit", p.Allocated())
	}
	bufs[3].Release()
	if bufs[3] = p.Get(); bufs[3] == nil {
		t.Fatal("Get after a Release at the limit returned nil")
	}
	for _, b := range bufs {
		b.Release()
	}
	if p.Available() != 10 || p.Misses() != 2 {
		t.Fatalf("Available %d Misses %d, want 10 2", p.Available(), p.Misses())
	}
}

func TestPoolGrowsFromEmpty(t *testing.T) {
	p := newPool(t, 64, 0, 3)
	if p.Allocated() != 0 {
		t.Fatalf("Allocated = %d with initial 0", p.Allocated())
	}
	bufs := getN(t, p, 3)
	if p.Allocated() != 3 {
		t.Fatalf("Allocated = %d, want 3", p.Allocated())
	}
	for _, b := range bufs {
		b.Release()
	}
}

// TestPoolNoOverlap fills every buffer of a multi-slab pool with its own
// pattern and then checks them all: no two buffers share a byte.
func TestPoolNoOverlap(t *testing.T) {
	const size, limit = 100_000, 35 // 10 per slab: slabs of 10, 10, 10, 5
	p := newPool(t, size, 0, limit)
	bufs := getN(t, p, limit)
	if p.Get() != nil {
		t.Fatal("Get beyond the limit returned a buffer")
	}
	if len(p.slabs) != 4 {
		t.Fatalf("%d slabs, want 4", len(p.slabs))
	}
	type span struct{ lo, hi uintptr }
	spans := make([]span, len(bufs))
	for i, b := range bufs {
		d := b.Data()
		if len(d) != size || cap(d) != size {
			t.Fatalf("buffer %d: len %d cap %d, want %d", i, len(d), cap(d), size)
		}
		for j := range d {
			d[j] = byte(i*7 + j)
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(d)))
		spans[i] = span{lo, lo + size}
	}
	for i, b := range bufs {
		for j, c := range b.Data() {
			if c != byte(i*7+j) {
				t.Fatalf("buffer %d byte %d = %d, overwritten", i, j, c)
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.lo) - int(b.lo) })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			t.Fatalf("buffers at %#x and %#x overlap", spans[i-1].lo, spans[i].lo)
		}
	}
	for _, b := range bufs {
		b.Release()
	}
}

func TestPoolClose(t *testing.T) {
	p, err := NewPool(64, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.grow(); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("grow after Close = %v, want ErrPoolClosed", err)
	}
	if b := p.Get(); b != nil {
		t.Fatal("Get on a closed pool with no free buffers returned one")
	}
	if p.Misses() != 1 {
		t.Fatalf("Misses = %d, want 1", p.Misses())
	}

	p, err = NewPool(1<<18, 8, 8) // two slabs
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range getN(t, p, 8) {
		b.Data()[0] = 1 // touch the pages before they are unmapped
		b.Release()
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close with two slabs: %v", err)
	}
	if p.slabs != nil {
		t.Fatal("Close kept the slabs")
	}
}

// TestPoolLIFO checks that the buffer released last is the next one out:
// it is still in the CPU's caches, and buffers deep in the stack stay
// untouched.
func TestPoolLIFO(t *testing.T) {
	p := newPool(t, 64, 8, 8)
	held := getN(t, p, 8)
	held[3].Release()
	held[5].Release()
	if b := p.Get(); b != held[5] {
		t.Fatal("Get did not return the buffer released last")
	}
	if b := p.Get(); b != held[3] {
		t.Fatal("Get did not return the buffer released before that")
	}
	for _, b := range held {
		b.Release()
	}
}

// TestPoolPutTwicePanics checks that a buffer put back twice (a bug in the
// caller's reference counting) panics instead of corrupting the free stack.
func TestPoolPutTwicePanics(t *testing.T) {
	p, err := NewPool(64, 4, 4) // not closed: its free list is corrupt
	if err != nil {
		t.Fatal(err)
	}
	b := p.Get()
	b.Release()
	if v := panics(func() { p.put(b) }); v == nil {
		t.Fatal("putting a buffer back twice did not panic")
	}
}

// TestPoolConcurrent has several goroutines Get, hold and Release buffers.
// Each writes its mark into the buffers it holds and checks the mark is
// still there before releasing, so two goroutines holding one buffer at
// once shows up. The tiny pool runs dry constantly, and every Get and
// Release races for the top of the free stack (the ABA case the stack's
// version tag guards).
func TestPoolConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		size, initial, limit int
	}{
		{"tiny", 64, 4, 4},
		{"growing", 1 << 18, 0, 64}, // grows 4 buffers at a time
	} {
		t.Run(tc.name, func(t *testing.T) {
			const workers, hold = 8, 3
			p := newPool(t, tc.size, tc.initial, tc.limit)
			rounds := stress(20000)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					var mine [hold]*Packet
					for r := range rounds {
						k := r % hold
						if b := mine[k]; b != nil {
							if got := binary.LittleEndian.Uint64(b.Data()); got != uint64(w)<<32|uint64(r-hold) {
								t.Errorf("worker %d: buffer mark %#x changed while held", w, got)
							}
							b.Release()
						}
						b := p.Get()
						mine[k] = b
						if b == nil {
							continue // exhausted: a miss, try again next round
						}
						if b.Refs() != 1 || b.N != 0 {
							t.Errorf("Get returned refs %d N %d", b.Refs(), b.N)
						}
						binary.LittleEndian.PutUint64(b.Data(), uint64(w)<<32|uint64(r))
						b.N = r
					}
					for _, b := range mine {
						if b != nil {
							b.Release()
						}
					}
				})
			}
			wg.Wait()
			if p.Available() != p.Allocated() || p.Allocated() > tc.limit {
				t.Fatalf("Available %d Allocated %d limit %d", p.Available(), p.Allocated(), tc.limit)
			}
			t.Logf("Allocated %d Misses %d", p.Allocated(), p.Misses())
		})
	}
}

// TestPoolFanOutConcurrent runs the engine's pattern: a receiver takes a
// buffer, references it once per link, hands it to each link's queue and
// drops (or reclaims) its own reference; each link releases it when done.
func TestPoolFanOutConcurrent(t *testing.T) {
	const links = 3
	p := newPool(t, 64, 16, 16)
	n := stress(50000)
	var (
		qs   [links]*MPMC[*Packet]
		wg   sync.WaitGroup
		done atomic.Bool
	)
	for i := range qs {
		qs[i] = NewMPMC[*Packet](8)
		wg.Go(func() {
			for {
				b, ok := qs[i].Pop()
				if !ok {
					if done.Load() && qs[i].Len() == 0 {
						return
					}
					runtime.Gosched()
					continue
				}
				if b.Refs() < 1 {
					t.Errorf("link %d got a buffer with refs %d", i, b.Refs())
				}
				b.Release()
			}
		})
	}
	var b *Packet
	for i := 0; i < n; {
		if b == nil {
			if b = p.Get(); b == nil {
				runtime.Gosched()
				continue
			}
		}
		b.N = i
		b.Ref(links)
		for _, q := range qs {
			for !q.Push(b) {
				runtime.Gosched()
			}
		}
		if !b.Reclaim() {
			b = nil
		}
		i++
	}
	if b != nil {
		b.Release()
	}
	done.Store(true)
	wg.Wait()
	if p.Available() != p.Allocated() {
		t.Fatalf("Available %d Allocated %d", p.Available(), p.Allocated())
	}
}

// TestZeroAllocs checks that the steady-state operations do not allocate.
func TestZeroAllocs(t *testing.T) {
	p := newPool(t, 2048, 64, 64)
	m := NewMPMC[*Packet](64)
	held := p.Get()
	defer held.Release()
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"MPMC Push+Pop", func() { m.Push(held); m.Pop() }},
		{"Pool Get+Release", func() { p.Get().Release() }},
		{"Packet Ref+Release", func() { held.Ref(2); held.Release(); held.Release() }},
		{"Packet Reclaim", func() { held.Reclaim() }},
		{"Packet Ref+Reclaim", func() { held.Ref(1); held.Reclaim() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.f); n != 0 {
				t.Fatalf("%v allocs per run, want 0", n)
			}
		})
	}
}
