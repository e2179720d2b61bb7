package loadgen

import (
	"bytes"
	"errors"
	"testing"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
		err  error
	}{
		{"empty", nil, Header{}, ErrShort},
		{"short", make([]byte, HeaderLen-1), Header{}, ErrShort},
		{"zeros", make([]byte, HeaderLen), Header{}, ErrMagic},
		{"wireguard without magic", append([]byte{4, 0, 0, 0}, make([]byte, 28)...), Header{}, ErrMagic},
		{"min", []byte("\x04\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03engL\x00\x00\x00\x00"), Header{Index: 1, Seq: 2, Sent: 3}, nil},
		{"padded", append([]byte("\x04\x00\x00\x00\xef\xbe\xad\xde\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\x00\x00\x00\x00\x00\x00engL\x00\x00\x00\x00"), make([]byte, 1368)...),
			Header{Index: 0xdeadbeef, Seq: 1<<64 - 1, Sent: -1 << 63}, nil},
		{"reserved byte set", []byte("\x04\x00\x01\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03engL\x00\x00\x00\x00"), Header{}, ErrMagic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Decode(tc.in)
			if !errors.Is(err, tc.err) || h != tc.want {
				t.Fatalf("Decode = %+v, %v; want %+v, %v", h, err, tc.want, tc.err)
			}
			if err != nil {
				return
			}
			b := bytes.Clone(tc.in)
			clear(b)
			Put(b, h)
			if !bytes.Equal(b[:HeaderLen], tc.in[:HeaderLen]) {
				t.Errorf("Put = %x, want %x", b[:HeaderLen], tc.in[:HeaderLen])
			}
		})
	}
}

func TestPutShortPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Put into a short buffer did not panic")
		}
	}()
	Put(make([]byte, HeaderLen-1), Header{})
}

// FuzzDecode checks that Decode never panics, accepts exactly the inputs
// that carry a header as Put writes it (WireGuard's type and zero bytes,
// the magic and its zero bytes) and are long enough, and that Put writes
// back the header it read.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x04\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03engL\x00\x00\x00\x00padding"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Decode(b)
		ok := len(b) >= HeaderLen && string(b[:4]) == "\x04\x00\x00\x00" &&
			string(b[24:28]) == "engL" && string(b[28:32]) == "\x00\x00\x00\x00"
		if (err == nil) != ok {
			t.Fatalf("Decode(%x) error %v, want ok=%v", b, err, ok)
		}
		if err != nil {
			if h != (Header{}) {
				t.Fatalf("Decode(%x) = %+v with error %v", b, h, err)
			}
			return
		}
		out := make([]byte, HeaderLen)
		Put(out, h)
		if !bytes.Equal(out, b[:HeaderLen]) {
			t.Fatalf("Put(Decode(%x)) = %x", b[:HeaderLen], out)
		}
	})
}

// FuzzRoundTrip checks that any header survives Put and Decode, whatever
// the payload size, and that Put leaves the padding alone.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint32(0), uint64(0), int64(0), uint16(HeaderLen))
	f.Add(uint32(0xdeadbeef), uint64(1<<63), int64(-1), uint16(1400))
	f.Fuzz(func(t *testing.T, run uint32, seq uint64, sent int64, size uint16) {
		b := make([]byte, max(int(size), HeaderLen))
		for i := range b {
			b[i] = 0xa5
		}
		in := Header{Index: run, Seq: seq, Sent: sent}
		Put(b, in)
		out, err := Decode(b)
		if err != nil || out != in {
			t.Fatalf("Decode(Put(%+v)) = %+v, %v", in, out, err)
		}
		for i, c := range b[HeaderLen:] {
			if c != 0xa5 {
				t.Fatalf("Put changed padding byte %d", HeaderLen+i)
			}
		}
	})
}

func BenchmarkPut(b *testing.B) {
	buf := make([]byte, DefaultSize)
	b.ReportAllocs()
	b.SetBytes(HeaderLen)
	var seq uint64
	for b.Loop() {
		Put(buf, Header{Index: 7, Seq: seq, Sent: int64(seq)})
		seq++
	}
}

func BenchmarkDecode(b *testing.B) {
	buf := make([]byte, DefaultSize)
	Put(buf, Header{Index: 7, Seq: 42, Sent: 1})
	b.ReportAllocs()
	b.SetBytes(HeaderLen)
	var sink uint64
	for b.Loop() {
		h, err := Decode(buf)
		if err != nil {
			b.Fatal(err)
		}
		sink += h.Seq
	}
	_ = sink
}

// TestHandshakeShapes checks the handshake messages byte by byte against
// WireGuard's layout (whitepaper, sections 5.4.2 and 5.4.3), and that
// their random parts differ from one message to the next.
func TestHandshakeShapes(t *testing.T) {
	t.Run("initiation", func(t *testing.T) {
		a, b := make([]byte, 200), make([]byte, 200)
		putInitiation(a, 0x04030201)
		putInitiation(b, 0x04030201)
		if string(a[:8]) != "\x01\x00\x00\x00\x01\x02\x03\x04" {
			t.Errorf("initiation starts %x, want type 1, three zero bytes, the index little-endian", a[:8])
		}
		if bytes.Equal(a[8:initiationLen], b[8:initiationLen]) {
			t.Errorf("two initiations share their random bytes %x", a[8:initiationLen])
		}
		if !bytes.Equal(a[initiationLen:], make([]byte, 200-148)) {
			t.Errorf("putInitiation wrote past byte 148")
		}
		if g, ok := parseInitiation(a[:148]); !ok || g != 0x04030201 {
			t.Errorf("parseInitiation = %08x, %v", g, ok)
		}
	})
	t.Run("response", func(t *testing.T) {
		a, b := make([]byte, 200), make([]byte, 200)
		putResponse(a, 0x04030201, 0x0d0c0b0a)
		putResponse(b, 0x04030201, 0x0d0c0b0a)
		if string(a[:12]) != "\x02\x00\x00\x00\x01\x02\x03\x04\x0a\x0b\x0c\x0d" {
			t.Errorf("response starts %x, want type 2, three zero bytes, the sender's then the receiver's index", a[:12])
		}
		if bytes.Equal(a[12:responseLen], b[12:responseLen]) {
			t.Errorf("two responses share their random bytes %x", a[12:responseLen])
		}
		if !bytes.Equal(a[responseLen:], make([]byte, 200-92)) {
			t.Errorf("putResponse wrote past byte 92")
		}
		if s, r, ok := parseResponse(a[:92]); !ok || s != 0x04030201 || r != 0x0d0c0b0a {
			t.Errorf("parseResponse = %08x, %08x, %v", s, r, ok)
		}
	})
	in := make([]byte, initiationLen)
	putInitiation(in, 5)
	resp := make([]byte, responseLen)
	putResponse(resp, 5, 6)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"initiation short", in[:147]},
		{"initiation long", append(bytes.Clone(in), 0)},
		{"initiation reserved byte", append([]byte{1, 0, 0, 1}, in[4:]...)},
		{"response short", resp[:91]},
		{"response long", append(bytes.Clone(resp), 0)},
		{"response reserved byte", append([]byte{2, 1, 0, 0}, resp[4:]...)},
		{"response as initiation", append([]byte{1, 0, 0, 0}, resp[4:]...)},
		{"initiation as response", append([]byte{2, 0, 0, 0}, in[4:]...)},
		{"cookie reply", append([]byte{3, 0, 0, 0}, make([]byte, 60)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := parseInitiation(tc.b); ok {
				t.Error("parsed as an initiation")
			}
			if _, _, ok := parseResponse(tc.b); ok {
				t.Error("parsed as a response")
			}
		})
	}
}

// FuzzHandshake checks that the handshake parsers never panic, accept
// exactly WireGuard's shapes, and read back the indices the writers put.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte{})
	b := make([]byte, initiationLen)
	putInitiation(b, 1)
	f.Add(b)
	putResponse(b, 2, 3)
	f.Add(b[:responseLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		g, ok := parseInitiation(b)
		shaped := len(b) > 4 && string(b[1:4]) == "\x00\x00\x00"
		if want := shaped && b[0] == 1 && len(b) == 148; ok != want {
			t.Fatalf("parseInitiation(%x) ok=%v, want %v", b, ok, want)
		}
		if ok {
			out := make([]byte, initiationLen)
			putInitiation(out, g)
			if !bytes.Equal(out[:8], b[:8]) {
				t.Fatalf("putInitiation(%08x) = %x, read from %x", g, out[:8], b[:8])
			}
		}
		s, r, ok := parseResponse(b)
		if want := shaped && b[0] == 2 && len(b) == 92; ok != want {
			t.Fatalf("parseResponse(%x) ok=%v, want %v", b, ok, want)
		}
		if ok {
			out := make([]byte, responseLen)
			putResponse(out, s, r)
			if !bytes.Equal(out[:12], b[:12]) {
				t.Fatalf("putResponse(%08x, %08x) = %x, read from %x", s, r, out[:12], b[:12])
			}
		}
	})
}
