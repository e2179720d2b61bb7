package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
	"github.com/engarde-project/engarde/engine/internal/sys"
)

// runServer runs srv until the test ends or stop is called.
func runServer(t *testing.T, srv *Server) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// TestSecondServerRefused: a server started on a port another server
// holds fails with an error that names the port, whatever the two listen
// addresses' families, as long as they overlap; it pins the bug where the
// second server started silently beside the first (both sockets had
// SO_REUSEPORT) and the kernel split new clients between them. A server
// on another address of the same port starts, and so does one started on
// the port once the first has stopped (a restart).
func TestSecondServerRefused(t *testing.T) {
	v6 := true
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		v6 = false
	} else {
		c.Close()
	}
	tests := []struct {
		first, second string // hosts
		refused       bool
		v6            bool
	}{
		{"127.0.0.1", "127.0.0.1", true, false},
		{"0.0.0.0", "127.0.0.1", true, false},
		{"127.0.0.1", "0.0.0.0", true, false},
		{"127.0.0.1", "127.0.0.2", false, false},
		{"::1", "::1", true, true},
		{"::", "127.0.0.1", true, true}, // the dual-stack wildcard holds IPv4 too
		{"127.0.0.1", "", true, true},   // an empty host is the dual-stack wildcard
		{"::", "::1", true, true},
		{"::1", "127.0.0.1", false, true},
	}
	for _, be := range conntest.Platform(t) {
		t.Run(be.Name(), func(t *testing.T) {
			conntest.CheckGoroutines(t)
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s then %s", tt.first, tt.second), func(t *testing.T) {
					if tt.v6 && !v6 {
						t.Skip("skipping: no IPv6 loopback")
					}
					secondServer(t, be, tt.first, tt.second, tt.refused)
				})
			}
		})
	}
	t.Run("fake", func(t *testing.T) {
		conntest.CheckGoroutines(t)
		secondServer(t, conntest.NewNet(), "10.0.0.1", "10.0.0.1", true)
	})
}

func secondServer(t *testing.T, be conn.Backend, first, second string, refused bool) {
	newServer := func(host string, port uint16) (*Server, error) {
		return NewServer(ServerConfig{
			Options:    Options{Backend: be, Log: testLogger(t), QueueLength: 16, BufferSize: 2048},
			ListenAddr: net.JoinHostPort(host, fmt.Sprint(port)),
			DstAddr:    "127.0.0.1:9",
		})
	}
	a, err := newServer(first, 0)
	if err != nil {
		t.Fatal(err)
	}
	stopA := runServer(t, a)
	port := a.ListenAddr().Port()
	b, err := newServer(second, port)
	if !refused {
		if err != nil {
			t.Fatalf("a server on %s:%d beside one on %v: %v", second, port, a.ListenAddr(), err)
		}
		runServer(t, b)()
		return
	}
	if err == nil {
		runServer(t, b)()
		t.Fatalf("a second server started on %v beside the one on %v", b.ListenAddr(), a.ListenAddr())
	}
	t.Logf("second server: %v", err)
	for _, want := range []string{fmt.Sprintf("port %d/udp", port), "is in use", "another engarde-server"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, fake := be.(*conntest.Net); !fake && !strings.Contains(err.Error(), fmt.Sprintf("in use by engine.test (PID %d)", os.Getpid())) {
		t.Errorf("error %q does not name this process as the holder", err)
	}
	if !sys.IsAddrInUse(err) {
		t.Errorf("error %q does not wrap EADDRINUSE", err)
	}
	// The first server still has its port, and the port is free again
	// once it stops.
	stopA()
	c, err := newServer(second, port)
	if err != nil {
		t.Fatalf("restart on port %d after the first server stopped: %v", port, err)
	}
	runServer(t, c)()
}

// logLines is a Logger that keeps what it is told, by level.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger(t *testing.T) *Logger {
	at := func(level string) func(string, ...any) {
		return func(format string, args ...any) {
			s := level + " " + fmt.Sprintf(format, args...)
			t.Log(s)
			l.mu.Lock()
			l.lines = append(l.lines, s)
			l.mu.Unlock()
		}
	}
	return &Logger{Infof: at("info"), Warnf: at("warn"), Errorf: at("error")}
}

// count returns how many lines hold every one of subs.
func (l *logLines) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// TestClientNotes: the client warns once about each interface its
// configuration names that does not exist, at start-up and again at a
// reload, never at a rescan; it skips a WireGuard interface and says so
// once, with the reason in its status; a TUN device that a label names
// is a link; and a WireGuard interface named at a reload becomes one.
func TestClientNotes(t *testing.T) {
	conntest.CheckGoroutines(t)
	fn := conntest.NewNet()
	a := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	ifs := &testIfaces{ch: make(chan struct{}, 1), ifs: []Iface{
		{Name: "eth0", Index: 2, Up: true, Running: true, Addrs: a("10.0.1.2")},
		{Name: "wg0", Index: 3, Up: true, Running: true, Kind: "wireguard", Addrs: a("10.9.0.2")},
		{Name: "tun0", Index: 4, Up: true, Running: true, Kind: "tun", Addrs: a("10.8.0.2")},
	}}
	var log logLines
	cfg := ClientConfig{
		Options:      Options{Backend: fn, Log: log.logger(t), DisableGSO: true, DisableGRO: true},
		ListenAddr:   "127.0.0.1:0",
		DstAddr:      "10.0.0.1:4000",
		DstOverrides: map[string]string{"nosuch0": "10.0.0.1:4001"},
		Excluded:     []string{"gone1"},
		Labels:       map[string]string{"tun0": "vpn", "nosuch0": "spare"},
		Interfaces:   ifs.list,
		Watch:        ifs.watcher,
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	links := func() map[string]LinkInfo {
		m := map[string]LinkInfo{}
		for _, l := range c.Links() {
			m[l.Name] = l
		}
		return m
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 3 s", what)
			}
		}
	}
	waitFor("links on eth0 and tun0", func() bool { return len(*c.active.Load()) == 2 })
	for range 3 {
		c.scan()
	}
	unknown := func(want int) {
		t.Helper()
		if n := log.count("warn interface nosuch0, named in dstOverrides and interfaceLabels, does not exist"); n != want {
			t.Errorf("%d warnings about nosuch0, want %d", n, want)
		}
		if n := log.count("warn interface gone1, named in excludedInterfaces, does not exist"); n != want {
			t.Errorf("%d warnings about gone1, want %d", n, want)
		}
		if n := log.count("does not exist"); n != 2*want {
			t.Errorf("%d warnings about unknown interfaces, want %d", n, 2*want)
		}
	}
	unknown(1)
	skipped := func(want int) {
		t.Helper()
		if n := log.count("interface wg0 is a WireGuard interface", "name it in interfaceLabels or dstOverrides"); n != want {
			t.Errorf("%d lines about skipping wg0, want %d", n, want)
		}
	}
	skipped(1)
	if n := log.count("tun0 is a"); n != 0 {
		t.Errorf("the labelled TUN device tun0 logged as skipped")
	}
	l := links()
	if got := l["wg0"]; got.Status != LinkDown || !strings.Contains(got.Reason, "WireGuard interface, not a link unless named in interfaceLabels or dstOverrides") {
		t.Errorf("wg0: %s, %q", got.Status, got.Reason)
	}
	if l["tun0"].Status != LinkActive {
		t.Errorf("tun0, labelled: %s (%q), want a link", l["tun0"].Status, l["tun0"].Reason)
	}

	// A reload looks again: the same names are warned about again.
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	c.scan()
	unknown(2)
	skipped(1)

	// Named at a reload, wg0 is a link; unnamed again, it is skipped
	// and said so again.
	named := cfg
	named.Labels = map[string]string{"tun0": "vpn", "wg0": "site b"}
	if err := c.Reconfigure(named); err != nil {
		t.Fatal(err)
	}
	waitFor("a link on wg0 once labelled", func() bool { return links()["wg0"].Status == LinkActive })
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor("wg0 skipped again", func() bool { return links()["wg0"].Status == LinkDown })
	skipped(2)
}

// TestFwmarkHint: a link refused its mark for want of the capability
// explains the capability and how to grant it once, however many links
// and scans fail the same way, and again only after a link opened.
func TestFwmarkHint(t *testing.T) {
	var log logLines
	c := &Client{}
	c.log = log.logger(t)
	c.cfg.FwMark = 0xca6c
	refused := &net.OpError{Op: "dial", Err: fmt.Errorf("setting fwmark 0xca6c: %w (%w)", syscall.EPERM, sys.ErrMarkPermission)}
	hint := func(want int) {
		t.Helper()
		if n := log.count("fwmark 0xca6c cannot be set", "CAP_NET_ADMIN", "AmbientCapabilities=CAP_NET_ADMIN", "as root"); n != want {
			t.Errorf("%d hints, want %d", n, want)
		}
	}
	for range 5 {
		c.noteOpenLocked(refused)
	}
	c.noteOpenLocked(fmt.Errorf("binding to device: %w", syscall.ENODEV)) // another error says nothing of the mark
	hint(1)
	c.noteOpenLocked(nil)
	c.noteOpenLocked(refused)
	hint(2)
	if n := log.count("cannot be set"); n != 2 {
		t.Errorf("%d lines in all, want 2", n)
	}
}

// TestSecondClientRefused: a client whose listen address another holds
// says which port, and which process holds it.
func TestSecondClientRefused(t *testing.T) {
	conntest.CheckGoroutines(t)
	for _, be := range conntest.Platform(t) {
		t.Run(be.Name(), func(t *testing.T) {
			newClient := func(listen string) (*Client, error) {
				return NewClient(ClientConfig{
					Options:    Options{Backend: be, Log: testLogger(t), QueueLength: 16, BufferSize: 2048},
					ListenAddr: listen,
					DstAddr:    "127.0.0.1:9",
					Interfaces: func() ([]Iface, error) { return nil, nil },
				})
			}
			a, err := newClient("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); a.Run(ctx) }()
			defer func() { cancel(); <-done }()
			_, err = newClient(a.ListenAddr().String())
			if err == nil {
				t.Fatal("a second client started on the first's listen address")
			}
			want := fmt.Sprintf("port %d/udp on 127.0.0.1 is in use by engine.test (PID %d): another engarde-client", a.ListenAddr().Port(), os.Getpid())
			if !strings.Contains(err.Error(), want) || !sys.IsAddrInUse(err) {
				t.Errorf("error %q, want it to say %q and wrap EADDRINUSE", err, want)
			}
		})
	}
}
