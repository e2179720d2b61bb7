package engine

import (
	"fmt"
	"time"

	"github.com/engarde-project/engarde/ring"
)

// Options are the data-path settings both roles share. The zero value is
// usable: defaults apply where a field is zero, and GSO and GRO are off.
type Options struct {
	// Backend opens the sockets; nil picks DefaultBackend.
	Backend Backend
	// BatchSize is the most datagrams moved per system call
	// (IdealBatchSize when 0).
	BatchSize int
	// QueueLength is the backlog per destination, in packets, used when a
	// socket's buffer is full (1024 when 0).
	QueueLength int
	// BufferSize is the size of each packet buffer (2048 when 0; GRO
	// needs 65536 to be worth it). Larger datagrams are counted and
	// dropped.
	BufferSize int
	// GSO sends runs of equal-sized datagrams as one UDP GSO train.
	GSO bool
	// GRO receives trains of datagrams coalesced by the kernel.
	GRO bool
	// Dedup drops the copies of a WireGuard transport message after the
	// first, before they reach WireGuard (which would drop them as
	// replays, after decrypting each).
	Dedup bool
	// WriteTimeout is how long a packet may wait for a full socket before
	// it is dropped for that socket: 10 ms when 0, no limit when negative.
	WriteTimeout time.Duration
	// Log receives the engine's messages; nil discards them.
	Log *Logger
}

// Defaults.
const (
	DefaultQueueLength  = 1024
	DefaultBufferSize   = 2048
	DefaultWriteTimeout = 10 * time.Millisecond
)

func (o *Options) setDefaults() error {
	o.Log = o.Log.orNop()
	if o.Backend == nil {
		o.Backend = DefaultBackend(o.Log)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = IdealBatchSize
	}
	if o.QueueLength <= 0 {
		o.QueueLength = DefaultQueueLength
	}
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.BufferSize > 65536 {
		return fmt.Errorf("buffer size %d larger than a UDP datagram can be", o.BufferSize)
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.GRO && o.BufferSize < 65536 {
		// A train can be up to 64 KiB; smaller buffers would truncate.
		o.GRO = false
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

func (o *Options) socket() SocketOptions {
	return SocketOptions{GSO: o.GSO, GRO: o.GRO, BatchSize: o.BatchSize}
}

// newPool sizes a buffer pool for sockets sockets with a backlog each.
func (o *Options) newPool(sockets int) (*ring.Pool, error) {
	initial := sockets*(o.BatchSize+o.QueueLength/4) + o.BatchSize
	// Room to grow for links and client addresses that come later, up to
	// 256 MiB of buffers (address space: a buffer's pages are touched only
	// as far as data lands in it).
	limit := max(4*initial, (256<<20)/o.BufferSize)
	return ring.NewPool(o.BufferSize, min(initial, limit), limit)
}

// DefaultBackend returns the fastest backend this OS has, as "auto"
// chooses it: on Linux the one that measured faster here, falling back to
// mmsg with one log line saying why when io_uring is unavailable.
func DefaultBackend(log *Logger) Backend { return defaultBackend(log) }

// BackendNames lists the names OpenBackend accepts.
var BackendNames = []string{"auto", "mmsg", "uring", "std"}

// OpenBackend returns the backend called name ("auto" or "" for the
// default).
func OpenBackend(name string, log *Logger) (Backend, error) {
	switch name {
	case "", "auto":
		return DefaultBackend(log), nil
	case "mmsg":
		return openMmsg(log)
	case "uring":
		return openURing(log)
	case "std":
		return NewStdBackend(), nil
	}
	return nil, fmt.Errorf("unknown backend %q (want one of %v)", name, BackendNames)
}
