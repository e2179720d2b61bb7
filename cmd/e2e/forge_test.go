package e2e

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// wgShaped is engarde's own test of a WireGuard message (engine's
// wgMessage, restated: this package cannot import the engine's
// internals): a known type, zero reserved bytes, that type's size.
func wgShaped(b []byte) bool {
	if len(b) < 4 || b[1]|b[2]|b[3] != 0 {
		return false
	}
	switch b[0] {
	case 1:
		return len(b) == 148
	case 2:
		return len(b) == 92
	case 3:
		return len(b) == 64
	case 4:
		return len(b) >= 32
	}
	return false
}

// TestForge checks that each kind of forged datagram is what the attack
// claims: WireGuard-shaped of the right type, or not WireGuard's at all;
// and that the live forgeries carry the live index with counters ahead.
func TestForge(t *testing.T) {
	live := []session{{Index: 0xdeadbeef, Counter: 1000}, {Index: 0x01020304, Counter: 5}}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2048)
	for _, tc := range []struct {
		kind   string
		shaped bool
		types  []byte
	}{
		{forgeInit, true, []byte{1}},
		{forgeHandshake, true, []byte{2, 3}},
		{forgeTransport, true, []byte{4}},
		{forgeLive, true, []byte{4}},
		{forgeGarbage, false, nil},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			types := map[byte]bool{}
			for n := range 1000 {
				b := buf[:forge(buf, tc.kind, n, live, nil, r)]
				if wgShaped(b) != tc.shaped {
					t.Fatalf("datagram %d (% x...) WireGuard-shaped: %v, want %v", n, b[:min(16, len(b))], !tc.shaped, tc.shaped)
				}
				if tc.shaped {
					types[b[0]] = true
				}
				if tc.kind == forgeLive {
					s := live[n%len(live)]
					idx, ctr := binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint64(b[8:])
					if idx != s.Index || ctr <= s.Counter {
						t.Fatalf("datagram %d: index %#x counter %d, want %#x and a counter above %d", n, idx, ctr, s.Index, s.Counter)
					}
				}
			}
			for _, typ := range tc.types {
				if !types[typ] {
					t.Errorf("no datagram of type %d", typ)
				}
			}
		})
	}
}

// TestParseCapture reads transport headers out of captured IPv4 packets.
func TestParseCapture(t *testing.T) {
	packet := func(sport, dport int, wg []byte) []byte {
		p := make([]byte, 20+8+len(wg))
		p[0], p[9] = 0x45, 17
		binary.BigEndian.PutUint16(p[20:], uint16(sport))
		binary.BigEndian.PutUint16(p[22:], uint16(dport))
		copy(p[28:], wg)
		return p
	}
	transport := make([]byte, 48)
	transport[0] = 4
	binary.LittleEndian.PutUint32(transport[4:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint64(transport[8:], 77)
	initiation := make([]byte, 148)
	initiation[0] = 1
	want := session{Index: 0xa1b2c3d4, Counter: 77}
	for _, tc := range []struct {
		name string
		p    []byte
		dir  int
	}{
		{"to the server", packet(40000, 59402, transport), dirToServer},
		{"to the client", packet(59402, 40000, transport), dirToClient},
		{"other port", packet(40000, 51820, transport), dirNone},
		{"initiation", packet(40000, 59402, initiation), dirNone},
		{"short", packet(40000, 59402, transport[:10]), dirNone},
		{"tcp", func() []byte { p := packet(40000, 59402, transport); p[9] = 6; return p }(), dirNone},
		{"ipv6", func() []byte { p := packet(40000, 59402, transport); p[0] = 0x60; return p }(), dirNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, s := parseCapture(tc.p, 59402)
			if dir != tc.dir || (dir != dirNone && s != want) {
				t.Errorf("parseCapture = %d, %+v; want %d, %+v", dir, s, tc.dir, want)
			}
		})
	}
}

func TestCaptureInitiation(t *testing.T) {
	packet := func(dport int, wg []byte) []byte {
		p := make([]byte, 20+8+len(wg))
		p[0], p[9] = 0x45, 17
		binary.BigEndian.PutUint16(p[20:], 40000)
		binary.BigEndian.PutUint16(p[22:], uint16(dport))
		copy(p[28:], wg)
		return p
	}
	msg := make([]byte, 148)
	msg[0], msg[4] = 1, 0xab
	if w, ok := captureInitiation(packet(59402, msg), 59402); !ok || len(w) != 148 || w[4] != 0xab {
		t.Errorf("captureInitiation missed an initiation: %v", ok)
	}
	if _, ok := captureInitiation(packet(51820, msg), 59402); ok {
		t.Error("captureInitiation took an initiation to another port")
	}
	if _, ok := captureInitiation(packet(59402, msg[:100]), 59402); ok {
		t.Error("captureInitiation took a short type-1 datagram")
	}
	transport := make([]byte, 148)
	transport[0] = 4
	if _, ok := captureInitiation(packet(59402, transport), 59402); ok {
		t.Error("captureInitiation took a transport message")
	}
}

func TestObserve(t *testing.T) {
	var s session
	for _, got := range []session{{1, 10}, {1, 12}, {1, 11}, {2, 3}} {
		observe(&s, got)
	}
	if s != (session{2, 3}) {
		t.Errorf("observe kept %+v, want the new index's {2 3}", s)
	}
	s = session{}
	for _, got := range []session{{1, 10}, {1, 12}, {1, 11}} {
		observe(&s, got)
	}
	if s != (session{1, 12}) {
		t.Errorf("observe kept %+v, want the highest counter {1 12}", s)
	}
}

func TestNftCounter(t *testing.T) {
	out := "table ip egw_x1 {\n\tchain out {\n\t\ttype filter hook output priority filter; policy accept;\n\t\tip daddr 198.18.201.2 counter packets 3 bytes 252\n\t}\n}\n"
	if p, b, ok := nftCounter(out); !ok || p != 3 || b != 252 {
		t.Errorf("nftCounter = %d, %d, %v; want 3, 252, true", p, b, ok)
	}
	if _, _, ok := nftCounter("table ip x {\n}\n"); ok {
		t.Error("nftCounter found a counter in a table without one")
	}
}

// TestEcho checks the ping tool's ICMP: a request's checksum verifies
// (the sum over the message, checksum included, is zero), and a reply is
// matched by identifier.
func TestEcho(t *testing.T) {
	req := echoRequest(0x1234, 7)
	if len(req) != 8+echoPayload || req[0] != 8 || icmpChecksum(req) != 0 {
		t.Errorf("echo request % x: checksum over it %#x, want 0", req[:8], icmpChecksum(req))
	}
	reply := append([]byte(nil), req...)
	reply[0] = 0
	if seq, ok := echoReply(reply, 0x1234); !ok || seq != 7 {
		t.Errorf("echoReply = %d, %v; want 7, true", seq, ok)
	}
	if _, ok := echoReply(reply, 0x4321); ok {
		t.Error("echoReply matched another identifier")
	}
	if _, ok := echoReply(req, 0x1234); ok {
		t.Error("echoReply took a request for a reply")
	}
}
