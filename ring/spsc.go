// Package ring holds the lock-free queues and the packet buffer pool that the
// engine's data path is built on.
//
// Every queue here has a power-of-two capacity and indexes its slots with a
// mask. Positions are free-running uint64 counters: they never wrap in
// practice (2^64 packets), so "full" and "empty" are plain subtractions.
package ring

import (
	"fmt"
	"sync/atomic"
)

// cacheLinePad keeps fields written by different goroutines on different
// cache lines, so a producer's store does not invalidate the consumer's
// line (false sharing).
type cacheLinePad [64]byte

// SPSC is a bounded single-producer single-consumer queue.
//
// Exactly one goroutine may call Push and exactly one (possibly other)
// goroutine may call Pop, PopBatch and Peek. Len may be called from anywhere
// and is a snapshot.
type SPSC[T any] struct {
	_    cacheLinePad
	head atomic.Uint64 // next slot to read; written only by the consumer
	// tailCache is the consumer's last view of tail, so that it reads the
	// producer's cache line only when it has run out of known items.
	tailCache uint64
	_         cacheLinePad
	tail      atomic.Uint64 // next slot to write; written only by the producer
	// headCache is the producer's last view of head, for the same reason.
	headCache uint64
	_         cacheLinePad
	mask      uint64
	slots     []T
}

// NewSPSC returns a queue holding up to capacity items; capacity is rounded
// up to a power of two.
func NewSPSC[T any](capacity int) *SPSC[T] {
	n := roundPow2(capacity)
	return &SPSC[T]{mask: uint64(n - 1), slots: make([]T, n)}
}

// Cap returns the number of items the queue can hold.
func (q *SPSC[T]) Cap() int { return len(q.slots) }

// Len returns the number of items queued at the moment of the call.
func (q *SPSC[T]) Len() int {
	// Load head first: tail only grows, so tail-head can then not be
	// negative even if both move between the loads.
	h := q.head.Load()
	return int(q.tail.Load() - h)
}

// Push appends v and reports whether there was room. Producer only.
func (q *SPSC[T]) Push(v T) bool {
	t := q.tail.Load() // our own counter: no other writer
	if t-q.headCache == uint64(len(q.slots)) {
		q.headCache = q.head.Load()
		if t-q.headCache == uint64(len(q.slots)) {
			return false
		}
	}
	q.slots[t&q.mask] = v
	// The store to tail publishes the slot write above: Go's atomics are
	// sequentially consistent, so a consumer that observes the new tail
	// also observes the slot.
	q.tail.Store(t + 1)
	return true
}

// Pop removes and returns the oldest item. Consumer only.
func (q *SPSC[T]) Pop() (v T, ok bool) {
	h := q.head.Load()
	if h == q.tailCache {
		q.tailCache = q.tail.Load()
		if h == q.tailCache {
			return v, false
		}
	}
	i := h & q.mask
	v = q.slots[i]
	var zero T
	q.slots[i] = zero // drop the reference so the GC can see it is gone
	// Publishing head hands the slot back to the producer; the slot must be
	// read (and cleared) before this store.
	q.head.Store(h + 1)
	return v, true
}

// PopBatch moves up to len(dst) of the oldest items into dst and returns how
// many it moved. It loads the producer's position once and publishes its own
// once, whatever the batch size. Consumer only.
func (q *SPSC[T]) PopBatch(dst []T) int {
	h := q.head.Load()
	avail := q.tailCache - h
	if avail < uint64(len(dst)) {
		q.tailCache = q.tail.Load()
		avail = q.tailCache - h
	}
	n := min(avail, uint64(len(dst)))
	var zero T
	for k := uint64(0); k < n; k++ {
		i := (h + k) & q.mask
		dst[k] = q.slots[i]
		q.slots[i] = zero
	}
	if n > 0 {
		q.head.Store(h + n)
	}
	return int(n)
}

// Peek returns the oldest item without removing it. Consumer only.
func (q *SPSC[T]) Peek() (v T, ok bool) {
	h := q.head.Load()
	if h == q.tailCache {
		q.tailCache = q.tail.Load()
		if h == q.tailCache {
			return v, false
		}
	}
	return q.slots[h&q.mask], true
}

// roundPow2 returns the smallest power of two >= n (and at least 2).
func roundPow2(n int) int {
	if n < 2 {
		return 2
	}
	if n > 1<<30 {
		panic(fmt.Sprintf("ring: capacity %d too large", n))
	}
	p := 2
	for p < n {
		p <<= 1
	}
	return p
}
