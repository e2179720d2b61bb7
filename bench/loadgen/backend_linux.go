package loadgen

import "github.com/engarde-project/engarde/engine"

// mmsgBackend returns the recvmmsg/sendmmsg backend.
func mmsgBackend() engine.Backend { return engine.NewMmsgBackend(nil) }
