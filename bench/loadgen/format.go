// Package loadgen generates UDP load through engarde and measures what comes
// back: throughput, loss, duplicates, reordering and round-trip time.
//
// A Generator (Run) sends numbered, timestamped datagrams to a target from
// one socket and receives the echoes on the same socket; a Sink listens,
// echoes and counts. Behind an engarde tunnel the generator measures the
// whole path: client, links, server, sink and back.
//
// The packet path allocates nothing: buffers and batches are allocated once
// per run, the histogram is a fixed array and the sequence tracker's bitmap
// grows in large steps.
package loadgen

import (
	"encoding/binary"
	"errors"
	"time"
)

// Magic opens every load generator datagram ("engL").
const Magic uint32 = 0x656e674c

// HeaderLen is the size of the header at the start of every datagram, and
// so the smallest payload size: magic (4 bytes), run id (4), sequence
// number (8) and send time (8), all big-endian. Padding follows up to the
// chosen payload size.
const HeaderLen = 24

// Header is the decoded header of a datagram.
type Header struct {
	// Run identifies a generator run; a generator picks it at random so
	// that a sink can tell runs apart.
	Run uint32
	// Seq numbers the datagrams of a run from 0. Copies of a datagram
	// share it.
	Seq uint64
	// Sent is the send time in nanoseconds on the generating process's
	// monotonic clock (Now).
	Sent int64
}

// Errors returned by Decode.
var (
	// ErrShort is returned for a datagram shorter than HeaderLen.
	ErrShort = errors.New("datagram shorter than the loadgen header")
	// ErrMagic is returned for a datagram that does not start with Magic.
	ErrMagic = errors.New("not a loadgen datagram")
)

// epoch is the origin of Now; time.Since reads the monotonic clock.
var epoch = time.Now()

// Now returns the time elapsed since the process started, in nanoseconds,
// from the monotonic clock. Header.Sent holds such a value, so round-trip
// times are only meaningful in the process that sent the datagram.
func Now() int64 { return int64(time.Since(epoch)) }

// Put writes h with the magic into b[:HeaderLen] and leaves the rest of b
// (the padding) alone. It panics when len(b) < HeaderLen, like
// binary.BigEndian.PutUint64 does.
func Put(b []byte, h Header) {
	_ = b[HeaderLen-1] // one bounds check
	binary.BigEndian.PutUint32(b[0:4], Magic)
	binary.BigEndian.PutUint32(b[4:8], h.Run)
	binary.BigEndian.PutUint64(b[8:16], h.Seq)
	binary.BigEndian.PutUint64(b[16:24], uint64(h.Sent))
}

// Decode reads the header at the start of b. It returns ErrShort or
// ErrMagic for anything that is not a loadgen datagram; the padding is not
// checked.
func Decode(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	if binary.BigEndian.Uint32(b[0:4]) != Magic {
		return Header{}, ErrMagic
	}
	return Header{
		Run:  binary.BigEndian.Uint32(b[4:8]),
		Seq:  binary.BigEndian.Uint64(b[8:16]),
		Sent: int64(binary.BigEndian.Uint64(b[16:24])),
	}, nil
}
