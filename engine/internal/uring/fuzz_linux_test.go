package uring

import (
	"encoding/binary"
	"testing"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// FuzzParseRecvmsgOut: a provided buffer as a multishot recvmsg fills it
// (an io_uring_recvmsg_out header with arbitrary lengths and flags, then
// name, control and payload areas), with any completion length. The
// parser must say not ok when the buffer cannot hold the header and the
// reserved areas, and otherwise return slices inside the buffer: control
// no longer than reserved, the payload exactly what follows the areas up
// to the completion length, truncated when the kernel said so or when the
// payload is shorter than its length.
func FuzzParseRecvmsgOut(f *testing.F) {
	hdr := func(name, ctl, payload, flags uint32, extra int) []byte {
		b := binary.NativeEndian.AppendUint32(nil, name)
		b = binary.NativeEndian.AppendUint32(b, ctl)
		b = binary.NativeEndian.AppendUint32(b, payload)
		b = binary.NativeEndian.AppendUint32(b, flags)
		return append(b, make([]byte, extra)...)
	}
	f.Add(hdr(28, 0, 100, 0, 28+100), 16+28+100, true, uint8(0))
	f.Add(hdr(28, 40, 1500, 0x20, 28+64+100), 16+28+64+100, true, uint8(64)) // MSG_TRUNC
	f.Add(hdr(0, 0, 0, 0, 0), 16, false, uint8(0))
	f.Add(hdr(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 8), 24, false, uint8(200))
	f.Add([]byte{1, 2, 3}, 3, true, uint8(0))
	f.Fuzz(func(t *testing.T, buf []byte, n int, withName bool, ctlLen uint8) {
		nameLen := 0
		if withName {
			nameLen = sys.SizeofSockaddr
		}
		controlLen := int(ctlLen)
		name, control, payload, trunc, ok := ParseRecvmsgOut(buf, n, nameLen, controlLen)
		areas := SizeofRecvmsgOut + nameLen + controlLen
		if !ok {
			if n >= areas && n <= len(buf) {
				t.Fatalf("refused a buffer of %d bytes, completion %d, areas %d", len(buf), n, areas)
			}
			return
		}
		if n < areas || n > len(buf) {
			t.Fatalf("accepted a completion of %d for %d bytes of buffer and %d of areas", n, len(buf), areas)
		}
		if len(control) > controlLen || len(payload) != n-areas {
			t.Fatalf("control %d (of %d), payload %d (want %d)", len(control), controlLen, len(payload), n-areas)
		}
		if name != nil && !withName {
			t.Fatal("a name without room for one")
		}
		plen := binary.NativeEndian.Uint32(buf[8:])
		flags := binary.NativeEndian.Uint32(buf[12:])
		if wantTrunc := flags&0x20 != 0 || int(plen) > len(payload); trunc != wantTrunc {
			t.Fatalf("truncated %v with payload length %d of %d and flags %#x", trunc, plen, len(payload), flags)
		}
		if len(payload) > 0 && &payload[len(payload)-1] != &buf[n-1] {
			t.Fatal("payload not the end of the completion")
		}
	})
}
