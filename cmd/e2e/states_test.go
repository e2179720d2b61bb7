package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/cmd/internal/control"
)

// The states tests run the programs in namespaces named st<pid>-<n>c and
// ...s, and check what the client says (status -json, the log) when its
// links fail in the ways issue 11 found silent or wrong.

// newStatesEnv is newEnv on namespaces of the states tests' own prefix.
func newStatesEnv(t *testing.T, c topo.TunnelConfig) *env {
	t.Helper()
	c.ClientExtra = clientWeb + c.ClientExtra
	c.ServerExtra = serverWeb + c.ServerExtra
	return startEnv(t, "st", c)
}

// background runs a stream of rate packets a second for d through the
// tunnel (WireGuard's traffic), and returns a func that waits for it.
func (e *env) background(rate int, d time.Duration) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.Gen(rate, d, 200) // losses are the point here
	}()
	return func() { <-done }
}

// waitTunnel polls the client's status until cond holds, for up to d.
func (e *env) waitTunnel(d time.Duration, what string, cond func(control.ClientList) bool) control.ClientList {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		l := e.clientList()
		if cond(l) {
			return l
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(l, "", " ")
			e.t.Fatalf("not within %v: %s; the client says:\n%s", d, what, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNetnsStatesAllLinksDead drops everything that reaches the server on
// both links (nftables, in the server's namespace: the client's sends
// succeed): the page and status said "active", all green, while ping lost
// its packets. Now every link is stalled and the tunnel down, the server
// silent, within a few seconds, and back up when the path is. Then the
// same drop on the client's own output: its sends fail (EPERM), and the
// tunnel says a firewall on this host refuses them.
func TestNetnsStatesAllLinksDead(t *testing.T) {
	needNetns(t)
	needTool(t, "nft", "nftables")
	e := newStatesEnv(t, topo.TunnelConfig{})
	wait := e.background(200, 14*time.Second)
	defer wait()
	e.waitTunnel(5*time.Second, "the tunnel up", func(l control.ClientList) bool { return l.Tunnel.State == "up" })
	rules := "table inet st_dead {\n chain in {\n  type filter hook input priority 0; policy accept;\n" +
		"  iifname \"eth-a\" meta l4proto udp drop\n  iifname \"eth-b\" meta l4proto udp drop\n }\n}\n"
	if err := e.Nft(e.Topo.Server, rules); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	l := e.waitTunnel(10*time.Second, "the tunnel down, the server silent", func(l control.ClientList) bool {
		return l.Tunnel.State == "down" && strings.HasPrefix(l.Tunnel.Reason, "server silent")
	})
	t.Logf("tunnel down %v after the links died: %s", time.Since(cut).Round(100*time.Millisecond), l.Tunnel.Reason)
	for _, name := range []string{"eth-a", "eth-b"} {
		if i := iface(l, name); i.State != "stalled" || !i.Stalled {
			t.Errorf("%s: state %q stalled %v, want stalled", name, i.State, i.Stalled)
		}
		e.waitLog(e.Client, time.Second, 1, `"level":"warn"`, `"link":"`+name+`"`, `"to":"stalled"`)
	}
	e.waitLog(e.Client, time.Second, 1, `"level":"warn"`, `"to":"down"`, `tunnel down: server silent`)
	if err := e.NftRemove(e.Topo.Server, "inet", "st_dead"); err != nil {
		t.Fatal(err)
	}
	e.waitTunnel(10*time.Second, "the tunnel up again", func(l control.ClientList) bool {
		return l.Tunnel.State == "up" && iface(l, "eth-a").State == "active" && iface(l, "eth-b").State == "active"
	})
	local := strings.NewReplacer("chain in", "chain out", "hook input", "hook output", "iifname", "oifname").Replace(rules)
	if err := e.Nft(e.Topo.Client, local); err != nil {
		t.Fatal(err)
	}
	defer e.NftRemove(e.Topo.Client, "inet", "st_dead")
	l = e.waitTunnel(10*time.Second, "the tunnel down, a local firewall refusing", func(l control.ClientList) bool {
		return l.Tunnel.State == "down" && strings.HasPrefix(l.Tunnel.Reason, "server unreachable: a firewall on this host refuses")
	})
	t.Logf("with the client's output dropped: %s", l.Tunnel.Reason)
}

// TestNetnsStatesWrongPort reloads the client with a server port nothing
// listens on: "LAST RX never" and no log line before; now the tunnel is
// down and says the server is unreachable, from the ICMP port
// unreachables the links' sockets report.
func TestNetnsStatesWrongPort(t *testing.T) {
	e := newStatesEnv(t, topo.TunnelConfig{})
	cfg := e.Config.YAML()
	i := strings.Index(cfg, "server:")
	wrong := strings.ReplaceAll(cfg[:i], fmt.Sprintf(":%d", topo.ServerPort), ":59499") + cfg[i:]
	if err := e.WriteConfig(wrong); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Reload(); err != nil {
		t.Fatal(err)
	}
	e.waitLog(e.Client, 2*time.Second, 1, "configuration reloaded")
	wait := e.background(200, 10*time.Second)
	defer wait()
	l := e.waitTunnel(10*time.Second, "the tunnel down, the server unreachable", func(l control.ClientList) bool {
		return l.Tunnel.State == "down" && strings.HasPrefix(l.Tunnel.Reason, "server unreachable")
	})
	t.Logf("tunnel: %s", l.Tunnel.Reason)
	if !strings.Contains(l.Tunnel.Reason, "59499") || !strings.Contains(l.Tunnel.Reason, "ICMP port unreachable") {
		t.Errorf("the reason %q does not name the port nothing listens on", l.Tunnel.Reason)
	}
	e.waitLog(e.Client, time.Second, 1, `"level":"warn"`, `tunnel down: server unreachable`)
}

// TestNetnsStatesPulledCable takes the server end of eth-a down, so that
// the client's eth-a loses its carrier: a grey "idle" on the client
// before, while the server showed red. Now the link is down with a
// warning, the tunnel degraded, and both come back.
func TestNetnsStatesPulledCable(t *testing.T) {
	e := newStatesEnv(t, topo.TunnelConfig{})
	wait := e.background(200, 8*time.Second)
	defer wait()
	e.waitTunnel(5*time.Second, "the tunnel up", func(l control.ClientList) bool { return l.Tunnel.State == "up" })
	if _, err := e.Exec(e.Topo.Server, "ip", "link", "set", "eth-a", "down"); err != nil {
		t.Fatal(err)
	}
	l := e.waitTunnel(5*time.Second, "eth-a down, the tunnel degraded", func(l control.ClientList) bool {
		return iface(l, "eth-a").State == "down" && l.Tunnel.State == "degraded"
	})
	if a := iface(l, "eth-a"); a.Reason != "no carrier" || a.Status != "idle" {
		t.Errorf("eth-a: reason %q, original status %q; want no carrier, idle", a.Reason, a.Status)
	}
	e.waitLog(e.Client, time.Second, 1, `"level":"warn"`, `"link":"eth-a"`, `"from":"active"`, `"to":"down"`, `"reason":"no carrier"`)
	found := false
	for _, ev := range l.Events {
		found = found || ev.Link == "eth-a" && ev.To == "down" && ev.Reason == "no carrier"
	}
	if !found {
		t.Errorf("no event of eth-a going down in %+v", l.Events)
	}
	if _, err := e.Exec(e.Topo.Server, "ip", "link", "set", "eth-a", "up"); err != nil {
		t.Fatal(err)
	}
	e.waitTunnel(5*time.Second, "the tunnel up again", func(l control.ClientList) bool { return l.Tunnel.State == "up" })
}

// TestNetnsExcludeKeepsPort excludes eth-a through the API and includes
// it again while traffic flows: before, it came back from a new source
// port, the server kept the old address for 30 s (NOT RECEIVING) and the
// counters restarted. Now the server knows the link at the same address
// throughout, and its counters go on.
func TestNetnsExcludeKeepsPort(t *testing.T) {
	needTool(t, "curl", "curl")
	e := newStatesEnv(t, topo.TunnelConfig{})
	wait := e.background(500, 8*time.Second)
	defer wait()
	time.Sleep(time.Second)
	addrOf := func() string {
		var sl control.ServerList
		out := e.status(e.Topo.Server, "engarde-server", "-json")
		if err := json.Unmarshal([]byte(out), &sl); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, s := range sl.Sockets {
			if strings.HasPrefix(s.Address, topo.Plan(1).ClientAddr.String()+":") {
				return s.Address
			}
		}
		return ""
	}
	before := addrOf()
	if before == "" {
		t.Fatal("the server does not know eth-a's address")
	}
	txBefore := iface(e.clientList(), "eth-a").Stats.TxPackets
	const web = "http://127.0.0.1:59480"
	post := func(path string) {
		if code, body := e.curl(e.Topo.Client, "-X", "POST", "-u", "admin:s3cret", "-d", `{"interface":"eth-a"}`, web+path); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	post("/api/v1/exclude")
	if a := iface(e.clientList(), "eth-a"); a.State != "excluded" || a.Stats == nil {
		t.Errorf("eth-a excluded: state %q, stats %v; want excluded with its counters", a.State, a.Stats)
	}
	time.Sleep(time.Second)
	post("/api/v1/include")
	e.waitTunnel(3*time.Second, "eth-a active again", func(l control.ClientList) bool { return iface(l, "eth-a").State == "active" })
	time.Sleep(500 * time.Millisecond)
	if after := addrOf(); after != before {
		t.Errorf("the server knows eth-a at %s after the exclusion, was %s", after, before)
	}
	if tx := iface(e.clientList(), "eth-a").Stats.TxPackets; tx <= txBefore {
		t.Errorf("eth-a sent %d in all after the exclusion, %d before: its counters restarted", tx, txBefore)
	}
}
