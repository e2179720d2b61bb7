package app

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/cmd/internal/control/controltest"
	"github.com/engarde-project/engarde/config"
)

type fakeServerRole struct{}

func (fakeServerRole) ServerStatus() control.ServerStatus {
	return control.ServerStatus{Description: "hub", ListenAddr: "0.0.0.0:59402", DstAddr: "127.0.0.1:59301", Backend: "std"}
}

// TestStatusTLS: the status command reaches a web manager that serves
// HTTPS, trusting exactly the certificate of the configuration (relative
// paths taken from the file's directory), and refuses another one.
func TestStatusTLS(t *testing.T) {
	dir := t.TempDir()
	controltest.SelfSigned(t, dir, "web")
	controltest.SelfSigned(t, dir, "other")
	web, err := control.New(control.Options{ListenAddr: "127.0.0.1:0", CertFile: filepath.Join(dir, "web.crt"), KeyFile: filepath.Join(dir, "web.key"),
		Username: "admin", Password: "pw"}, control.Role{Server: fakeServerRole{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	conf := func(cert string) string {
		yml := "server:\n  listenAddr: \"0.0.0.0:59402\"\n  dstAddr: \"127.0.0.1:59301\"\n" +
			"  webManager: {listenAddr: \"" + web.Addr().String() + "\", username: admin, password: pw, certFile: " + cert + ".crt, keyFile: " + cert + ".key}\n"
		path := filepath.Join(dir, cert+".yml")
		if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var out bytes.Buffer
	if err := Status(&out, "engarde-server", config.RoleServer, []string{conf("web")}); err != nil {
		t.Fatalf("status over HTTPS: %v", err)
	}
	if !strings.Contains(out.String(), "hub") {
		t.Errorf("status printed:\n%s", out.String())
	}
	err = Status(&bytes.Buffer{}, "engarde-server", config.RoleServer, []string{conf("other")})
	if err == nil || !strings.Contains(err.Error(), "not the one in") {
		t.Errorf("status with another certificate: %v, want a refusal", err)
	}
}

// TestReloadRefusesHalfLogin: a reload whose file sets a password without
// a username is refused with the file, line and key, and the web manager
// keeps its login.
func TestReloadRefusesHalfLogin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "engarde.yml")
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port: config wants one
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	head := "server:\n  listenAddr: \"0.0.0.0:59402\"\n  dstAddr: \"127.0.0.1:59301\"\n  webManager:\n    listenAddr: \"" + addr + "\"\n"
	os.WriteFile(path, []byte(head+"    username: admin\n    password: pw\n"), 0o600)
	cfg, err := config.Load(path, config.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	zl := zerolog.New(&logs)
	web, err := StartWeb(zl, cfg.Server.WebManager, control.Role{Server: fakeServerRole{}})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	r := NewReloader(zl, cfg, web, nil, func(*config.Config) error { return nil })

	os.WriteFile(path, []byte(head+"    password: pw\n"), 0o600)
	r.Reload()
	want := path + ":6: server.webManager.username: missing or empty, but password is set on line 6"
	if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "still running the previous configuration") {
		t.Errorf("reload log lacks %q:\n%s", want, logs.String())
	}
	resp, err := http.Get("http://" + web.Addr().String() + "/api/v1/get-list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("after the refused reload: %d without credentials, want 401", resp.StatusCode)
	}
}
