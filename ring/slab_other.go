//go:build !unix

package ring

// allocSlab falls back to the Go heap where there is no mmap.
func allocSlab(n int) ([]byte, error) { return make([]byte, n), nil }

func freeSlab([]byte) error { return nil }
