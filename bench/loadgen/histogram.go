package loadgen

import (
	"math"
	"math/bits"
)

// Histogram layout, log-linear as in HdrHistogram: values below subCount
// nanoseconds have a bucket each; above, every power of two [2^e, 2^(e+1))
// is cut into subCount equal buckets of width 2^(e-subBits). A bucket is
// then at most 1/subCount (0.8%) of its lower bound wide, and its midpoint
// is within 0.4% of any value in it.
const (
	subBits  = 7
	subCount = 1 << subBits
	// maxExp bounds the range: values up to 2^36 ns (68.7 s) have their
	// own bucket, larger ones share the last.
	maxExp     = 36
	numBuckets = subCount + (maxExp-subBits)*subCount
)

// Histogram records durations in nanoseconds, from 1 ns to about 68 s, with
// a relative error of at most 0.4% on quantiles; Min, Max and Mean are exact.
// The zero value is empty and ready to use. A Histogram is not safe for
// concurrent use: record from one goroutine and merge the results.
type Histogram struct {
	counts   [numBuckets]uint64
	count    uint64
	min, max int64
	sum      float64
}

// bucketOf returns the index of the bucket holding v (clamped to 0 and to
// the last bucket).
func bucketOf(v int64) int {
	if v < subCount {
		return int(max(v, 0))
	}
	e := 63 - bits.LeadingZeros64(uint64(v)) // floor(log2 v) >= subBits
	if e >= maxExp {
		return numBuckets - 1
	}
	sub := int(v>>(e-subBits)) & (subCount - 1) // the bits after the leading one
	return subCount + (e-subBits)*subCount + sub
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (lo, width int64) {
	if i < subCount {
		return int64(i), 1
	}
	g, sub := (i-subCount)/subCount, (i-subCount)%subCount
	e := g + subBits
	width = int64(1) << (e - subBits)
	return int64(1)<<e + int64(sub)*width, width
}

// Record adds one value in nanoseconds. Negative values count as 0.
func (h *Histogram) Record(ns int64) {
	ns = max(ns, 0)
	h.counts[bucketOf(ns)]++
	if h.count == 0 || ns < h.min {
		h.min = ns
	}
	if ns > h.max {
		h.max = ns
	}
	h.count++
	h.sum += float64(ns)
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Min returns the smallest value recorded, 0 when there is none.
func (h *Histogram) Min() int64 { return h.min }

// Max returns the largest value recorded, 0 when there is none.
func (h *Histogram) Max() int64 { return h.max }

// Mean returns the mean of the values recorded, 0 when there is none.
func (h *Histogram) Mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / float64(h.count)
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// values lie: the ceil(q*Count)-th smallest, as the midpoint of its bucket
// kept within [Min, Max]. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) int64 {
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = min(max(rank, 1), h.count)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, w := bucketRange(i)
			return min(max(lo+(w-1)/2, h.min), h.max)
		}
	}
	return h.max // not reached: the counts add up to count
}

// Merge adds the values recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.count += o.count
	h.sum += o.sum
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{} }
