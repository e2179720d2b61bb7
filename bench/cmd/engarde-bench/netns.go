package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/engarde-project/engarde/bench/topo"
)

// directSink is where the direct path's sink listens: link A's server
// address, so that the generator reaches it over one link, no tunnel.
var directSink = topo.Plan(1).ServerAddr.String() + ":59999"

// runNamespaces runs every planned scenario with the real binaries from
// bin in network namespaces named prefix* (egb<pid>-* when empty): one
// topology per backend, then one for WireGuard. Each is torn down before
// the next starts, also on failure or interruption.
func (b *bench) runNamespaces(bin, prefix string) {
	if prefix == "" {
		prefix = fmt.Sprintf("egb%d-", os.Getpid()%100000)
	}
	perBackend := slices.ContainsFunc(b.plan.Scenarios, func(s string) bool { return s != scWireGuard })
	for i, backend := range b.plan.Backends {
		if b.ctx.Err() != nil {
			return
		}
		if !perBackend {
			break
		}
		if err := b.backendScenarios(bin, prefix+backend+"-", backend, i == 0); err != nil {
			fmt.Fprintf(b.out, "engarde/%s: %v\n", backend, err)
			b.res.Skipped = append(b.res.Skipped, Skip{Scenario: enginePath(backend), Reason: err.Error()})
		}
	}
	if b.plan.has(scWireGuard) && b.ctx.Err() == nil {
		b.step("WireGuard alone, over engarde/"+b.plan.primary()+", over it with eth-b down", func() {
			if err := b.wireguard(bin, prefix+"wg-", b.plan.primary()); err != nil {
				fmt.Fprintf(b.out, "  WireGuard: %v\n", err)
				b.res.Skipped = append(b.res.Skipped, Skip{Scenario: scWireGuard, Reason: err.Error()})
			}
		})
	}
}

// backendScenarios runs the scenarios of one backend on a tunnel of its
// own; the primary backend's runs are paired with the direct path's.
func (b *bench) backendScenarios(bin, prefix, backend string, primary bool) error {
	var tun *topo.Tunnel
	var err error
	b.step("start tunnel, engarde/"+backend, func() {
		tun, err = topo.StartTunnel(prefix, topo.TunnelConfig{Bin: bin, Backend: backend})
	})
	if err != nil {
		return err
	}
	defer tun.Close()
	e := &path{name: enginePath(backend), gen: tunnelGen(tun, topo.ClientListen), cpu: []*topo.Proc{tun.Client, tun.Server}}
	var d *path
	if primary {
		if _, err := tun.StartSink(directSink); err != nil {
			return fmt.Errorf("direct sink: %w", err)
		}
		d = &path{name: directPath, gen: tunnelGen(tun, directSink)}
	}
	p := &b.plan
	if p.has(scThroughput) {
		for i, size := range p.Sizes {
			if i > 0 && !primary && !p.OtherSizes {
				continue
			}
			n := p.pairsFor(backend, i == 0)
			b.step(fmt.Sprintf("throughput %d B, %s (%d run%s)", size, pathsOf(e, d), n, plural(n)), func() { b.throughput(e, d, size, n, false) })
		}
	}
	if p.has(scLatency) {
		n := p.pairsFor(backend, true)
		b.step(fmt.Sprintf("latency, %s", pathsOf(e, d)), func() { b.latency(e, d, n) })
	}
	if p.has(scFailover) {
		b.step(fmt.Sprintf("failover, %s", e.name), func() { b.failover(e, tun.SetUp) })
		if d != nil && p.Failover.Direct {
			b.step("failover, direct", func() { b.failover(d, tun.SetUp) })
		}
	}
	if p.has(scLoss) {
		b.step(fmt.Sprintf("loss, %s", pathsOf(e, d)), func() { b.loss(e, d, tun.LossIngress) })
	}
	if p.has(scSlow) {
		limit := func(on bool) error {
			if on {
				return tun.Limit("eth-a", p.SlowLimit, p.SlowLatency)
			}
			return tun.Limit("eth-a", "", "")
		}
		n := p.pairsFor(backend, true)
		b.step(fmt.Sprintf("slow link, %s", pathsOf(e, d)), func() {
			b.slow(e, n, limit)
			if d != nil {
				b.slow(d, 1, limit)
			}
		})
	}
	if p.has(scOrder) {
		dur := p.OrderTrial
		if !primary {
			dur = p.OrderOtherTrial
		}
		b.step(fmt.Sprintf("order at %d pkt/s, %s", p.OrderRate, pathsOf(e, d)), func() { b.order(e, d, tun, relayCommand(), dur) })
	}
	if p.has(scScaling) && primary {
		b.step(fmt.Sprintf("scaling, engarde/%s with GOMAXPROCS=%d and the daemons' own", backend, p.scalingProcs()), func() {
			b.scaling(bin, prefix+"p1-", backend, e)
		})
	}
	return nil
}

// relayCommand is the delay relay's command line: this program's relay
// subcommand.
func relayCommand() []string {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return []string{exe, "relay"}
}

// pathsOf names the paths a step measures.
func pathsOf(e, d *path) string {
	if d == nil {
		return e.name
	}
	return e.name + " + " + d.name
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
