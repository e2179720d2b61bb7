package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
)

// TestListenControl: the socket's mode, a stale socket replaced, a live
// one refused, a file that is not a socket and a directory anyone may
// write refused, and Close removing only its own socket.
func TestListenControl(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "e.client.sock")
	ln, err := ListenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(path)
	if err != nil || st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != socketMode {
		t.Fatalf("socket %v, mode %v; want a socket of mode %v", err, st.Mode(), socketMode)
	}
	if _, err := ListenControl(path); !errors.Is(err, ErrSocketInUse) {
		t.Errorf("a second daemon on a live socket: %v, want ErrSocketInUse", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close left the socket: %v", err)
	}

	// A crashed run's socket: bound, nobody listening.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err = ListenControl(path)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	// A successor's socket in its place is not removed by the old one.
	os.Remove(path)
	next, err := ListenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the old listener removed its successor's socket: %v", err)
	}
	next.Close()

	file := filepath.Join(dir, "file.sock")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := ListenControl(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a regular file at the path: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("the regular file was touched")
	}
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777) // whatever the umask
	if _, err := ListenControl(filepath.Join(open, "s.sock")); err == nil || !strings.Contains(err.Error(), "writable by every user") {
		t.Errorf("a world-writable directory: %v", err)
	}
}

// TestStatusOverSocket: with no web manager, status reads the daemon
// through its control socket, which needs no login even when the web
// manager has one; actions go through it too; and a reload moves it.
func TestStatusOverSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	path := filepath.Join(dir, "engarde.yml")
	yml := "server:\n  listenAddr: \"0.0.0.0:59402\"\n  dstAddr: \"127.0.0.1:59301\"\n  controlSocket: c.sock\n"
	os.WriteFile(path, []byte(yml), 0o600)
	cfg, err := config.Load(path, config.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.ControlSocket != sock {
		t.Fatalf("controlSocket %q, want %q (relative to the file)", cfg.Server.ControlSocket, sock)
	}
	// A login on the web manager (not listening) does not apply to the socket.
	web, err := control.New(control.Options{Username: "admin", Password: "pw"}, control.Role{Server: fakeServerRole{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	s, err := StartSocket(zerolog.Nop(), web, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Status(&out, "engarde-server", config.RoleServer, []string{"-json", path}); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(out.Bytes()) || !strings.Contains(out.String(), `"type":"server"`) {
		t.Errorf("status -json over the socket: %s", out.String())
	}
	out.Reset()
	if err := Status(&out, "engarde-server", config.RoleServer, []string{path}); err != nil || !strings.Contains(out.String(), "engarde-server ") {
		t.Errorf("status over the socket: %v\n%s", err, out.String())
	}
	// The client asking a server's socket is told so.
	if err := Status(&out, "engarde-client", config.RoleClient, []string{path}); err == nil {
		t.Error("a client's status read the server's file without a client section")
	}

	// A reload that moves the socket; the old path is gone.
	os.WriteFile(path, []byte(strings.Replace(yml, "c.sock", "d.sock", 1)), 0o600)
	next, _ := config.Load(path, config.RoleServer)
	if err := s.Reconfigure(next); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the old socket is still there: %v", err)
	}
	hc := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", filepath.Join(dir, "d.sock")) }}}
	resp, err := hc.Get("http://localhost/api/v1/get-list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("moved socket: %d", resp.StatusCode)
	}
	// A reload to a path that cannot work keeps the socket where it is.
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	os.WriteFile(path, []byte(strings.Replace(yml, "c.sock", "file/x.sock", 1)), 0o600)
	bad, err := config.Load(path, config.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reconfigure(bad); err == nil {
		t.Error("a reload to an impossible path succeeded")
	}
	if s.Path() != filepath.Join(dir, "d.sock") {
		t.Errorf("after a failed reload the socket is at %q", s.Path())
	}
	// Turned off by a reload: gone.
	os.WriteFile(path, []byte(strings.Replace(yml, "c.sock", "off", 1)), 0o600)
	off, _ := config.Load(path, config.RoleServer)
	if err := s.Reconfigure(off); err != nil || s.Path() != "" {
		t.Errorf("reload to off: %v, socket at %q", err, s.Path())
	}
	if _, err := os.Lstat(filepath.Join(dir, "d.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket turned off is still there: %v", err)
	}
	os.WriteFile(path, []byte(strings.Replace(yml, "c.sock", "d.sock", 1)), 0o600)
	if err := s.Reconfigure(next); err != nil || s.Path() != filepath.Join(dir, "d.sock") {
		t.Errorf("reload back on: %v, socket at %q", err, s.Path())
	}
	web.Close() // closes the socket
	if _, err := os.Lstat(filepath.Join(dir, "d.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("web.Close left the socket: %v", err)
	}
	// No daemon: status says so.
	if err := Status(&out, "engarde-server", config.RoleServer, []string{path}); err == nil || !strings.Contains(err.Error(), "is engarde-server running?") {
		t.Errorf("status with no daemon: %v", err)
	}
}

// TestStartControlRefuses: a web manager port in use and a control
// socket held by another daemon stop the start-up, naming the file and
// the key.
func TestStartControlRefuses(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	held, err := ListenControl(filepath.Join(dir, "held.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, tc := range []struct{ name, extra, want string }{
		{"web port in use", "  controlSocket: off\n  webManager: {listenAddr: \"" + busy.Addr().String() + "\"}\n", "server.webManager: web manager: listening on " + busy.Addr().String()},
		{"socket in use", "  controlSocket: held.sock\n", "server.controlSocket: control socket " + filepath.Join(dir, "held.sock") + ": in use by a running daemon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "engarde.yml")
			os.WriteFile(path, []byte("server:\n  listenAddr: \"0.0.0.0:59402\"\n  dstAddr: \"127.0.0.1:59301\"\n"+tc.extra), 0o600)
			cfg, err := config.Load(path, config.RoleServer)
			if err != nil {
				t.Fatal(err)
			}
			web, _, err := StartControl(zerolog.Nop(), cfg, control.Role{Server: fakeServerRole{}})
			if err == nil {
				web.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), path+": "+tc.want) {
				t.Errorf("error %q, want it to contain %q", err, path+": "+tc.want)
			}
		})
	}
}
