//go:build !linux

package uring

import "fmt"

// Probe reports that io_uring is Linux's.
func Probe() (*Features, error) {
	return nil, fmt.Errorf("%w: not Linux", ErrUnsupported)
}
