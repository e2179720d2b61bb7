//go:build !linux

package loadgen

import "github.com/engarde-project/engarde/engine"

// mmsgBackend returns nil: recvmmsg and sendmmsg are Linux system calls.
func mmsgBackend() engine.Backend { return nil }
