package loadgen

import (
	"fmt"

	"github.com/engarde-project/engarde/engine"
)

// NewBackend returns the socket backend called name: "mmsg" (Linux only,
// recvmmsg/sendmmsg) or "std" (portable, one system call per datagram).
// The empty name picks mmsg on Linux and std elsewhere.
func NewBackend(name string) (engine.Backend, error) {
	switch name {
	case "":
		return defaultBackend(), nil
	case "std":
		return engine.NewStdBackend(), nil
	case "mmsg":
		if b := mmsgBackend(); b != nil {
			return b, nil
		}
		return nil, fmt.Errorf("backend %q: needs Linux", name)
	}
	return nil, fmt.Errorf("unknown backend %q (want mmsg or std)", name)
}

func defaultBackend() engine.Backend {
	if b := mmsgBackend(); b != nil {
		return b
	}
	return engine.NewStdBackend()
}
