package engine

import (
	"context"
	"encoding/binary"
	"fmt"

	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// TestServerThousandSessions holds 1000 sessions of three addresses each
// on one port, over real loopback sockets, with clients that speak
// WireGuard's handshake shape, and checks what a server for many clients
// needs: every session answered, idle sockets holding no packet buffers,
// next to no CPU while idle, and a new client answered while the 1000
// exist. It logs the memory and CPU figures. ENGARDE_SESSIONS changes the
// number of sessions.
func TestServerThousandSessions(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("skipping the 1000-session test in -short mode and under the race detector (7000 sockets)")
	}
	be := conntest.Platform(t)
	if len(be) == 0 {
		t.Skip("no batch backend on this platform")
	}
	sessions := 1000
	if v, err := strconv.Atoi(os.Getenv("ENGARDE_SESSIONS")); err == nil && v > 0 {
		sessions = v
	}
	const addrs = 3
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < uint64(sessions*(2*addrs+1)+200) {
		t.Skipf("skipping: %d sessions need %d file descriptors, the limit is %d", sessions, sessions*(2*addrs+1)+200, lim.Cur)
	}
	backend := be[0] // mmsg: the default
	wgc, err := backend.Listen(netip.MustParseAddrPort("127.0.0.1:0"), conn.SocketOptions{BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer wgc.Close()
	var answered atomic.Int64
	go func() {
		// WireGuard's stand-in: a response for every initiation.
		msgs := make([]conn.Message, 64)
		for i := range msgs {
			msgs[i].Buf = make([]byte, 2048)
		}
		out := make([]conn.Message, 0, 64)
		next := uint32(1 << 20)
		for {
			n, err := wgc.ReadBatch(msgs)
			if err != nil {
				return
			}
			out = out[:0]
			for _, m := range msgs[:n] {
				if m.N == wgInitiationLen && m.Buf[0] == wgInitiationType {
					next++
					r := wgResponse(next, binary.LittleEndian.Uint32(m.Buf[4:]))
					out = append(out, conn.Message{Buf: r, N: len(r), Addr: m.Addr})
				}
			}
			if k, _ := wgc.WriteBatch(out); k > 0 {
				answered.Add(int64(k))
			}
		}
	}()

	srv, err := NewServer(ServerConfig{
		Options:    Options{Backend: backend, Log: &Logger{Warnf: t.Logf, Errorf: t.Logf}},
		ListenAddr: "127.0.0.1:0",
		DstAddr:    wgc.LocalAddr().String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The clients: each its own /24 of 127/8, one socket per address.
	type client struct {
		links    []conn.Conn
		got      atomic.Int32
		attempts int32
	}
	clients := make([]*client, sessions+1)
	var wg sync.WaitGroup
	open := func(i int) *client {
		c := &client{}
		for a := range addrs {
			ip := netip.AddrFrom4([4]byte{127, byte(1 + i/250), byte(i % 250), byte(1 + a)})
			l, err := backend.Listen(netip.AddrPortFrom(ip, 0), conn.SocketOptions{BatchSize: 4})
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			c.links = append(c.links, l)
			wg.Go(func() {
				msgs := make([]conn.Message, 4)
				for j := range msgs {
					msgs[j].Buf = make([]byte, 256)
				}
				for {
					n, err := l.ReadBatch(msgs)
					if err != nil {
						return
					}
					c.got.Add(int32(n))
				}
			})
		}
		return c
	}
	defer func() {
		for _, c := range clients {
			if c == nil {
				continue
			}
			for _, l := range c.links {
				l.Close()
			}
		}
		wg.Wait()
	}()
	handshake := func(i, attempt int) {
		// A retry is a new initiation, as WireGuard's are.
		init := wgInitiation(uint32(i+1)|uint32(attempt)<<24, byte(i+attempt))
		for _, l := range clients[i].links {
			if _, err := l.WriteBatch([]conn.Message{{Buf: init, N: len(init), Addr: srv.ListenAddr()}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every client's sockets first: the memory figures are the server's.
	for i := range sessions + 1 {
		clients[i] = open(i)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rssBefore := rss()
	start := time.Now()
	for i := range sessions {
		handshake(i, 0)
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond) // let the server keep up; retries are the client's business
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	count := func() (n, live int) {
		for _, ss := range srv.Sessions() {
			n++
			for _, p := range ss.Addrs {
				if p.Live {
					live++
				}
			}
		}
		return n, live
	}
	retries := 0
	for attempt := 1; ; attempt++ {
		time.Sleep(500 * time.Millisecond)
		n, live := count()
		if n == sessions && live == sessions*addrs {
			break
		}
		if time.Now().After(deadline) {
			short := 0
			for i := range sessions {
				if clients[i].got.Load() == 0 {
					short++
				}
			}
			hist := map[string]int{}
			for _, ss := range srv.Sessions() {
				l := 0
				for _, p := range ss.Addrs {
					if p.Live {
						l++
					}
				}
				hist[fmt.Sprintf("%d/%d", l, len(ss.Addrs))]++
				if len(ss.Addrs) > addrs {
					var as []string
					for _, p := range ss.Addrs {
						as = append(as, p.Addr.String())
					}
					t.Logf("session %d: %v", ss.ID, as)
				}
			}
			t.Logf("live/addresses per session: %v", hist)
			t.Fatalf("after 30 s: %d sessions, %d live addresses; want %d, %d; %d clients short of responses; answered %d; server: initiations %d copies %d joins %d evicted %d unrouted %d no peer %d not member %d; listen rx %d; handshake socket rx %d tx %d drops %d",
				n, live, sessions, sessions*addrs, short, answered.Load(), srv.Initiations.Load(), srv.InitCopies.Load(), srv.Joins.Load(), srv.PendingEvicted.Load(), srv.Unrouted.Load(), srv.NoPeer.Load(), srv.NotMember.Load(),
				srv.ListenStats.RxPackets.Load(), srv.UpstreamStats.RxPackets.Load(), srv.UpstreamStats.TxPackets.Load(), srv.UpstreamStats.Drops())
		}
		for i := range sessions {
			if clients[i].got.Load() == 0 {
				handshake(i, attempt) // lost in a full socket buffer: WireGuard retries too
				clients[i].attempts++
				retries++
			}
		}
	}
	setup := time.Since(start)
	// A response goes to the addresses that are members when it comes:
	// one, two or three of them (the others join on their copy); a
	// session made by a race with a member's copy merges and sends the
	// response once more.
	for i := range sessions {
		if got, most := clients[i].got.Load(), 2*addrs*(1+clients[i].attempts); got < 1 || got > most {
			t.Fatalf("client %d received %d datagrams, want 1 to %d responses", i, got, most)
		}
	}

	// Idle: the receive loops hold no buffers but the few that may keep
	// some (serverKeepers), nothing polls.
	time.Sleep(200 * time.Millisecond)
	if held := srv.pool.Allocated() - srv.pool.Available(); held > 64+serverKeepers*srv.keepBufs {
		t.Errorf("%d packet buffers held by %d idle sockets", held, sessions*(addrs+1)+2)
	}
	cpu0 := cpuTime()
	wall0 := time.Now()
	time.Sleep(2 * time.Second)
	idleCPU := cpuTime() - cpu0
	idleWall := time.Since(wall0)

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)

	// A new client is answered while the 1000 exist.
	t0 := time.Now()
	handshake(sessions, 0)
	for clients[sessions].got.Load() < 1 {
		if time.Since(t0) > 2*time.Second {
			t.Fatalf("a new client got no response in 2 s with %d sessions held", sessions)
		}
		time.Sleep(100 * time.Microsecond)
	}
	newSession := time.Since(t0)
	if n, live := count(); n != sessions+1 || live != (sessions+1)*addrs {
		time.Sleep(100 * time.Millisecond)
		if n, live = count(); n != sessions+1 || live != (sessions+1)*addrs {
			t.Errorf("after the new client: %d sessions, %d live addresses; want %d, %d", n, live, sessions+1, (sessions+1)*addrs)
		}
	}

	t.Logf("SESSIONS %d sessions x %d addresses on one port (%s backend): set up in %v (%d handshakes retried); heap+stacks %.1f MiB (%.1f KiB per session), RSS growth %.1f MiB; packet buffers held idle %d of %d (%d KiB each); idle CPU %.2f%% of one core over %v; a new session answered in %v",
		sessions, addrs, backend.Name(), setup.Round(time.Millisecond), retries, float64(heap)/(1<<20), float64(heap)/1024/float64(sessions),
		float64(rss()-rssBefore)/(1<<20), srv.pool.Allocated()-srv.pool.Available(), srv.pool.Allocated(), srv.opts.BufferSize/1024,
		100*idleCPU.Seconds()/idleWall.Seconds(), idleWall.Round(time.Millisecond), newSession.Round(time.Microsecond))
	if idleCPU > idleWall/20 {
		t.Errorf("idle CPU %v over %v: more than 5%% of a core with %d idle sessions", idleCPU, idleWall, sessions)
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the process's resident set, in bytes (0 where /proc is not).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
