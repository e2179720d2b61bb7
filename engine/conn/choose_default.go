//go:build !linux

package conn

import (
	"errors"
	"fmt"
)

func defaultBackend(Logf) Backend { return NewStd() }

func openMmsg(Logf) (Backend, error) {
	return nil, errors.New("backend mmsg needs Linux (recvmmsg, sendmmsg)")
}

// NewURing reports that io_uring is Linux's.
func NewURing(URingOptions) (Backend, error) {
	return nil, fmt.Errorf("backend uring needs Linux (io_uring): %w", errors.ErrUnsupported)
}
