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
		{"min", []byte("\x04\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03engL\x00\x00\x00\x00"), Header{Run: 1, Seq: 2, Sent: 3}, nil},
		{"padded", append([]byte("\x04\x00\x00\x00\xef\xbe\xad\xde\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\x00\x00\x00\x00\x00\x00engL\x00\x00\x00\x00"), make([]byte, 1368)...),
			Header{Run: 0xdeadbeef, Seq: 1<<64 - 1, Sent: -1 << 63}, nil},
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
		in := Header{Run: run, Seq: seq, Sent: sent}
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
		Put(buf, Header{Run: 7, Seq: seq, Sent: int64(seq)})
		seq++
	}
}

func BenchmarkDecode(b *testing.B) {
	buf := make([]byte, DefaultSize)
	Put(buf, Header{Run: 7, Seq: 42, Sent: 1})
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
