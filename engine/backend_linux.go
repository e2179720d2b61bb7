package engine

import (
	"sync"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// platformBackends lists the backends this kernel and process can run, for
// the tests that run over every backend.
func platformBackends() []Backend {
	bs := []Backend{NewMmsgBackend(nil)}
	if u, err := NewURingBackend(nil); err == nil {
		bs = append(bs, u)
	}
	return bs
}

// preferURing says whether "auto" picks io_uring when the kernel has it.
// It follows the side-by-side measurements in the README.
const preferURing = false

// probeURing is sys.ProbeURing; tests replace it to see the fallback.
var probeURing = sys.ProbeURing

// fallbackLogged makes sure the fallback is explained once per process.
var fallbackLogged sync.Once

func defaultBackend(log *Logger) Backend { return autoBackend(log, preferURing) }

// autoBackend is "auto": io_uring when preferred and the probe passes,
// mmsg otherwise, saying why once per process when io_uring was wanted.
func autoBackend(log *Logger, wantURing bool) Backend {
	if !wantURing {
		return NewMmsgBackend(log)
	}
	if _, err := probeURing(); err != nil {
		if log != nil {
			fallbackLogged.Do(func() { log.warnf("%v; using the mmsg backend", err) })
		}
		return NewMmsgBackend(log)
	}
	b, err := NewURingBackend(log)
	if err != nil {
		return NewMmsgBackend(log)
	}
	return b
}

func openMmsg(log *Logger) (Backend, error) { return NewMmsgBackend(log), nil }

func openURing(log *Logger) (Backend, error) { return NewURingBackend(log) }
