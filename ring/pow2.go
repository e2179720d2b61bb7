package ring

import "fmt"

// cacheLinePad keeps fields written by different goroutines on different
// cache lines, so a producer's store does not invalidate the consumer's
// line (false sharing).
type cacheLinePad [64]byte

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
