package conn

import (
	"fmt"

	"github.com/engarde-project/engarde/config/defaults"
)

// Default returns the backend that "auto" chooses: on Linux the one that
// measured faster here (mmsg; see preferURing), falling back to mmsg with one
// line to warn saying why when io_uring was preferred but is unavailable;
// elsewhere the portable std backend.
func Default(warn Logf) Backend { return defaultBackend(warn) }

// Open returns the backend called name, one of defaults.Backends ("auto"
// or "" for Default).
func Open(name string, warn Logf) (Backend, error) {
	switch name {
	case "", "auto":
		return Default(warn), nil
	case "mmsg":
		return openMmsg(warn)
	case "uring":
		return NewURing(URingOptions{Log: warn})
	case "std":
		return NewStd(), nil
	}
	return nil, fmt.Errorf("unknown backend %q (want one of %v)", name, defaults.Backends)
}

// URingOptions configure the io_uring backend.
type URingOptions struct {
	// Log receives the backend's rare warnings; nil discards them.
	Log Logf
}
