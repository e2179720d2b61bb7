package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// startStateServer runs a server on fn towards w, keeping its sessions in
// state (none when empty); stop ends it and waits.
func startStateServer(t *testing.T, fn *conntest.Net, w *fakeWG, state string) (srv *Server, stop func()) {
	t.Helper()
	srv, err := NewServer(ServerConfig{
		Options:    Options{Backend: fn, Log: testLogger(t), DisableGSO: true, DisableGRO: true},
		ListenAddr: "10.0.0.1:4000",
		DstAddr:    w.c.LocalAddr().String(),
		StateFile:  state,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return srv, stop
}

// TestServerRestartKeepsSessions: engarde-server restarted while WireGuard
// and the client keep their session resumes at the client's next
// datagram, from the state file; without it the same traffic is a
// stranger's until WireGuard's next handshake.
func TestServerRestartKeepsSessions(t *testing.T) {
	for _, keep := range []bool{true, false} {
		name := "state file"
		if !keep {
			name = "no state file"
		}
		t.Run(name, func(t *testing.T) {
			conntest.CheckGoroutines(t)
			fn := conntest.NewNet()
			w := newFakeWG(t, fn)
			state := ""
			if keep {
				state = filepath.Join(t.TempDir(), "sessions")
			}
			srv, stop := startStateServer(t, fn, w, state)
			c := newFakeClient(t, fn, srv.ListenAddr(), 0xc1, "10.1.1.2:5000", "10.1.2.2:5000")
			c.handshake(1)
			if got := c.stream(0, 100); got != 100 {
				t.Fatalf("before the restart: %d of 100 came back", got)
			}
			stop()
			if keep {
				fi, err := os.Stat(state)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
				}
			}
			inits, _, _, _ := w.stats()
			srv, _ = startStateServer(t, fn, w, state)
			got := c.stream(100, 200)
			if again, _, _, _ := w.stats(); again != inits {
				t.Fatalf("%d handshakes during the restart: the test must not need one", again-inits)
			}
			if !keep {
				if got != 0 {
					t.Fatalf("without a state file %d of 100 came back: the server forwarded a stranger's transport", got)
				}
				return
			}
			if got != 100 {
				ss := srv.Sessions()
				t.Logf("notmember %d foreign %d notwg %d noPeer %d dups %d sessions %+v", srv.NotMember.Load(), srv.Foreign.Load(), srv.NotWireGuard.Load(), srv.NoPeer.Load(), srv.Duplicates.Load(), ss)
				_, acc, rej, eps := w.stats()
				t.Logf("wg accepted %d rejected %d endpoints %d", acc, rej, eps)
				t.Fatalf("after the restart: %d of 100 came back", got)
			}
			ss := srv.Sessions()
			if len(ss) != 1 || len(ss[0].Addrs) != 2 {
				t.Fatalf("restored sessions: %+v", ss)
			}
			// A link that appears now joins by re-sending the initiation
			// the first process saw answered.
			c.addLink(fn, "10.1.3.2:5000")
			c.send(c.init, 2)
			waitFor(t, "the third link to join", func() bool {
				return srv.Joins.Load() == 1
			})
			before, _ := c.counts()
			if got := c.stream(200, 300); got != 100 {
				t.Fatalf("with the third link: %d of 100", got)
			}
			after, _ := c.counts()
			if after[2] == before[2] {
				t.Errorf("the joined link got no replies")
			}
		})
	}
}

// TestServerStateFileBad: a state file that cannot be read is logged and
// replaced; the server runs without it.
func TestServerStateFileBad(t *testing.T) {
	conntest.CheckGoroutines(t)
	fn := conntest.NewNet()
	w := newFakeWG(t, fn)
	state := filepath.Join(t.TempDir(), "sessions")
	if err := os.WriteFile(state, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, stop := startStateServer(t, fn, w, state)
	c := newFakeClient(t, fn, srv.ListenAddr(), 0xc2, "10.1.1.2:5000")
	c.handshake(1)
	if got := c.stream(0, 50); got != 50 {
		t.Fatalf("%d of 50", got)
	}
	stop()
	st, err := readState(state)
	if err != nil || st == nil || len(st.Sessions) != 1 {
		t.Fatalf("state after the run: %+v, %v", st, err)
	}
}

// TestClientRestartRejoins: engarde-client restarted while WireGuard keeps
// its session gets new link addresses; with its state file it re-sends
// WireGuard's last initiation over them and they join the session at once.
// Without it, WireGuard's traffic is a stranger's to the server until
// WireGuard's next handshake.
func TestClientRestartRejoins(t *testing.T) {
	for _, keep := range []bool{true, false} {
		name := "state file"
		if !keep {
			name = "no state file"
		}
		t.Run(name, func(t *testing.T) {
			n := fakeTestNet(conntest.NewNet())
			if keep {
				n.clientState = filepath.Join(t.TempDir(), "client.state")
			}
			tu := startTunnel(t, n, Options{DisableGSO: true, DisableGRO: true})
			if got, _ := tu.stream(100, 200, 5000, nil); got != 100 {
				t.Fatalf("before the restart: %d of 100 came back", got)
			}
			inits := tu.initiations.Load()
			// The first handshake's copy from the second link counts as a
			// join when WireGuard answered the first copy before it came.
			joins := tu.server.Joins.Load()
			tu.stopClient()
			tu.startClient(tu.ctx)
			tu.waitLinks(2)
			got, _ := tu.stream(100, 200, 5000, nil)
			if tu.initiations.Load() != inits {
				t.Fatal("WireGuard's stand-in got an initiation: the test must not need one")
			}
			if !keep {
				// Which also shows the new links have new source ports.
				if got != 0 {
					t.Fatalf("without a state file %d of 100 came back over addresses the server never saw answered", got)
				}
				return
			}
			if got != 100 {
				t.Fatalf("after the restart: %d of 100 came back", got)
			}
			if j := tu.server.Joins.Load() - joins; j != 2 {
				t.Errorf("%d joins by re-sent initiation, want 2 (one per new link)", j)
			}
		})
	}
}
