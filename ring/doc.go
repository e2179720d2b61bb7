// Package ring holds the packet buffer pool and the lock-free queue that the
// engine's data path is built on: Pool hands out fixed-size, reference-counted
// Packet buffers carved from slabs outside the Go heap, and MPMC is the bounded
// queue of a sender's backlog.
//
// Queues have a power-of-two capacity and index their slots with a mask.
// Positions are free-running uint64 counters: they never wrap in practice
// (2^64 packets), so "full" and "empty" are plain subtractions.
package ring
