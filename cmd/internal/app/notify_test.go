package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSystemd listens where NOTIFY_SOCKET points, as systemd does, and
// hands on each datagram.
func fakeSystemd(t *testing.T, addr string) (*net.UnixConn, <-chan string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return c, got
}

func next(t *testing.T, got <-chan string) string {
	t.Helper()
	select {
	case s := <-got:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("systemd heard nothing")
	}
	return ""
}

// TestNotifier: READY=1 with a status line, then watchdog pings, to a
// socket path and to an abstract address; none once health stops
// answering; none when WATCHDOG_PID names another process.
func TestNotifier(t *testing.T) {
	for _, addr := range []string{filepath.Join(t.TempDir(), "notify"), fmt.Sprintf("@engarde-test-%d", os.Getpid())} {
		t.Run(addr[:1], func(t *testing.T) {
			_, got := fakeSystemd(t, addr)
			n, err := notifierFrom(addr, "40000", "", 1) // a 40 ms watchdog: pings every 20 ms
			if err != nil {
				t.Fatal(err)
			}
			stuck := make(chan struct{})
			answering := make(chan bool, 1)
			answering <- true
			health := func() string {
				ok := <-answering
				answering <- ok
				if !ok {
					<-stuck
				}
				return "tunnel up; 2 of 2 links active"
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); n.Run(ctx, nil, health, t.Logf) }()
			if s := next(t, got); s != "READY=1\nSTATUS=tunnel up; 2 of 2 links active" {
				t.Errorf("first notification %q", s)
			}
			for range 3 {
				if s := next(t, got); !strings.HasPrefix(s, "WATCHDOG=1\n") {
					t.Errorf("notification %q, want a watchdog ping", s)
				}
			}
			<-answering
			answering <- false // the engine hangs
			for len(got) > 0 || n.pings.Load() == 0 {
				<-got
			}
			time.Sleep(100 * time.Millisecond) // a ping under way lands
			for len(got) > 0 {
				<-got
			}
			before := n.pings.Load()
			time.Sleep(200 * time.Millisecond)
			if after := n.pings.Load(); after != before {
				t.Errorf("%d pings while the engine did not answer", after-before)
			}
			close(stuck)
			cancel()
			<-done
		})
	}
	n, err := notifierFrom("/run/x", "40000", "12", 13)
	if err != nil || n.watchdog != 0 {
		t.Errorf("WATCHDOG_PID of another process: %v, watchdog %v", err, n.watchdog)
	}
	for _, bad := range [][2]string{{"vsock:2:1234", ""}, {"/run/x", "soon"}, {"/run/x", "0"}} {
		if _, err := notifierFrom(bad[0], bad[1], "", 1); err == nil {
			t.Errorf("NOTIFY_SOCKET=%q WATCHDOG_USEC=%q accepted", bad[0], bad[1])
		}
	}
	if n, err := notifierFrom("", "", "", 1); n != nil || err != nil {
		t.Errorf("no NOTIFY_SOCKET: %v, %v", n, err)
	}
	var none *Notifier
	if err := none.Notify("READY=1"); err != nil {
		t.Errorf("nil notifier: %v", err)
	}
}

// TestServeNotifies: Serve tells systemd READY=1 once running, RELOADING=1
// and READY=1 around a reload, and STOPPING=1 at a stop.
func TestServeNotifies(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	_, got := fakeSystemd(t, addr)
	n, err := notifierFrom(addr, "", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	sig := &Signals{hup: make(chan os.Signal, 1)}
	sig.ctx, sig.stop = context.WithCancel(context.Background())
	ready := make(chan struct{})
	sig.Supervise(n, func(ctx context.Context) { <-ready }, func() string { return "ok" }, t.Logf)
	reloaded := make(chan struct{}, 1)
	served := make(chan error, 1)
	go func() {
		served <- sig.Serve(nil, func(ctx context.Context) error { <-ctx.Done(); return nil }, func() { reloaded <- struct{}{} })
	}()
	select {
	case s := <-got:
		t.Fatalf("%q before the engine was ready", s)
	case <-time.After(50 * time.Millisecond):
	}
	close(ready)
	if s := next(t, got); s != "READY=1\nSTATUS=ok" {
		t.Errorf("got %q, want READY=1", s)
	}
	sig.hup <- os.Interrupt // any value: a SIGHUP
	if s := next(t, got); s != "RELOADING=1" {
		t.Errorf("got %q, want RELOADING=1", s)
	}
	<-reloaded
	if s := next(t, got); s != "READY=1" {
		t.Errorf("got %q after the reload, want READY=1", s)
	}
	sig.stop()
	if s := next(t, got); s != "STOPPING=1" {
		t.Errorf("got %q at the stop, want STOPPING=1", s)
	}
	if err := <-served; err != nil {
		t.Error(err)
	}
}
