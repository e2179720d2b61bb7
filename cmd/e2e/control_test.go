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
	e.waitLog(e.Client, time.Second, 1, "link eth-a: excluded; closing its socket")
	e.waitLog(e.Client, time.Second, 1, "log level changed", `"logLevel":"info"`)
	l := e.clientList()
	if a, b := iface(l, "eth-a"), iface(l, "eth-b"); a.Status != "excluded" || a.Stats != nil || b.Status != "active" || b.Label != "Backup" {
		t.Errorf("after the reload: eth-a %+v, eth-b %+v", a, b)
	}
	t.Logf("engarde-client status during the stream:\n%s", midStream)
	out := e.status(e.Topo.Client, "engarde-client")
	t.Logf("engarde-client status after it:\n%s", out)
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
	out = e.status(e.Topo.Server, "engarde-server")
	t.Logf("engarde-server status:\n%s", out)
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
// cannot help: no web manager configured, wrong credentials.
func TestNetnsStatusErrors(t *testing.T) {
	e := newEnv(t, topo.TunnelConfig{ClientExtra: clientWeb})
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
