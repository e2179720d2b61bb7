package ring

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Packet is one packet buffer owned by a Pool.
//
// A Packet carries a reference count because one received datagram is sent on
// every link without being copied: the receiver takes it with Get (one
// reference), adds one reference per link it hands it to, and drops its own;
// each link drops its reference once the datagram is sent or discarded; the
// last Release returns the buffer to the pool.
//
// N, Seg and Stamp are written by the goroutine that fills the buffer, before
// it hands the buffer on; after that they are read-only until the buffer
// returns to the pool.
type Packet struct {
	// N is the number of payload bytes in the buffer.
	N int
	// Seg is the size of each datagram when the buffer holds a train of
	// equal-sized datagrams (UDP GRO), or 0 for a single datagram.
	Seg int
	// Stamp is when the buffer was filled, in the engine's monotonic
	// nanoseconds; senders drop it when it has waited too long.
	Stamp int64

	data []byte // the whole buffer, len == cap == pool size
	head int    // where the payload starts in data (SetHead); 0 from the pool
	refs atomic.Int32
	pool *Pool
	idx  uint32        // position in the pool's table
	next atomic.Uint32 // the buffer below this one in the free stack, idx+1 (0: none)
	free atomic.Bool   // in the free stack: catches a buffer put back twice
}

// Data returns the buffer from where the payload starts: for receiving
// into, the whole buffer unless SetHead moved the start.
func (b *Packet) Data() []byte { return b.data[b.head:] }

// Bytes returns the payload, Data()[:N].
func (b *Packet) Bytes() []byte { return b.data[b.head : b.head+b.N] }

// Whole returns the whole buffer, whatever its head, for a receiver that
// lends it to the kernel: io_uring writes a header, the source address
// and control messages before the payload.
func (b *Packet) Whole() []byte { return b.data }

// SetHead says that the payload starts head bytes into the buffer (what
// such a receiver found); Data and Bytes start there until the buffer
// returns to the pool, or SetHead(0).
func (b *Packet) SetHead(head int) { b.head = head }

// Ref adds n references, one for each new holder.
func (b *Packet) Ref(n int) {
	if b.refs.Add(int32(n)) <= int32(n) {
		// The buffer had no holder: it was already back in the pool.
		panic("ring: Ref on a released buffer")
	}
}

// Release drops one reference; the last one returns the buffer to its pool.
func (b *Packet) Release() {
	switch r := b.refs.Add(-1); {
	case r == 0:
		b.pool.put(b)
	case r < 0:
		panic("ring: buffer released more times than referenced")
	}
}

// Reclaim drops the caller's reference like Release, except that when it
// was the last one the caller keeps the buffer (with one reference again)
// instead of returning it to the pool, and Reclaim reports true. A receive
// loop uses it to reuse a buffer that every link has already sent, without
// a round trip through the pool.
func (b *Packet) Reclaim() bool {
	switch r := b.refs.Add(-1); {
	case r == 0:
		b.refs.Store(1)
		return true
	case r < 0:
		panic("ring: buffer released more times than referenced")
	}
	return false
}

// Refs returns the current reference count (for tests and assertions).
func (b *Packet) Refs() int { return int(b.refs.Load()) }

// Pool is a set of fixed-size packet buffers carved out of large slabs
// allocated outside the Go heap (mmap where the OS has it), so the garbage
// collector never scans packet data and the kernel may keep pointers into
// it. The pool starts with a few slabs and grows a slab at a time, up to a
// limit, when Get finds it empty. Get and Release are lock-free; growing
// takes a mutex.
//
// Free buffers sit on a stack (Treiber's lock-free stack, with a version
// tag against the ABA problem): the buffer released last is handed out
// first, while its memory is still in the CPU's caches, and buffers at the
// bottom stay untouched, so the memory a quiet pool really uses stays
// small even when its buffers are large (64 KiB for GRO trains).
type Pool struct {
	size    int
	perSlab int
	max     int
	table   []*Packet // every buffer by index; an entry is set before its buffer is first pushed
	// top packs the version tag (high 32 bits) and the top buffer's
	// idx+1 (low 32 bits; 0 when the stack is empty).
	top    atomic.Uint64
	nfree  atomic.Int64 // buffers on the stack, for Available
	count  atomic.Int64 // buffers allocated so far
	misses atomic.Uint64

	mu     sync.Mutex // guards slabs, closed and growth
	slabs  [][]byte
	closed bool
}

var (
	// ErrPoolClosed is returned when a closed pool is asked to grow.
	ErrPoolClosed = errors.New("ring: pool closed")
	errPoolFull   = errors.New("ring: pool at its limit")
)

// NewPool returns a pool of buffers of size bytes, with initial buffers
// allocated now and room to grow to limit.
func NewPool(size, initial, limit int) (*Pool, error) {
	if size <= 0 || initial < 0 || limit < 1 || initial > limit || uint64(limit) >= 1<<32-1 {
		return nil, fmt.Errorf("ring: bad pool shape size=%d initial=%d max=%d", size, initial, limit)
	}
	per := max(1, min(limit, (1<<20)/size)) // about 1 MiB per slab
	p := &Pool{size: size, perSlab: per, max: limit, table: make([]*Packet, limit)}
	for int(p.count.Load()) < initial {
		p.mu.Lock()
		err := p.addSlabLocked()
		p.mu.Unlock()
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Size returns the size of each buffer in bytes.
func (p *Pool) Size() int { return p.size }

// Allocated returns how many buffers the pool has created so far.
func (p *Pool) Allocated() int { return int(p.count.Load()) }

// Limit returns the most buffers the pool may create.
func (p *Pool) Limit() int { return p.max }

// Available returns how many buffers are free at the moment.
func (p *Pool) Available() int { return int(p.nfree.Load()) }

// Misses returns how many times Get found the pool exhausted.
func (p *Pool) Misses() uint64 { return p.misses.Load() }

// Get returns a free buffer holding one reference, N, Seg and Stamp zeroed,
// or nil when the pool is exhausted and may not grow further.
func (p *Pool) Get() *Packet {
	for {
		if b := p.pop(); b != nil {
			b.N, b.Seg, b.Stamp, b.head = 0, 0, 0, 0
			b.refs.Store(1)
			return b
		}
		if int(p.count.Load()) >= p.max || p.grow() != nil {
			p.misses.Add(1)
			return nil
		}
	}
}

// pop takes the top of the free stack, or returns nil when it is empty.
func (p *Pool) pop() *Packet {
	for {
		old := p.top.Load()
		i := uint32(old)
		if i == 0 {
			return nil
		}
		b := p.table[i-1]
		// b.next may change under us if b is popped and pushed back
		// meanwhile; then top's tag has changed too, and the CAS fails.
		next := b.next.Load()
		if p.top.CompareAndSwap(old, (old>>32+1)<<32|uint64(next)) {
			b.free.Store(false)
			p.nfree.Add(-1)
			return b
		}
	}
}

func (p *Pool) put(b *Packet) {
	if b.free.Swap(true) {
		panic("ring: buffer put back into the pool twice")
	}
	for {
		old := p.top.Load()
		b.next.Store(uint32(old))
		// Publishing b as the top also publishes its table entry and
		// next: a pop that loads this top then reads them.
		if p.top.CompareAndSwap(old, (old>>32+1)<<32|uint64(b.idx+1)) {
			p.nfree.Add(1)
			return
		}
	}
}

// grow adds a slab of buffers when the free stack is empty.
func (p *Pool) grow() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if uint32(p.top.Load()) != 0 {
		return nil // another goroutine grew the pool, or a buffer came back
	}
	return p.addSlabLocked()
}

func (p *Pool) addSlabLocked() error {
	if p.closed {
		return ErrPoolClosed
	}
	first := int(p.count.Load())
	n := min(p.perSlab, p.max-first)
	if n <= 0 {
		return errPoolFull
	}
	slab, err := allocSlab(n * p.size)
	if err != nil {
		return fmt.Errorf("ring: allocating %d buffers: %w", n, err)
	}
	p.slabs = append(p.slabs, slab)
	bufs := make([]Packet, n)
	for i := range bufs {
		b := &bufs[i]
		b.data = slab[i*p.size : (i+1)*p.size : (i+1)*p.size]
		b.pool = p
		b.idx = uint32(first + i)
		p.table[first+i] = b
	}
	p.count.Add(int64(n))
	// Pushed last to first, so that Get hands them out in address order.
	for i := n - 1; i >= 0; i-- {
		p.put(&bufs[i])
	}
	return nil
}

// Close releases the slabs. Every buffer must have been returned first (and
// none may still be referenced by the kernel); buffers used after Close
// fault.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, s := range p.slabs {
		errs = append(errs, freeSlab(s))
	}
	p.slabs = nil
	return errors.Join(errs...)
}
