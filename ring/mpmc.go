package ring

import "sync/atomic"

// MPMC is a bounded lock-free queue that any number of goroutines may push
// to and pop from. It is Dmitry Vyukov's bounded MPMC design: each slot
// carries a sequence number that says whose turn it is (a producer's for
// lap k when seq == pos, the consumer's when seq == pos+1), so producers and
// consumers claim positions with one compare-and-swap and never wait on each
// other except for the slot they claimed.
//
// The engine uses it where several goroutines feed one sender (replies from
// every link going to WireGuard).
type MPMC[T any] struct {
	_     cacheLinePad
	enq   atomic.Uint64
	_     cacheLinePad
	deq   atomic.Uint64
	_     cacheLinePad
	mask  uint64
	cells []cell[T]
}

type cell[T any] struct {
	seq atomic.Uint64
	val T
}

// NewMPMC returns a queue holding up to capacity items; capacity is rounded
// up to a power of two.
func NewMPMC[T any](capacity int) *MPMC[T] {
	n := roundPow2(capacity)
	q := &MPMC[T]{mask: uint64(n - 1), cells: make([]cell[T], n)}
	for i := range q.cells {
		q.cells[i].seq.Store(uint64(i))
	}
	return q
}

// Cap returns the number of items the queue can hold.
func (q *MPMC[T]) Cap() int { return len(q.cells) }

// Len returns an estimate of the number of queued items (exact when no
// push or pop is in progress).
func (q *MPMC[T]) Len() int {
	d := q.deq.Load()
	e := q.enq.Load()
	if e < d {
		return 0
	}
	return int(e - d)
}

// Push appends v and reports whether there was room.
func (q *MPMC[T]) Push(v T) bool {
	pos := q.enq.Load()
	for {
		c := &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq) - int64(pos); {
		case dif == 0:
			if q.enq.CompareAndSwap(pos, pos+1) {
				c.val = v
				// Storing seq = pos+1 hands the slot to the consumer of
				// this lap; it must follow the value write.
				c.seq.Store(pos + 1)
				return true
			}
			pos = q.enq.Load()
		case dif < 0:
			// The slot still holds an item from the previous lap: full.
			return false
		default:
			// Another producer took pos; catch up.
			pos = q.enq.Load()
		}
	}
}

// Pop removes and returns the oldest item.
func (q *MPMC[T]) Pop() (v T, ok bool) {
	pos := q.deq.Load()
	for {
		c := &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq) - int64(pos+1); {
		case dif == 0:
			if q.deq.CompareAndSwap(pos, pos+1) {
				v = c.val
				var zero T
				c.val = zero
				// Hand the slot to the producer of the next lap.
				c.seq.Store(pos + q.mask + 1)
				return v, true
			}
			pos = q.deq.Load()
		case dif < 0:
			// Not yet written in this lap: empty (or a producer is
			// between its claim and its publish, which reads as empty).
			return v, false
		default:
			pos = q.deq.Load()
		}
	}
}
