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
