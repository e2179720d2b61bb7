package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
)

func backendsForTest() []conn.Backend {
	if b, err := conn.Open("mmsg", nil); err == nil {
		return []conn.Backend{b, conn.NewStd()}
	}
	return []conn.Backend{conn.NewStd()}
}

// startSink runs a sink on a free loopback port until the test ends.
func startSink(t *testing.T, o SinkOptions) *Sink {
	t.Helper()
	s, err := NewSink(netip.MustParseAddrPort("127.0.0.1:0"), o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// TestLoopback runs a sink and a generator in-process over loopback at a
// modest rate, where nothing should be lost, with and without copies.
func TestLoopback(t *testing.T) {
	const rate = 5000
	dur := time.Second
	if testing.Short() {
		dur = 400 * time.Millisecond
	}
	for _, be := range backendsForTest() {
		for _, tc := range []struct {
			name   string
			mode   Mode
			copies int
		}{
			{"first", ModeFirst, 1},
			{"first+copies", ModeFirst, 2},
			{"all+copies", ModeAll, 2},
		} {
			t.Run(be.Name()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := startSink(t, SinkOptions{Mode: tc.mode, Backend: be})
				r, err := Run(context.Background(), Options{
					Target:         s.Addr(),
					Backend:        be,
					Rate:           rate,
					Size:           200,
					Duration:       dur,
					Copies:         tc.copies,
					Wait:           200 * time.Millisecond,
					SeriesInterval: DefaultSeriesInterval,
				})
				if err != nil {
					t.Fatal(err)
				}
				st := s.Stats()
				t.Logf("report: sent %d received %d dup %d lost %d reordered %d rtt p50 %.1fµs p99 %.1fµs max %.1fµs; sink %+v",
					r.Sent, r.Received, r.Duplicates, r.Lost, r.Reordered, r.RTTP50, r.RTTP99, r.RTTMax, st)
				want := uint64(rate * dur.Seconds())
				if r.Sent < want*95/100 || r.Sent > want+1 {
					t.Errorf("sent %d packets in %v at %d/s, want about %d", r.Sent, dur, rate, want)
				}
				if r.Lost != 0 || r.Received != r.Sent || r.SendErrors != 0 || r.Foreign != 0 {
					t.Errorf("lost %d, received %d of %d, send errors %d, foreign %d; want nothing lost", r.Lost, r.Received, r.Sent, r.SendErrors, r.Foreign)
				}
				wantDup := uint64(0)
				if tc.mode == ModeAll {
					wantDup = r.Sent * uint64(tc.copies-1)
				}
				if r.Duplicates != wantDup {
					t.Errorf("generator saw %d duplicates, want %d", r.Duplicates, wantDup)
				}
				if r.Datagrams != r.Sent*uint64(tc.copies) {
					t.Errorf("%d datagrams sent, want %d", r.Datagrams, r.Sent*uint64(tc.copies))
				}
				if st.Received != r.Datagrams || st.Unique != r.Sent || st.Duplicates != r.Sent*uint64(tc.copies-1) {
					t.Errorf("sink received %d unique %d duplicates %d; want %d %d %d",
						st.Received, st.Unique, st.Duplicates, r.Datagrams, r.Sent, r.Sent*uint64(tc.copies-1))
				}
				wantEcho := r.Sent // ModeFirst echoes each packet once
				if tc.mode == ModeAll {
					wantEcho = r.Datagrams
				}
				if st.Echoed != wantEcho || st.Runs != 1 {
					t.Errorf("sink echoed %d in %d runs, want %d in 1", st.Echoed, st.Runs, wantEcho)
				}
				if r.Handshakes < 1 || r.HandshakeTime <= 0 || r.RunID == 0 || r.PeerIndex == 0 ||
					st.Handshakes != uint64(r.Handshakes) || st.Responses != st.Initiations {
					t.Errorf("handshake: %d initiations in %v, indices %08x/%08x; sink %d handshakes, %d initiations, %d responses",
						r.Handshakes, r.HandshakeTime, r.RunID, r.PeerIndex, st.Handshakes, st.Initiations, st.Responses)
				}
				if r.RTTMin <= 0 || r.RTTP50 < r.RTTMin || r.RTTMax < r.RTTP999 {
					t.Errorf("implausible RTTs: min %v p50 %v p99.9 %v max %v", r.RTTMin, r.RTTP50, r.RTTP999, r.RTTMax)
				}
				var sent, recv, lost uint64
				for _, iv := range r.Series {
					sent += iv.Sent
					recv += iv.Received
					lost += iv.Lost
				}
				if sent != r.Sent || recv != r.Received || lost != r.Lost {
					t.Errorf("series adds up to sent %d received %d lost %d, want %d %d %d", sent, recv, lost, r.Sent, r.Received, r.Lost)
				}
				if min := int(dur / DefaultSeriesInterval); len(r.Series) < min {
					t.Errorf("%d series intervals, want at least %d", len(r.Series), min)
				}
			})
		}
	}
}

// TestSinkModeCount checks that a counting sink echoes nothing, so that
// everything is lost, and that it ignores foreign datagrams.
func TestSinkModeCount(t *testing.T) {
	s := startSink(t, SinkOptions{Mode: ModeCount})
	be := conn.Default(nil)
	c, err := be.Dial(netip.AddrPort{}, s.Addr(), conn.SocketOptions{BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteBatch([]conn.Message{{Buf: []byte("hello, not a loadgen datagram"), N: 29}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	r, err := Run(context.Background(), Options{Target: s.Addr(), Count: 100, Rate: 10000, Wait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if r.Sent != 100 || r.Lost != 100 || r.LossPercent != 100 {
		t.Errorf("sent %d lost %d (%v%%), want 100 lost", r.Sent, r.Lost, r.LossPercent)
	}
	if st.Received != 100 || st.Unique != 100 || st.Echoed != 0 || st.Foreign != 1 {
		t.Errorf("sink %+v, want 100 received, 0 echoed, 1 foreign", st)
	}
}

// TestRunCancel checks that cancelling the context stops sending early and
// still returns a report.
func TestRunCancel(t *testing.T) {
	s := startSink(t, SinkOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r, err := Run(ctx, Options{Target: s.Addr(), Rate: 1000, Duration: time.Minute, Wait: 50 * time.Millisecond})
	if err != context.DeadlineExceeded {
		t.Fatalf("Run error %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v after cancel", d)
	}
	if r == nil || r.Sent == 0 || r.Received == 0 {
		t.Fatalf("report %+v, want some traffic", r)
	}
}

func TestRunOptionErrors(t *testing.T) {
	target := netip.MustParseAddrPort("127.0.0.1:9")
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no target", Options{Count: 1}},
		{"no limit", Options{Target: target}},
		{"too small", Options{Target: target, Count: 1, Size: HeaderLen - 1}},
		{"too large", Options{Target: target, Count: 1, Size: MaxSize + 1}},
		{"negative rate", Options{Target: target, Count: 1, Rate: -1}},
		{"negative handshake", Options{Target: target, Count: 1, Handshake: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.o); err == nil {
				t.Error("Run accepted bad options")
			}
		})
	}
}

// TestNewBackend checks that the load generator opens the backends by the
// names engine.backend uses (it accepted only mmsg and std before they
// shared conn.Open): io_uring where the kernel has it, and no unknown name.
func TestNewBackend(t *testing.T) {
	_, uringErr := conn.Open("uring", nil)
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{
		{"std", "std", true},
		{"mmsg", "mmsg", runtime.GOOS == "linux"},
		{"", "mmsg", runtime.GOOS == "linux"},
		{"uring", "uring", uringErr == nil},
		{"nonsense", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBackend(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("NewBackend(%q) error %v", tc.name, err)
			}
			if err == nil && b.Name() != tc.want {
				t.Errorf("NewBackend(%q) = %s, want %s", tc.name, b.Name(), tc.want)
			}
		})
	}
}

// TestGenWire checks what the generator puts on the wire, over a fake
// socket that answers its handshake: one initiation shaped like
// WireGuard's from the run's index, then data addressed to the index of
// the response; and that it accepts as echoes only data carrying its own
// index, and ignores copies of the response.
func TestGenWire(t *testing.T) {
	const count = 10
	for _, tc := range []struct {
		name      string
		copies    int    // of the response
		echoIndex uint32 // 0: the generator's
		received  uint64
	}{
		{"echoes with the generator's index", 1, 0, count},
		{"response copies", 3, 0, count},
		{"echoes with the sink's index", 1, recordIndex, 0},
		{"echoes with another index", 1, 12345, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRecordConn()
			c.copies, c.echo, c.echoIndex = tc.copies, true, tc.echoIndex
			r, err := Run(context.Background(), Options{
				Target: netip.MustParseAddrPort("127.0.0.1:9"),
				Conn:   c,
				Size:   100,
				Count:  count,
				Wait:   100 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.inits) != 1 || r.Handshakes != 1 {
				t.Fatalf("%d initiations sent, %d reported, want 1", len(c.inits), r.Handshakes)
			}
			in := c.inits[0]
			if len(in) != 148 || string(in[:4]) != "\x01\x00\x00\x00" || binary.LittleEndian.Uint32(in[4:8]) != r.RunID || r.RunID == 0 {
				t.Errorf("initiation %x, want 148 bytes, type 1, three zero bytes, the run's index %08x", in, r.RunID)
			}
			if r.PeerIndex != recordIndex || r.HandshakeTime <= 0 {
				t.Errorf("report: peer index %08x, handshake time %v; want %08x and a positive time", r.PeerIndex, r.HandshakeTime, recordIndex)
			}
			if len(c.headers) != count {
				t.Fatalf("%d data datagrams sent, want %d", len(c.headers), count)
			}
			for i, h := range c.headers {
				if h.Index != recordIndex || h.Seq != uint64(i) {
					t.Errorf("datagram %d: %+v, want index %08x, seq %d", i, h, recordIndex, i)
				}
			}
			if r.Received != tc.received || r.Foreign != count-tc.received {
				t.Errorf("received %d, foreign %d; want %d and %d", r.Received, r.Foreign, tc.received, count-tc.received)
			}
		})
	}
}

// TestGenResponse checks which responses complete the generator's
// handshake: one to any initiation sent, the first only; others are not
// its own.
func TestGenResponse(t *testing.T) {
	g := &gen{ready: make(chan struct{}), attempts: []uint32{5, 6}}
	b := make([]byte, responseLen)
	putResponse(b, 100, 7)
	if g.response(b, 1) || g.established {
		t.Fatal("a response to an index never sent was taken")
	}
	putResponse(b, 100, 6)
	if _, ok := parseInitiation(b); ok || g.response(b[:91], 1) || g.established {
		t.Fatal("a short response was taken")
	}
	if !g.response(b, 2) || !g.established || g.local != 6 || g.remote != 100 || g.t0 != 2 {
		t.Fatalf("a response to the second attempt: established %v, local %d, remote %d, t0 %d", g.established, g.local, g.remote, g.t0)
	}
	select {
	case <-g.ready:
	default:
		t.Fatal("ready not closed")
	}
	putResponse(b, 200, 5) // to the first attempt, late
	if !g.response(b, 3) || g.local != 6 || g.remote != 100 || g.t0 != 2 {
		t.Errorf("a late response changed the session: local %d, remote %d, t0 %d", g.local, g.remote, g.t0)
	}
}

// TestLoopbackWire plays the generator's part by hand against a sink over
// loopback and checks each message the sink sends: the response, and echoes
// carrying the generator's index; data for an unknown index gets nothing.
func TestLoopbackWire(t *testing.T) {
	s := startSink(t, SinkOptions{Mode: ModeFirst})
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() []byte {
		t.Helper()
		b := make([]byte, 2048)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		return b[:n]
	}
	const g = 0x01020304
	in := make([]byte, initiationLen)
	putInitiation(in, g)
	if _, err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	resp := read()
	if len(resp) != 92 || string(resp[:4]) != "\x02\x00\x00\x00" || string(resp[8:12]) != "\x04\x03\x02\x01" {
		t.Fatalf("response %x, want 92 bytes, type 2, three zero bytes, %08x at 8", resp, g)
	}
	idx := binary.LittleEndian.Uint32(resp[4:8])

	// A copy of the initiation: the same response, once.
	if _, err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	if again := read(); !bytes.Equal(again, resp) {
		t.Fatalf("response to a copy %x, want %x", again, resp)
	}

	d := make([]byte, 64)
	for seq := range uint64(3) {
		Put(d, Header{Index: idx, Seq: seq, Sent: 42})
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
		e := read()
		h, err := Decode(e)
		if err != nil || len(e) != 64 || h != (Header{Index: g, Seq: seq, Sent: 42}) {
			t.Fatalf("echo %x: %+v, %v; want 64 bytes, index %08x, seq %d", e, h, err, g, seq)
		}
		if !bytes.Equal(e[HeaderLen:], d[HeaderLen:]) || !bytes.Equal(e[:4], d[:4]) || !bytes.Equal(e[8:HeaderLen], d[8:HeaderLen]) {
			t.Fatalf("echo %x of %x changed more than the index", e, d)
		}
	}

	Put(d, Header{Index: idx + 1, Seq: 9})
	if _, err := c.Write(d); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 2048)); err == nil {
		t.Fatalf("got %d bytes back for an unknown index", n)
	}
	st := s.Stats()
	if st.Initiations != 2 || st.Handshakes != 1 || st.Responses != 2 || st.Received != 3 || st.Echoed != 3 || st.Foreign != 1 || st.Runs != 1 {
		t.Errorf("sink %+v, want 2 initiations, 1 handshake, 2 responses, 3 received and echoed, 1 foreign, 1 run", st)
	}
}

// TestTwoGenerators runs two generators against one sink at once: each
// completes its own handshake and gets back all of its packets and nothing
// of the other's, and the sink counts two runs.
func TestTwoGenerators(t *testing.T) {
	s := startSink(t, SinkOptions{Mode: ModeFirst})
	var rs [2]*Report
	var errs [2]error
	var wg sync.WaitGroup
	for i := range rs {
		wg.Go(func() {
			rs[i], errs[i] = Run(context.Background(), Options{
				Target: s.Addr(), Rate: 2000, Size: 100, Duration: 300 * time.Millisecond, Wait: 200 * time.Millisecond,
			})
		})
	}
	wg.Wait()
	for i, r := range rs {
		if errs[i] != nil {
			t.Fatalf("generator %d: %v", i, errs[i])
		}
		if r.Sent == 0 || r.Received != r.Sent || r.Duplicates != 0 || r.Foreign != 0 {
			t.Errorf("generator %d: sent %d received %d duplicates %d foreign %d; want all back once", i, r.Sent, r.Received, r.Duplicates, r.Foreign)
		}
	}
	if rs[0].RunID == rs[1].RunID || rs[0].PeerIndex == rs[1].PeerIndex {
		t.Errorf("indices %08x/%08x and %08x/%08x, want distinct", rs[0].RunID, rs[0].PeerIndex, rs[1].RunID, rs[1].PeerIndex)
	}
	st := s.Stats()
	if sum := rs[0].Sent + rs[1].Sent; st.Runs != 2 || st.Unique != sum || st.Duplicates != 0 || st.Echoed != sum || st.Foreign != 0 {
		t.Errorf("sink %+v, want 2 runs, %d unique and echoed", st, sum)
	}
}

// TestHandshakeTimeout runs a generator against a socket that reads and
// never answers: it retries with a fresh index every HandshakeRetry and
// gives up with an error after Options.Handshake, sending no data.
func TestHandshakeTimeout(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	inits := make(chan []byte, 64)
	go func() {
		for {
			b := make([]byte, 2048)
			n, err := silent.Read(b)
			if err != nil {
				close(inits)
				return
			}
			inits <- b[:n]
		}
	}()
	target := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	const limit = 600 * time.Millisecond
	start := time.Now()
	r, err := Run(context.Background(), Options{Target: target, Count: 10, Handshake: limit})
	elapsed := time.Since(start)
	want := fmt.Sprintf("no handshake response from %v within 600ms", target)
	if r != nil || err == nil || err.Error() != want {
		t.Fatalf("Run = %v, %v; want no report and %q", r, err, want)
	}
	if elapsed < limit || elapsed > limit+time.Second {
		t.Errorf("gave up after %v, want %v", elapsed, limit)
	}
	time.Sleep(50 * time.Millisecond)
	silent.Close()
	seen := map[uint32]bool{}
	for b := range inits {
		g, ok := parseInitiation(b)
		if !ok || seen[g] || g == 0 {
			t.Errorf("datagram %x: not an initiation with a fresh nonzero index", b)
		}
		seen[g] = true
	}
	// At 0, 250 and 500 ms; a loaded machine may miss the last.
	if n := len(seen); n < 2 || n > 3 {
		t.Errorf("%d initiations in %v, want 3, one every %v", n, limit, HandshakeRetry)
	}
}

// TestHandshakeDefault checks the default handshake deadline, over a fake
// socket that never answers.
func TestHandshakeDefault(t *testing.T) {
	if testing.Short() {
		t.Skipf("waits %v", DefaultHandshake)
	}
	t.Parallel()
	c := newRecordConn()
	c.silent = true
	start := time.Now()
	_, err := Run(context.Background(), Options{Target: netip.MustParseAddrPort("192.0.2.1:9"), Conn: c, Count: 1})
	if want := "no handshake response from 192.0.2.1:9 within 5s"; err == nil || err.Error() != want {
		t.Fatalf("Run error %v, want %q", err, want)
	}
	if d := time.Since(start); d < DefaultHandshake || d > DefaultHandshake+time.Second {
		t.Errorf("gave up after %v, want %v", d, DefaultHandshake)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// One every HandshakeRetry from 0: the one due at the deadline itself
	// may go before the deadline is seen (21), and a loaded machine may
	// miss a couple.
	if n := len(c.inits); n < 18 || n > 21 || len(c.headers) != 0 {
		t.Errorf("%d initiations and %d data datagrams, want 20 or 21 initiations and no data", n, len(c.headers))
	}
}

// TestHandshakeCancel checks that cancelling the context during the
// handshake stops it and returns an empty report with ctx.Err().
func TestHandshakeCancel(t *testing.T) {
	c := newRecordConn()
	c.silent = true
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r, err := Run(ctx, Options{Target: netip.MustParseAddrPort("192.0.2.1:9"), Conn: c, Count: 1})
	if err != context.DeadlineExceeded || r == nil || r.Sent != 0 || r.Handshakes < 1 {
		t.Fatalf("Run = %+v, %v; want an empty report with %d+ handshakes and %v", r, err, 1, context.DeadlineExceeded)
	}
}
