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

// Magic marks every load generator datagram ("engL").
const Magic uint32 = 0x656e674c

// HeaderLen is the size of the header at the start of every datagram, and
// so the smallest payload size. The header is shaped like a WireGuard
// transport data message, because the generator and the sink stand in for
// WireGuard and engarde treats WireGuard's messages specially (it drops the
// extra copies of each before WireGuard): the message type 4 and three zero
// bytes, the run id where WireGuard has the receiver's session index, the
// sequence number where it has its 64-bit counter (both little-endian),
// then the send time (8 bytes), the magic (4) and 4 zero bytes, making the
// 32 bytes of the shortest real transport message. Padding follows up to
// the chosen payload size.
const HeaderLen = 32

// wgTransport is WireGuard's transport data message type.
const wgTransport = 4

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
	b[0], b[1], b[2], b[3] = wgTransport, 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:8], h.Run)
	binary.LittleEndian.PutUint64(b[8:16], h.Seq)
	binary.BigEndian.PutUint64(b[16:24], uint64(h.Sent))
	binary.BigEndian.PutUint32(b[24:28], Magic)
	b[28], b[29], b[30], b[31] = 0, 0, 0, 0
}

// Decode reads the header at the start of b. It returns ErrShort or
// ErrMagic for anything that is not a loadgen datagram; the padding is not
// checked.
func Decode(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	if !isHeader(b) {
		return Header{}, ErrMagic
	}
	return Header{
		Run:  binary.LittleEndian.Uint32(b[4:8]),
		Seq:  binary.LittleEndian.Uint64(b[8:16]),
		Sent: int64(binary.BigEndian.Uint64(b[16:24])),
	}, nil
}

// isHeader reports whether b (at least HeaderLen long) starts with a
// header as Put writes it: type, zero bytes and magic in place.
func isHeader(b []byte) bool {
	return b[0] == wgTransport && b[1]|b[2]|b[3] == 0 &&
		binary.BigEndian.Uint32(b[24:28]) == Magic && b[28]|b[29]|b[30]|b[31] == 0
}
