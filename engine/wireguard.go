package engine

import "encoding/binary"

// WireGuard's transport data message (type 4) starts with a clear-text
// header: the type, three zero bytes, the receiver's session index and a
// 64-bit little-endian counter that never repeats within a session
// (WireGuard whitepaper, section 5.4.6). The ciphertext and its 16-byte
// tag follow, so a transport message is at least 32 bytes.
const (
	wgTransportType   = 4
	wgTransportMinLen = 32
)

// wgTransport returns the session index and counter of a WireGuard
// transport data message, and false for anything else (handshakes, cookie
// replies, and datagrams that are not WireGuard's).
func wgTransport(b []byte) (index uint32, counter uint64, ok bool) {
	if len(b) < wgTransportMinLen || b[0] != wgTransportType || b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(b[4:8]), binary.LittleEndian.Uint64(b[8:16]), true
}

// WireGuard's handshake messages have fixed sizes (whitepaper, section
// 5.4): initiation 148 bytes, response 92, cookie reply 64.
const (
	wgInitiationType, wgInitiationLen = 1, 148
	wgResponseType, wgResponseLen     = 2, 92
	wgCookieType, wgCookieLen         = 3, 64
)

// wgMessage reports whether b (a datagram, or the first of a train of
// seg-sized ones) is shaped like a WireGuard message: a known type, three
// zero bytes, and that type's size.
func wgMessage(b []byte, seg int) bool {
	if seg > 0 && seg < len(b) {
		b = b[:seg]
	}
	if len(b) < 4 || b[1]|b[2]|b[3] != 0 {
		return false
	}
	switch b[0] {
	case wgInitiationType:
		return len(b) == wgInitiationLen
	case wgResponseType:
		return len(b) == wgResponseLen
	case wgCookieType:
		return len(b) == wgCookieLen
	case wgTransportType:
		return len(b) >= wgTransportMinLen
	}
	return false
}
