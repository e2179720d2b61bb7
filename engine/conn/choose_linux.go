package conn

import (
	"sync"

	"github.com/engarde-project/engarde/engine/internal/uring"
)

// preferURing says whether "auto" picks io_uring when the kernel has it. It
// follows the side-by-side measurements of make bench (README,
// "Performance"): mmsg is faster here.
const preferURing = false

// fallbackLogged makes sure the fallback is explained once per process.
var fallbackLogged sync.Once

func defaultBackend(warn Logf) Backend { return autoBackend(warn, preferURing, uring.Probe) }

// autoBackend is "auto": io_uring when wanted and probe passes, mmsg
// otherwise, saying why once per process when io_uring was wanted.
func autoBackend(warn Logf, wantURing bool, probe func() (*uring.Features, error)) Backend {
	if !wantURing {
		return NewMmsg(warn)
	}
	if _, err := probe(); err != nil {
		fallbackLogged.Do(func() { warn.printf("%v; using the mmsg backend", err) })
		return NewMmsg(warn)
	}
	b, err := NewURing(URingOptions{Log: warn})
	if err != nil {
		return NewMmsg(warn)
	}
	return b
}

func openMmsg(warn Logf) (Backend, error) { return NewMmsg(warn), nil }
