package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/cmd/internal/control"
)

// TestNetnsControlSocket runs a tunnel with no web manager: status reads
// both daemons through their control sockets, in 80 columns by default,
// while a stream runs; a second client whose file has the same name (so
// the same socket) is refused and the first keeps running.
func TestNetnsControlSocket(t *testing.T) {
	e := newEnv(t, topo.TunnelConfig{})
	var client, server string
	// Rates need two samples a second apart of a link that exists.
	mid := at(2500*time.Millisecond, func() {
		client = e.status(e.Topo.Client, "engarde-client")
		server = e.status(e.Topo.Server, "engarde-server")
	})
	r := e.gen(2000, 4*time.Second, 1000)
	mid()
	if r.Lost != 0 {
		t.Errorf("lost %d of %d", r.Lost, r.Sent)
	}
	t.Logf("engarde-client status (control socket, no web manager):\n%s", client)
	t.Logf("engarde-server status (control socket, no web manager):\n%s", server)
	for name, view := range map[string]string{"client": client, "server": server} {
		for i, l := range strings.Split(view, "\n") {
			if n := utf8.RuneCountInString(l); n > 80 {
				t.Errorf("%s status line %d is %d columns: %q", name, i+1, n, l)
			}
		}
	}
	for _, want := range []string{"tunnel up", "LINK", "eth-a", "eth-b", "active"} {
		if !strings.Contains(client, want) {
			t.Errorf("client status lacks %q", want)
		}
	}
	for _, want := range []string{"SESSION  CLIENT ADDRESS", "198.18.", "active"} {
		if !strings.Contains(server, want) {
			t.Errorf("server status lacks %q", want)
		}
	}
	var l control.ClientList
	if out := e.status(e.Topo.Client, "engarde-client", "-json"); json.Unmarshal([]byte(out), &l) != nil || len(l.Interfaces) == 0 {
		t.Errorf("status -json through the socket: %s", out)
	}

	// Another client, another file of the same name: the same socket.
	dir := t.TempDir()
	other := filepath.Join(dir, filepath.Base(e.ConfigPath))
	yml := strings.Replace(e.Config.YAML(), topo.ClientListen, "127.0.0.1:59411", 1)
	if err := os.WriteFile(other, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := e.Topo.Start(e.Topo.Client, nil, filepath.Join(bin, "engarde-client"), other)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		p.Stop()
		t.Fatalf("a second client on a held control socket kept running:\n%s", p.Stderr.String())
	}
	if err := p.Stop(); err == nil || !strings.Contains(p.Stderr.String(), "client.controlSocket: control socket ") || !strings.Contains(p.Stderr.String(), "in use by a running daemon") {
		t.Errorf("second client: %v\n%s", err, p.Stderr.String())
	}
	if !e.Client.Running() {
		t.Error("the first client stopped")
	}
	if out := e.status(e.Topo.Client, "engarde-client"); !strings.Contains(out, "eth-a") {
		t.Errorf("the first client's socket is gone:\n%s", out)
	}
}

// TestNetnsWebPortInUse: a server whose web manager cannot listen exits
// non-zero naming the address, instead of running without it; the server
// holding the port keeps running.
func TestNetnsWebPortInUse(t *testing.T) {
	e := newEnv(t, topo.TunnelConfig{ServerExtra: "  webManager: {listenAddr: \"127.0.0.1:59490\"}\n"})
	e.waitLog(e.Server, 5*time.Second, 1, "web manager listening on http://127.0.0.1:59490/")
	dir := t.TempDir()
	other := filepath.Join(dir, "second.yml")
	yml := strings.Replace(e.Config.YAML(), fmt.Sprintf("0.0.0.0:%d", topo.ServerPort), "0.0.0.0:59412", 1)
	if err := os.WriteFile(other, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := e.Topo.Start(e.Topo.Server, nil, filepath.Join(bin, "engarde-server"), other)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		p.Stop()
		t.Fatalf("a server whose web port is taken kept running:\n%s", p.Stderr.String())
	}
	want := other + ": server.webManager: web manager: listening on 127.0.0.1:59490"
	if err := p.Stop(); err == nil || !strings.Contains(p.Stderr.String(), want) || !strings.Contains(p.Stderr.String(), "address already in use") {
		t.Errorf("exit %v; stderr lacks %q:\n%s", err, want, p.Stderr.String())
	}
	if !e.Server.Running() {
		t.Error("the first server stopped")
	}
}

// TestNetnsSystemdNotify runs a server as systemd would with Type=notify
// and WatchdogSec=: it says READY=1 once running, pings the watchdog,
// brackets a reload with RELOADING=1 and READY=1, and says STOPPING=1.
func TestNetnsSystemdNotify(t *testing.T) {
	e := newEnv(t, topo.TunnelConfig{})
	addr := filepath.Join(t.TempDir(), "notify")
	sd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	other := filepath.Join(t.TempDir(), "notified.yml")
	yml := strings.Replace(e.Config.YAML(), fmt.Sprintf("0.0.0.0:%d", topo.ServerPort), "0.0.0.0:59413", 1)
	if err := os.WriteFile(other, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := e.Topo.Start(e.Topo.Server, nil, "env", "NOTIFY_SOCKET="+addr, "WATCHDOG_USEC=400000", filepath.Join(bin, "engarde-server"), other)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	read := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		for deadline := time.Now().Add(5 * time.Second); ; {
			sd.SetReadDeadline(deadline)
			n, err := sd.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %q: %v\n%s", want, err, p.Stderr.String())
			}
			got := string(buf[:n])
			if strings.HasPrefix(got, want) {
				t.Logf("systemd heard %q", got)
				return
			}
			if !strings.HasPrefix(got, "WATCHDOG=1") {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
	}
	read("READY=1\nSTATUS=tunnel ")
	read("WATCHDOG=1\nSTATUS=")
	read("WATCHDOG=1\nSTATUS=")
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	read("RELOADING=1")
	read("READY=1")
	p.Cmd.Process.Signal(os.Interrupt)
	read("STOPPING=1")
	if err := p.Stop(); err != nil {
		t.Errorf("stopped with %v:\n%s", err, p.Stderr.String())
	}
}
