package loadgen

import "math/bits"

// MaxJump bounds how far beyond the highest sequence number seen so far a
// Tracker accepts one: a corrupt or foreign datagram must not make it grow
// its bitmap by gigabytes. 2^26 sequence numbers are 8 MiB of bitmap, and a
// minute at a million packets per second.
const MaxJump = 1 << 26

// trackerChunk is the smallest growth of the bitmap, in 64-bit words
// (2^16 words: 4 Mi sequence numbers, 512 KiB).
const trackerChunk = 1 << 16

// Verdict says what a Tracker made of a sequence number.
type Verdict uint8

// Verdicts of Tracker.Add.
const (
	// InOrder is a first copy higher than any seen before.
	InOrder Verdict = iota
	// Reordered is a first copy that arrived after a higher sequence number.
	Reordered
	// Duplicate is a copy of a sequence number already seen.
	Duplicate
	// OutOfRange is a sequence number MaxJump or more beyond the highest
	// seen; it is counted and otherwise ignored.
	OutOfRange
)

// Tracker counts the sequence numbers of one run as they arrive, possibly
// duplicated and out of order, in a bitmap of the numbers seen. Sequence
// numbers are expected to start near 0 and to be dense, as a generator sends
// them. A Tracker is not safe for concurrent use.
type Tracker struct {
	// Received counts distinct sequence numbers.
	Received uint64
	// Duplicates counts copies of sequence numbers already received.
	Duplicates uint64
	// Reordered counts distinct sequence numbers that arrived after a
	// higher one.
	Reordered uint64
	// OutOfRange counts sequence numbers rejected as too far ahead.
	OutOfRange uint64

	highest uint64
	bits    []uint64
}

// NewTracker returns a Tracker whose bitmap already holds sequence numbers
// below hint, so that a run of that size never grows it.
func NewTracker(hint uint64) *Tracker {
	return &Tracker{bits: make([]uint64, (hint+63)/64)}
}

// Add records the arrival of seq and says what it was.
func (t *Tracker) Add(seq uint64) Verdict {
	if seq >= t.highest+MaxJump {
		t.OutOfRange++
		return OutOfRange
	}
	w := seq / 64
	if w >= uint64(len(t.bits)) {
		t.grow(w + 1)
	}
	m := uint64(1) << (seq % 64)
	if t.bits[w]&m != 0 {
		t.Duplicates++
		return Duplicate
	}
	t.bits[w] |= m
	t.Received++
	if seq < t.highest {
		t.Reordered++
		return Reordered
	}
	t.highest = seq
	return InOrder
}

// grow makes the bitmap at least n words long, at least doubling it so that
// a long run grows it a logarithmic number of times.
func (t *Tracker) grow(n uint64) {
	n = max(n, 2*uint64(len(t.bits)), trackerChunk)
	nb := make([]uint64, n)
	copy(nb, t.bits)
	t.bits = nb
}

// Seen reports whether seq has been received.
func (t *Tracker) Seen(seq uint64) bool {
	w := seq / 64
	return w < uint64(len(t.bits)) && t.bits[w]&(1<<(seq%64)) != 0
}

// Count returns how many distinct sequence numbers in [lo, hi) have been
// received.
func (t *Tracker) Count(lo, hi uint64) uint64 {
	hi = min(hi, uint64(len(t.bits))*64)
	if lo >= hi {
		return 0
	}
	lw, hw := lo/64, (hi-1)/64
	first := ^uint64(0) << (lo % 64)       // bits lo%64.. of word lw
	last := ^uint64(0) >> (63 - (hi-1)%64) // bits ..(hi-1)%64 of word hw
	if lw == hw {
		return uint64(bits.OnesCount64(t.bits[lw] & first & last))
	}
	n := bits.OnesCount64(t.bits[lw]&first) + bits.OnesCount64(t.bits[hw]&last)
	for _, x := range t.bits[lw+1 : hw] {
		n += bits.OnesCount64(x)
	}
	return uint64(n)
}

// Lost returns how many of sequence numbers 0..sent-1 have not been
// received.
func (t *Tracker) Lost(sent uint64) uint64 { return sent - t.Count(0, sent) }
