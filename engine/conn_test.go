package engine

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// connPair opens a receiving socket on loopback and a sending one
// connected to it, both closed when the test ends.
func connPair(tb testing.TB, be Backend, rxo, txo SocketOptions) (rx, tx Conn) {
	tb.Helper()
	rx, err := be.Listen(netip.MustParseAddrPort("127.0.0.1:0"), rxo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rx.Close() })
	tx, err = be.Dial(netip.AddrPort{}, rx.LocalAddr(), txo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tx.Close() })
	return rx, tx
}

func backendsForTest(t *testing.T) []Backend {
	t.Helper()
	return append(platformBackends(), NewStdBackend())
}

// TestConnLoopback sends batches of datagrams of mixed sizes between two
// sockets and checks that each arrives whole and in order, with and
// without GSO and GRO.
func TestConnLoopback(t *testing.T) {
	for _, be := range backendsForTest(t) {
		for _, opt := range []struct {
			name     string
			gso, gro bool
		}{{"plain", false, false}, {"gso", true, false}, {"gso+gro", true, true}} {
			t.Run(be.Name()+"/"+opt.name, func(t *testing.T) {
				o := SocketOptions{GSO: opt.gso, GRO: opt.gro, BatchSize: 64}
				rx, tx := connPair(t, be, o, o)
				sizes := []int{100, 100, 100, 50, 1400, 1400, 1400, 1400, 7, 0, 1400}
				var out []Message
				for i, s := range sizes {
					b := make([]byte, s)
					for j := range b {
						b[j] = byte(i)
					}
					out = append(out, Message{Buf: b, N: s})
				}
				n, err := tx.WriteBatch(out)
				if err != nil || n != len(out) {
					t.Fatalf("WriteBatch = %d, %v", n, err)
				}
				in := make([]Message, 64)
				for i := range in {
					in[i].Buf = make([]byte, 65536)
				}
				var got [][]byte
				trains := 0
				deadline := time.Now().Add(2 * time.Second)
				for len(got) < len(sizes) && time.Now().Before(deadline) {
					k, err := rx.ReadBatch(in)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range in[:k] {
						if m.Seg > 0 {
							trains++
						}
						if m.Addr != tx.LocalAddr() {
							t.Errorf("source %v, want %v", m.Addr, tx.LocalAddr())
						}
						seg := m.N
						if m.Seg > 0 {
							seg = m.Seg
						}
						for off := 0; off < m.N || (off == 0 && m.N == 0); off += seg {
							got = append(got, bytes.Clone(m.Buf[off:min(off+seg, m.N)]))
							if seg == 0 {
								break
							}
						}
					}
				}
				if opt.gro && be.Name() != "std" && trains == 0 {
					t.Errorf("GSO sends to a GRO socket arrived as no trains")
				}
				if len(got) != len(sizes) {
					t.Fatalf("got %d datagrams, want %d", len(got), len(sizes))
				}
				for i, g := range got {
					if len(g) != sizes[i] || (len(g) > 0 && g[0] != byte(i)) {
						t.Errorf("datagram %d: len %d first %v, want len %d first %d", i, len(g), g[:min(1, len(g))], sizes[i], i)
					}
				}
			})
		}
	}
}
