// Package loadgen generates UDP load through engarde and measures what comes
// back: throughput, loss, duplicates, reordering and round-trip time.
//
// A Generator (Run) sends numbered, timestamped datagrams to a target from
// one socket and receives the echoes on the same socket; a Sink listens,
// echoes and counts. Behind an engarde tunnel the generator measures the
// whole path: client, links, server, sink and back.
//
// The generator and the sink stand in for the two WireGuard peers, whose
// messages engarde recognises by their shape: before any data the
// generator (the initiator) sends handshake initiations and the sink (the
// responder) answers with a handshake response, each picking a session
// index as WireGuard does; the data then travels as transport messages
// carrying the receiver's index. Nothing is encrypted: only the shapes
// and the indices are WireGuard's.
//
// The packet path allocates nothing: buffers and batches are allocated once
// per run, the histogram is a fixed array and the sequence tracker's bitmap
// grows in large steps. Only the handshake allocates.
package loadgen

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"time"
)

// Magic marks every load generator datagram ("engL").
const Magic uint32 = 0x656e674c

// HeaderLen is the size of the header at the start of every data datagram,
// and so the smallest payload size. The header is shaped like a WireGuard
// transport data message (whitepaper, section 5.4.6), because the
// generator and the sink stand in for WireGuard and engarde treats
// WireGuard's messages specially (it forwards only those of the sessions
// it saw negotiated, and drops the extra copies of each before WireGuard):
// the message type 4 and three zero bytes, the receiver's session index
// and the sequence number where WireGuard has its 64-bit counter (both
// little-endian), then the send time (8 bytes), the magic (4) and 4 zero
// bytes, making the 32 bytes of the shortest real transport message.
// Padding follows up to the chosen payload size.
const HeaderLen = 32

// wgTransport is WireGuard's transport data message type.
const wgTransport = 4

// Header is the decoded header of a data datagram.
type Header struct {
	// Index is the receiver's session index, chosen by the receiver in
	// the handshake: the sink's index in the datagrams the generator
	// sends, the generator's in the echoes. It tells runs apart.
	Index uint32
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
	binary.LittleEndian.PutUint32(b[4:8], h.Index)
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
		Index: binary.LittleEndian.Uint32(b[4:8]),
		Seq:   binary.LittleEndian.Uint64(b[8:16]),
		Sent:  int64(binary.BigEndian.Uint64(b[16:24])),
	}, nil
}

// isHeader reports whether b (at least HeaderLen long) starts with a
// header as Put writes it: type, zero bytes and magic in place.
func isHeader(b []byte) bool {
	return b[0] == wgTransport && b[1]|b[2]|b[3] == 0 &&
		binary.BigEndian.Uint32(b[24:28]) == Magic && b[28]|b[29]|b[30]|b[31] == 0
}

// WireGuard's handshake messages (whitepaper, sections 5.4.2 and 5.4.3):
// the type and three zero bytes, then the sender's session index
// (little-endian), and in a response the receiver's, the initiator's
// index. Their sizes are fixed. The generator and the sink fill the rest
// (keys, timestamps, MACs in WireGuard) with random bytes.
const (
	wgInitiation, initiationLen = 1, 148
	wgResponse, responseLen     = 2, 92
)

// putInitiation writes into b[:initiationLen] a handshake initiation from
// the session index sender, with random bytes where WireGuard has its
// keys, timestamp and MACs.
func putInitiation(b []byte, sender uint32) {
	b = b[:initiationLen]
	b[0], b[1], b[2], b[3] = wgInitiation, 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:8], sender)
	fillRandom(b[8:])
}

// parseInitiation returns the sender's index of a datagram shaped like a
// handshake initiation, and false for anything else.
func parseInitiation(b []byte) (sender uint32, ok bool) {
	if len(b) != initiationLen || b[0] != wgInitiation || b[1]|b[2]|b[3] != 0 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[4:8]), true
}

// putResponse writes into b[:responseLen] a handshake response from the
// session index sender to the initiator's index receiver, with random
// bytes where WireGuard has its key, empty payload and MACs.
func putResponse(b []byte, sender, receiver uint32) {
	b = b[:responseLen]
	b[0], b[1], b[2], b[3] = wgResponse, 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:8], sender)
	binary.LittleEndian.PutUint32(b[8:12], receiver)
	fillRandom(b[12:])
}

// parseResponse returns the sender's and the receiver's indices of a
// datagram shaped like a handshake response, and false for anything else.
func parseResponse(b []byte) (sender, receiver uint32, ok bool) {
	if len(b) != responseLen || b[0] != wgResponse || b[1]|b[2]|b[3] != 0 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(b[4:8]), binary.LittleEndian.Uint32(b[8:12]), true
}

// newIndex returns a random session index, never 0 (which the generator
// reads as "no session yet") and none of taken's, as WireGuard picks its
// indices at random (whitepaper, section 5.4.2).
func newIndex(taken func(uint32) bool) uint32 {
	for {
		i := rand.Uint32()
		if i != 0 && (taken == nil || !taken(i)) {
			return i
		}
	}
}

// fillRandom fills b with pseudo-random bytes; they need not be secret,
// only differ from one handshake to the next.
func fillRandom(b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, rand.Uint64())
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
}
