package e2e

// This file measures the probes' figures on a tunnel whose link a loses
// 5% of what the client sends (nftables, on the server's input) and whose
// link b is delayed 20 ms each way by a relay in user space (the delay
// tool of quality_test.go): there is no netem here.

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// TestNetnsProbes runs the client with probes every 50 ms, has WireGuard's
// stand-in make the session (one second of traffic), then leaves the
// tunnel idle for 25 s and reads each link's probe figures: link a must
// lose about 5% (2 to 10%), link b's round trip must be at least its 40 ms
// of added delay, and probes must be on.
func TestNetnsProbes(t *testing.T) {
	needNetns(t)
	needTool(t, "nft", "nftables")
	const (
		lossPercent = 5
		delay       = 20 * time.Millisecond // each way
		idle        = 25 * time.Second
	)
	e := startEnv(t, "pr", topo.TunnelConfig{ClientExtra: clientWeb + "  probeInterval: 50\n", ServerExtra: serverWeb, LogLevel: "debug"})
	e.waitLog(e.Client, 5*time.Second, 1, "web manager listening on http://127.0.0.1:59480/")

	// Link b through the delay relay, as in TestNetnsLinkQuality.
	d := e.delayLinkB(delay)

	// The session: WireGuard's stand-in's handshake and a second of
	// traffic, then nothing but probes.
	e.gen(100, time.Second, 200)
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := e.clientList()
		pa, pb := iface(l, "eth-a").Probe, iface(l, "eth-b").Probe
		if pa != nil && pb != nil && pa.Answered > 0 && pb.Answered > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probes not answered on both links within 5 s: a %+v, b %+v", pa, pb)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// One direction only: what the client sends on link a, at the
	// server's input. A probe is lost when it or its reply is; the reply
	// direction stays clean so that the expected loss is the rule's 5%.
	table := "pr_probe_loss"
	rules := fmt.Sprintf("table inet %s {\n chain in {\n  type filter hook input priority 0; policy accept;\n"+
		"  iifname %q meta l4proto udp numgen random mod 100 < %d counter drop\n }\n}\n", table, "eth-a", lossPercent)
	if err := e.Topo.Nft(e.Topo.Server, rules); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Topo.NftRemove(e.Topo.Server, "inet", table) })
	before := e.clientList()
	time.Sleep(idle)
	after := e.clientList()

	if got := after.Tunnel.Probes; got != "on" {
		t.Errorf("tunnel probes %q, want on", got)
	}
	for _, name := range []string{"eth-a", "eth-b"} {
		p0, p := iface(before, name).Probe, iface(after, name).Probe
		if p == nil || p0 == nil {
			t.Fatalf("%s: no probe figures", name)
		}
		// Over the idle period alone, from the counters: probes sent
		// then, less those answered (the last second's still in flight
		// count as lost here).
		sent, answered := p.Sent-p0.Sent, p.Answered-p0.Answered
		t.Logf("PROBE link=%s sent=%d answered=%d window=%d lost=%d loss=%s rtt_p50=%s rtt_p99=%s jitter=%s period_loss=%.2f%%",
			name, p.Sent, p.Answered, p.Window, p.Lost, probePct(p.Loss), probeMs(p.RTTP50Ms), probeMs(p.RTTP99Ms), probeMs(p.JitterMs),
			100*(1-float64(answered)/float64(max(sent, 1))))
	}
	pa, pb := iface(after, "eth-a").Probe, iface(after, "eth-b").Probe
	if pa.Loss == nil || *pa.Loss < 0.02 || *pa.Loss > 0.10 {
		t.Errorf("link a: loss %s over %d probes, want 2%% to 10%% (5%% dropped)", probePct(pa.Loss), pa.Window)
	}
	if pb.Loss == nil || *pb.Loss > 0.01 {
		t.Errorf("link b: loss %s, want none", probePct(pb.Loss))
	}
	rtt := 2 * float64(delay/time.Millisecond)
	if pb.RTTP50Ms == nil || *pb.RTTP50Ms < rtt {
		t.Errorf("link b: RTT p50 %s, want at least the added %.0f ms", probeMs(pb.RTTP50Ms), rtt)
	}
	if pa.RTTP50Ms == nil || *pa.RTTP50Ms >= rtt {
		t.Errorf("link a: RTT p50 %s, want below link b's delay", probeMs(pa.RTTP50Ms))
	}
	if res, err := d.stop(); err != nil {
		t.Error(err)
	} else {
		t.Logf("delay relay: %d client addresses, %d datagrams to the server, %d back, %d errors", res.Clients, res.Forward, res.Back, res.Errors)
	}
	t.Logf("engarde-client status:\n%s", e.status(e.Topo.Client, "engarde-client"))
}

func probePct(v *float64) string {
	if v == nil || math.IsNaN(*v) {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100**v)
}

func probeMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fms", *v)
}
