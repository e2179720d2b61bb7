//go:build !linux

package engine

import (
	"errors"
	"fmt"
)

func platformBackends() []Backend { return nil }

func defaultBackend(*Logger) Backend { return NewStdBackend() }

func openMmsg(*Logger) (Backend, error) {
	return nil, errors.New("backend mmsg needs Linux (recvmmsg, sendmmsg)")
}

func openURing(*Logger) (Backend, error) {
	return nil, fmt.Errorf("backend uring needs Linux (io_uring): %w", errors.ErrUnsupported)
}
