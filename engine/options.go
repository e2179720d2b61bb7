package engine

import (
	"fmt"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// Options are the data-path settings both roles share. The zero value is
// the engine the programs run: every zero field takes its value from
// config/defaults, and the offloads and the duplicate filter are on unless
// disabled.
type Options struct {
	// Backend opens the sockets; nil picks conn.Default.
	Backend conn.Backend
	// BatchSize is the most datagrams moved per system call.
	BatchSize int
	// QueueLength is the backlog per destination, in packets, used while
	// a socket's buffer is full.
	QueueLength int
	// BufferSize is the size of each packet buffer; larger datagrams are
	// counted and dropped. GRO needs 65536 (a whole train) and is off
	// below it.
	BufferSize int
	// DisableGSO stops sending runs of equal-sized datagrams as one UDP
	// GSO train.
	DisableGSO bool
	// DisableGRO stops receiving trains of datagrams coalesced by the
	// kernel.
	DisableGRO bool
	// DisableDedup lets every copy of a WireGuard transport message
	// through to WireGuard (which drops them as replays, after decrypting
	// each), instead of dropping the copies after the first.
	DisableDedup bool
	// WriteTimeout is how long a packet may wait for a full socket before
	// it is dropped for that socket; no limit when negative.
	WriteTimeout time.Duration
	// Log receives the engine's messages; nil discards them.
	Log *Logger
}

func (o *Options) setDefaults() error {
	o.Log = o.Log.orNop()
	if o.Backend == nil {
		o.Backend = conn.Default(o.Log.Warnf)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = defaults.BatchSize
	}
	if o.QueueLength <= 0 {
		o.QueueLength = defaults.QueueLength
	}
	if o.BufferSize <= 0 {
		o.BufferSize = defaults.BufferSize
	}
	if o.BufferSize > defaults.MaxBufferSize {
		return fmt.Errorf("buffer size %d larger than a UDP datagram can be", o.BufferSize)
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaults.WriteTimeout
	}
	if o.BufferSize < defaults.MaxBufferSize {
		// A train can be up to 64 KiB; smaller buffers would truncate.
		o.DisableGRO = true
	}
	return nil
}

// timeout returns the write timeout the senders use, in nanoseconds (0:
// none).
func (o *Options) timeout() int64 {
	if o.WriteTimeout < 0 {
		return 0
	}
	return int64(o.WriteTimeout)
}

func (o *Options) socket() conn.SocketOptions {
	return conn.SocketOptions{GSO: !o.DisableGSO, GRO: !o.DisableGRO, BatchSize: o.BatchSize}
}

// newPool sizes a buffer pool for sockets sockets with a backlog each.
func (o *Options) newPool(sockets int) (*ring.Pool, error) {
	initial := sockets*(o.BatchSize+o.QueueLength/4) + o.BatchSize
	// Room to grow for links and client addresses that come later, up to
	// 256 MiB of buffers (address space: a buffer's pages are touched only
	// as far as data lands in it).
	limit := max(4*initial, (256<<20)/o.BufferSize)
	size := o.BufferSize
	if lp, ok := o.Backend.(conn.Looper); ok {
		// Its loop receives into the buffers after a header of its own.
		size += lp.Headroom()
	}
	return ring.NewPool(size, min(initial, limit), limit)
}

// fixedSettings collects the settings a reload asked to change that only a
// restart can change; Reconfigure applies the rest and reports these.
type fixedSettings []string

// check adds name when changed.
func (f *fixedSettings) check(name string, changed bool) {
	if changed {
		*f = append(*f, name)
	}
}

// engine adds "engine" when next's data-path settings, which are fixed for
// a run, differ from cur's. A nil Backend in next means "the same".
func (f *fixedSettings) engine(next, cur Options) {
	// cur has its defaults applied (GRO off with small buffers); next may
	// not.
	nextGRO := !next.DisableGRO && (next.BufferSize == 0 || next.BufferSize >= defaults.MaxBufferSize)
	f.check("engine", (next.Backend != nil && next.Backend.Name() != cur.Backend.Name()) ||
		(next.BatchSize != 0 && next.BatchSize != cur.BatchSize) ||
		(next.QueueLength != 0 && next.QueueLength != cur.QueueLength) ||
		(next.BufferSize != 0 && next.BufferSize != cur.BufferSize) ||
		next.DisableGSO != cur.DisableGSO || nextGRO != !cur.DisableGRO)
}

func (f fixedSettings) err() error {
	if len(f) == 0 {
		return nil
	}
	return fmt.Errorf("%v cannot change without a restart; kept the running values", []string(f))
}
