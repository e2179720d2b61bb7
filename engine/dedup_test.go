package engine

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// wgData returns a WireGuard transport message of size bytes.
func wgData(index uint32, counter uint64, size int) []byte {
	b := make([]byte, size)
	b[0] = wgTransportType
	binary.LittleEndian.PutUint32(b[4:], index)
	binary.LittleEndian.PutUint64(b[8:], counter)
	return b
}

func TestWGTransport(t *testing.T) {
	good := wgData(0xabcdef01, 1234567, 48)
	for _, c := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"transport", good, true},
		{"short", good[:31], false},
		{"handshake initiation", append([]byte{1}, good[1:]...), false},
		{"reserved bits set", append([]byte{4, 0, 1}, good[3:]...), false},
		{"empty", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			idx, ctr, ok := wgTransport(c.b)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if ok && (idx != 0xabcdef01 || ctr != 1234567) {
				t.Errorf("index %#x counter %d", idx, ctr)
			}
		})
	}
}

func FuzzWGTransport(f *testing.F) {
	f.Add(wgData(1, 2, 32))
	f.Add([]byte{4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, ctr, ok := wgTransport(b)
		if !ok {
			return
		}
		if len(b) < 32 || b[0] != 4 || b[1]|b[2]|b[3] != 0 {
			t.Fatalf("accepted %x", b)
		}
		if idx != binary.LittleEndian.Uint32(b[4:]) || ctr != binary.LittleEndian.Uint64(b[8:]) {
			t.Fatalf("misread %x", b)
		}
	})
}

func TestDedupWindow(t *testing.T) {
	var d dedup
	steps := []struct {
		counter uint64
		seen    bool
	}{
		{0, false}, {0, true}, {1, false}, {31, false}, {32, false}, {1, true},
		{5000, false}, {4999, false}, {5000, true}, {3, false}, {3, true},
		// Jump far ahead: the slot of counters 576-607 now holds a new block.
		{1_000_000, false}, {1_000_000, true},
		// Older than the window: WireGuard decides, so never a copy.
		{580, false}, {580, false},
		// Counters still in slots not reused are still known.
		{3, true},
		{999_999, false}, {999_999, true},
	}
	for _, s := range steps {
		if got := d.seen(7, s.counter); got != s.seen {
			t.Fatalf("seen(%d) = %v, want %v", s.counter, got, s.seen)
		}
	}
	// Sessions are separate.
	if d.seen(8, 0) {
		t.Error("counter 0 of session 8 reported as a copy of session 7's")
	}
}

// TestDedupConcurrentLinks runs four "links" delivering the same counters
// at once, as every link's receive loop does: each counter must pass
// exactly once. A first copy dropped would be loss; a copy passed twice
// would only cost WireGuard a decryption, but must not happen either
// while the links stay within the window of each other.
func TestDedupConcurrentLinks(t *testing.T) {
	const links, rounds, per = 4, 200, 1024
	var d dedup
	passed := make([]atomic.Int32, rounds*per)
	for r := range rounds {
		// Links run concurrently within a round of 1024 counters, so no
		// link gets a window (8192) ahead of another, as on a network
		// whose links differ by less than that.
		var wg sync.WaitGroup
		for l := range links {
			wg.Go(func() {
				for i := range per {
					c := uint64(r*per + i ^ (l & 3)) // each link a little ahead or behind
					if !d.seen(42, c) {
						passed[c].Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	for c := range passed {
		if p := passed[c].Load(); p != 1 {
			t.Fatalf("counter %d passed %d times, want once", c, p)
		}
	}
}

func TestDedupFilter(t *testing.T) {
	pool, err := ring.NewPool(2048, 16, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var d dedup
	var dups atomic.Uint64
	mk := func(payloads ...[]byte) ([]*ring.Packet, []conn.Message) {
		var bufs []*ring.Packet
		var msgs []conn.Message
		for _, p := range payloads {
			b := pool.Get()
			n := copy(b.Data(), p)
			bufs = append(bufs, b)
			msgs = append(msgs, conn.Message{Buf: b.Data(), N: n})
		}
		return bufs, msgs
	}
	train := func(counters ...uint64) []byte {
		var b []byte
		for _, c := range counters {
			b = append(b, wgData(9, c, 64)...)
		}
		return b
	}
	// First link: four messages and a train of three.
	bufs, msgs := mk(wgData(9, 1, 64), wgData(9, 2, 64), []byte("not wireguard"), wgData(9, 3, 64), train(10, 11, 12))
	msgs[4].Seg = 64
	if n := d.filter(bufs, msgs, &dups); n != 5 {
		t.Fatalf("first copies: kept %d of 5", n)
	}
	// Second link: the same, plus one new; the train mixes old and new.
	second, smsgs := mk(wgData(9, 2, 64), wgData(9, 4, 64), []byte("not wireguard"), wgData(9, 1, 64), train(10, 11, 12), train(12, 13))
	smsgs[4].Seg, smsgs[5].Seg = 64, 64
	n := d.filter(second, smsgs, &dups)
	if n != 3 {
		t.Fatalf("kept %d, want 3 (the new message, the non-WireGuard one, the mixed train)", n)
	}
	if got := binary.LittleEndian.Uint64(smsgs[0].Buf[8:]); got != 4 {
		t.Errorf("first kept message has counter %d, want 4", got)
	}
	if smsgs[2].Seg != 64 || smsgs[2].N != 128 {
		t.Errorf("the mixed train was not kept: %+v", smsgs[2])
	}
	for i := range smsgs {
		if &second[i].Data()[0] != &smsgs[i].Buf[0] {
			t.Errorf("message %d no longer matches its buffer", i)
		}
	}
	if dups.Load() != 2+3 {
		t.Errorf("counted %d copies, want 5 (two messages and a train of three)", dups.Load())
	}
	for _, b := range append(bufs, second...) {
		b.Release()
	}
}

// TestDedupSessionsConverge checks that goroutines meeting a new session
// index at the same moment share one window: a second window would let a
// copy through.
func TestDedupSessionsConverge(t *testing.T) {
	for round := range 200 {
		var d dedup
		got := make([]*dedupSession, 4)
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() { got[i] = d.session(uint32(round)) })
		}
		wg.Wait()
		for _, s := range got[1:] {
			if s != got[0] {
				t.Fatalf("round %d: goroutines got different windows for one session", round)
			}
		}
	}
	// A full table still answers, for old and new sessions.
	var d dedup
	for i := range uint32(dedupSessions + 5) {
		if s := d.session(i); s.index != i {
			t.Fatalf("session(%d) returned the window of %d", i, s.index)
		}
	}
}

func BenchmarkDedup(b *testing.B) {
	var d dedup
	b.ReportAllocs()
	var c uint64
	for b.Loop() {
		d.seen(1, c)
		d.seen(1, c) // the copy from the second link
		c++
	}
}

func TestWGMessage(t *testing.T) {
	msg := func(typ byte, n int) []byte {
		b := make([]byte, n)
		b[0] = typ
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
		seg  int
		ok   bool
	}{
		{"initiation", msg(1, 148), 0, true},
		{"initiation, wrong size", msg(1, 149), 0, false},
		{"response", msg(2, 92), 0, true},
		{"cookie reply", msg(3, 64), 0, true},
		{"transport", msg(4, 32), 0, true},
		{"transport, short", msg(4, 31), 0, false},
		{"train of transport messages", append(msg(4, 100), msg(4, 100)...), 100, true},
		{"unknown type", msg(5, 148), 0, false},
		{"reserved bytes set", append([]byte{1, 0, 0, 1}, make([]byte, 144)...), 0, false},
		{"empty", nil, 0, false},
		{"text", []byte("hello, server"), 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := wgMessage(c.b, c.seg); got != c.ok {
				t.Errorf("wgMessage = %v, want %v", got, c.ok)
			}
		})
	}
}
