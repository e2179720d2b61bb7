//go:build !linux

package sys

import (
	"errors"
	"fmt"
)

// ErrURingUnsupported is returned, wrapped with the reason, when io_uring
// is unavailable: always, on this OS.
var ErrURingUnsupported = fmt.Errorf("io_uring unavailable: %w", errors.ErrUnsupported)

// URingFeatures is what ProbeURing found.
type URingFeatures struct {
	Flags    uint32
	Features uint32
	SendZC   bool
}

// ProbeURing reports that io_uring is Linux's.
func ProbeURing() (*URingFeatures, error) {
	return nil, fmt.Errorf("%w: not Linux", ErrURingUnsupported)
}
