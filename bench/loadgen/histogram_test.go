package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBuckets(t *testing.T) {
	// Buckets tile [0, 2^maxExp) without gaps or overlaps, each at most
	// 1/subCount of its lower bound wide.
	next := int64(0)
	for i := range numBuckets {
		lo, w := bucketRange(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		if lo >= subCount && float64(w)/float64(lo) > 1.0/subCount {
			t.Fatalf("bucket %d [%d, +%d) too wide", i, lo, w)
		}
		for _, v := range []int64{lo, lo + w - 1} {
			if b := bucketOf(v); b != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, b, i)
			}
		}
		next = lo + w
	}
	if next != 1<<maxExp {
		t.Fatalf("buckets end at %d, want %d", next, int64(1)<<maxExp)
	}
	if bucketOf(-5) != 0 || bucketOf(math.MaxInt64) != numBuckets-1 {
		t.Fatal("out-of-range values not clamped")
	}
}

func TestHistogramAccuracy(t *testing.T) {
	const n = 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	logUniform := func(lo, hi float64) func() int64 {
		return func() int64 { return int64(lo * math.Pow(hi/lo, rng.Float64())) }
	}
	for _, tc := range []struct {
		name string
		gen  func() int64
	}{
		{"log-uniform 1µs..60s", logUniform(1e3, 60e9)},
		{"uniform 10µs..1ms", func() int64 { return 10_000 + rng.Int64N(990_000) }},
		{"exact below 128ns", func() int64 { return rng.Int64N(128) }},
		{"constant", func() int64 { return 123_456 }},
		{"bimodal", func() int64 {
			if rng.IntN(100) < 99 {
				return 50_000 + rng.Int64N(1000)
			}
			return 20_000_000 + rng.Int64N(1_000_000)
		}},
		{"beyond range", func() int64 { return 70e9 + rng.Int64N(10e9) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			vals := make([]int64, n)
			var sum float64
			for i := range vals {
				vals[i] = tc.gen()
				h.Record(vals[i])
				sum += float64(vals[i])
			}
			slices.Sort(vals)
			if h.Count() != n || h.Min() != vals[0] || h.Max() != vals[n-1] {
				t.Fatalf("count %d min %d max %d, want %d %d %d", h.Count(), h.Min(), h.Max(), n, vals[0], vals[n-1])
			}
			if m := sum / n; math.Abs(h.Mean()-m) > 1e-9*m {
				t.Errorf("mean %v, want %v", h.Mean(), m)
			}
			tol := 0.01
			if tc.name == "beyond range" {
				tol = 0.2 // one overflow bucket, clamped to min and max
			}
			for _, q := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
				want := vals[max(int(math.Ceil(q*n))-1, 0)]
				got := h.Quantile(q)
				if rel := math.Abs(float64(got-want)) / float64(max(want, 1)); rel > tol {
					t.Errorf("Quantile(%v) = %d, want %d (error %.3f%%)", q, got, want, 100*rel)
				}
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := range int64(10_000) {
		v := i*i*37 + 1000
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var empty Histogram
	a.Merge(&empty)
	empty.Merge(&a)
	empty.Merge(&b)
	if empty != all {
		t.Fatalf("merged histogram differs: count %d min %d max %d mean %v, want %d %d %d %v",
			empty.Count(), empty.Min(), empty.Max(), empty.Mean(), all.Count(), all.Min(), all.Max(), all.Mean())
	}
	empty.Reset()
	if empty.Count() != 0 || empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Fatal("Reset left values behind")
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	vals := make([]int64, 1024)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range vals {
		vals[i] = int64(1e3 * math.Pow(6e7, rng.Float64()))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.Record(vals[i&1023])
		i++
	}
}
