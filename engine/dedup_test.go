package engine

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// newWindows returns a filter that judges the given indexes.
func newWindows(indexes ...uint32) *windows {
	ws := &windows{}
	for _, i := range indexes {
		ws.learn(i)
	}
	return ws
}

func TestDedupWindow(t *testing.T) {
	w := newWindows(7).find(7)
	steps := []struct {
		counter uint64
		seen    bool
	}{
		{0, false}, {0, true}, {1, false}, {31, false}, {32, false}, {1, true},
		{5000, false}, {4999, false}, {5000, true}, {3, false}, {3, true},
		// Far ahead of the highest (5000): not recorded, and the window
		// stays where the flow is.
		{1_000_000, false}, {1_000_000, false}, {3, true}, {4999, true},
		// Within reach ahead: recorded, and the window moves.
		{13_000, false}, {13_000, true},
		// 4999 is still in the window; 3 no longer is (WireGuard decides).
		{4999, true}, {3, false}, {3, false},
		// A counter 2^37 ahead does not mark one as seen (block numbers
		// are 32 bits: in the old filter it did).
		{13_001 + 1<<37, false}, {13_001, false}, {13_001, true},
	}
	for _, s := range steps {
		if got := w.seen(s.counter, 0, -1, 0); got != s.seen {
			t.Fatalf("seen(%d) = %v, want %v", s.counter, got, s.seen)
		}
	}
}

// TestDedupNeverWraps: counters at the top of the 64-bit range neither
// wrap the window nor make small counters look seen.
func TestDedupNeverWraps(t *testing.T) {
	w := newWindows(1).find(1)
	const top = ^uint64(0)
	for _, c := range []uint64{0, 1, 2} {
		w.seen(c, 0, -1, 0)
	}
	if w.seen(top, 0, -1, 0) || w.seen(top, 0, -1, 0) {
		t.Error("a counter far ahead was recorded")
	}
	for _, c := range []uint64{0, 1, 2} {
		if !w.seen(c, 0, -1, 0) {
			t.Errorf("counter %d forgotten after a counter at 2^64-1", c)
		}
	}
	if w.seen(3, 0, -1, 0) {
		t.Error("counter 3 reported as a copy")
	}
	// A window that really is near the top (counters advance one step at
	// a time within maxAhead) keeps judging without wrapping.
	w2 := newWindows(2).find(2)
	for c := top - 3*windowSize; c < top-windowSize; c += windowSize / 2 {
		w2.highest.Store(c)
	}
	base := top - 2*windowSize
	w2.highest.Store(base)
	for c := base; c < base+100; c++ {
		if w2.seen(c, 0, -1, 0) {
			t.Fatalf("counter %#x: first copy reported as a copy", c)
		}
		if !w2.seen(c, 0, -1, 0) {
			t.Fatalf("counter %#x: copy passed", c)
		}
	}
	if w2.seen(5, 0, -1, 0) {
		t.Error("counter 5 reported as a copy near the top of the range")
	}
}

// TestDedupNotPoisoned: forgeries with the live index and counters just
// ahead of the flow, recorded first, do not make the real messages look
// like copies: their fingerprints differ. The real messages' own copies
// are still dropped once a real one was recorded.
func TestDedupNotPoisoned(t *testing.T) {
	ws := newWindows(9)
	msg := func(counter uint64, tag byte) *conn.Message {
		b := wgData(9, counter, 64)
		b[62], b[63] = tag, tag^0x5a // the end of the authentication tag
		return &conn.Message{Buf: b, N: len(b)}
	}
	for c := uint64(0); c < 100; c++ {
		if ws.copy(msg(c, 0xee), 2, 0) { // the forger's, first
			t.Fatalf("forgery %d judged a copy", c)
		}
	}
	for c := uint64(0); c < 100; c++ {
		real := byte(c)
		if ws.copy(msg(c, real), 0, 0) || ws.copy(msg(c, real), 1, 0) {
			t.Fatalf("counter %d: a real message was dropped after a forgery with its counter", c)
		}
	}
	for c := uint64(100); c < 200; c++ {
		if ws.copy(msg(c, byte(c)), 0, 0) || !ws.copy(msg(c, byte(c)), 1, 0) {
			t.Fatalf("counter %d: first copy dropped or copy passed", c)
		}
	}
}

// TestDedupIndexes: only indexes learnt are judged, three at a time, the
// oldest forgotten first; learning one again changes nothing.
func TestDedupIndexes(t *testing.T) {
	ws := newWindows(10, 11, 12)
	m := func(index uint32, counter uint64) *conn.Message {
		b := wgData(index, counter, 64)
		return &conn.Message{Buf: b, N: len(b)}
	}
	for _, idx := range []uint32{10, 11, 12} {
		if ws.copy(m(idx, 5), 0, 0) || !ws.copy(m(idx, 5), 1, 0) {
			t.Errorf("index %d: first copy or copy misjudged", idx)
		}
	}
	if ws.copy(m(99, 5), 0, 0) || ws.copy(m(99, 5), 1, 0) {
		t.Error("an unknown index was judged")
	}
	ws.learn(12)
	ws.learn(13) // forgets 10
	if ws.copy(m(10, 5), 0, 0) {
		t.Error("index 10 still judged after a fourth was learnt")
	}
	if !ws.copy(m(11, 5), 0, 0) || !ws.copy(m(12, 5), 0, 0) {
		t.Error("indexes 11 and 12 forgotten (learning 12 again must not)")
	}
	if got := ws.indexes(); len(got) != 3 || got[0] != 13 {
		t.Errorf("indexes %v, want three, 13 first", got)
	}
}

// TestDedupConcurrentLinks runs four "links" delivering the same counters
// at once, as every link's receive loop does: each counter must pass
// exactly once. A first copy dropped would be loss; a copy passed twice
// would only cost WireGuard a decryption, but must not happen either
// while the links stay within the window of each other.
func TestDedupConcurrentLinks(t *testing.T) {
	const links, rounds, per = 4, 200, 1024
	w := newWindows(42).find(42)
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
					if !w.seen(c, 0, l, nanotime()) {
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

// TestDedupReorderedLinks: two links of different delay deliver the same
// stream, each in order but interleaved with the other's lag, as a merge
// of a fast and a slow path does: every counter passes once, from
// whichever link is first.
func TestDedupReorderedLinks(t *testing.T) {
	w := newWindows(5).find(5)
	const n, lag = 50_000, 3000 // the slow link is 3000 messages behind
	passed := 0
	for i := range n + lag {
		if i < n && !w.seen(uint64(i), 0, 0, 0) {
			passed++
		}
		if j := i - lag; j >= 0 && !w.seen(uint64(j), 0, 1, 0) {
			t.Fatalf("counter %d from the slow link passed: the fast one delivered it", j)
		}
	}
	if passed != n {
		t.Fatalf("%d of %d first copies passed", passed, n)
	}
}

func TestDedupFilter(t *testing.T) {
	pool, err := ring.NewPool(2048, 16, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	d := newWindows(9)
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
	if n := d.filter(bufs, msgs, 0, &dups); n != 5 {
		t.Fatalf("first copies: kept %d of 5", n)
	}
	// Second link: the same, plus one new; the train mixes old and new.
	second, smsgs := mk(wgData(9, 2, 64), wgData(9, 4, 64), []byte("not wireguard"), wgData(9, 1, 64), train(10, 11, 12), train(12, 13))
	smsgs[4].Seg, smsgs[5].Seg = 64, 64
	n := d.filter(second, smsgs, 1, &dups)
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

// TestLinkQuality runs three paths over one session: a fast one, one
// that delivers every message 2 ms after it and loses one in ten, and one
// that never delivers. The figures must say so, each sample counted once
// for each path as a first, a late copy or a loss, also for the last
// samples, which the sweep judges once traffic stops.
func TestLinkQuality(t *testing.T) {
	ws := newWindows(3)
	var q [3]pathQuality
	for i := range q {
		ws.paths.q[i].Store(&q[i])
	}
	ws.paths.live.Store(0b111)
	w := ws.find(3)
	const n = 40_000
	now := int64(1e9)
	for c := range uint64(n) {
		now += 10_000 // 100 000 messages per second
		w.seen(c, 0, 0, now)
		if (c/sampleEvery)%10 != 3 { // loses one message in ten, in runs of sampleEvery
			if !w.seen(c, 0, 1, now+2_000_000) {
				t.Fatalf("counter %d: the slow path's copy passed", c)
			}
		}
	}
	ws.sweep(now + int64(sampleAge)/2) // too early: nothing more is judged
	if got := q[0].read().Samples; got != n/sampleEvery-sampleSlots {
		t.Errorf("%d samples judged before the sweep, want %d", got, n/sampleEvery-sampleSlots)
	}
	ws.sweep(now + 2*int64(sampleAge))
	const judged = n / sampleEvery
	fast, slow, dead := q[0].read(), q[1].read(), q[2].read()
	for i, x := range []Quality{fast, slow, dead} {
		if x.First+x.Copies+x.Lost != x.Samples {
			t.Errorf("path %d: first %d + late %d + lost %d != samples %d", i, x.First, x.Copies, x.Lost, x.Samples)
		}
	}
	if fast.Samples != judged || fast.Lost != 0 || fast.First != judged || fast.Copies != 0 {
		t.Errorf("fast path: %+v, want %d samples, all first, none lost", fast, judged)
	}
	if slow.Samples != judged || slow.First != 0 || slow.LossRate() < 0.09 || slow.LossRate() > 0.11 {
		t.Errorf("slow path: %+v (loss %.3f), want %d samples, none first, about 10%% lost", slow, slow.LossRate(), judged)
	}
	if d := slow.LateP50 - 2*time.Millisecond; d.Abs() > 150*time.Microsecond || slow.LateP99 < slow.LateP50 {
		t.Errorf("slow path late by p50 %v p99 %v, want about 2ms", slow.LateP50, slow.LateP99)
	}
	if dead.Samples != judged || dead.Lost != judged || dead.LossRate() != 1 {
		t.Errorf("dead path: %+v, want every sample lost", dead)
	}
	// Late copies of judged samples change nothing.
	w.seen(0, 0, 2, now+3*int64(sampleAge))
	if got := q[2].read(); got != dead {
		t.Errorf("a copy after the sample was judged changed the figures: %+v", got)
	}
}

func TestLateBuckets(t *testing.T) {
	prevHi := -time.Microsecond
	for b := range lateBuckets {
		lo, hi := lateBucketRange(b)
		if lo != prevHi+time.Microsecond || hi < lo {
			t.Fatalf("bucket %d is [%v, %v], after one ending at %v", b, lo, hi, prevHi)
		}
		prevHi = hi
	}
	for us := range 200_000 {
		d := time.Duration(us) * time.Microsecond
		b := lateBucket(d)
		lo, hi := lateBucketRange(b)
		if d < lo || d > hi {
			t.Fatalf("%v in bucket %d = [%v, %v]", d, b, lo, hi)
		}
		if mid := lateBucketMid(b); (mid - d).Abs() > d/16+time.Microsecond {
			t.Fatalf("%v reads as %v: more than 6%% off", d, mid)
		}
	}
}

func BenchmarkDedup(b *testing.B) {
	ws := newWindows(1)
	var q [2]pathQuality
	ws.paths.q[0].Store(&q[0])
	ws.paths.q[1].Store(&q[1])
	ws.paths.live.Store(3)
	w := ws.find(1)
	b.ReportAllocs()
	var c uint64
	for b.Loop() {
		w.seen(c, 0, 0, int64(c)*1000)
		w.seen(c, 0, 1, int64(c)*1000+500) // the copy from the second link
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

// FuzzWGType checks the message classifier against the rules written out
// plainly: a type byte, three zero bytes, the type's size (transport: at
// least 32), and, for a train, the first datagram's shape.
func FuzzWGType(f *testing.F) {
	f.Add(wgInitiation(1, 2), 0)
	f.Add(wgResponse(1, 2), 0)
	f.Add(wgData(1, 2, 64), 0)
	f.Add(append(wgData(1, 2, 64), wgData(1, 3, 64)...), 64)
	f.Add(make([]byte, 64), 0)
	f.Fuzz(func(t *testing.T, b []byte, seg int) {
		typ := wgType(b, seg)
		first := b
		if seg > 0 && seg < len(b) {
			first = b[:seg]
		}
		want := byte(0)
		if len(first) >= 4 && first[1]|first[2]|first[3] == 0 {
			switch n := len(first); first[0] {
			case 1:
				if n == 148 {
					want = 1
				}
			case 2:
				if n == 92 {
					want = 2
				}
			case 3:
				if n == 64 {
					want = 3
				}
			case 4:
				if n >= 32 {
					want = 4
				}
			}
		}
		if typ != want {
			t.Fatalf("wgType(% x, %d) = %d, want %d", b, seg, typ, want)
		}
		switch typ {
		case 2:
			if wgSenderIndex(first) != binary.LittleEndian.Uint32(first[4:]) || wgReceiverIndex(first) != binary.LittleEndian.Uint32(first[8:]) {
				t.Fatal("response indexes misread")
			}
		case 3, 4:
			if wgReceiverIndex(first) != binary.LittleEndian.Uint32(first[4:]) {
				t.Fatal("receiver index misread")
			}
		}
	})
}

// TestLinkQualityNewPathAndStamps: a path that appears later is not
// charged with the samples sent before it existed, and a copy stamped
// before the first one (receive loops stamp on their own goroutines)
// counts as on time, not as 17 minutes late.
func TestLinkQualityNewPathAndStamps(t *testing.T) {
	ws := newWindows(3)
	var q [2]pathQuality
	now := int64(10e9)
	q[0].since.Store(now)
	ws.paths.q[0].Store(&q[0])
	ws.paths.live.Store(0b01)
	w := ws.find(3)
	for c := range uint64(1600) { // 100 samples on path 0 alone
		now += 10_000
		w.seen(c, 0, 0, now)
	}
	q[1].since.Store(now)
	ws.paths.q[1].Store(&q[1])
	ws.paths.live.Store(0b11)
	for c := uint64(1600); c < 3200; c++ { // 100 on both; path 1's stamps 5 µs early
		now += 10_000
		w.seen(c, 0, 0, now)
		w.seen(c, 0, 1, now-5_000)
	}
	ws.sweep(now + 2*int64(sampleAge))
	late := q[1].read()
	if late.Samples != 100 || late.Lost != 0 || late.Copies != 100 {
		t.Errorf("the late path: %+v, want 100 samples, all delivered, none lost", late)
	}
	if late.LateP99 > time.Millisecond {
		t.Errorf("copies stamped early read as %v late", late.LateP99)
	}
	if first := q[0].read(); first.Samples != 200 || first.First != 200 {
		t.Errorf("the first path: %+v, want 200 samples, all first", first)
	}
}
