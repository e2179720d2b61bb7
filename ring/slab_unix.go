//go:build unix

package ring

import "syscall"

// allocSlab maps anonymous memory outside the Go heap. The pages are
// touched lazily, so an unused part of a slab costs address space only.
func allocSlab(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

func freeSlab(b []byte) error { return syscall.Munmap(b) }
