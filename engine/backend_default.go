//go:build !linux

package engine

import "errors"

func platformBackends() []Backend { return nil }

func defaultBackend(*Logger) Backend { return NewStdBackend() }

func openMmsg(*Logger) (Backend, error) {
	return nil, errors.New("backend mmsg needs Linux (recvmmsg, sendmmsg)")
}
