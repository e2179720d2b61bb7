package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/cmd/internal/control/controltest"
)

// Web managers of the control tests, each on its namespace's loopback.
const (
	clientWeb = "  webManager:\n    listenAddr: \"127.0.0.1:59480\"\n    username: \"admin\"\n    password: \"s3cret\"\n"
	serverWeb = "  webManager:\n    listenAddr: \"0.0.0.0:59481\"\n"
)

// status runs `prog status [-json] config` in namespace ns.
func (e *env) status(ns, prog string, args ...string) string {
	e.t.Helper()
	out, err := e.Exec(ns, append([]string{filepath.Join(bin, prog), "status"}, append(args, e.ConfigPath)...)...)
	if err != nil {
		e.t.Fatalf("%s status: %v\n%s", prog, err, out)
	}
	return out
}

// clientList asks the running client for its state, through the status
// command's -json.
func (e *env) clientList() control.ClientList {
	e.t.Helper()
	var l control.ClientList
	out := e.status(e.Topo.Client, "engarde-client", "-json")
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		e.t.Fatalf("%v: %s", err, out)
	}
	return l
}

func iface(l control.ClientList, name string) control.Interface {
	for _, i := range l.Interfaces {
		if i.Name == name {
			return i
		}
	}
	return control.Interface{}
}

// rxPackets reads a link's receive counter on the server side.
func (e *env) rxPackets(link string) int {
	e.t.Helper()
	out, err := e.Exec(e.Topo.Server, "cat", "/sys/class/net/"+link+"/statistics/rx_packets")
	if err != nil {
		e.t.Fatal(err)
	}
	var n int
	fmt.Sscan(out, &n)
	return n
}

// TestNetnsReload excludes eth-a by rewriting the configuration and
// sending SIGHUP while a stream runs: eth-a must stop carrying traffic and
// nothing may be lost, since eth-b keeps its socket. Then a broken
// configuration is refused with its file, line and key, and the client
// keeps running the previous one. The status command reads the client and
// the server along the way.
func TestNetnsReload(t *testing.T) {
	c := topo.TunnelConfig{ClientExtra: clientWeb, ServerExtra: serverWeb}
	e := newEnv(t, c)
	e.waitLog(e.Client, 5*time.Second, 1, "web manager listening on http://127.0.0.1:59480/")
	e.waitLog(e.Server, 5*time.Second, 1, "web manager listening on http://", ":59481/")
	e.waitLog(e.Server, 5*time.Second, 1, "reachable from other hosts without a password")
	e.waitLog(e.Server, time.Second, 1, "serves plain HTTP beyond loopback: the login and everything the API says and does travel in clear")
	if l := e.clientList(); iface(l, "eth-a").Status != "active" || iface(l, "eth-b").Status != "active" {
		t.Fatalf("before the reload: %+v", l.Interfaces)
	}

	reloaded := c
	reloaded.LogLevel = "info"
	reloaded.ClientExtra = clientWeb + "  excludedInterfaces: [eth-a]\n  interfaceLabels: {eth-b: \"Backup\"}\n"
	var aAtReload int
	var midStream string
	wait := at(1500*time.Millisecond, func() {
		if err := e.WriteConfig(reloaded.YAML()); err != nil {
			t.Error(err)
			return
		}
		if err := e.Client.Reload(); err != nil {
			t.Error(err)
			return
		}
		if err := e.WaitLog(e.Client, 2*time.Second, 1, "configuration reloaded"); err != nil {
			t.Error(err)
		}
		time.Sleep(100 * time.Millisecond)
		out, err := e.Exec(e.Topo.Server, "cat", "/sys/class/net/eth-a/statistics/rx_packets")
		if err != nil {
			t.Error(err)
		}
		fmt.Sscan(out, &aAtReload)
		// The status table while the stream runs on eth-b alone.
		time.Sleep(1200 * time.Millisecond)
		midStream, _ = e.Exec(e.Topo.Client, filepath.Join(bin, "engarde-client"), "status", e.ConfigPath)
	})
	r := e.gen(10000, 4*time.Second, 1000)
	wait()
	if r.Lost != 0 {
		t.Errorf("lost %d of %d across a reload that excluded eth-a", r.Lost, r.Sent)
	}
	if after := e.rxPackets("eth-a"); after-aAtReload > 10 {
		t.Errorf("eth-a carried %d packets after it was excluded by a reload", after-aAtReload)
	}
	e.waitLog(e.Client, time.Second, 1, "link eth-a excluded: excluded by the configuration", `"link":"eth-a"`, `"to":"excluded"`)
	e.waitLog(e.Client, time.Second, 1, "log level changed", `"logLevel":"info"`)
	l := e.clientList()
	// eth-a keeps its socket, so its counters (and its source port).
	if a, b := iface(l, "eth-a"), iface(l, "eth-b"); a.Status != "excluded" || a.Stats == nil || b.Status != "active" || b.Label != "Backup" {
		t.Errorf("after the reload: eth-a %+v, eth-b %+v", a, b)
	}
	t.Logf("engarde-client status during the stream:\n%s", midStream)
	out := e.status(e.Topo.Client, "engarde-client", "-wide")
	t.Logf("engarde-client status -wide after it:\n%s", out)
	for _, want := range []string{"engarde test client", "INTERFACE", "eth-a", "excluded", "eth-b", "Backup", "198.18.2.2", "198.18.2.1:59402"} {
		if !strings.Contains(out, want) {
			t.Errorf("client status lacks %q", want)
		}
	}

	// The server: a shorter client timeout by reload, shown by its status.
	srvCfg := strings.Replace(reloaded.YAML(), "clientTimeout: 30", "clientTimeout: 20", 1)
	if err := e.WriteConfig(srvCfg); err != nil {
		t.Fatal(err)
	}
	if err := e.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	e.waitLog(e.Server, 2*time.Second, 1, "configuration reloaded")
	// The warnings again, on reload.
	e.waitLog(e.Server, time.Second, 2, "serves plain HTTP beyond loopback")
	e.waitLog(e.Server, time.Second, 2, "reachable from other hosts without a password")
	out = e.status(e.Topo.Server, "engarde-server", "-wide")
	t.Logf("engarde-server status -wide:\n%s", out)
	for _, want := range []string{"engarde test server", "client timeout 20s", "CLIENT ADDRESS", "198.18.2.2:", "198.18.2.1:59402"} {
		if !strings.Contains(out, want) {
			t.Errorf("server status lacks %q", want)
		}
	}

	// A broken file: refused with file, line and key; the client goes on
	// with eth-a excluded and loses nothing.
	broken := strings.Replace(srvCfg, "  excludedInterfaces: [eth-a]\n", "  excludedInterface: [eth-b]\n", 1)
	if broken == srvCfg {
		t.Fatal("test bug: nothing replaced")
	}
	line := 1 + strings.Count(broken[:strings.Index(broken, "excludedInterface:")], "\n")
	if err := e.WriteConfig(broken); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Reload(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`reload rejected: %s:%d: client.excludedInterface: unknown key \"excludedInterface\" (did you mean \"excludedInterfaces\"?)`, e.ConfigPath, line)
	e.waitLog(e.Client, 2*time.Second, 1, want)
	e.waitLog(e.Client, time.Second, 1, "still running the previous configuration")
	if !e.Client.Running() {
		t.Fatal("the client exited on a broken reload")
	}
	// The status command reads the file too: put the running one back
	// (no SIGHUP, so the client does not look at it).
	if err := e.WriteConfig(srvCfg); err != nil {
		t.Fatal(err)
	}
	r2 := e.gen(5000, time.Second, 1000)
	if r2.Lost != 0 {
		t.Errorf("lost %d of %d after a refused reload", r2.Lost, r2.Sent)
	}
	l = e.clientList()
	if a, b := iface(l, "eth-a"), iface(l, "eth-b"); a.Status != "excluded" || b.Status != "active" || b.Label != "Backup" {
		t.Errorf("after a refused reload: eth-a %+v, eth-b %+v; want the previous configuration", a, b)
	}
}

// TestNetnsStatusErrors checks what the status command says when it
// cannot help: no control socket and no web manager configured, wrong
// credentials.
func TestNetnsStatusErrors(t *testing.T) {
	const noSocket = "  controlSocket: off\n"
	e := newEnv(t, topo.TunnelConfig{ClientExtra: clientWeb + noSocket, ServerExtra: noSocket})
	e.waitLog(e.Client, 5*time.Second, 1, "web manager listening")
	out, err := e.Exec(e.Topo.Server, filepath.Join(bin, "engarde-server"), "status", e.ConfigPath)
	if err == nil || !strings.Contains(out, "server.webManager.listenAddr is not set") {
		t.Errorf("server status without a web manager: %v\n%s", err, out)
	}
	bad := strings.Replace(e.Config.YAML(), "s3cret", "wrong", 1)
	if err := e.WriteConfig(bad); err != nil {
		t.Fatal(err)
	}
	out, err = e.Exec(e.Topo.Client, filepath.Join(bin, "engarde-client"), "status", e.ConfigPath)
	if err == nil || !strings.Contains(out, "refused the credentials") {
		t.Errorf("client status with a wrong password: %v\n%s", err, out)
	}
}

// curl runs curl in namespace ns and returns the status code it printed
// (0 when the request failed) and its output.
func (e *env) curl(ns string, args ...string) (int, string) {
	e.t.Helper()
	out, _ := e.Exec(ns, append([]string{"curl", "-s", "-S", "--max-time", "5", "-w", "\n%{http_code}"}, args...)...)
	i := strings.LastIndex(out, "\n")
	var code int
	fmt.Sscan(out[i+1:], &code)
	return code, out[:max(i, 0)]
}

// TestNetnsWebHardening plays the control-plane attacks against the real
// programs in namespaces and checks each answer: a GET that would reset
// the exclusions (405), a DNS-rebinding page's requests (421, also with
// the right password), plain HTTP to the HTTPS port of a server whose web
// manager listens on every address (refused, and no warning logged since
// it is encrypted and behind a login), and a reload that sets a password
// without a username (refused with file, line and key; the login stays).
func TestNetnsWebHardening(t *testing.T) {
	needTool(t, "curl", "curl")
	cert, key, _ := controltest.SelfSigned(t, t.TempDir(), "web")
	serverTLS := "  webManager:\n    listenAddr: \"0.0.0.0:59481\"\n    username: \"admin\"\n    password: \"s3cret\"\n" +
		"    certFile: \"" + cert + "\"\n    keyFile: \"" + key + "\"\n"
	c := topo.TunnelConfig{ClientExtra: clientWeb, ServerExtra: serverTLS}
	e := newEnv(t, c)
	e.waitLog(e.Client, 5*time.Second, 1, "web manager listening on http://127.0.0.1:59480/")
	e.waitLog(e.Server, 5*time.Second, 1, "web manager listening on https://", ":59481/")
	cl, srv := e.Topo.Client, e.Topo.Server
	web := "http://127.0.0.1:59480"
	answered := 0 // requests of the attacker that got a 2xx

	// An <img> on any page: GET the reset.
	e.status(cl, "engarde-client") // the login works
	if code, body := e.curl(cl, "-X", "POST", "-u", "admin:s3cret", "-d", `{"interface":"eth-a"}`, web+"/api/v1/exclude"); code != 200 {
		t.Fatalf("exclude eth-a: %d %s", code, body)
	}
	for _, p := range []string{"/api/v1/reset-exclusions", "/reset-exclusions"} {
		code, body := e.curl(cl, "-u", "admin:s3cret", "-D", "-", web+p)
		t.Logf("GET %s with the login: %d", p, code)
		if code != 405 || !strings.Contains(body, "Allow: POST") {
			t.Errorf("GET %s: %d, want 405 with Allow: POST:\n%s", p, code, body)
		}
		if code/100 == 2 {
			answered++
		}
	}
	if st := iface(e.clientList(), "eth-a").Status; st != "excluded" {
		t.Errorf("eth-a %s after the GETs, want still excluded", st)
	}

	// DNS rebinding: the page's requests name its own host.
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/api/v1/get-list", ""},
		{"GET", "/metrics", ""},
		{"POST", "/api/v1/reset-exclusions", ""},
		{"POST", "/api/v1/exclude", `{"interface":"eth-b"}`},
	} {
		for _, login := range []bool{false, true} {
			args := []string{"-X", r.method, "-H", "Host: evil.example:59480", "-H", "Origin: http://evil.example:59480", "-H", "Sec-Fetch-Site: same-origin"}
			if login {
				args = append(args, "-u", "admin:s3cret")
			}
			if r.body != "" {
				args = append(args, "-d", r.body)
			}
			code, body := e.curl(cl, append(args, web+r.path)...)
			t.Logf("%s %s as evil.example, login %v: %d", r.method, r.path, login, code)
			if code != 421 || strings.Contains(body, "interfaces") {
				t.Errorf("%s %s as evil.example (login %v): %d %s, want 421", r.method, r.path, login, code, body)
			}
			if code/100 == 2 {
				answered++
			}
		}
	}
	if l := e.clientList(); iface(l, "eth-a").Status != "excluded" || iface(l, "eth-b").Status != "active" {
		t.Errorf("after the rebinding requests: eth-a %s, eth-b %s; want excluded, active", iface(l, "eth-a").Status, iface(l, "eth-b").Status)
	}
	t.Logf("the attacker's requests answered: %d", answered)

	// The server: HTTPS beyond loopback, behind a login.
	code, body := e.curl(srv, "-k", "-u", "admin:s3cret", "https://127.0.0.1:59481/api/v1/get-list")
	if code != 200 || !strings.Contains(body, `"type":"server"`) {
		t.Errorf("HTTPS get-list: %d %s", code, body)
	}
	if code, body := e.curl(srv, "-u", "admin:s3cret", "http://127.0.0.1:59481/api/v1/get-list"); code == 200 || strings.Contains(body, `"type"`) {
		t.Errorf("plain HTTP to the HTTPS port: %d %s", code, body)
	}
	if out := e.status(srv, "engarde-server"); !strings.Contains(out, "engarde test server") {
		t.Errorf("server status over HTTPS:\n%s", out)
	}
	if log := e.Server.Stderr.String(); strings.Contains(log, "beyond loopback") || strings.Contains(log, "without a password") {
		t.Errorf("warned about a web manager with TLS and a login:\n%s", log)
	}

	// Half a login by reload: refused, the login stays.
	half := strings.Replace(c.YAML(), clientWeb, "  webManager:\n    listenAddr: \"127.0.0.1:59480\"\n    password: \"s3cret\"\n", 1)
	if half == c.YAML() {
		t.Fatal("test bug: nothing replaced")
	}
	line := 1 + strings.Count(half[:strings.Index(half, "    password: \"s3cret\"\n")], "\n")
	if err := e.WriteConfig(half); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Reload(); err != nil {
		t.Fatal(err)
	}
	e.waitLog(e.Client, 2*time.Second, 1, fmt.Sprintf("reload rejected: %s:%d: client.webManager.username: missing or empty, but password is set on line %d", e.ConfigPath, line, line))
	if code, _ := e.curl(cl, web+"/api/v1/get-list"); code != 401 {
		t.Errorf("without credentials after the refused reload: %d, want 401", code)
	}
	// And at start: the client refuses to run.
	out, err := e.Exec(cl, "timeout", "10", filepath.Join(bin, "engarde-client"), e.ConfigPath)
	if err == nil || !strings.Contains(out, fmt.Sprintf("%s:%d: client.webManager.username", e.ConfigPath, line)) {
		t.Errorf("starting with half a login: %v\n%s", err, out)
	}
}
