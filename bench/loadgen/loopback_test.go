package loadgen

import (
	"context"
	"net/netip"
	"runtime"
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
