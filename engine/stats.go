package engine

import (
	"sync/atomic"
	"time"
)

// Stats counts what crossed one socket. Every field is an atomic the data
// path updates and the control plane reads; none is reset.
type Stats struct {
	// Written by the socket's reader.
	RxPackets atomic.Uint64 // datagrams received
	RxBytes   atomic.Uint64 // payload bytes received
	LastRx    atomic.Int64  // unix nanoseconds of the last receive, 0 if none
	// Oversize counts datagrams dropped because they did not fit a buffer.
	Oversize atomic.Uint64
	// RxErrors counts failed receives.
	RxErrors atomic.Uint64

	_ [64]byte // the sender's counters live on another cache line

	// Written by the socket's sender.
	TxPackets atomic.Uint64 // datagrams sent
	TxBytes   atomic.Uint64 // payload bytes sent
	// DropFull counts datagrams dropped because the socket's backlog was
	// full (the link is slower than the traffic or not draining at all).
	DropFull atomic.Uint64
	// DropTimeout counts datagrams not sent within writeTimeout.
	DropTimeout atomic.Uint64
	// DropError counts datagrams the kernel refused (network unreachable,
	// interface down); SendErrors counts the failed calls.
	DropError  atomic.Uint64
	SendErrors atomic.Uint64
	// DropClosed counts datagrams discarded because the socket closed
	// before they went out.
	DropClosed atomic.Uint64
}

// Counters are one socket's Stats read at one moment: the one shape in
// which the counters leave the engine for the API, the page, the metrics
// and the logs. They only grow, except that a socket that is rebuilt
// starts again from zero.
type Counters struct {
	RxPackets, RxBytes uint64
	// LastRx is when the socket last received a datagram; zero if never.
	LastRx time.Time
	// Receive side: datagrams too large for a buffer, failed receives.
	Oversize, RxErrors uint64
	TxPackets, TxBytes uint64
	// Send side, drops by reason: the backlog was full, the write timeout
	// passed, the kernel refused, the socket closed first. SendErrors
	// counts failed send calls.
	DropFull, DropTimeout, DropError, DropClosed uint64
	SendErrors                                   uint64
}

// Read returns the counters now. Each is read atomically; together they
// are a moment's view, not a consistent snapshot.
func (s *Stats) Read() Counters {
	return Counters{
		RxPackets:   s.RxPackets.Load(),
		RxBytes:     s.RxBytes.Load(),
		LastRx:      s.LastReceive(),
		Oversize:    s.Oversize.Load(),
		RxErrors:    s.RxErrors.Load(),
		TxPackets:   s.TxPackets.Load(),
		TxBytes:     s.TxBytes.Load(),
		DropFull:    s.DropFull.Load(),
		DropTimeout: s.DropTimeout.Load(),
		DropError:   s.DropError.Load(),
		DropClosed:  s.DropClosed.Load(),
		SendErrors:  s.SendErrors.Load(),
	}
}

// Drops returns all datagrams the socket's sender dropped.
func (c *Counters) Drops() uint64 {
	return c.DropFull + c.DropTimeout + c.DropError + c.DropClosed
}

// LastReceive returns when the last datagram arrived, or the zero time.
func (s *Stats) LastReceive() time.Time {
	if ns := s.LastRx.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Drops returns all datagrams this socket's sender dropped.
func (s *Stats) Drops() uint64 {
	return s.DropFull.Load() + s.DropTimeout.Load() + s.DropError.Load() + s.DropClosed.Load()
}
